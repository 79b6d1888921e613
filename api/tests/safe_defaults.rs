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
