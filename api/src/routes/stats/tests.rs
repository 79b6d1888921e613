//! Unit tests of the statistics summary, fed by the memory store.

use std::time::Duration;

use inferq_backends::store::memory::MemoryStore;
use inferq_backends::store::{AdmissionControl, Records};
use inferq_core::ErrorCode;
use inferq_core::job::{InputInfo, JobError, JobId, JobRecord, Timings};
use inferq_core::prediction::Prediction;

use super::*;

const TTL: Duration = Duration::from_secs(60);

fn timings(total_ms: f64) -> Timings {
    Timings {
        queue_ms: total_ms / 10.0,
        fetch_ms: 0.0,
        decode_ms: 1.0,
        preprocess_ms: 2.0,
        inference_ms: total_ms / 2.0,
        total_ms,
        batch_size: 1,
        // A worker that grows by 1 MB per 10 ms of latency, to tell the
        // newest figure from the largest.
        rss_after_bytes: 50_000_000 + (total_ms as u64) * 100_000,
        model_bytes: 12_000_000,
        ..Timings::default()
    }
}

fn finished(model: &str, total_ms: Option<f64>) -> JobRecord {
    let now = chrono::Utc::now();
    let mut r = JobRecord::queued(JobId::new(), model, 1, InputInfo::default());
    r.start(now).unwrap();
    match total_ms {
        Some(ms) => r
            .succeed(Prediction::Tensor { outputs: vec![] }, timings(ms), now)
            .unwrap(),
        None => r
            .fail(JobError::new(ErrorCode::DecodeFailed, "bad"), None, now)
            .unwrap(),
    }
    r
}

/// Saves `r` as a worker ends a job: over the queued record the API wrote
/// (a final write over no record is one the store lost, and takes nothing
/// out of the backlog).
async fn save_final(store: &MemoryStore, r: &JobRecord) {
    let queued = JobRecord::queued(r.id, &r.model, r.version, InputInfo::default());
    store.save(&queued, TTL).await.unwrap();
    store.save(r, TTL).await.unwrap();
}

async fn sample(store: &MemoryStore, model: &str) -> ModelSample {
    ModelSample {
        model: model.into(),
        backlog: store.backlog(model).await.unwrap(),
        oldest_waiting_ms: store.oldest_waiting(model).await.unwrap(),
        recent: store.recent_completions(model).await.unwrap(),
    }
}

fn now_ms() -> u64 {
    chrono::Utc::now().timestamp_millis() as u64
}

#[test]
fn nearest_rank_percentiles() {
    assert_eq!(Percentiles::of(vec![]), None);
    let p = Percentiles::of((1..=100).rev().map(f64::from).collect()).unwrap();
    assert_eq!((p.p50, p.p90, p.p99, p.max), (50.0, 90.0, 99.0, 100.0));
    let one = Percentiles::of(vec![7.5]).unwrap();
    assert_eq!((one.p50, one.p99, one.max), (7.5, 7.5, 7.5));
}

#[tokio::test]
async fn final_writes_fill_the_window_the_summary_reads() {
    let store = MemoryStore::new(1000);
    // Three waiting jobs (admitted and recorded), one of them never started.
    for _ in 0..3 {
        store.admit("m", 0).await.unwrap();
    }
    let waiting = JobRecord::queued(JobId::new(), "m", 1, InputInfo::default());
    store.save(&waiting, TTL).await.unwrap();
    // Ten finished jobs: totals 10, 20, … 90 ms and one failure.
    for i in 1..=9 {
        store.admit("m", 0).await.unwrap();
        save_final(&store, &finished("m", Some(10.0 * i as f64))).await;
    }
    store.admit("m", 0).await.unwrap();
    save_final(&store, &finished("m", None)).await;
    // A queued or running write is not a completion.
    let mut running = JobRecord::queued(JobId::new(), "m", 1, InputInfo::default());
    store.save(&running, TTL).await.unwrap();
    running.start(chrono::Utc::now()).unwrap();
    store.save(&running, TTL).await.unwrap();
    // Another model's completions stay apart.
    save_final(&store, &finished("other", Some(1.0))).await;

    let s = summarise(sample(&store, "m").await, now_ms(), 60_000);
    assert_eq!(s.backlog, 3);
    assert!(s.oldest_waiting_secs >= 0.0 && s.oldest_waiting_secs < 10.0);
    assert_eq!(s.completed, 10);
    assert_eq!(s.outcomes["succeeded"], 9);
    assert_eq!(s.outcomes["failed"], 1);
    assert_eq!(s.covered_secs, 60.0);
    assert_eq!(s.throughput_per_sec, round3(10.0 / 60.0));
    // Latency of the succeeded ones only.
    let lat = s.latency_ms.unwrap();
    assert_eq!((lat.p50, lat.p90, lat.max), (50.0, 90.0, 90.0));
    assert_eq!(s.stages_ms["inference"].p50, 25.0);
    assert_eq!(s.stages_ms["queue"].max, 9.0);
    assert_eq!(s.mean_batch_size, Some(1.0));
    // Memory: the newest job (90 ms) is also the largest here.
    let mem = s.memory.clone().expect("memory figures");
    assert_eq!(mem.session_resident_bytes, 12_000_000);
    assert_eq!(mem.worker_rss_bytes, 59_000_000);
    assert_eq!(mem.worker_rss_max_bytes, 59_000_000);

    // Later than the window: nothing recent, but the backlog is still there.
    let later = summarise(sample(&store, "m").await, now_ms() + 120_000, 60_000);
    assert_eq!(later.completed, 0);
    assert_eq!(later.throughput_per_sec, 0.0);
    assert_eq!(later.latency_ms, None);
    assert!(later.stages_ms.is_empty());
    assert_eq!(later.memory, None);
    assert_eq!(later.backlog, 3);
}

