//! Unit tests of the in-memory store.

use super::*;
use crate::store::{Admission, AdmissionControl, Blobs, DeadLetters, Records, Saved};
use inferq_core::ErrorCode;
use inferq_core::job::{InputInfo, JobError, JobStatus};
use std::sync::Arc;

fn rec() -> JobRecord {
    JobRecord::queued(JobId::new(), "m", 1, InputInfo::default())
}

const TTL: Duration = Duration::from_secs(60);

#[tokio::test]
async fn finished_records_are_not_overwritten() {
    let s = MemoryStore::new(10);
    let mut r = rec();
    assert_eq!(s.save(&r, TTL).await.unwrap(), Saved::Written);
    r.start(chrono::Utc::now()).unwrap();
    r.fail(
        JobError::new(ErrorCode::DecodeFailed, "x"),
        None,
        chrono::Utc::now(),
    )
    .unwrap();
    assert_eq!(s.save(&r, TTL).await.unwrap(), Saved::Written);
    let mut stale = rec();
    stale.id = r.id;
    assert_eq!(s.save(&stale, TTL).await.unwrap(), Saved::AlreadyFinished);
    assert_eq!(
        s.get(r.id).await.unwrap().unwrap().status,
        JobStatus::Failed
    );
}

#[tokio::test]
async fn wait_wakes_on_finish_and_times_out() {
    let s = Arc::new(MemoryStore::new(10));
    let mut r = rec();
    s.save(&r, TTL).await.unwrap();
    // Times out with the current (queued) state.
    let got = s
        .wait(r.id, Duration::from_millis(20))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.status, JobStatus::Queued);
    assert!(s.notifier().is_empty());

    let s2 = s.clone();
    let id = r.id;
    let waiter = tokio::spawn(async move { s2.wait(id, Duration::from_secs(10)).await });
    tokio::time::sleep(Duration::from_millis(20)).await;
    r.start(chrono::Utc::now()).unwrap();
    r.fail(
        JobError::new(ErrorCode::Internal, "x"),
        None,
        chrono::Utc::now(),
    )
    .unwrap();
    let started = std::time::Instant::now();
    s.save(&r, TTL).await.unwrap();
    let got = waiter.await.unwrap().unwrap().unwrap();
    assert_eq!(got.status, JobStatus::Failed);
    assert!(started.elapsed() < Duration::from_secs(5));
    // Unknown jobs answer at once.
    assert!(
        s.wait(JobId::new(), Duration::from_secs(10))
            .await
            .unwrap()
            .is_none()
    );
}

fn finished(mut r: JobRecord) -> JobRecord {
    r.start(chrono::Utc::now()).unwrap();
    r.fail(
        JobError::new(ErrorCode::DecodeFailed, "x"),
        None,
        chrono::Utc::now(),
    )
    .unwrap();
    r
}

#[tokio::test]
async fn backlog_admits_up_to_the_limit_and_final_writes_release() {
    let s = MemoryStore::new(10);
    assert!(matches!(
        s.admit("m", 2).await.unwrap(),
        Admission::Admitted { backlog: 1 }
    ));
    assert!(matches!(
        s.admit("m", 2).await.unwrap(),
        Admission::Admitted { backlog: 2 }
    ));
    let Admission::Full {
        backlog,
        completions_per_sec,
    } = s.admit("m", 2).await.unwrap()
    else {
        panic!("a full backlog admitted a job");
    };
    assert_eq!((backlog, completions_per_sec), (2, 0.0));
    // Another model has its own backlog; 0 means no limit.
    assert!(matches!(
        s.admit("other", 0).await.unwrap(),
        Admission::Admitted { .. }
    ));
    // A job that ends leaves the backlog once, and counts as a completion.
    let queued = rec();
    s.save(&queued, TTL).await.unwrap();
    let r = finished(queued);
    s.save(&r, TTL).await.unwrap();
    s.save(&r, TTL).await.unwrap();
    assert_eq!(s.backlog("m").await.unwrap(), 1);
    s.release("m").await.unwrap();
    s.release("m").await.unwrap();
    assert_eq!(s.backlog("m").await.unwrap(), 0);
    s.admit("m", 1).await.unwrap();
    let Admission::Full {
        completions_per_sec,
        ..
    } = s.admit("m", 1).await.unwrap()
    else {
        panic!("full");
    };
    assert!(completions_per_sec > 0.0);
}

