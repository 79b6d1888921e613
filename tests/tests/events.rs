//! The storage-event bridge end to end: a notification in each format
//! becomes a job on the real RabbitMQ, Redis and ONNX Runtime; the worker
//! reads the object from the real GCS / S3 emulator and writes the result
//! to a mirrored path; a redelivered notification (or the same upload in
//! another format) makes no second job; other events are acknowledged and
//! ignored; malformed bodies are 400s. S3 events also arrive through SNS
//! (signed by a test key, the certificate and the subscription handshake
//! served by a local server) and EventBridge.

use std::time::Duration;

use base64::Engine;
use inferq_tests::emulators::{Emulator, Kind, emulators_available};
use inferq_tests::*;
use serde_json::{Value, json};

async fn post(
    client: &reqwest::Client,
    url: &str,
    body: &Value,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    let mut req = client.post(url).body(body.to_string());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or_default())
}

fn pubsub_push(event_type: &str, bucket: &str, name: &str, generation: &str) -> Value {
    let object = json!({"kind": "storage#object", "bucket": bucket, "name": name,
        "generation": generation, "contentType": "image/png"});
    json!({
        "message": {
            "attributes": {"eventType": event_type, "bucketId": bucket, "objectId": name,
                           "objectGeneration": generation, "payloadFormat": "JSON_API_V1"},
            "data": base64::engine::general_purpose::STANDARD.encode(object.to_string()),
            "messageId": "1", "publishTime": "2026-11-29T10:00:00Z"
        },
        "subscription": "projects/p/subscriptions/inferq"
    })
}

/// A private copy of tiny-mean, started API + worker pointed at `emu`.
async fn deploy(emu: &Emulator, flag: &str, rules: &[&str]) -> (Namespace, InProcess, InProcess) {
    deploy_with(emu, flag, rules, &[]).await
}

