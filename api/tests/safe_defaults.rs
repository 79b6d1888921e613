//! Defaults that keep an unconfigured server safe: cross-site browser
//! requests are refused (the `Origin`/`Host` check), and OIDC push
//! verification does not start without allowed service accounts.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::*;
use inferq_api::{ApiConfig, Settings, SettingsSources};

fn job(origin: Option<&str>, host: &str) -> Request<Body> {
    let mut req = post("/v1/jobs", "image/png", png(4, 4));
    req.headers_mut()
        .insert(header::HOST, host.parse().unwrap());
    if let Some(o) = origin {
        req.headers_mut().insert(header::ORIGIN, o.parse().unwrap());
    }
    req
}

#[tokio::test]
async fn cross_site_posts_are_refused_same_site_and_originless_ones_pass() {
    let h = harness(1 << 20, 1 << 16);
    let refused = send(
        &h.state,
        job(Some("https://evil.example"), "127.0.0.1:8080"),
    )
    .await;
    assert_problem(&refused, StatusCode::FORBIDDEN, "forbidden");
    assert!(
        refused.2["detail"]
            .as_str()
            .unwrap()
            .contains("https://evil.example"),
        "{}",
        refused.2
    );
    // The refusal happens before the job exists.
    assert_eq!(h.queue.len(), 0);

    let (status, _, body) = send(&h.state, job(None, "127.0.0.1:8080")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let (status, _, body) = send(
        &h.state,
        job(Some("http://127.0.0.1:8080"), "127.0.0.1:8080"),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(h.queue.len(), 2);

    // Model upload (PUT) is state-changing too; reads are not.
    let mut put = Request::put("/v1/models/x/versions/1")
        .body(Body::from("x"))
        .unwrap();
    put.headers_mut()
        .insert(header::HOST, "127.0.0.1:8080".parse().unwrap());
    put.headers_mut()
        .insert(header::ORIGIN, "https://evil.example".parse().unwrap());
    assert_problem(
        &send(&h.state, put).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    let mut read = get("/v1/models");
    read.headers_mut()
        .insert(header::ORIGIN, "https://evil.example".parse().unwrap());
    assert_eq!(send(&h.state, read).await.0, StatusCode::OK);
}

#[tokio::test]
async fn configured_origins_may_post() {
    let h = harness_with(&["--allowed-origins", "https://console.example.com"]);
    let (status, _, body) = send(
        &h.state,
        job(Some("https://console.example.com"), "api.internal:8080"),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_problem(
        &send(
            &h.state,
            job(Some("https://other.example.com"), "api.internal:8080"),
        )
        .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
}

fn settings(flags: &[&str]) -> Result<Settings, inferq_api::RunError> {
    let mut args = vec!["inferq-api", "--api-keys", "ops:admin:0123456789abcdef0123"];
    args.extend_from_slice(flags);
    let config: ApiConfig = inferq_runtime::config::load(args).unwrap();
    let fetcher = inferq_backends::fetch::Fetcher::new(&config.fetch).unwrap();
    Settings::build(
        SettingsSources {
            http: &config.http,
            models: &config.models,
            limits: &config.limits,
            retention: &config.retention,
            admission: &config.admission,
            events: &config.events,
            webhooks: &config.webhooks,
            batches: &config.batches,
        },
        &fetcher,
    )
}

#[test]
fn oidc_without_allowed_emails_refuses_to_start() {
    let err = settings(&["--event-oidc-audience", "https://inferq.example/push"])
        .expect_err("OIDC on without emails must not start");
    assert!(err.to_string().contains("--event-oidc-emails"), "{err}");
    let ok = settings(&[
        "--event-oidc-audience",
        "https://inferq.example/push",
        "--event-oidc-emails",
        "push@project.iam.gserviceaccount.com",
    ])
    .unwrap();
    assert!(ok.event_oidc.is_some());
    assert!(settings(&[]).unwrap().event_oidc.is_none());
}

/// The SNS route authenticates by signature, not by key: it exists only
/// for listed topics, and a malformed topic or an empty host list stops
/// the start.
#[test]
fn sns_is_off_unless_topics_are_listed() {
    assert!(settings(&[]).unwrap().event_sns.is_none());
    let topic = "arn:aws:sns:eu-west-1:111122223333:uploads";
    assert!(
        settings(&["--event-sns-topics", topic])
            .unwrap()
            .event_sns
            .is_some()
    );
    let err = settings(&["--event-sns-topics", "uploads"]).expect_err("not an ARN");
    assert!(err.to_string().contains("--event-sns-topics"), "{err}");
    let err = settings(&["--event-sns-topics", topic, "--event-sns-hosts", ""])
        .expect_err("no certificate host");
    assert!(err.to_string().contains("--event-sns-hosts"), "{err}");
}

/// `/v1/events/sns` sits outside API-key authentication (SNS cannot send
/// a key) but is served only when configured; its own checks refuse a
/// delivery from another topic (403), with a certificate URL off the
/// allow-list (401) or that is no SNS message (400). The other event
/// routes still need a key.
#[tokio::test]
async fn the_sns_route_authenticates_by_signature_and_only_when_configured() {
    const OPS: &str = "0123456789abcdef0123";
    let mut h = auth_harness(&[&format!("ops:admin:{OPS}")]);
    let fixtures: Vec<serde_json::Value> = serde_json::from_str(include_str!(
        "../src/routes/events/sns/testdata/signed.json"
    ))
    .unwrap();
    let mut delivery = fixtures[1].clone();
    delivery["SigningCertURL"] = "https://evil.example.com/cert.pem".into();
    let sns = |body: &serde_json::Value| {
        post(
            "/v1/events/sns",
            "text/plain",
            body.to_string().into_bytes(),
        )
    };

    let off = send(&h.state, sns(&delivery)).await;
    assert_eq!(off.0, StatusCode::UNAUTHORIZED, "{:?}", off.2);

    let topic = delivery["TopicArn"].as_str().unwrap().to_owned();
    let base = (*h.state.settings).clone();
    let configure = |topics: &str| {
        let config: ApiConfig =
            inferq_runtime::config::load(["inferq-api", "--event-sns-topics", topics]).unwrap();
        base.clone().with_event_sns(&config.events).unwrap()
    };
    h.state.settings = std::sync::Arc::new(configure("arn:aws:sns:eu-west-1:111122223333:other"));
    let other_topic = send(&h.state, sns(&delivery)).await;
    assert_problem(&other_topic, StatusCode::FORBIDDEN, "forbidden");

    h.state.settings = std::sync::Arc::new(configure(&topic));
    let cert_off_list = send(&h.state, sns(&delivery)).await;
    assert_eq!(
        cert_off_list.0,
        StatusCode::UNAUTHORIZED,
        "{:?}",
        cert_off_list.2
    );
    assert!(
        cert_off_list.2.to_string().contains("SigningCertURL"),
        "{:?}",
        cert_off_list.2
    );
    let not_sns = send(&h.state, sns(&serde_json::json!({"Records": []}))).await;
    assert_eq!(not_sns.0, StatusCode::BAD_REQUEST, "{:?}", not_sns.2);

    let keyless = post("/v1/events/eventbridge", "application/json", b"{}".to_vec());
    assert_eq!(send(&h.state, keyless).await.0, StatusCode::UNAUTHORIZED);
}
