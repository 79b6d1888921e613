//! S3 events through Amazon SNS (signed by a key made for the test; the
//! certificate and the subscription confirmation served by a local
//! stand-in for SNS) and through EventBridge, end to end like the other
//! formats in the parent module.

use std::time::Duration;

use inferq_tests::emulators::{Emulator, Kind, emulators_available};
use inferq_tests::*;
use serde_json::{Value, json};

use super::{deploy, deploy_with, post};

type Shared<T> = std::sync::Arc<std::sync::Mutex<T>>;

/// A local stand-in for SNS's HTTPS side: the signing certificate (set
/// once made) and the subscription confirmation URL, which records the
/// query strings it was called with.
async fn sns_side() -> (String, Shared<Vec<u8>>, Shared<Vec<String>>) {
    use axum::extract::RawQuery;
    let cert: Shared<Vec<u8>> = Default::default();
    let confirmed: Shared<Vec<String>> = Default::default();
    let (served, seen) = (cert.clone(), confirmed.clone());
    let app = axum::Router::new()
        .route(
            "/cert.pem",
            axum::routing::get(move || async move { served.lock().unwrap().clone() }),
        )
        .route(
            "/confirm",
            axum::routing::get(move |RawQuery(q): RawQuery| async move {
                seen.lock().unwrap().push(q.unwrap_or_default());
                "<ConfirmSubscriptionResponse/>"
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, cert, confirmed)
}

/// Signs `messages` with scripts/make_sns_messages.py (a fresh key and
/// self-signed certificate); returns the signed list and the certificate.
fn sign_sns(messages: &[Value]) -> (Vec<Value>, Vec<u8>) {
    let dir = std::env::temp_dir().join(format!("inferq-sns-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("in.json");
    std::fs::write(&input, serde_json::to_vec(messages).unwrap()).unwrap();
    let out = std::process::Command::new(test_python())
        .arg(root().join("scripts/make_sns_messages.py"))
        .args(["--out", dir.to_str().unwrap()])
        .args(["--messages", input.to_str().unwrap()])
        .output()
        .expect("run make_sns_messages.py");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let signed = serde_json::from_slice(&std::fs::read(dir.join("signed.json")).unwrap()).unwrap();
    let cert = std::fs::read(dir.join("cert.pem")).unwrap();
    std::fs::remove_dir_all(&dir).ok();
    (signed, cert)
}

fn s3_put_event(key: &str, sequencer: &str) -> String {
    json!({"Records": [{"eventVersion": "2.1", "eventSource": "aws:s3",
        "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": "photos"},
               "object": {"key": key, "size": 100, "eTag": "e1", "versionId": "null",
                          "sequencer": sequencer}}}]})
    .to_string()
}

const SNS_TOPIC: &str = "arn:aws:sns:eu-west-1:111122223333:uploads";

fn sns_envelope(kind: &str, version: &str, id: &str, topic: &str, message: &str) -> Value {
    json!({"Type": kind, "MessageId": id, "TopicArn": topic, "Message": message,
           "Timestamp": "2026-12-06T04:00:00.000Z", "SignatureVersion": version,
           "SigningCertURL": "set after signing"})
}

/// An SNS subscription end to end: the confirmation is verified and its
/// SubscribeURL called; signed notifications (SignatureVersion 1 and 2) of
/// an unversioned bucket make one job per upload, which succeeds; a
/// redelivery makes none; tampered messages, other topics and certificate
/// URLs off the allow-list are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sns_subscriptions_are_confirmed_and_notifications_make_jobs() {
    if !services_available() || !emulators_available() {
        return;
    }
    let emu = Emulator::start(Kind::S3).await;
    emu.create_bucket("photos").await;
    emu.create_bucket("results").await;
    emu.upload("photos", "up/sns cat.png", solid_png(16, 16, [255, 255, 0]))
        .await;
    let (side, cert_slot, confirmed) = sns_side().await;

    let subscribe_url = format!("{side}/confirm?Action=ConfirmSubscription&Token=tok-1");
    let mut confirmation =
        sns_envelope("SubscriptionConfirmation", "1", "m0", SNS_TOPIC, "confirm");
    confirmation["SubscribeURL"] = json!(subscribe_url);
    confirmation["Token"] = json!("tok-1");
    let mut first = sns_envelope(
        "Notification",
        "1",
        "m1",
        SNS_TOPIC,
        &s3_put_event("up/sns+cat.png", "0055AED6DCD90281E5"),
    );
    first["Subject"] = json!("Amazon S3 Notification");
    let redelivered = sns_envelope(
        "Notification",
        "2",
        "m1",
        SNS_TOPIC,
        &s3_put_event("up/sns+cat.png", "0055AED6DCD90281E5"),
    );
    let reupload = sns_envelope(
        "Notification",
        "2",
        "m2",
        SNS_TOPIC,
        &s3_put_event("up/sns+cat.png", "0055AED6DCD90281F0"),
    );
    let other_topic = sns_envelope(
        "Notification",
        "2",
        "m3",
        &format!("{SNS_TOPIC}-other"),
        &s3_put_event("up/sns+cat.png", "0055AED6DCD90281F1"),
    );
    let mut unsubscribed = sns_envelope("UnsubscribeConfirmation", "2", "m4", SNS_TOPIC, "bye");
    unsubscribed["SubscribeURL"] = json!(subscribe_url);
    unsubscribed["Token"] = json!("tok-1");
    let (mut signed, cert) = sign_sns(&[
        confirmation,
        first,
        redelivered,
        reupload,
        other_topic,
        unsubscribed,
    ]);
    *cert_slot.lock().unwrap() = cert;
    // The certificate URL is not signed: it is set now.
    for m in &mut signed {
        m["SigningCertURL"] = json!(format!("{side}/cert.pem"));
    }

    let rule = "match=s3://photos/up/,model=tiny-mean,output=s3://results/{relative}.json";
    let sns_flags = [
        "--event-sns-topics",
        SNS_TOPIC,
        "--event-sns-hosts",
        "127.0.0.1",
        "--event-sns-allow-http",
    ];
    let (ns, api, worker) = deploy_with(&emu, "--s3-endpoint", &[rule], &sns_flags).await;
    let client = reqwest::Client::new();
    let base = api.url();
    let sns = format!("{base}/v1/events/sns");
    let header = |m: &Value| {
        [(
            "x-amz-sns-message-type",
            m["Type"].as_str().unwrap().to_owned(),
        )]
    };
    let deliver = |m: Value| {
        let (client, sns) = (client.clone(), sns.clone());
        async move {
            let h = header(&m);
            post(&client, &sns, &m, &[(h[0].0, h[0].1.as_str())]).await
        }
    };

    let (status, body) = deliver(signed[0].clone()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        *confirmed.lock().unwrap(),
        ["Action=ConfirmSubscription&Token=tok-1"]
    );

    let (status, body) = deliver(signed[1].clone()).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["accepted"][0]["uri"], "s3://photos/up/sns cat.png");
    let id = body["accepted"][0]["id"].as_str().unwrap().to_owned();
    let (status, again) = deliver(signed[2].clone()).await;
    assert_eq!(
        (status, again["accepted"][0]["id"].as_str()),
        (200, Some(id.as_str())),
        "{again}"
    );
    let (status, second) = deliver(signed[3].clone()).await;
    assert_eq!(status, 202, "{second}");
    assert_ne!(second["accepted"][0]["id"].as_str(), Some(id.as_str()));

    let job = wait_terminal(&client, &base, &id, Duration::from_secs(30)).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["result"]["top_k"][0]["label"], "yellow");
    let (_, bytes) = emu.download("results", "sns cat.png.json").await;
    assert_eq!(
        serde_json::from_slice::<Value>(&bytes).unwrap()["result"],
        job["result"]
    );

    // Refusals: another topic, a tampered message, a certificate URL off
    // the allow-list, not an SNS message at all.
    let (status, body) = deliver(signed[4].clone()).await;
    assert_eq!(status, 403, "{body}");
    let mut tampered = signed[3].clone();
    tampered["Message"] = json!(s3_put_event("up/sns+cat.png", "0055AED6DCD90281FF"));
    let (status, body) = deliver(tampered).await;
    assert_eq!(status, 401, "{body}");
    let mut off_list = signed[3].clone();
    off_list["SigningCertURL"] =
        json!(format!("{side}/cert.pem").replace("127.0.0.1", "localhost"));
    let (status, body) = deliver(off_list).await;
    assert_eq!(status, 401, "{body}");
    let (status, _) = post(&client, &sns, &json!({"Records": []}), &[]).await;
    assert_eq!(status, 400);

    let (status, body) = deliver(signed[5].clone()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(confirmed.lock().unwrap().len(), 1, "no resubscription");
    worker.stop().await;
    api.stop().await;
    ns.cleanup().await;
}

