//! Completion webhooks end to end, on the real RabbitMQ, Redis and ONNX
//! Runtime: a job's webhook is retried with backoff until the receiver
//! takes it, every attempt is re-signed, the outcome shows in the job, and
//! the Standard Webhooks and CloudEvents reference libraries (Python, from
//! PyPI) accept what was sent.

use std::time::Duration;

use base64::Engine;
use inferq_tests::receiver::{Receiver, verify_with_python};
use inferq_tests::*;
use serde_json::{Value, json};

/// A secret in the Standard Webhooks format (24 random bytes).
fn secret() -> String {
    let bytes: Vec<u8> = uuid::Uuid::new_v4()
        .as_bytes()
        .iter()
        .chain(uuid::Uuid::new_v4().as_bytes())
        .take(24)
        .copied()
        .collect();
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

fn png_b64(rgb: [u8; 3]) -> String {
    base64::engine::general_purpose::STANDARD.encode(solid_png(16, 16, rgb))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn webhooks_are_retried_re_signed_recorded_and_verifiable() {
    if !services_available() {
        return;
    }
    let receiver = Receiver::start().await;
    let secret = secret();
    let repo = private_repository("tiny-mean", "hooks");
    let ns = Namespace::new();
    let flags = [
        "--webhook-secrets",
        secret.as_str(),
        "--webhook-backoff-secs",
        "0.7",
        "--webhook-max-attempts",
        "4",
        "--fetch-allow-hosts",
        "127.0.0.1",
    ];
    let api = start_api(&ns, &repo, "tiny-mean", &flags).await;
    let mut worker_flags = vec!["--threads", "1"];
    worker_flags.extend(flags);
    let worker = start_worker(&ns, &repo, &worker_flags).await;
    let client = reqwest::Client::new();
    let base = api.url();

    // 1. Two failures, then success: three attempts, one webhook-id, fresh
    //    timestamps and signatures, outcome recorded in the job.
    receiver.plan("/ok", &[503, 500]);
    let (status, job) = submit_json(
        &client,
        &base,
        json!({"input": {"b64": png_b64([255, 0, 0])}, "webhook": {"url": receiver.url("/ok")}}),
    )
    .await;
    assert_eq!(status, 202, "{job}");
    let id = job["id"].as_str().unwrap().to_owned();
    assert_eq!(job["webhook"]["url"], receiver.url("/ok"));
    let got = receiver.wait_for("/ok", 3, Duration::from_secs(30)).await;
    let ids: Vec<&str> = got
        .iter()
        .map(|r| r.headers["webhook-id"].as_str())
        .collect();
    // One id for every attempt of the one event (job, status, replays).
    assert!(
        ids.iter().all(|i| *i == format!("job_{id}_succeeded_0")),
        "{ids:?}"
    );
    let ts: Vec<i64> = got
        .iter()
        .map(|r| r.headers["webhook-timestamp"].parse().unwrap())
        .collect();
    assert!(ts[2] > ts[0], "retries carry fresh timestamps: {ts:?}");
    assert_ne!(
        got[0].headers["webhook-signature"], got[2].headers["webhook-signature"],
        "each retry is signed afresh"
    );
    let gap = got[1].at - got[0].at;
    assert!(
        gap >= Duration::from_millis(500),
        "backoff between attempts: {gap:?}"
    );
    let body: Value = serde_json::from_str(&got[2].body).unwrap();
    assert_eq!(body["type"], "job.succeeded");
    assert_eq!(body["data"]["id"], id.as_str());
    assert!(body["data"]["result"]["top_k"].is_array(), "{body}");
    assert!(body["data"].get("owner").is_none());
    // The outcome lands in the job once the dispatcher recorded it.
    let mut record = Value::Null;
    for _ in 0..100 {
        record = wait_terminal(&client, &base, &id, Duration::from_secs(10)).await;
        if record["webhook"]["delivery"]["state"] == "delivered" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let delivery = &record["webhook"]["delivery"];
    assert_eq!(delivery["state"], "delivered", "{record}");
    assert_eq!(delivery["attempts"], 3);
    assert_eq!(delivery["last_status"], 200);
    assert!(delivery["delivered_at"].is_string());

    // 2. A failed job and a CloudEvents delivery.
    let (status, bad) = submit_json(
        &client,
        &base,
        // A PNG cut after its header: accepted (the header is fine), then
        // the worker fails to decode it.
        json!({"input": {"b64": base64::engine::general_purpose::STANDARD.encode(
                  &solid_png(64, 64, [5, 5, 5])[..50])},
               "webhook": {"url": receiver.url("/ce"), "format": "cloudevents"}}),
    )
    .await;
    assert_eq!(status, 202, "{bad}");
    let got = receiver.wait_for("/ce", 1, Duration::from_secs(30)).await;
    assert_eq!(got[0].headers["ce-type"], "dev.inferq.job.failed.v1");
    assert_eq!(
        got[0].headers["ce-id"],
        format!("job_{}_failed_0", bad["id"].as_str().unwrap())
    );
    let (status, ce_job) = submit_json(
        &client,
        &base,
        json!({"input": {"b64": png_b64([0, 0, 255])},
               "webhook": {"url": receiver.url("/ce2"), "format": "cloudevents"}}),
    )
    .await;
    assert_eq!(status, 202, "{ce_job}");
    let ce = receiver.wait_for("/ce2", 1, Duration::from_secs(30)).await;

    // 3. The reference libraries accept every delivery.
    let mut all = receiver.got("/ok");
    all.extend(ce.clone());
    let verdicts = verify_with_python(&secret, &all);
    assert_eq!(verdicts.len(), 4);
    assert!(
        verdicts.iter().all(|v| v["verified"] == true),
        "{verdicts:?}"
    );
    assert_eq!(verdicts[2]["type"], "job.succeeded");
    let parsed = &verdicts[3]["ce"];
    assert_eq!(parsed["type"], "dev.inferq.job.succeeded.v1", "{parsed}");
    assert_eq!(parsed["specversion"], "1.0");
    assert_eq!(parsed["source"], "/inferq");
    assert_eq!(parsed["data_status"], "succeeded");
    // A wrong secret is refused by the same library (the check can fail).
    let other = verify_with_python_expect_failure(&all[..1]);
    assert!(
        other,
        "a delivery verified under a secret it was not signed with"
    );

    // 4. A receiver that answers 410 Gone is given up at once.
    receiver.plan("/gone", &[410]);
    let (_, gone) = submit_json(
        &client,
        &base,
        json!({"input": {"b64": png_b64([0, 255, 0])}, "webhook": {"url": receiver.url("/gone")}}),
    )
    .await;
    receiver.wait_for("/gone", 1, Duration::from_secs(30)).await;
    let gid = gone["id"].as_str().unwrap();
    let mut rec = Value::Null;
    for _ in 0..100 {
        rec = wait_terminal(&client, &base, gid, Duration::from_secs(10)).await;
        if rec["webhook"]["delivery"]["state"] == "failed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(rec["webhook"]["delivery"]["state"], "failed", "{rec}");
    assert_eq!(rec["webhook"]["delivery"]["last_status"], 410);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(receiver.got("/gone").len(), 1, "no retry after 410");

    // 5. Refusals up front: private address not allowed, unknown format.
    for bad in [
        json!({"input": {"b64": png_b64([1, 2, 3])}, "webhook": {"url": "http://10.0.0.1/x"}}),
        json!({"input": {"b64": png_b64([1, 2, 3])}, "webhook": {"url": receiver.url("/x"), "format": "xml"}}),
        json!({"input": {"b64": png_b64([1, 2, 3])}, "webhook": {"url": "gs://bucket/x"}}),
    ] {
        let (status, problem) = submit_json(&client, &base, bad).await;
        assert!(status == 400 || status == 403, "{status} {problem}");
        assert!(problem["code"].is_string(), "{problem}");
    }

    worker.stop().await;
    api.stop().await;
    ns.cleanup().await;
}

/// True when the reference library refuses `deliveries` under a fresh secret.
fn verify_with_python_expect_failure(deliveries: &[inferq_tests::receiver::Received]) -> bool {
    let result = std::panic::catch_unwind(|| verify_with_python(&secret(), deliveries));
    result.is_err()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_need_a_signing_secret() {
    let repo = private_repository("tiny-mean", "hooks-off");
    let server = start_embedded(&repo, "tiny-mean", &["--threads", "1"]).await;
    let client = reqwest::Client::new();
    let (status, problem) = submit_json(
        &client,
        &server.url(),
        json!({"input": {"b64": png_b64([9, 9, 9])}, "webhook": {"url": "https://example.com/h"}}),
    )
    .await;
    assert_eq!(status, 400, "{problem}");
    assert!(
        problem["detail"].as_str().unwrap().contains("webhook"),
        "{problem}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_mode_sends_webhooks_too() {
    let receiver = Receiver::start().await;
    let secret = secret();
    let repo = private_repository("tiny-mean", "hooks-emb");
    let server = start_embedded(
        &repo,
        "tiny-mean",
        &[
            "--threads",
            "1",
            "--webhook-secrets",
            &secret,
            "--fetch-allow-hosts",
            "127.0.0.1",
        ],
    )
    .await;
    let client = reqwest::Client::new();
    let (status, job) = submit_json(
        &client,
        &server.url(),
        json!({"input": {"b64": png_b64([200, 10, 10])}, "webhook": {"url": receiver.url("/e")}}),
    )
    .await;
    assert_eq!(status, 202, "{job}");
    let got = receiver.wait_for("/e", 1, Duration::from_secs(30)).await;
    let v = verify_with_python(&secret, &got);
    assert_eq!(v[0]["verified"], true);
    assert_eq!(v[0]["type"], "job.succeeded");
    server.stop().await;
}

/// Checks one delivery's Standard Webhooks signature under `secret`.
fn signed_by(secret: &str, r: &inferq_tests::receiver::Received) -> bool {
    let signer = inferq_backends::webhook::sign::Signer::new(&[secret.to_owned()])
        .unwrap()
        .unwrap();
    signer.verify(
        &r.headers["webhook-id"],
        r.headers["webhook-timestamp"].parse().unwrap(),
        r.body.as_bytes(),
        &r.headers["webhook-signature"],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_keys_on_each_tenant_signs_with_its_own_secret() {
    if !services_available() {
        return;
    }
    let receiver = Receiver::start().await;
    let (global, acme_secret) = (secret(), secret());
    const ACME: &str = "acme-hooks-0123456789abcdef";
    const GLOBEX: &str = "globex-hooks-0123456789abcdef";
    let keys =
        format!("acme:submit+read:{ACME} webhook-secret={acme_secret},globex:submit+read:{GLOBEX}");
    let repo = private_repository("tiny-mean", "hooks-tenants");
    let ns = Namespace::new();
    let common = [
        "--webhook-secrets",
        global.as_str(),
        "--fetch-allow-hosts",
        "127.0.0.1",
    ];
    let mut api_flags = vec!["--auth", "true", "--api-keys", &keys];
    api_flags.extend(common);
    let api = start_api(&ns, &repo, "tiny-mean", &api_flags).await;
    // The worker reads the same entries, for the tenants' secrets only.
    let mut worker_flags = vec!["--threads", "1", "--api-keys", &keys];
    worker_flags.extend(common);
    let worker = start_worker(&ns, &repo, &worker_flags).await;
    let client = reqwest::Client::new();
    let submit = |key: &'static str, path: &str| {
        client
            .post(format!("{}/v1/jobs", api.url()))
            .bearer_auth(key)
            .json(&json!({"input": {"b64": png_b64([1, 2, 3])},
                          "webhook": {"url": receiver.url(path)}}))
            .send()
    };
    let resp = submit(ACME, "/acme").await.unwrap();
    assert_eq!(resp.status(), 202, "{:?}", resp.text().await);
    let got = receiver.wait_for("/acme", 1, Duration::from_secs(30)).await;
    assert!(
        signed_by(&acme_secret, &got[0]),
        "signed with acme's secret"
    );
    assert!(
        !signed_by(&global, &got[0]),
        "a tenant's notification is not signed with the global secret"
    );
    // The reference library agrees.
    assert_eq!(verify_with_python(&acme_secret, &got)[0]["verified"], true);
    // A tenant without a secret of its own cannot ask for webhooks.
    let resp = submit(GLOBEX, "/globex").await.unwrap();
    assert_eq!(resp.status(), 400);
    let problem: Value = resp.json().await.unwrap();
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("webhook-secret="),
        "{problem}"
    );
    worker.stop().await;
    api.stop().await;
}
