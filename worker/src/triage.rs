//! What to do with a delivery, decided before any work: a pure function.
//!
//! A message may arrive for the first time, again after a worker died, after
//! its client canceled it, after its deadline, or after it already finished
//! (the ack was lost). Each case has one right answer, and getting it wrong
//! either loses a job or runs it twice. Keeping the decision free of I/O —
//! the stored record, the message and the clock in, an [`Action`] out — lets
//! every case be a line in a table-driven test instead of an end-to-end run.

use chrono::{DateTime, Utc};
use inferq_core::job::{InputInfo, JobRecord};
use inferq_core::message::JobMessage;

/// The decision for one delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The job is already final (succeeded, failed, canceled, expired, dead-
    /// lettered): a redelivery or a canceled job. Free its image and ack.
    AlreadyFinal,
    /// Its deadline passed while it waited: store the `expired` record, ack.
    Expire,
    /// Started `delivery_limit` times without finishing: reject it to the
    /// dead-letter queue.
    DeadLetter,
    /// The record cannot start from its state (nothing to do): ack.
    Skip,
    /// Run it: the record is now `running` with the attempt counted.
    Run,
}

/// The record to work with and what to do with it.
#[derive(Debug, Clone, PartialEq)]
pub struct Triage {
    pub record: JobRecord,
    pub action: Action,
}

/// Decides what a delivery of `msg` should do, given the `stored` record
/// (`None` when it expired or the store lost it: the message alone is enough
/// to run the job), the time `now` and the worker's `delivery_limit`.
///
/// For [`Action::Expire`] the returned record is already `expired`; for
/// [`Action::Run`] it is already `running` with `attempts` incremented.
pub fn triage(
    stored: Option<JobRecord>,
    msg: &JobMessage,
    now: DateTime<Utc>,
    delivery_limit: u32,
) -> Triage {
    let mut record = stored.unwrap_or_else(|| record_from_message(msg));
    let action = if record.status.is_terminal() {
        Action::AlreadyFinal
    } else if record.past_deadline(now) {
        match record.expire(now) {
            Ok(()) => Action::Expire,
            Err(_) => Action::Skip,
        }
    } else if record.attempts >= delivery_limit {
        Action::DeadLetter
    } else {
        match record.start(now) {
            Ok(()) => Action::Run,
            Err(_) => Action::Skip,
        }
    };
    Triage { record, action }
}