#[tokio::test]
async fn dead_letters_park_list_and_revive_once() {
    let s = MemoryStore::new(10);
    let mut r = rec();
    s.admit("m", 0).await.unwrap();
    s.save(&r, TTL).await.unwrap();
    r.start(chrono::Utc::now()).unwrap();
    r.dead_letter(
        JobError::new(ErrorCode::TooManyAttempts, "x"),
        chrono::Utc::now(),
    )
    .unwrap();
    assert_eq!(
        s.dead_letter(&r, b"message", TTL).await.unwrap(),
        Saved::Written
    );
    assert_eq!(s.backlog("m").await.unwrap(), 0);
    assert_eq!(s.dead_letters(10).await.unwrap(), vec![r.id]);
    assert_eq!(s.dead_message(r.id).await.unwrap().unwrap(), b"message");
    // A finished job cannot be dead-lettered over.
    let done = finished(rec());
    s.save(&done, TTL).await.unwrap();
    let mut late = done.clone();
    late.status = JobStatus::DeadLettered;
    assert_eq!(
        s.dead_letter(&late, b"m", TTL).await.unwrap(),
        Saved::AlreadyFinished
    );
    // Replay: only the first revive wins, and the job is back in the backlog.
    let mut again = r.clone();
    again.replay().unwrap();
    assert!(s.revive(&again, TTL).await.unwrap());
    assert!(!s.revive(&again, TTL).await.unwrap());
    assert!(!s.revive(&done, TTL).await.unwrap());
    assert_eq!(s.backlog("m").await.unwrap(), 1);
    s.forget_dead(r.id).await.unwrap();
    assert!(s.dead_letters(10).await.unwrap().is_empty());
    assert!(s.dead_message(r.id).await.unwrap().is_none());
}

#[tokio::test]
async fn capacity_and_expiry() {
    let s = MemoryStore::new(1);
    s.save(&rec(), Duration::from_millis(1)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    // The expired record is swept to make room.
    s.save(&rec(), TTL).await.unwrap();
    assert!(matches!(s.save(&rec(), TTL).await, Err(StoreError::Full)));
    s.put_blob("k", b"abc", TTL).await.unwrap();
    assert_eq!(s.get_blob("k").await.unwrap().unwrap(), b"abc");
    s.delete_blob("k").await.unwrap();
    assert!(s.get_blob("k").await.unwrap().is_none());
}

#[tokio::test]
async fn an_abandoned_idempotency_binding_is_taken_over_only_when_old_enough() {
    use crate::store::{Claim, Idempotency};
    let store = MemoryStore::new(10);
    let ttl = TTL;
    let (stale, fresh, other) = (JobId::new(), JobId::new(), JobId::new());
    assert!(matches!(
        store
            .claim_idempotency("k", stale, "fp", ttl)
            .await
            .unwrap(),
        Claim::New
    ));
    // Too young: its first request may still be recording the job.
    let young = Duration::from_secs(30);
    assert!(
        !store
            .take_over_idempotency("k", stale, fresh, "fp", ttl, young)
            .await
            .unwrap()
    );
    // Not the binding the caller saw.
    let now = Duration::ZERO;
    assert!(
        !store
            .take_over_idempotency("k", other, fresh, "fp", ttl, now)
            .await
            .unwrap()
    );
    assert!(
        store
            .take_over_idempotency("k", stale, fresh, "fp", ttl, now)
            .await
            .unwrap()
    );
    match store
        .claim_idempotency("k", other, "fp", ttl)
        .await
        .unwrap()
    {
        Claim::Taken { job, .. } => assert_eq!(job, fresh),
        Claim::New => panic!("the key is bound to the taker"),
    }
    // Nothing bound: nothing to take over.
    assert!(
        !store
            .take_over_idempotency("none", stale, fresh, "fp", ttl, now)
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn a_lost_record_is_counted_back_by_its_running_write() {
    // Two accepted jobs, then the store loses its data: the counter and
    // the records are gone, the messages are still in the queue.
    let lost = MemoryStore::new(10);
    let (a, b) = (rec(), rec());
    for r in [&a, &b] {
        lost.admit("m", 0).await.unwrap();
        lost.save(r, TTL).await.unwrap();
    }
    assert_eq!(lost.backlog("m").await.unwrap(), 2);
    let s = MemoryStore::new(10);
    // One new job after the loss.
    s.admit("m", 0).await.unwrap();
    let c = rec();
    s.save(&c, TTL).await.unwrap();
    assert_eq!(s.backlog("m").await.unwrap(), 1);
    // A worker recreates `a` from its message and starts it: counted back.
    let mut a_run = a.clone();
    a_run.start(chrono::Utc::now()).unwrap();
    s.save(&a_run, TTL).await.unwrap();
    assert_eq!(s.backlog("m").await.unwrap(), 2);
    // `b` was running when the data went: its final write over nothing
    // takes nothing out, so `a` and `c` are still counted.
    s.save(&finished(b), TTL).await.unwrap();
    assert_eq!(s.backlog("m").await.unwrap(), 2);
    // The others end normally, and the counter ends at zero, not below.
    let mut a_done = a_run;
    a_done
        .fail(
            JobError::new(ErrorCode::DecodeFailed, "x"),
            None,
            chrono::Utc::now(),
        )
        .unwrap();
    s.save(&a_done, TTL).await.unwrap();
    s.save(&finished(c), TTL).await.unwrap();
    assert_eq!(s.backlog("m").await.unwrap(), 0);
}
