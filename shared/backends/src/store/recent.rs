//! The window of recent completions each model keeps in the store.
//!
//! `GET /v1/stats` reports throughput and latency percentiles per model. In
//! the split deployment the numbers that describe finished jobs are born in
//! the worker processes, while the API answers the request; the one place
//! both reach is the result store. So every write that makes a job final
//! also appends a small [`Completion`] to its model's list, in the same
//! atomic step (the Redis save script, the memory store's locked write), and
//! trims the list to [`RECENT_CAPACITY`] entries. Any API replica can then
//! read the same window and summarise it; nothing has to be scraped from
//! the workers, and the list cannot grow without bound.
//!
//! Entries are a short line of text (`1 <finished ms> <status> <stage ms>…
//! <batch size> <worker RSS after> <model bytes>`) rather than JSON, so a
//! full window of a busy model is a few tens of kilobytes to read. The
//! leading `1` versions the format; lines that do not parse are skipped,
//! never an error. The two memory figures were appended later: a reader
//! takes lines without them (as 0) and ignores fields after the ones it
//! knows, so appending is how the line grows. (An API built before the
//! memory figures skips the longer lines: during a rolling upgrade its
//! statistics are thin until it is upgraded too.)

use inferq_core::job::{JobRecord, JobStatus, Timings};

/// Completions kept per model (the newest ones).
pub const RECENT_CAPACITY: usize = 1000;

/// Seconds a model's list lives after its last completion (Redis), so the
/// lists of models that are gone do not stay forever.
pub const RECENT_TTL_SECS: u64 = 86_400;

/// One finished job, as remembered for statistics.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// When it became final (Unix ms).
    pub finished_ms: u64,
    pub status: JobStatus,
    /// Its stage timings, when it reached a worker.
    pub timings: Option<Timings>,
}

impl Completion {
    /// The entry for a record that has just become final; `now_ms` stands in
    /// for a missing `finished_at`.
    pub fn from_record(record: &JobRecord, now_ms: u64) -> Self {
        let finished_ms = record
            .finished_at
            .map(|t| t.timestamp_millis().max(0) as u64)
            .unwrap_or(now_ms);
        Completion {
            finished_ms,
            status: record.status,
            timings: record.timings.clone(),
        }
    }

    /// The stored line.
    pub fn encode(&self) -> String {
        let mut line = format!("1 {} {}", self.finished_ms, self.status);
        if let Some(t) = &self.timings {
            for v in [
                t.queue_ms,
                t.fetch_ms,
                t.decode_ms,
                t.preprocess_ms,
                t.inference_ms,
                t.total_ms,
            ] {
                // Three decimals: microseconds are plenty for a dashboard.
                line.push_str(&format!(" {:.3}", finite(v)));
            }
            line.push_str(&format!(
                " {} {} {}",
                t.batch_size, t.rss_after_bytes, t.model_bytes
            ));
            // A label with a space would shift the fields of a reader.
            if !t.worker.is_empty() && !t.worker.contains(char::is_whitespace) {
                line.push(' ');
                line.push_str(&t.worker);
            }
        }
        line
    }

    /// Reads a stored line; `None` for anything this version did not write.
    pub fn decode(line: &str) -> Option<Self> {
        let mut parts = line.split(' ');
        if parts.next()? != "1" {
            return None;
        }
        let finished_ms = parts.next()?.parse().ok()?;
        let status = parse_status(parts.next()?)?;
        let rest: Vec<&str> = parts.collect();
        let timings = match rest.as_slice() {
            [] => None,
            // Lines written before the memory figures end after the batch
            // size; fields after the known ones are for a future writer.
            [q, f, d, p, i, t, b, memory @ ..] => {
                let ms = |s: &str| s.parse::<f64>().ok().filter(|v| v.is_finite());
                let bytes = |k: usize| match memory.get(k) {
                    Some(v) => v.parse::<u64>().ok(),
                    None => Some(0),
                };
                Some(Timings {
                    queue_ms: ms(q)?,
                    fetch_ms: ms(f)?,
                    decode_ms: ms(d)?,
                    preprocess_ms: ms(p)?,
                    inference_ms: ms(i)?,
                    total_ms: ms(t)?,
                    batch_size: b.parse().ok()?,
                    rss_after_bytes: bytes(0)?,
                    model_bytes: bytes(1)?,
                    worker: memory.get(2).map_or_else(String::new, |w| (*w).to_owned()),
                    ..Timings::default()
                })
            }
            _ => return None,
        };
        Some(Completion {
            finished_ms,
            status,
            timings,
        })
    }
}

