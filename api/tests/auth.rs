//! API keys, scopes and tenant isolation through the real router
//! (`oneshot`, in-memory backends).

mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::*;
use inferq_api::ApiConfig;
use inferq_api::http::auth::Authenticator;
use inferq_backends::broker::JobQueue;
use inferq_core::message::JobMessage;
use serde_json::Value;

const ALICE: &str = "alice-secret-0123456789abcdef";
const BOB: &str = "bob-secret-0123456789abcdef00";
const READER: &str = "reader-secret-0123456789abcd";
const SUBMITTER: &str = "submitter-secret-0123456789a";
const ADMIN: &str = "admin-secret-0123456789abcdef";

fn entries() -> Vec<String> {
    vec![
        format!("alice:submit+read:{ALICE}"),
        format!("bob:submit+read:{BOB}"),
        format!("dashboards:read:{READER}"),
        format!("uploader:submit:{SUBMITTER}"),
        format!("ops:admin:{ADMIN}"),
    ]
}

fn keyed() -> Harness {
    let e = entries();
    auth_harness(&e.iter().map(String::as_str).collect::<Vec<_>>())
}

fn submit_req() -> Request<Body> {
    post("/v1/jobs", "image/png", png(4, 4))
}

/// Submits as `key`; returns the job id.
async fn submit_as(h: &Harness, key: &str) -> String {
    let (status, _, body) = send(&h.state, bearer(submit_req(), key)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    body["id"].as_str().unwrap().to_owned()
}

fn assert_unauthorized(resp: &(StatusCode, axum::http::HeaderMap, Value)) {
    assert_problem(resp, StatusCode::UNAUTHORIZED, "unauthorized");
    assert_eq!(resp.1[header::WWW_AUTHENTICATE], "Bearer realm=\"inferq\"");
}

#[tokio::test]
async fn missing_or_wrong_key_is_401_everywhere_but_the_probes() {
    let h = keyed();
    let job = uuid::Uuid::new_v4();
    for req in [
        submit_req(),
        get("/v1/models"),
        get(&format!("/v1/jobs/{job}")),
        get("/v1/no-such-route"),
        get("/nowhere"),
        Request::put("/v1/models/m/versions/1")
            .body(Body::empty())
            .unwrap(),
    ] {
        let uri = req.uri().clone();
        let resp = send(&h.state, req).await;
        assert_unauthorized(&resp);
        assert!(resp.2.to_string().contains("Bearer"), "{uri}: {}", resp.2);
    }
    for bad in [
        bearer(get("/v1/models"), "alice-secret-0123456789abcdeX"),
        bearer(get("/v1/models"), ""),
        // The right key under the wrong scheme.
        Request::get("/v1/models")
            .header(header::AUTHORIZATION, format!("Basic {ALICE}"))
            .body(Body::empty())
            .unwrap(),
    ] {
        assert_unauthorized(&send(&h.state, bad).await);
    }
    assert!(h.queue.is_empty(), "nothing was enqueued");
    for probe in ["/healthz", "/readyz"] {
        let (status, _, body) = send(&h.state, get(probe)).await;
        assert_eq!(status, StatusCode::OK, "{probe}: {body}");
    }
}

#[tokio::test]
async fn authenticated_callers_get_404_and_405_as_before() {
    let h = keyed();
    let resp = send(&h.state, bearer(get("/v1/no-such-route"), READER)).await;
    assert_problem(&resp, StatusCode::NOT_FOUND, "invalid_argument");
    let resp = send(
        &h.state,
        bearer(post("/v1/models", "text/plain", vec![]), READER),
    )
    .await;
    assert_eq!(resp.0, StatusCode::METHOD_NOT_ALLOWED);
    let resp = send(&h.state, post("/healthz", "text/plain", vec![])).await;
    assert_problem(&resp, StatusCode::METHOD_NOT_ALLOWED, "invalid_argument");
}

#[tokio::test]
async fn each_route_needs_its_scope() {
    let h = keyed();
    // read-only: no submitting, no canceling.
    let resp = send(&h.state, bearer(submit_req(), READER)).await;
    assert_problem(&resp, StatusCode::FORBIDDEN, "forbidden");
    assert!(resp.2["detail"].as_str().unwrap().contains("`submit`"));
    let id = submit_as(&h, SUBMITTER).await;
    let cancel = |key: &str| {
        bearer(
            post(&format!("/v1/jobs/{id}/cancel"), "text/plain", vec![]),
            key,
        )
    };
    assert_problem(
        &send(&h.state, cancel(READER)).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    // submit-only: no reading, not even its own job.
    let resp = send(&h.state, bearer(get("/v1/models"), SUBMITTER)).await;
    assert_problem(&resp, StatusCode::FORBIDDEN, "forbidden");
    let resp = send(&h.state, bearer(get(&format!("/v1/jobs/{id}")), SUBMITTER)).await;
    assert_problem(&resp, StatusCode::FORBIDDEN, "forbidden");
    // ... but it may cancel what it submitted.
    let (status, _, body) = send(&h.state, cancel(SUBMITTER)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "canceled");
    // read covers the model catalog.
    let (status, _, body) = send(&h.state, bearer(get("/v1/models"), READER)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["models"].as_array().is_some_and(|m| !m.is_empty()));
}

#[tokio::test]
async fn model_upload_needs_admin() {
    let mut h = keyed();
    let mut settings = (*h.state.settings).clone();
    settings.models.allow_model_upload = true;
    h.state.settings = Arc::new(settings);
    // Version 0 is refused by the handler before anything is written, so a
    // 400 shows the request got past the scope check.
    let upload = |key: &str| {
        bearer(
            Request::put("/v1/models/newmodel/versions/0")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from("{}"))
                .unwrap(),
            key,
        )
    };
    for key in [ALICE, READER, SUBMITTER] {
        let resp = send(&h.state, upload(key)).await;
        assert_problem(&resp, StatusCode::FORBIDDEN, "forbidden");
        assert!(resp.2["detail"].as_str().unwrap().contains("`admin`"));
    }
    let resp = send(&h.state, upload(ADMIN)).await;
    assert_problem(&resp, StatusCode::BAD_REQUEST, "invalid_argument");
    // The same path's GET needs only read.
    let resp = send(
        &h.state,
        bearer(get("/v1/models/tiny-mean/versions/1"), READER),
    )
    .await;
    assert_eq!(resp.0, StatusCode::OK, "{}", resp.2);

    // Admin does not override the deployment's switch.
    let h = keyed();
    let resp = send(&h.state, upload(ADMIN)).await;
    assert_problem(&resp, StatusCode::FORBIDDEN, "forbidden");
    assert!(resp.2["detail"].as_str().unwrap().contains("disabled"));
}

#[tokio::test]
async fn another_tenants_job_is_not_found() {
    let h = keyed();
    let id = submit_as(&h, ALICE).await;
    // The record and the queued message name the owner.
    let (status, _, own) = send(&h.state, bearer(get(&format!("/v1/jobs/{id}")), ALICE)).await;
    assert_eq!(status, StatusCode::OK, "{own}");
    assert_eq!(own["owner"], "alice");
    let mut d = h.queue.consume(1).await.unwrap();
    let msg = JobMessage::decode(d.next().await.unwrap().unwrap().payload).unwrap();
    assert_eq!(msg.owner.as_deref(), Some("alice"));

    // Bob gets exactly what a nonexistent job gives, on every job route.
    let ghost = uuid::Uuid::new_v4().to_string();
    for path in ["", "/output"] {
        let theirs = send(&h.state, bearer(get(&format!("/v1/jobs/{id}{path}")), BOB)).await;
        assert_problem(&theirs, StatusCode::NOT_FOUND, "job_not_found");
        let missing = send(
            &h.state,
            bearer(get(&format!("/v1/jobs/{ghost}{path}")), BOB),
        )
        .await;
        assert_eq!(
            theirs.2["title"], missing.2["title"],
            "{path}: {}",
            theirs.2
        );
    }
    // A long-poll is refused at once, not after the wait (the delay would
    // tell that the job exists).
    let started = std::time::Instant::now();
    let resp = send(&h.state, bearer(get(&format!("/v1/jobs/{id}?wait=5")), BOB)).await;
    assert_problem(&resp, StatusCode::NOT_FOUND, "job_not_found");
    assert!(
        started.elapsed().as_secs_f64() < 4.0,
        "{:?}",
        started.elapsed()
    );
    let resp = send(
        &h.state,
        bearer(
            post(&format!("/v1/jobs/{id}/cancel"), "text/plain", vec![]),
            BOB,
        ),
    )
    .await;
    assert_problem(&resp, StatusCode::NOT_FOUND, "job_not_found");
    // Bob's failed cancel left Alice's job alone.
    let (_, _, after) = send(&h.state, bearer(get(&format!("/v1/jobs/{id}")), ALICE)).await;
    assert_eq!(after["status"], "queued");
    // Alice sees the output route's own answer for her own job.
    let resp = send(
        &h.state,
        bearer(get(&format!("/v1/jobs/{id}/output")), ALICE),
    )
    .await;
    assert_problem(&resp, StatusCode::NOT_FOUND, "output_not_found");
}

#[tokio::test]
async fn admin_sees_and_cancels_every_job() {
    let h = keyed();
    let alices = submit_as(&h, ALICE).await;
    let bobs = submit_as(&h, BOB).await;
    for (id, owner) in [(&alices, "alice"), (&bobs, "bob")] {
        let (status, _, body) = send(&h.state, bearer(get(&format!("/v1/jobs/{id}")), ADMIN)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["owner"], owner);
    }
    let (status, _, body) = send(
        &h.state,
        bearer(
            post(&format!("/v1/jobs/{bobs}/cancel"), "text/plain", vec![]),
            ADMIN,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "canceled");
    // An admin's own submission is owned by its tenant.
    let own = submit_as(&h, ADMIN).await;
    let resp = send(&h.state, bearer(get(&format!("/v1/jobs/{own}")), ALICE)).await;
    assert_problem(&resp, StatusCode::NOT_FOUND, "job_not_found");
}

#[tokio::test]
async fn auth_off_needs_no_key_and_records_no_owner() {
    let h = harness(1 << 20, 1 << 16);
    let (status, _, body) = send(&h.state, submit_req()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert!(body.get("owner").is_none(), "{body}");
    // A key sent anyway is ignored, not rejected.
    let (status, _, _) = send(&h.state, bearer(get("/v1/models"), "whatever")).await;
    assert_eq!(status, StatusCode::OK);
}

#[test]
fn api_config_turns_auth_on_and_refuses_to_run_without_keys() {
    let load = |extra: &[&str]| -> ApiConfig {
        inferq_runtime::config::load(std::iter::once("inferq-api").chain(extra.iter().copied()))
            .unwrap()
    };
    let cfg = load(&[]);
    assert!(cfg.auth.auth);
    let err = Authenticator::from_config(&cfg.auth).unwrap_err();
    assert!(err.to_string().contains("no API keys"), "{err}");

    let keys = format!("alice:submit+read:{ALICE},ops:admin:{ADMIN}");
    let cfg = load(&["--api-keys", &keys]);
    let auth = Authenticator::from_config(&cfg.auth).unwrap();
    assert!(auth.enabled());
    // Neither the config nor the authenticator prints a key.
    for shown in [format!("{cfg:?}"), format!("{auth:?}")] {
        assert!(shown.contains("alice"), "{shown}");
        assert!(!shown.contains(ALICE) && !shown.contains(ADMIN), "{shown}");
    }
    assert!(
        !Authenticator::from_config(&load(&["--auth", "false"]).auth)
            .unwrap()
            .enabled()
    );
}

#[tokio::test]
async fn dead_letter_admin_routes_need_admin() {
    let h = keyed();
    let replay = || {
        post(
            "/v1/admin/dead-letters/replay?limit=5",
            "application/json",
            vec![],
        )
    };
    for key in [ALICE, READER, SUBMITTER] {
        assert_problem(
            &send(&h.state, bearer(get("/v1/admin/dead-letters"), key)).await,
            StatusCode::FORBIDDEN,
            "forbidden",
        );
        assert_problem(
            &send(&h.state, bearer(replay(), key)).await,
            StatusCode::FORBIDDEN,
            "forbidden",
        );
    }
    let (status, _, body) = send(&h.state, bearer(get("/v1/admin/dead-letters"), ADMIN)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["count"], 0);
    let (status, _, body) = send(&h.state, bearer(replay(), ADMIN)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["replayed"], serde_json::json!([]));
}

#[tokio::test]
async fn idempotency_keys_are_scoped_to_the_tenant() {
    let h = keyed();
    let with = |key: &str| {
        let mut req = bearer(submit_req(), key);
        req.headers_mut()
            .insert("idempotency-key", "same-key".parse().unwrap());
        req
    };
    let a = send(&h.state, with(ALICE)).await;
    let b = send(&h.state, with(BOB)).await;
    assert_eq!((a.0, b.0), (StatusCode::ACCEPTED, StatusCode::ACCEPTED));
    // Same key, different tenants: two jobs, each visible to its owner only.
    assert_ne!(a.2["id"], b.2["id"]);
    let again = send(&h.state, with(ALICE)).await;
    assert_eq!(again.2["id"], a.2["id"]);
}