/// [`deploy`] with more API flags.
async fn deploy_with(
    emu: &Emulator,
    flag: &str,
    rules: &[&str],
    extra: &[&str],
) -> (Namespace, InProcess, InProcess) {
    let repo = private_repository("tiny-mean", "ev");
    let ns = Namespace::new();
    let storage = [
        flag,
        emu.endpoint.as_str(),
        "--fetch-allow-buckets",
        "photos,results",
    ];
    let mut api_flags = Vec::new();
    for rule in rules {
        api_flags.extend(["--event-rule", rule]);
    }
    api_flags.extend(storage);
    api_flags.extend(extra);
    let api = start_api(&ns, &repo, "tiny-mean", &api_flags).await;
    let mut worker_flags = vec!["--threads", "1"];
    worker_flags.extend(storage);
    let worker = start_worker(&ns, &repo, &worker_flags).await;
    (ns, api, worker)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gcs_notifications_make_one_job_per_object_version() {
    if !services_available() || !emulators_available() {
        return;
    }
    let emu = Emulator::start(Kind::Gcs).await;
    emu.create_bucket("photos").await;
    emu.create_bucket("results").await;
    emu.upload("photos", "in/2026/red.png", solid_png(30, 20, [255, 0, 0]))
        .await;
    let rules = [
        "match=gs://photos/in/,suffix=.png,model=tiny-mean,output=gs://results/{name}.json",
        // A bucket the fetch policy (--fetch-allow-buckets) does not allow.
        "match=gs://secret/,model=tiny-mean",
    ];
    let (ns, api, worker) = deploy(&emu, "--gcs-endpoint", &rules).await;
    let client = reqwest::Client::new();
    let base = api.url();
    let gcs = format!("{base}/v1/events/gcs");

    let push = pubsub_push("OBJECT_FINALIZE", "photos", "in/2026/red.png", "1001");
    let (status, first) = post(&client, &gcs, &push, &[]).await;
    assert_eq!(status, 202, "{first}");
    let accepted = &first["accepted"][0];
    assert_eq!(accepted["uri"], "gs://photos/in/2026/red.png");
    assert_eq!(accepted["replayed"], false);
    let id = accepted["id"].as_str().unwrap().to_owned();

    // Pub/Sub redelivers: the same job, no second one.
    let (status, again) = post(&client, &gcs, &push, &[]).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["accepted"][0]["id"], id.as_str());
    assert_eq!(again["accepted"][0]["replayed"], true);

    // The same upload announced by Eventarc (a structured CloudEvent).
    let event = json!({"specversion": "1.0", "id": "evt-1",
        "type": "google.cloud.storage.object.v1.finalized",
        "source": "//storage.googleapis.com/projects/_/buckets/photos",
        "subject": "objects/in/2026/red.png",
        "data": {"bucket": "photos", "name": "in/2026/red.png", "generation": "1001",
                 "contentType": "image/png"}});
    let (status, ce) = post(
        &client,
        &format!("{base}/v1/events/cloudevents"),
        &event,
        &[("content-type", "application/cloudevents+json")],
    )
    .await;
    assert_eq!(status, 200, "{ce}");
    assert_eq!(ce["accepted"][0]["id"], id.as_str());

    let job = wait_terminal(&client, &base, &id, Duration::from_secs(30)).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["result"]["top_k"][0]["label"], "red");
    assert_eq!(job["input"]["uri"], "gs://photos/in/2026/red.png");
    // The result mirrors the input's path in the output bucket.
    let (_, bytes) = emu.download("results", "in/2026/red.png.json").await;
    let stored: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(stored["id"], id.as_str());
    assert_eq!(stored["result"], job["result"]);

    // A new generation of the same object is a new job (binary CloudEvent).
    emu.upload("photos", "in/2026/red.png", solid_png(8, 8, [0, 0, 255]))
        .await;
    let data = json!({"bucket": "photos", "name": "in/2026/red.png", "generation": "1002"});
    let (status, newer) = post(
        &client,
        &format!("{base}/v1/events/cloudevents"),
        &data,
        &[
            ("ce-specversion", "1.0"),
            ("ce-id", "evt-2"),
            (
                "ce-source",
                "//storage.googleapis.com/projects/_/buckets/photos",
            ),
            ("ce-type", "google.cloud.storage.object.v1.finalized"),
            ("content-type", "application/json"),
        ],
    )
    .await;
    assert_eq!(status, 202, "{newer}");
    let id2 = newer["accepted"][0]["id"].as_str().unwrap().to_owned();
    assert_ne!(id2, id);
    let job2 = wait_terminal(&client, &base, &id2, Duration::from_secs(30)).await;
    assert_eq!(job2["result"]["top_k"][0]["label"], "blue", "{job2}");

    // Not for us: other event types, objects no rule matches.
    for push in [
        pubsub_push("OBJECT_DELETE", "photos", "in/2026/red.png", "1001"),
        pubsub_push("OBJECT_FINALIZE", "photos", "elsewhere/x.png", "1"),
        pubsub_push("OBJECT_FINALIZE", "photos", "in/notes.txt", "1"),
    ] {
        let (status, body) = post(&client, &gcs, &push, &[]).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["accepted"], json!([]), "{body}");
        assert_eq!(body["ignored"].as_array().unwrap().len(), 1, "{body}");
    }
    // A bucket the fetch policy refuses: acknowledged, reported, no job.
    let push = pubsub_push("OBJECT_FINALIZE", "secret", "in/x.png", "1");
    let (status, body) = post(&client, &gcs, &push, &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["accepted"], json!([]), "{body}");
    assert_eq!(body["rejected"][0]["object"], "gs://secret/in/x.png");
    assert_eq!(body["rejected"][0]["status"], 403, "{body}");
    // Malformed deliveries are client errors with a problem body.
    for body in [json!({"message": {"data": "%%%"}}), json!([1, 2])] {
        let resp = client
            .post(&gcs)
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400);
        assert_eq!(
            resp.headers()["content-type"],
            "application/problem+json",
            "{body}"
        );
    }
    worker.stop().await;
    api.stop().await;
    ns.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s3_notifications_with_encoded_keys_make_jobs() {
    if !services_available() || !emulators_available() {
        return;
    }
    let emu = Emulator::start(Kind::S3).await;
    emu.create_bucket("photos").await;
    emu.create_bucket("results").await;
    emu.upload(
        "photos",
        "up/my cat (1).png",
        solid_png(16, 16, [255, 255, 0]),
    )
    .await;
    let rule = "match=s3://photos/up/,model=tiny-mean,output=s3://results/{relative}.json";
    let (ns, api, worker) = deploy(&emu, "--s3-endpoint", &[rule]).await;
    let client = reqwest::Client::new();
    let base = api.url();
    let s3 = format!("{base}/v1/events/s3");

    let event = json!({"Records": [
        {"eventVersion": "2.1", "eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
         "s3": {"bucket": {"name": "photos"},
                "object": {"key": "up/my+cat+%281%29.png", "size": 100, "eTag": "e1",
                           "sequencer": "0A1B2C"}}},
        {"eventName": "ObjectRemoved:Delete",
         "s3": {"bucket": {"name": "photos"}, "object": {"key": "up/old.png", "sequencer": "0A"}}}
    ]});
    let (status, body) = post(&client, &s3, &event, &[]).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["accepted"].as_array().unwrap().len(), 1, "{body}");
    assert_eq!(body["ignored"].as_array().unwrap().len(), 1, "{body}");
    assert_eq!(body["accepted"][0]["uri"], "s3://photos/up/my cat (1).png");
    let id = body["accepted"][0]["id"].as_str().unwrap().to_owned();
    let (status, again) = post(&client, &s3, &event, &[]).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["accepted"][0]["id"], id.as_str());

    let job = wait_terminal(&client, &base, &id, Duration::from_secs(30)).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["result"]["top_k"][0]["label"], "yellow");
    let (_, bytes) = emu.download("results", "my cat (1).png.json").await;
    let stored: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(stored["result"], job["result"]);

    let test_event = json!({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "photos"});
    let (status, body) = post(&client, &s3, &test_event, &[]).await;
    assert_eq!(
        (status, body["accepted"].clone()),
        (200, json!([])),
        "{body}"
    );
    worker.stop().await;
    api.stop().await;
    ns.cleanup().await;
}

