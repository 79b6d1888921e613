//! Following a broker or store that moves, on this machine's services: an
//! AMQP URL list whose first node is down, and a Redis primary found through
//! a private Sentinel that then fails over to its replica. The three-node
//! versions are `make cluster-test` (docs/scaling.md).

use std::path::Path;
use std::time::{Duration, Instant};

use inferq_backends::broker::JobQueue;
use inferq_backends::broker::amqp::AmqpQueue;
use inferq_backends::store::Records;
use inferq_backends::store::redis::RedisStore;
use inferq_core::job::{InputInfo, JobId, JobRecord};
use inferq_tests::cluster::{Managed, RedisServer, free_port};
use inferq_tests::*;

/// A port nothing listens on (bound and released at once).
fn dead_port() -> u16 {
    free_port().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_list_skips_a_node_that_is_down() {
    if !services_available() {
        return;
    }
    let ns = Namespace::new();
    let urls = format!(
        "amqp://guest:guest@127.0.0.1:{}/%2f,{AMQP_URL}",
        dead_port()
    );
    let queue = AmqpQueue::new(&urls, &ns.queue, "failover-test", 5);
    let id = JobId::new();
    queue.publish(id, b"payload".to_vec()).await.unwrap();
    let mut deliveries = queue.consume(1).await.unwrap();
    let d = tokio::time::timeout(Duration::from_secs(10), deliveries.next())
        .await
        .expect("delivery")
        .expect("stream open")
        .unwrap();
    assert_eq!(&d.payload[..], b"payload");
    d.acker.ack().await.unwrap();
    deliveries.cancel().await;
    queue.close().await;

    // Only dead nodes: a clear Unavailable, not a hang.
    let dead = format!("amqp://guest:guest@127.0.0.1:{}/%2f", dead_port());
    let queue = AmqpQueue::new(&format!("{dead},{dead}"), &ns.queue, "failover-test", 5);
    let t = Instant::now();
    let err = queue.publish(id, b"x".to_vec()).await.unwrap_err();
    assert!(err.to_string().contains("refused"), "{err}");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    ns.cleanup().await;
}

fn redis_cli(port: u16, args: &[&str]) -> String {
    let out = std::process::Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn sentinel(dir: &Path, primary: u16) -> (Managed, u16) {
    let port = free_port().unwrap();
    let conf = dir.join("sentinel.conf");
    std::fs::write(
        &conf,
        format!(
            "port {port}\nbind 127.0.0.1\ndir {}\nsentinel monitor t 127.0.0.1 {primary} 1\n\
             sentinel down-after-milliseconds t 500\nsentinel failover-timeout t 2000\n",
            dir.display()
        ),
    )
    .unwrap();
    let mut s = Managed::new(
        "sentinel",
        Path::new("redis-server"),
        vec![conf.display().to_string(), "--sentinel".into()],
        &dir.join("sentinel.log"),
    );
    s.start().unwrap();
    (s, port)
}

fn wait_for(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let end = Instant::now() + timeout;
    while !ok() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_follows_a_sentinel_failover() {
    if !services_available() {
        return;
    }
    let dir =
        std::env::temp_dir().join(format!("inferq-failover-{}", uuid::Uuid::new_v4().simple()));
    let mut a = RedisServer::start(&dir.join("a"), false).unwrap();
    let b = RedisServer::start(&dir.join("b"), false).unwrap();
    redis_cli(b.port, &["REPLICAOF", "127.0.0.1", &a.port.to_string()]);
    wait_for("the replica link", Duration::from_secs(10), || {
        redis_cli(b.port, &["INFO", "replication"]).contains("master_link_status:up")
    });
    let (_sentinel, sport) = sentinel(&dir, a.port);
    wait_for(
        "the Sentinel to see the replica",
        Duration::from_secs(15),
        || redis_cli(sport, &["SENTINEL", "replicas", "t"]).contains(&b.port.to_string()),
    );

    let store = RedisStore::new(
        &format!("redis+sentinel://127.0.0.1:{sport}/t"),
        "inferq-failover",
    )
    .unwrap();
    let ttl = Duration::from_secs(60);
    let first = JobRecord::queued(JobId::new(), "tiny-mean", 1, InputInfo::default());
    store.save(&first, ttl).await.unwrap();
    assert_eq!(store.get(first.id).await.unwrap().unwrap().id, first.id);
    redis_cli(a.port, &["WAIT", "1", "1000"]);

    a.kill().unwrap();
    let killed = Instant::now();
    // Writes fail (503 at the API) until the Sentinel promoted the
    // replica, then go to it without a new store.
    let second = JobRecord::queued(JobId::new(), "tiny-mean", 1, InputInfo::default());
    loop {
        match store.save(&second, ttl).await {
            Ok(_) => break,
            Err(e) => {
                assert!(
                    killed.elapsed() < Duration::from_secs(20),
                    "no failover: {e}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    eprintln!("first write after the kill: {:?}", killed.elapsed());
    assert!(redis_cli(b.port, &["ROLE"]).starts_with("master"));
    assert_eq!(store.get(first.id).await.unwrap().unwrap().id, first.id);
    assert_eq!(store.get(second.id).await.unwrap().unwrap().id, second.id);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The state an API leaves when it dies after recording a job and binding
/// its `Idempotency-Key` but before the broker confirmed the message (seen
/// in `make cluster-test`, scenario api): a queued record and no message.
/// Purging the queue makes that state; the retry must get the job run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_key_whose_message_never_arrived_still_runs() {
    if !services_available() {
        return;
    }
    let ns = Namespace::new();
    let api = start_api(&ns, &test_models(), "tiny-mean", &[]).await;
    let base = api.url();
    let client = reqwest::Client::new();
    let png = solid_png(8, 8, [9, 8, 7]);
    let send = || {
        client
            .post(format!("{base}/v1/jobs"))
            .header("content-type", "image/png")
            .header("idempotency-key", "lost-confirm-1")
            .body(png.clone())
            .send()
    };
    let first = send().await.unwrap();
    assert_eq!(first.status(), 202);
    let id = first.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let conn = lapin::Connection::connect(AMQP_URL, lapin::ConnectionProperties::default())
        .await
        .unwrap();
    let channel = conn.create_channel().await.unwrap();
    let purged = channel
        .queue_purge(
            ns.queue.as_str().into(),
            lapin::options::QueuePurgeOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(purged, 1);
    let _ = conn.close(200, "bye".into()).await;

    let retry = send().await.unwrap();
    assert_eq!(retry.status(), 202);
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    let worker = start_worker(&ns, &test_models(), &[]).await;
    let job = wait_terminal(&client, &base, &id, Duration::from_secs(30)).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["attempts"], 1, "{job}");
    worker.stop().await;
    api.stop().await;
    ns.cleanup().await;
}