#[tokio::test]
async fn the_window_is_bounded_and_says_what_it_covers() {
    let store = MemoryStore::new(2 * RECENT_CAPACITY);
    // More completions than the window keeps.
    for _ in 0..RECENT_CAPACITY + 50 {
        save_final(&store, &finished("busy", Some(5.0))).await;
    }
    let recent = store.recent_completions("busy").await.unwrap();
    assert_eq!(recent.len(), RECENT_CAPACITY);

    // All kept entries are inside a 60 s window: the list dropped some that
    // were too, so the rate is over the span the list covers.
    let now = now_ms();
    let mut s = sample(&store, "busy").await;
    let n = s.recent.len() as u64;
    for (i, c) in s.recent.iter_mut().enumerate() {
        c.finished_ms = now - 10 * i as u64; // newest first, 10 ms apart
    }
    let covered_ms = 10 * (n - 1);
    let stats = summarise(s, now, 60_000);
    assert_eq!(stats.completed, n);
    assert_eq!(stats.covered_secs, round3(covered_ms as f64 / 1000.0));
    assert_eq!(
        stats.throughput_per_sec,
        round3(n as f64 / (covered_ms as f64 / 1000.0))
    );
}

#[test]
fn memory_takes_the_newest_figures_and_the_largest_rss() {
    let t = |rss: u64, model: u64| Timings {
        rss_after_bytes: rss,
        model_bytes: model,
        ..Timings::default()
    };
    let (newest, unmeasured, biggest) = (t(70, 5), t(0, 0), t(90, 4));
    let m = MemoryStats::of(&[&unmeasured, &newest, &unmeasured, &biggest]).unwrap();
    assert_eq!(
        (
            m.session_resident_bytes,
            m.worker_rss_bytes,
            m.worker_rss_max_bytes
        ),
        (5, 70, 90)
    );
    assert_eq!(MemoryStats::of(&[&unmeasured]), None);
    assert_eq!(MemoryStats::of(&[]), None);
}

#[test]
fn workers_are_listed_by_process_across_models() {
    let done = |at: u64, worker: &str, rss: u64| Completion {
        finished_ms: at,
        status: JobStatus::Succeeded,
        timings: Some(Timings {
            rss_after_bytes: rss,
            worker: worker.into(),
            ..Timings::default()
        }),
    };
    let sample = |model: &str, recent| ModelSample {
        model: model.into(),
        backlog: 0,
        oldest_waiting_ms: None,
        recent,
    };
    // Newest first per model, as the store returns them; worker a ran jobs
    // of both models, its newest (at 9_000) on the second.
    let samples = [
        sample(
            "m1",
            vec![
                done(8_000, "h/1", 300),
                done(7_000, "h/2", 200),
                done(1_000, "h/1", 999), // before the window
            ],
        ),
        sample(
            "m2",
            vec![
                done(9_000, "h/1", 250),
                done(6_000, "", 400),  // an older record: no name
                done(5_500, "h/2", 0), // no memory figure
            ],
        ),
    ];
    let w = workers(&samples, 2_000, 10_000);
    assert_eq!(w.len(), 2, "{w:?}");
    assert_eq!(
        (
            w[0].worker.as_str(),
            w[0].jobs,
            w[0].rss_bytes,
            w[0].rss_max_bytes
        ),
        ("h/1", 2, 250, 300)
    );
    assert_eq!(w[0].last_job_secs_ago, 1.0);
    assert_eq!(
        (
            w[1].worker.as_str(),
            w[1].jobs,
            w[1].rss_bytes,
            w[1].rss_max_bytes
        ),
        ("h/2", 1, 200, 200)
    );
    assert!(workers(&samples, 9_500, 10_000).is_empty());
}