/// Pushes authenticated by OIDC tokens that an independent implementation
/// (Python `cryptography`, RS256, a key generated for this test) signed:
/// only a token with the right signature, audience, expiry and service
/// account gets in; API keys are not what the event routes take then, and
/// every other route still needs one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_tokens_are_verified_when_oidc_is_on() {
    let dir = std::env::temp_dir().join(format!("inferq-oidc-{}", uuid::Uuid::new_v4()));
    let audience = "https://inferq.example.com/v1/events/gcs";
    let email = "pubsub-push@project.iam.gserviceaccount.com";
    let out = std::process::Command::new(test_python())
        .arg(root().join("scripts/make_push_tokens.py"))
        .args([
            "--out",
            dir.to_str().unwrap(),
            "--audience",
            audience,
            "--email",
            email,
        ])
        .output()
        .expect("run make_push_tokens.py");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tokens: Value =
        serde_json::from_slice(&std::fs::read(dir.join("tokens.json")).unwrap()).unwrap();
    let jwks = dir.join("jwks.json").display().to_string();
    const OPS: &str = "oidc-ops-0123456789abcdef0123";
    let repo = private_repository("tiny-mean", "oidc");
    let server = start_embedded(
        &repo,
        "tiny-mean",
        &[
            "--threads",
            "1",
            "--auth",
            "true",
            "--api-keys",
            &format!("ops:admin:{OPS}"),
            "--event-rule",
            "match=gs://photos/,model=tiny-mean",
            "--event-oidc-audience",
            audience,
            "--event-oidc-jwks",
            &jwks,
            "--event-oidc-emails",
            email,
        ],
    )
    .await;
    let base = server.url();
    let client = reqwest::Client::new();
    let url = format!("{base}/v1/events/gcs");
    let push = pubsub_push("OBJECT_FINALIZE", "photos", "in/cat.png", "17");
    let bearer = |t: &str| format!("Bearer {t}");

    let (status, _) = post(&client, &url, &push, &[]).await;
    assert_eq!(status, 401, "no token");
    let (status, _) = post(&client, &url, &push, &[("authorization", &bearer(OPS))]).await;
    assert_eq!(status, 401, "an API key is not a push token");
    for bad in ["wrong_audience", "expired", "wrong_email", "forged"] {
        let token = tokens[bad].as_str().unwrap();
        let (status, problem) =
            post(&client, &url, &push, &[("authorization", &bearer(token))]).await;
        assert_eq!(status, 401, "{bad}: {problem}");
        assert!(
            problem["detail"].as_str().unwrap().contains("push token"),
            "{problem}"
        );
    }
    let valid = tokens["valid"].as_str().unwrap();
    let (status, answer) = post(&client, &url, &push, &[("authorization", &bearer(valid))]).await;
    assert_eq!(status, 202, "{answer}");
    let id = answer["accepted"][0]["id"].as_str().unwrap();
    // The job belongs to the configured tenant; the job routes still need keys.
    let resp = client
        .get(format!("{base}/v1/jobs/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let job: Value = client_with_key(OPS)
        .get(format!("{base}/v1/jobs/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(job["owner"], "pubsub", "{job}");
    server.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// CloudEvents built by the CloudEvents SDK (Python, from PyPI), in binary
/// and in structured mode, are understood; both announce the same object
/// version, so the second finds the job the first made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudevents_from_the_sdk_in_both_modes_make_one_job() {
    let out = std::process::Command::new(test_python())
        .arg(root().join("scripts/make_cloudevents.py"))
        .args(["photos", "in/sdk/cat.png", "42"])
        .output()
        .expect("run make_cloudevents.py");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events: Value = serde_json::from_slice(&out.stdout).unwrap();
    let repo = private_repository("tiny-mean", "ce-sdk");
    let server = start_embedded(
        &repo,
        "tiny-mean",
        &[
            "--threads",
            "1",
            "--event-rule",
            "match=gs://photos/in/,model=tiny-mean",
        ],
    )
    .await;
    let client = reqwest::Client::new();
    let url = format!("{}/v1/events/cloudevents", server.url());
    let mut ids = Vec::new();
    for (mode, want) in [("binary", 202), ("structured", 200)] {
        let message = &events[mode];
        let mut req = client
            .post(&url)
            .body(message["body"].as_str().unwrap().to_owned());
        for (k, v) in message["headers"].as_object().unwrap() {
            req = req.header(k.as_str(), v.as_str().unwrap());
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let answer: Value = resp.json().await.unwrap();
        assert_eq!(status, want, "{mode}: {answer}");
        assert_eq!(
            answer["accepted"][0]["uri"], "gs://photos/in/sdk/cat.png",
            "{mode}"
        );
        ids.push(answer["accepted"][0]["id"].clone());
    }
    assert_eq!(ids[0], ids[1], "one job per object version");
    server.stop().await;
}

#[path = "events/aws.rs"]
mod aws;
