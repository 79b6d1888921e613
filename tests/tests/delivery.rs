//! Delivery guarantees against the real RabbitMQ and Redis: the delivery
//! limit and dead-letter queue (both ways in), operator replay, deadlines,
//! and admission control with its Retry-After.

use std::time::Duration;

use bytes::Bytes;
use inferq_backends::broker::JobQueue;
use inferq_backends::broker::amqp::AmqpQueue;
use inferq_backends::store::redis::RedisStore;
use inferq_backends::store::{AdmissionControl, Records};
use inferq_core::job::{InputInfo, JobId, JobRecord};
use inferq_core::message::{ImageSource, JobMessage};
use inferq_tests::*;
use serde_json::Value;

const AMQP: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
const REDIS: &str = "redis://127.0.0.1:6379/";

/// A job message for tiny-mean, as the API would publish it.
fn message(id: JobId) -> JobMessage {
    JobMessage {
        id,
        model: "tiny-mean".into(),
        version: 1,
        top_k: None,
        created_at: chrono::Utc::now(),
        image: ImageSource::Inline(Bytes::from(solid_png(8, 8, [10, 200, 30]))),
        tensor: None,
        output_uri: None,
        deadline: None,
        owner: None,
        webhook: None,
        trace: None,
        video: None,
    }
}