/// S3 events through EventBridge: `Object Created` makes a job that
/// succeeds, once per upload of an unversioned key; other detail types are
/// ignored; malformed events are 400s.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eventbridge_object_created_events_make_jobs() {
    if !services_available() || !emulators_available() {
        return;
    }
    let emu = Emulator::start(Kind::S3).await;
    emu.create_bucket("photos").await;
    emu.create_bucket("results").await;
    emu.upload("photos", "up/eb dog.png", solid_png(16, 16, [255, 255, 0]))
        .await;
    let rule = "match=s3://photos/up/,model=tiny-mean,output=s3://results/{relative}.json";
    let (ns, api, worker) = deploy(&emu, "--s3-endpoint", &[rule]).await;
    let client = reqwest::Client::new();
    let base = api.url();
    let url = format!("{base}/v1/events/eventbridge");
    let event = |kind: &str, sequencer: &str| {
        json!({"version": "0", "id": "17793124-05d4-b198-2fde-7ededc63b103",
            "detail-type": kind, "source": "aws.s3", "account": "111122223333",
            "time": "2026-12-06T04:00:00Z", "region": "eu-west-1",
            "resources": ["arn:aws:s3:::photos"],
            "detail": {"version": "0", "bucket": {"name": "photos"},
                       "object": {"key": "up/eb dog.png", "size": 100, "etag": "e1",
                                  "sequencer": sequencer},
                       "request-id": "N4N7GDK58NMKJ12R", "reason": "PutObject"}})
    };
    let (status, body) = post(
        &client,
        &url,
        &event("Object Created", "00617F08299329D189"),
        &[],
    )
    .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["accepted"][0]["uri"], "s3://photos/up/eb dog.png");
    let id = body["accepted"][0]["id"].as_str().unwrap().to_owned();
    let (status, again) = post(
        &client,
        &url,
        &event("Object Created", "00617F08299329D189"),
        &[],
    )
    .await;
    assert_eq!(
        (status, again["accepted"][0]["id"].as_str()),
        (200, Some(id.as_str())),
        "{again}"
    );
    let (status, other) = post(
        &client,
        &url,
        &event("Object Created", "00617F08299329D1A0"),
        &[],
    )
    .await;
    assert_eq!(status, 202, "{other}");
    assert_ne!(other["accepted"][0]["id"].as_str(), Some(id.as_str()));

    let job = wait_terminal(&client, &base, &id, Duration::from_secs(30)).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let (_, bytes) = emu.download("results", "eb dog.png.json").await;
    assert_eq!(
        serde_json::from_slice::<Value>(&bytes).unwrap()["result"],
        job["result"]
    );

    let (status, body) = post(
        &client,
        &url,
        &event("Object Deleted", "00617F08299329D1B0"),
        &[],
    )
    .await;
    assert_eq!(
        (status, body["accepted"].clone()),
        (200, json!([])),
        "{body}"
    );
    assert_eq!(body["ignored"].as_array().unwrap().len(), 1, "{body}");
    let (status, _) = post(&client, &url, &json!({"Records": []}), &[]).await;
    assert_eq!(status, 400);
    worker.stop().await;
    api.stop().await;
    ns.cleanup().await;
}