/// A queued record rebuilt from the message, for a job whose record is gone.
pub fn record_from_message(msg: &JobMessage) -> JobRecord {
    let mut r = JobRecord::queued(msg.id, &msg.model, msg.version, InputInfo::default());
    r.created_at = msg.created_at;
    r.deadline = msg.deadline;
    r.owner = msg.owner.clone();
    r.webhook = msg.webhook.clone();
    r.trace = msg.trace;
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;
    use inferq_core::job::{JobId, JobStatus, Timings};
    use inferq_core::message::ImageSource;
    use inferq_core::prediction::Prediction;

    const LIMIT: u32 = 3;

    fn message(deadline: Option<DateTime<Utc>>) -> JobMessage {
        JobMessage {
            id: JobId::new(),
            model: "m".into(),
            version: 1,
            top_k: None,
            created_at: Utc::now() - Duration::seconds(10),
            image: ImageSource::Blob("k".into()),
            tensor: None,
            output_uri: None,
            deadline,
            owner: None,
            webhook: None,
            trace: None,
            video: None,
        }
    }

    fn stored(msg: &JobMessage, status: JobStatus, attempts: u32) -> JobRecord {
        let mut r = record_from_message(msg);
        let now = Utc::now();
        match status {
            JobStatus::Queued => {}
            JobStatus::Running => r.start(now).unwrap(),
            JobStatus::Succeeded => {
                r.start(now).unwrap();
                let p = Prediction::Tensor { outputs: vec![] };
                r.succeed(p, Timings::default(), now).unwrap();
            }
            JobStatus::Canceled => r.cancel(now).unwrap(),
            other => panic!("no fixture for {other}"),
        }
        r.attempts = attempts;
        r
    }

    #[test]
    fn every_delivery_case_has_one_answer() {
        let now = Utc::now();
        let past = Some(now - Duration::seconds(1));
        let future = Some(now + Duration::seconds(60));
        // (case, stored status and attempts or None, deadline, expected action, status after)
        type Row = (
            &'static str,
            Option<(JobStatus, u32)>,
            Option<DateTime<Utc>>,
            Action,
            JobStatus,
        );
        let table: Vec<Row> = vec![
            (
                "first delivery",
                Some((JobStatus::Queued, 0)),
                None,
                Action::Run,
                JobStatus::Running,
            ),
            (
                "record lost: run from the message",
                None,
                None,
                Action::Run,
                JobStatus::Running,
            ),
            (
                "redelivered after a worker died",
                Some((JobStatus::Running, 1)),
                None,
                Action::Run,
                JobStatus::Running,
            ),
            (
                "last allowed attempt",
                Some((JobStatus::Running, LIMIT - 1)),
                future,
                Action::Run,
                JobStatus::Running,
            ),
            (
                "out of attempts",
                Some((JobStatus::Running, LIMIT)),
                None,
                Action::DeadLetter,
                JobStatus::Running,
            ),
            (
                "deadline passed in the queue",
                Some((JobStatus::Queued, 0)),
                past,
                Action::Expire,
                JobStatus::Expired,
            ),
            (
                "deadline passed, record lost",
                None,
                past,
                Action::Expire,
                JobStatus::Expired,
            ),
            (
                "deadline wins over the attempt limit",
                Some((JobStatus::Running, LIMIT)),
                past,
                Action::Expire,
                JobStatus::Expired,
            ),
            (
                "canceled while queued",
                Some((JobStatus::Canceled, 0)),
                None,
                Action::AlreadyFinal,
                JobStatus::Canceled,
            ),
            (
                "canceled, deadline passed too",
                Some((JobStatus::Canceled, 0)),
                past,
                Action::AlreadyFinal,
                JobStatus::Canceled,
            ),
            (
                "finished, ack was lost",
                Some((JobStatus::Succeeded, 1)),
                None,
                Action::AlreadyFinal,
                JobStatus::Succeeded,
            ),
            (
                "finished, over the limit",
                Some((JobStatus::Succeeded, LIMIT + 5)),
                None,
                Action::AlreadyFinal,
                JobStatus::Succeeded,
            ),
        ];
        for (case, state, deadline, want, status) in table {
            let msg = message(deadline);
            let record = state.map(|(s, a)| {
                let mut r = stored(&msg, s, a);
                r.deadline = deadline;
                r
            });
            let attempts_before = record.as_ref().map_or(0, |r| r.attempts);
            let t = triage(record, &msg, now, LIMIT);
            assert_eq!(t.action, want, "{case}");
            assert_eq!(t.record.status, status, "{case}");
            assert_eq!(t.record.id, msg.id, "{case}");
            let counted = if want == Action::Run { 1 } else { 0 };
            assert_eq!(
                t.record.attempts,
                attempts_before + counted,
                "{case}: attempts"
            );
            if want == Action::Expire {
                let e = t.record.error.as_ref().expect("expired records say why");
                assert_eq!(e.code, inferq_core::ErrorCode::DeadlineExceeded, "{case}");
            }
        }
    }

    #[test]
    fn a_record_rebuilt_from_the_message_keeps_what_the_client_asked() {
        let mut msg = message(Some(Utc::now() + Duration::seconds(5)));
        msg.owner = Some("tenant-a".into());
        let r = record_from_message(&msg);
        assert_eq!(r.status, JobStatus::Queued);
        assert_eq!((r.model.as_str(), r.version), ("m", 1));
        assert_eq!(r.owner.as_deref(), Some("tenant-a"));
        assert_eq!(r.deadline, msg.deadline);
        assert_eq!(r.created_at, msg.created_at);
    }
}