fn finite(v: f64) -> f64 {
    if v.is_finite() { v } else { 0.0 }
}

fn parse_status(s: &str) -> Option<JobStatus> {
    use JobStatus::*;
    [
        Queued,
        Running,
        Succeeded,
        Failed,
        Canceled,
        Expired,
        DeadLettered,
    ]
    .into_iter()
    .find(|st| st.to_string() == s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use inferq_core::job::{InputInfo, JobId};

    #[test]
    fn lines_round_trip() {
        let with = Completion {
            finished_ms: 1_700_000_000_123,
            status: JobStatus::Succeeded,
            timings: Some(Timings {
                queue_ms: 0.25,
                fetch_ms: 0.0,
                decode_ms: 2.0,
                preprocess_ms: 1.5,
                inference_ms: 6.125,
                total_ms: 10.0,
                batch_size: 2,
                rss_after_bytes: 80_000_000,
                model_bytes: 12_000_000,
                worker: "node-a/4242".into(),
                ..Timings::default()
            }),
        };
        let line = with.encode();
        assert_eq!(
            line,
            "1 1700000000123 succeeded 0.250 0.000 2.000 1.500 6.125 10.000 2 80000000 12000000 node-a/4242"
        );
        assert_eq!(Completion::decode(&line), Some(with));
        let without = Completion {
            finished_ms: 5,
            status: JobStatus::DeadLettered,
            timings: None,
        };
        assert_eq!(without.encode(), "1 5 dead_lettered");
        assert_eq!(Completion::decode(&without.encode()), Some(without));
    }

    #[test]
    fn lines_without_memory_figures_still_parse() {
        let old = Completion::decode("1 9 succeeded 1 2 3 4 5 6 1").expect("an older line");
        let t = old.timings.unwrap();
        assert_eq!((t.batch_size, t.rss_after_bytes, t.model_bytes), (1, 0, 0));
        let newer = Completion::decode("1 9 succeeded 1 2 3 4 5 6 1 7 8").unwrap();
        let t = newer.timings.unwrap();
        assert_eq!((t.rss_after_bytes, t.model_bytes), (7, 8));
        assert_eq!(t.worker, "", "written before workers were named");
        // Fields after the known ones (a future writer's) are ignored.
        let future = Completion::decode("1 9 succeeded 1 2 3 4 5 6 1 7 8 w/1 extra").unwrap();
        assert_eq!(future.timings.unwrap().worker, "w/1");
    }

    #[test]
    fn foreign_lines_are_skipped() {
        for bad in [
            "",
            "2 5 succeeded",
            "1 x succeeded",
            "1 5 exploded",
            "1 5 succeeded 1 2",
            "1 5 succeeded 1 2 3 4 5 NaN 1",
            "1 5 succeeded 1 2 3 4 5 6 1 -4 0",
        ] {
            assert_eq!(Completion::decode(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn from_a_record() {
        let mut r = JobRecord::queued(JobId::new(), "m", 1, InputInfo::default());
        r.cancel(chrono::Utc::now()).unwrap();
        let c = Completion::from_record(&r, 7);
        assert_eq!(c.status, JobStatus::Canceled);
        assert!(c.finished_ms > 7, "finished_at wins over the fallback");
        assert!(c.timings.is_none());
    }
}