async fn get(client: &reqwest::Client, base: &str, path: &str) -> Value {
    client
        .get(format!("{base}{path}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Polls until the job reaches `status` (the dead-letter consumer works in
/// the background, so there is no completion to long-poll for).
async fn until_status(client: &reqwest::Client, base: &str, id: JobId, status: &str) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let job = get(client, base, &format!("/v1/jobs/{id}")).await;
        if job["status"] == status {
            return job;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "job never became {status}: {job}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_jobs_are_dead_lettered_listed_and_replayed() {
    if !services_available() {
        return;
    }
    let ns = Namespace::new();
    let api = start_api(&ns, &test_models(), "tiny-mean", &[]).await;
    let base = api.url();
    let client = reqwest::Client::new();
    let queue = AmqpQueue::new(AMQP, &ns.queue, "test", 3);
    let store = RedisStore::new(REDIS, &ns.prefix).unwrap();
    let ttl = Duration::from_secs(60);

    // Way in 1: a job already started three times (its workers died) is
    // rejected by the next worker instead of being run a fourth time.
    let crashed = JobId::new();
    let mut rec = JobRecord::queued(crashed, "tiny-mean", 1, InputInfo::default());
    // Queued first, as the API writes it: a `running` record written over
    // none is a job whose record the store lost, counted back in.
    store.save(&rec, ttl).await.unwrap();
    for _ in 0..3 {
        rec.start(chrono::Utc::now()).unwrap();
    }
    store.save(&rec, ttl).await.unwrap();
    store.admit("tiny-mean", 0).await.unwrap();
    queue
        .publish(crashed, message(crashed).encode())
        .await
        .unwrap();

    // Way in 2: a message returned to the queue more often than the limit
    // is dead-lettered by RabbitMQ itself, before any worker started it.
    let bounced = JobId::new();
    let rec = JobRecord::queued(bounced, "tiny-mean", 1, InputInfo::default());
    store.save(&rec, ttl).await.unwrap();
    store.admit("tiny-mean", 0).await.unwrap();
    queue
        .publish(bounced, message(bounced).encode())
        .await
        .unwrap();
    let mut deliveries = queue.consume(1).await.unwrap();
    let mut bounces = 0;
    while bounces < 4 {
        let d = tokio::time::timeout(Duration::from_secs(10), deliveries.next())
            .await
            .expect("redelivered")
            .unwrap()
            .unwrap();
        let id = JobMessage::decode(d.payload.clone()).unwrap().id;
        if id == bounced {
            assert_eq!(d.delivery_count, bounces, "x-delivery-count");
            bounces += 1;
        }
        // The other job goes back too, for the worker.
        d.acker.requeue().await.unwrap();
    }
    deliveries.cancel().await;
    drop(deliveries);
    queue.close().await;

    let worker = start_worker(&ns, &test_models(), &["--threads", "1"]).await;
    let dead = until_status(&client, &base, crashed, "dead_lettered").await;
    assert_eq!(dead["attempts"], 3, "{dead}");
    assert_eq!(dead["error"]["code"], "too_many_attempts", "{dead}");
    let bounced_job = until_status(&client, &base, bounced, "dead_lettered").await;
    assert_eq!(bounced_job["attempts"], 0, "{bounced_job}");
    assert!(
        bounced_job["error"]["message"]
            .as_str()
            .unwrap()
            .contains("return"),
        "{bounced_job}"
    );

    // The operator's view, oldest first.
    let list = get(&client, &base, "/v1/admin/dead-letters").await;
    let ids: Vec<&str> = list["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap())
        .collect();
    assert_eq!(list["count"], 2, "{list}");
    assert!(ids.contains(&crashed.to_string().as_str()));
    assert!(ids.contains(&bounced.to_string().as_str()));
    assert_eq!(store.backlog("tiny-mean").await.unwrap(), 0);

    // Replay one: it runs and succeeds; a second replay is a conflict.
    let resp = client
        .post(format!("{base}/v1/admin/dead-letters/{crashed}/replay"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let queued: Value = resp.json().await.unwrap();
    assert_eq!(
        (queued["status"].as_str(), queued["replays"].as_u64()),
        (Some("queued"), Some(1))
    );
    let done = wait_terminal(
        &client,
        &base,
        &crashed.to_string(),
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["attempts"], 1, "{done}");
    let again = client
        .post(format!("{base}/v1/admin/dead-letters/{crashed}/replay"))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 409);
    let problem: Value = again.json().await.unwrap();
    assert_eq!(problem["code"], "not_dead_lettered");

    // Bulk replay takes the rest.
    let bulk: Value = client
        .post(format!("{base}/v1/admin/dead-letters/replay?limit=10"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        bulk["replayed"],
        serde_json::json!([bounced.to_string()]),
        "{bulk}"
    );
    let done = wait_terminal(
        &client,
        &base,
        &bounced.to_string(),
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let list = get(&client, &base, "/v1/admin/dead-letters").await;
    assert_eq!(list["count"], 0, "{list}");
    assert_eq!(store.backlog("tiny-mean").await.unwrap(), 0);

    worker.stop().await;
    api.stop().await;
    ns.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_past_their_deadline_expire_unrun() {
    if !services_available() {
        return;
    }
    let ns = Namespace::new();
    let api = start_api(&ns, &test_models(), "tiny-mean", &[]).await;
    let base = api.url();
    let client = reqwest::Client::new();
    let png = solid_png(8, 8, [1, 2, 3]);
    // No worker yet: the short job waits past its deadline.
    let (status, short) = submit(&client, &base, "?timeout=0.2", "image/png", png.clone()).await;
    assert_eq!(status, 202, "{short}");
    assert!(short["deadline"].is_string(), "{short}");
    let far = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let (status, long) = submit(
        &client,
        &base,
        &format!("?deadline={}", far.replace('+', "%2B")),
        "image/png",
        png.clone(),
    )
    .await;
    assert_eq!(status, 202, "{long}");
    let (status, past) = submit(
        &client,
        &base,
        "?deadline=2001-01-01T00:00:00Z",
        "image/png",
        png,
    )
    .await;
    assert_eq!(status, 400, "{past}");
    tokio::time::sleep(Duration::from_millis(400)).await;

    let worker = start_worker(&ns, &test_models(), &["--threads", "1"]).await;
    let expired = wait_terminal(
        &client,
        &base,
        short["id"].as_str().unwrap(),
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(expired["status"], "expired", "{expired}");
    assert_eq!(expired["error"]["code"], "deadline_exceeded");
    assert_eq!(expired["attempts"], 0, "an expired job is never started");
    let ran = wait_terminal(
        &client,
        &base,
        long["id"].as_str().unwrap(),
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(ran["status"], "succeeded", "{ran}");
    worker.stop().await;
    api.stop().await;
    ns.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_backlog_answers_429_until_workers_catch_up() {
    if !services_available() {
        return;
    }
    let ns = Namespace::new();
    let api = start_api(&ns, &test_models(), "tiny-mean", &["--max-backlog", "3"]).await;
    let base = api.url();
    let client = reqwest::Client::new();
    let png = solid_png(8, 8, [9, 9, 9]);
    let mut ids = Vec::new();
    for _ in 0..3 {
        let (status, body) = submit(&client, &base, "", "image/png", png.clone()).await;
        assert_eq!(status, 202, "{body}");
        ids.push(body["id"].as_str().unwrap().to_owned());
    }
    let resp = client
        .post(format!("{base}/v1/jobs"))
        .header("content-type", "image/png")
        .body(png.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    // Nothing finished in the last minute: the stalled-pool hint.
    assert_eq!(resp.headers()["retry-after"], "30");
    let problem: Value = resp.json().await.unwrap();
    assert_eq!(problem["code"], "overloaded", "{problem}");
    // Other models have their own backlog.
    let (status, other) =
        submit(&client, &base, "?model=tiny-slow", "image/png", png.clone()).await;
    assert_eq!(status, 202, "{other}");

    let worker = start_worker(&ns, &test_models(), &["--threads", "1"]).await;
    for id in &ids {
        let job = wait_terminal(&client, &base, id, Duration::from_secs(30)).await;
        assert_eq!(job["status"], "succeeded", "{job}");
    }
    let store = RedisStore::new(REDIS, &ns.prefix).unwrap();
    assert_eq!(store.backlog("tiny-mean").await.unwrap(), 0);
    // Room again; and a full backlog now quotes the measured pace.
    worker.stop().await;
    for _ in 0..3 {
        let (status, body) = submit(&client, &base, "", "image/png", png.clone()).await;
        assert_eq!(status, 202, "{body}");
    }
    let resp = client
        .post(format!("{base}/v1/jobs"))
        .header("content-type", "image/png")
        .body(png)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    let retry: u32 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    api.stop().await;
    ns.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_retries_through_redis_make_one_job() {
    if !services_available() {
        return;
    }
    let ns = Namespace::new();
    let api = start_api(&ns, &test_models(), "tiny-mean", &[]).await;
    let base = api.url();
    let client = reqwest::Client::new();
    let png = solid_png(8, 8, [4, 5, 6]);
    // Ten concurrent retries of one request: one job, ten identical answers
    // (or a 409 while the first is still being enqueued).
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let (client, base, png) = (client.clone(), base.clone(), png.clone());
        tasks.push(tokio::spawn(async move {
            let resp = client
                .post(format!("{base}/v1/jobs"))
                .header("content-type", "image/png")
                .header("idempotency-key", "batch-42/item-7")
                .body(png)
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap())
        }));
    }
    let mut ids = std::collections::HashSet::new();
    for t in tasks {
        let (status, body) = t.await.unwrap();
        match status {
            202 => {
                ids.insert(body["id"].as_str().unwrap().to_owned());
            }
            409 => assert_eq!(body["code"], "idempotency_key_in_use", "{body}"),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(ids.len(), 1, "{ids:?}");
    let store = RedisStore::new(REDIS, &ns.prefix).unwrap();
    assert_eq!(store.backlog("tiny-mean").await.unwrap(), 1);
    api.stop().await;
    ns.cleanup().await;
}
