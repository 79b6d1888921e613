//! Submit is all or nothing, against the real RabbitMQ and Redis.
//!
//! - A broker that stops answering (a RabbitMQ memory alarm blocks every
//!   publisher) and clients that hang up mid-submit: a job sent without an
//!   `Idempotency-Key` that the client did not get a `202` for ends without
//!   running (a final `canceled` record saying it was not accepted); a job
//!   sent with a key is kept, and the retry with that key gets that same
//!   job, which runs once — one job per key, whatever the broker did with
//!   the first message. No record stays `queued` and the backlog counter
//!   comes back to the truth.
//! - A deleted job queue: the publish is `mandatory`, so the message is not
//!   confirmed into the void; the queue is declared again and the job is
//!   really queued.
//!
//! The alarm is global to the machine's RabbitMQ: this binary holds only
//! these tests, and the alarm lasts a few seconds.

use std::process::Command;
use std::time::{Duration, Instant};

use inferq_tests::cluster::rabbitmqctl;
use inferq_tests::{
    AMQP_URL, Namespace, REDIS_URL, private_repository, services_available, solid_png, start_api,
    start_worker, wait_terminal,
};
use serde_json::Value;

/// Runs `rabbitmqctl ARGS…`, returning its trimmed standard output.
fn ctl(args: &[&str]) -> String {
    let out = Command::new(rabbitmqctl().expect("rabbitmqctl"))
        .args(args)
        .output()
        .expect("rabbitmqctl runs");
    assert!(out.status.success(), "rabbitmqctl {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Raises a memory alarm until dropped, then restores the watermark.
struct MemoryAlarm {
    restore: String,
}

impl MemoryAlarm {
    fn raise() -> Self {
        let current = ctl(&["eval", "vm_memory_monitor:get_vm_memory_high_watermark()."]);
        // `0.4`, or `{absolute,N}` when set in bytes.
        let restore = match current.strip_prefix("{absolute,") {
            Some(rest) => format!("absolute {}", rest.trim_end_matches('}')),
            None => current,
        };
        ctl(&["set_vm_memory_high_watermark", "0.000001"]);
        MemoryAlarm { restore }
    }
}

impl Drop for MemoryAlarm {
    fn drop(&mut self) {
        let args: Vec<&str> = std::iter::once("set_vm_memory_high_watermark")
            .chain(self.restore.split(' '))
            .collect();
        ctl(&args);
    }
}

async fn records(ns: &Namespace) -> Vec<Value> {
    let client = redis::Client::open(REDIS_URL).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}:job:*", ns.prefix))
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut out = Vec::new();
    for k in keys {
        let text: Option<String> = redis::cmd("GET")
            .arg(&k)
            .query_async(&mut conn)
            .await
            .unwrap();
        if let Some(t) = text {
            out.push(serde_json::from_str(&t).unwrap());
        }
    }
    out
}

async fn backlog(ns: &Namespace, model: &str) -> i64 {
    let client = redis::Client::open(REDIS_URL).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let n: Option<i64> = redis::cmd("HGET")
        .arg(format!("{}:backlog", ns.prefix))
        .arg(model)
        .query_async(&mut conn)
        .await
        .unwrap();
    n.unwrap_or(0)
}

/// Messages ready in the namespace's job queue (a passive declare: it
/// fails when the queue does not exist).
async fn queued(ch: &lapin::Channel, ns: &Namespace) -> u32 {
    let passive = lapin::options::QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    ch.queue_declare(ns.queue.as_str().into(), passive, Default::default())
        .await
        .expect("the job queue exists")
        .message_count()
}

async fn post(client: &reqwest::Client, base: &str, key: Option<&str>, png: &[u8]) -> (u16, Value) {
    let mut req = client
        .post(format!("{base}/v1/jobs"))
        .header("content-type", "image/png")
        .body(png.to_vec());
    if let Some(k) = key {
        req = req.header("idempotency-key", k);
    }
    let resp = req.send().await.expect("an answer");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_broker_that_stops_confirming_leaves_no_half_accepted_job() {
    if !services_available() {
        return;
    }
    let ns = Namespace::new();
    let repo = private_repository("tiny-mean", "submit-alarm");
    let api = start_api(&ns, &repo, "tiny-mean", &["--request-timeout-secs", "2"]).await;
    let base = api.url();
    // A second API whose submissions may wait 20 s: its readiness must turn
    // 503 once a publish has waited for its confirm longer than 5 s.
    let patient = start_api(&ns, &repo, "tiny-mean", &["--request-timeout-secs", "20"]).await;
    let client = reqwest::Client::new();
    let png = solid_png(16, 16, [10, 20, 30]);

    // Connected and the queue declared before the alarm.
    let (status, first) = post(&client, &base, None, &png).await;
    assert_eq!(status, 202, "{first}");

    let keys = ["alarm-a", "alarm-b", "alarm-c"];
    let waiting;
    {
        let _alarm = MemoryAlarm::raise();
        tokio::time::sleep(Duration::from_millis(500)).await;
        waiting = tokio::spawn({
            let (client, base, png) = (client.clone(), patient.url(), png.clone());
            async move { post(&client, &base, Some("alarm-patient"), &png).await }
        });
        let mut answers = Vec::new();
        for k in keys.iter().map(|k| Some(*k)).chain([None, None]) {
            let started = Instant::now();
            let (status, body) = post(&client, &base, k, &png).await;
            answers.push((status, body["code"].clone(), started.elapsed()));
        }
        // Clients that hang up long before the server's own timeout.
        let impatient = reqwest::Client::builder()
            .timeout(Duration::from_millis(300))
            .build()
            .unwrap();
        for i in 0..3 {
            let sent = impatient
                .post(format!("{base}/v1/jobs"))
                .header("content-type", "image/png")
                .header("idempotency-key", format!("gone-{i}"))
                .body(png.clone())
                .send()
                .await;
            assert!(sent.is_err(), "the broker is blocked: no answer in 300 ms");
        }
        for (status, code, took) in &answers {
            assert_eq!(*status, 503, "{code} after {took:?}");
            assert_eq!(code, "unavailable");
            assert!(*took < Duration::from_secs(10), "answered after {took:?}");
        }
        // By now the patient API's publish has waited over 5 s.
        let ready = client
            .get(format!("{}/readyz", patient.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(ready.status(), 503, "a stalled broker is not ready");
        let text = ready.text().await.unwrap();
        assert!(text.contains("has not confirmed a publish"), "{text}");
        // A retry while the broker is still blocked is bounded too (it
        // publishes the kept job again, which blocks like the first).
        let started = Instant::now();
        let (status, body) = post(&client, &base, Some(keys[0]), &png).await;
        assert_eq!(status, 503, "{body}");
        assert!(started.elapsed() < Duration::from_secs(10));
        // The hung-up submissions end by their own deadline, alarm or not.
        tokio::time::sleep(Duration::from_secs(3)).await;
    }

    // The broker answers again; whatever it still delivers runs into the
    // worker, which must not run a job nobody was told was accepted.
    let worker = start_worker(&ns, &repo, &["--threads", "1"]).await;
    let done = wait_terminal(
        &client,
        &base,
        first["id"].as_str().unwrap(),
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(done["status"], "succeeded", "{done}");
    // The patient submission was confirmed once the alarm cleared; the
    // patient API is ready again.
    let (status, body) = waiting.await.unwrap();
    assert_eq!(status, 202, "{body}");
    let ready = client
        .get(format!("{}/readyz", patient.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    tokio::time::sleep(Duration::from_secs(3)).await;

    // Every keyed job is still there: a retry with its key gets it (a
    // replay, not a new job) and it ends succeeded, whether the broker
    // delivered the first message after the alarm or the retry published
    // it again.
    let keyed: Vec<&str> = keys
        .iter()
        .copied()
        .chain(["gone-0", "gone-1", "gone-2", "alarm-patient"])
        .collect();
    for k in &keyed {
        let (status, job) = post(&client, &base, Some(k), &png).await;
        assert_eq!(status, 202, "retry of {k}: {job}");
        let id = job["id"].as_str().unwrap();
        let done = wait_terminal(&client, &base, id, Duration::from_secs(30)).await;
        assert_eq!(done["status"], "succeeded", "retry of {k}: {done}");
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    let all = records(&ns).await;
    let (mut succeeded, mut canceled) = (0, 0);
    for r in &all {
        match r["status"].as_str().unwrap() {
            "succeeded" => succeeded += 1,
            "canceled" => {
                canceled += 1;
                assert_eq!(r["error"]["code"], "unavailable", "{r}");
                assert_eq!(r["attempts"], 0, "a retracted job never runs: {r}");
            }
            other => panic!("a record is {other} after the broker recovered: {r}"),
        }
    }
    assert_eq!(
        succeeded,
        1 + keyed.len(),
        "the job answered 202 and one job per key ran: {all:?}"
    );
    assert_eq!(canceled, 2, "the two unkeyed 503s were retracted: {all:?}");
    assert_eq!(
        backlog(&ns, "tiny-mean").await,
        0,
        "backlog counter back to the truth"
    );

    worker.stop().await;
    patient.stop().await;
    api.stop().await;
    ns.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deleted_queue_is_declared_again_not_a_confirmed_loss() {
    if !services_available() {
        return;
    }
    let ns = Namespace::new();
    let repo = private_repository("tiny-mean", "submit-unroutable");
    let api = start_api(&ns, &repo, "tiny-mean", &[]).await;
    let base = api.url();
    let client = reqwest::Client::new();
    let png = solid_png(16, 16, [200, 20, 30]);
    let (status, first) = post(&client, &base, None, &png).await;
    assert_eq!(status, 202, "{first}");

    // An operator (or a policy) deletes the queue under the running API.
    let conn = lapin::Connection::connect(AMQP_URL, lapin::ConnectionProperties::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    ch.queue_delete(
        ns.queue.as_str().into(),
        lapin::options::QueueDeleteOptions::default(),
    )
    .await
    .unwrap();

    let (status, second) = post(&client, &base, None, &png).await;
    assert_eq!(status, 202, "{second}");
    // Accepted means queued: the message is in the (declared again) queue.
    assert_eq!(queued(&ch, &ns).await, 1, "the accepted job is queued");
    let _ = conn.close(200, "bye".into()).await;

    let worker = start_worker(&ns, &repo, &["--threads", "1"]).await;
    let id = second["id"].as_str().unwrap();
    let done = wait_terminal(&client, &base, id, Duration::from_secs(30)).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    worker.stop().await;
    api.stop().await;
    ns.cleanup().await;
}

/// The cluster run's API-kill finding, made deterministic: an API records a
/// job and binds its Idempotency-Key, then dies before RabbitMQ has the
/// message (here: the message is purged, which leaves the same state). The
/// client's retry with the same key must not merely replay the queued
/// record — nothing would ever run it — but publish the job again; the job
/// then runs once and the key still names one job.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retry_republishes_a_recorded_job_whose_message_was_lost() {
    if !services_available() {
        return;
    }
    let ns = Namespace::new();
    let repo = private_repository("tiny-mean", "submit-replay-window");
    let api = start_api(&ns, &repo, "tiny-mean", &[]).await;
    let base = api.url();
    let client = reqwest::Client::new();
    let png = solid_png(16, 16, [20, 200, 30]);
    let key = format!("replay-window-{}", uuid::Uuid::new_v4());
    let (status, first) = post(&client, &base, Some(&key), &png).await;
    assert_eq!(status, 202, "{first}");

    let conn = lapin::Connection::connect(AMQP_URL, lapin::ConnectionProperties::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    let purged = ch
        .queue_purge(
            ns.queue.as_str().into(),
            lapin::options::QueuePurgeOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(purged, 1, "the first request's message was queued");

    let (status, again) = post(&client, &base, Some(&key), &png).await;
    assert_eq!(status, 202, "{again}");
    assert_eq!(again["id"], first["id"], "the same job, replayed");
    assert_eq!(
        queued(&ch, &ns).await,
        1,
        "the retry published the job again"
    );
    let _ = conn.close(200, "bye".into()).await;

    let worker = start_worker(&ns, &repo, &["--threads", "1"]).await;
    let id = first["id"].as_str().unwrap();
    let done = wait_terminal(&client, &base, id, Duration::from_secs(30)).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["attempts"], 1, "{done}");
    assert_eq!(records(&ns).await.len(), 1, "one job for the key");
    worker.stop().await;
    api.stop().await;
    ns.cleanup().await;
}

/// The Redis side of taking over a key whose first request died between
/// binding it and recording its job (the batch coordinator retries such a
/// key forever otherwise: "in use" until it expires).
#[tokio::test]
async fn an_abandoned_idempotency_key_is_taken_over_in_redis() {
    use inferq_backends::store::redis::RedisStore;
    use inferq_backends::store::{Claim, Idempotency};
    use inferq_core::job::JobId;
    if !services_available() {
        return;
    }
    let ns = Namespace::new();
    let store = RedisStore::new(REDIS_URL, &ns.prefix).unwrap();
    let ttl = Duration::from_secs(60);
    let (stale, fresh, other) = (JobId::new(), JobId::new(), JobId::new());
    let claim = store
        .claim_idempotency("k", stale, "fp", ttl)
        .await
        .unwrap();
    assert!(matches!(claim, Claim::New));
    let young = Duration::from_secs(30);
    let now = Duration::ZERO;
    assert!(
        !store
            .take_over_idempotency("k", stale, fresh, "fp", ttl, young)
            .await
            .unwrap()
    );
    assert!(
        !store
            .take_over_idempotency("k", other, fresh, "fp", ttl, now)
            .await
            .unwrap()
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second = Duration::from_secs(1);
    assert!(
        store
            .take_over_idempotency("k", stale, fresh, "fp", ttl, second)
            .await
            .unwrap()
    );
    match store
        .claim_idempotency("k", other, "fp", ttl)
        .await
        .unwrap()
    {
        Claim::Taken { job, fingerprint } => {
            assert_eq!(job, fresh);
            assert_eq!(fingerprint, "fp");
        }
        Claim::New => panic!("the key is bound to the taker"),
    }
    assert!(
        !store
            .take_over_idempotency("none", stale, fresh, "fp", ttl, now)
            .await
            .unwrap()
    );
    ns.cleanup().await;
}

/// The submit path's first store step: a job's backlog place and its
/// queued record together (one script on Redis), both or neither; the same
/// contract on the in-memory store.
#[tokio::test]
async fn admitting_and_recording_a_job_is_one_step() {
    use inferq_backends::store::memory::MemoryStore;
    use inferq_backends::store::redis::RedisStore;
    use inferq_backends::store::{Admission, ResultStore};
    use inferq_core::job::{InputInfo, JobId, JobRecord, JobStatus};

    async fn check(store: &dyn ResultStore, model: &str) {
        let ttl = Duration::from_secs(60);
        let job = || JobRecord::queued(JobId::new(), model, 1, InputInfo::default());
        let (a, b, c) = (job(), job(), job());
        for (r, n) in [(&a, 1), (&b, 2)] {
            match store.admit_record(r, ttl, 2).await.unwrap() {
                Admission::Admitted { backlog } => assert_eq!(backlog, n),
                Admission::Full { .. } => panic!("refused below the limit"),
            }
            let stored = store.get(r.id).await.unwrap().expect("recorded");
            assert_eq!(stored.status, JobStatus::Queued);
        }
        assert!(store.oldest_waiting(model).await.unwrap().is_some());
        // Full: nothing counted, nothing recorded.
        assert!(matches!(
            store.admit_record(&c, ttl, 2).await.unwrap(),
            Admission::Full { backlog: 2, .. }
        ));
        assert!(store.get(c.id).await.unwrap().is_none());
        assert_eq!(store.backlog(model).await.unwrap(), 2);
        // An id already recorded is an error that changes nothing.
        assert!(store.admit_record(&a, ttl, 0).await.is_err());
        assert_eq!(store.backlog(model).await.unwrap(), 2);
        // No limit.
        assert!(matches!(
            store.admit_record(&c, ttl, 0).await.unwrap(),
            Admission::Admitted { backlog: 3 }
        ));
    }

    check(&MemoryStore::new(100), "m").await;
    if !services_available() {
        return;
    }
    let ns = Namespace::new();
    check(&RedisStore::new(REDIS_URL, &ns.prefix).unwrap(), "m").await;
    ns.cleanup().await;
}
