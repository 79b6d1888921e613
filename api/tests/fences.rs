//! Tenants are fenced off: each API key reads and writes storage only
//! below its own `in=`/`out=` prefixes (deny by default with keys on), and
//! asks for webhooks only with its own signing secret. Driven through the
//! real router (`oneshot`, in-memory backends) with `file://` roots in a
//! fresh directory.

mod common;

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::*;
use inferq_api::http::auth::Authenticator;
use inferq_api::http::auth::keys::ApiKey;
use serde_json::{Value, json};

const ACME: &str = "acme-key-0123456789abcdef";
const GLOBEX: &str = "globex-key-0123456789abcdef";
const BARE: &str = "bare-key-0123456789abcdef";

/// A fresh root with `acme/in`, `acme/out`, `globex/in`, each input
/// holding `cat.png`.
fn root(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("fences-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    for sub in ["acme/in", "acme/out", "globex/in", "globex/out"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    for t in ["acme", "globex"] {
        std::fs::write(dir.join(t).join("in/cat.png"), png(4, 4)).unwrap();
    }
    dir
}

fn url(dir: &std::path::Path, rel: &str) -> String {
    format!("file://{}/{rel}", dir.display())
}

/// The harness with `dir` as the global local root and keys on.
fn fenced(dir: &std::path::Path, hook_secret: bool) -> Harness {
    let mut h = harness_with(&["--fetch-local-root", dir.to_str().unwrap()]);
    let hook = if hook_secret {
        format!(" webhook-secret=whsec_{}", "QUFB".repeat(8))
    } else {
        String::new()
    };
    let entries = [
        format!(
            "acme:submit+read:{ACME} in={} out={}{hook}",
            url(dir, "acme/in/"),
            url(dir, "acme/out/")
        ),
        format!(
            "globex:submit+read:{GLOBEX} in={} out={}",
            url(dir, "globex/in/"),
            url(dir, "globex/out/")
        ),
        format!("bare:submit+read:{BARE}"),
    ];
    let keys = entries.iter().map(|e| ApiKey::parse(e).unwrap()).collect();
    h.state.auth = Arc::new(Authenticator::with_keys(keys));
    h
}

fn json_post(uri: &str, key: Option<&str>, body: Value) -> Request<Body> {
    let req = post(uri, "application/json", serde_json::to_vec(&body).unwrap());
    match key {
        Some(k) => bearer(req, k),
        None => req,
    }
}

fn job(input: &str, output: Option<&str>) -> Value {
    let mut v = json!({"input": {"uri": input}});
    if let Some(o) = output {
        v["output"] = json!({"uri": o});
    }
    v
}

fn assert_fenced(answer: &(StatusCode, axum::http::HeaderMap, Value), reference: &str) {
    assert_problem(answer, StatusCode::FORBIDDEN, "uri_forbidden");
    let detail = answer.2["detail"].as_str().unwrap();
    assert!(detail.contains(reference), "{detail}");
    assert!(detail.contains("prefixes"), "{detail}");
}

#[tokio::test]
async fn job_inputs_and_outputs_stay_inside_the_tenants_prefixes() {
    let dir = root("jobs");
    let h = fenced(&dir, false);
    let mine = url(&dir, "acme/in/cat.png");
    let theirs = url(&dir, "globex/in/cat.png");

    // Own input and output: accepted.
    let (status, _, body) = send(
        &h.state,
        json_post(
            "/v1/jobs",
            Some(ACME),
            job(&mine, Some(&url(&dir, "acme/out/"))),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");

    // Another tenant's input: refused, naming the reference and the fence.
    let answer = send(
        &h.state,
        json_post("/v1/jobs", Some(ACME), job(&theirs, None)),
    )
    .await;
    assert_fenced(&answer, &theirs);
    assert!(
        answer.2["detail"]
            .as_str()
            .unwrap()
            .contains(&url(&dir, "acme/in/"))
    );
    // `..` does not climb out of the fence.
    let climb = url(&dir, "acme/in/../../globex/in/cat.png");
    let answer = send(
        &h.state,
        json_post("/v1/jobs", Some(ACME), job(&climb, None)),
    )
    .await;
    assert_problem(&answer, StatusCode::FORBIDDEN, "uri_forbidden");
    // Writing into another tenant's output, or into one's own input prefix.
    for out in [url(&dir, "globex/out/"), url(&dir, "acme/in/")] {
        let answer = send(
            &h.state,
            json_post("/v1/jobs", Some(ACME), job(&mine, Some(&out))),
        )
        .await;
        assert_problem(&answer, StatusCode::FORBIDDEN, "uri_forbidden");
    }
    // The other tenant is fenced the same way, the other direction.
    let answer = send(
        &h.state,
        json_post("/v1/jobs", Some(GLOBEX), job(&mine, None)),
    )
    .await;
    assert_fenced(&answer, &mine);
    let (status, _, body) = send(
        &h.state,
        json_post("/v1/jobs", Some(GLOBEX), job(&theirs, None)),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");

    // A key without prefixes may not use storage references at all.
    let answer = send(
        &h.state,
        json_post("/v1/jobs", Some(BARE), job(&mine, None)),
    )
    .await;
    assert_fenced(&answer, &mine);
    assert!(
        answer.2["detail"]
            .as_str()
            .unwrap()
            .contains("may not use storage references")
    );
    // A model named by reference is read like an input.
    let theirs_model = url(&dir, "globex/in/model/");
    let answer = send(
        &h.state,
        json_post(
            "/v1/jobs",
            Some(ACME),
            json!({"input": {"b64": base64_png()}, "model_uri": theirs_model}),
        ),
    )
    .await;
    assert_fenced(&answer, &theirs_model);
    // Only the two accepted jobs were queued.
    assert_eq!(h.queue.len(), 2);
}

#[tokio::test]
async fn with_keys_off_the_global_policy_alone_applies() {
    let dir = root("open");
    let h = harness_with(&["--fetch-local-root", dir.to_str().unwrap()]);
    let (status, _, body) = send(
        &h.state,
        json_post(
            "/v1/jobs",
            None,
            job(
                &url(&dir, "globex/in/cat.png"),
                Some(&url(&dir, "acme/out/")),
            ),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
}

#[tokio::test]
async fn batches_list_and_write_only_inside_the_tenants_prefixes() {
    let dir = root("batches");
    let h = fenced(&dir, false);
    let batch = |input: String, output: String| json!({"input": {"prefix": input}, "output": {"prefix": output}});
    let (status, _, body) = send(
        &h.state,
        json_post(
            "/v1/batches",
            Some(ACME),
            batch(url(&dir, "acme/in/"), url(&dir, "acme/out/run1/")),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    for (input, output, refused) in [
        (
            url(&dir, "globex/in/"),
            url(&dir, "acme/out/run2/"),
            url(&dir, "globex/in/"),
        ),
        // A prefix that is a string prefix of the fence's directory (and
        // would list `acme/in…` siblings) is not inside it.
        (
            url(&dir, "acme/i"),
            url(&dir, "acme/out/run3/"),
            url(&dir, "acme/i"),
        ),
        (
            url(&dir, "acme/in/"),
            url(&dir, "globex/out/"),
            url(&dir, "globex/out/"),
        ),
    ] {
        let answer = send(
            &h.state,
            json_post("/v1/batches", Some(ACME), batch(input, output)),
        )
        .await;
        assert_fenced(&answer, &refused);
    }
    let answer = send(
        &h.state,
        json_post(
            "/v1/batches",
            Some(BARE),
            batch(url(&dir, "acme/in/"), url(&dir, "acme/out/")),
        ),
    )
    .await;
    assert_problem(&answer, StatusCode::FORBIDDEN, "uri_forbidden");
}

#[tokio::test]
async fn webhooks_need_the_tenants_own_secret_when_keys_are_on() {
    let dir = root("hooks");
    let hook = json!({"url": "https://hooks.example.com/inferq"});
    let with_hook = |key| {
        let mut body = json!({"input": {"b64": base64_png()}});
        body["webhook"] = hook.clone();
        json_post("/v1/jobs", Some(key), body)
    };
    // No tenant secret: refused, although... (no global secret either).
    let h = fenced(&dir, false);
    let answer = send(&h.state, with_hook(ACME)).await;
    assert_problem(&answer, StatusCode::BAD_REQUEST, "invalid_argument");
    assert!(
        answer.2["detail"]
            .as_str()
            .unwrap()
            .contains("webhook-secret=")
    );
    // ACME's entry has one: accepted; GLOBEX's has none: still refused.
    let h = fenced(&dir, true);
    let (status, _, body) = send(&h.state, with_hook(ACME)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let answer = send(&h.state, with_hook(GLOBEX)).await;
    assert_problem(&answer, StatusCode::BAD_REQUEST, "invalid_argument");
}

fn base64_png() -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(png(4, 4))
}

/// A storage event posted with a tenant's key makes jobs only for objects
/// inside that tenant's `in=` prefixes, with results inside its `out=`
/// (an event rule's output is the tenant's output too); the others are
/// reported as rejected (403), so the sender does not redeliver them.
#[tokio::test]
async fn storage_events_posted_with_a_key_stay_inside_its_prefixes() {
    let mut h = harness_with(&[
        "--event-rule",
        "match=s3://photos/,output=s3://results/{name}.json",
    ]);
    let entries = [
        format!("acme:submit+read:{ACME} in=s3://photos/acme/ out=s3://results/acme/"),
        // May read globex's photos but not write where the rule puts results.
        format!("globex:submit+read:{GLOBEX} in=s3://photos/globex/ out=s3://elsewhere/"),
    ];
    let keys = entries.iter().map(|e| ApiKey::parse(e).unwrap()).collect();
    h.state.auth = Arc::new(Authenticator::with_keys(keys));
    let record = |key: &str, seq: &str| {
        json!({"eventVersion": "2.1", "eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
               "s3": {"bucket": {"name": "photos"},
                      "object": {"key": key, "size": 100, "eTag": "e", "sequencer": seq}}})
    };
    let event = json!({"Records": [record("acme/a.png", "01"), record("globex/b.png", "02")]});
    let (status, _, body) = send(
        &h.state,
        json_post("/v1/events/s3", Some(ACME), event.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let accepted = body["accepted"].as_array().unwrap();
    assert_eq!(accepted.len(), 1, "{body}");
    assert_eq!(accepted[0]["uri"], "s3://photos/acme/a.png");
    let rejected = body["rejected"].as_array().unwrap();
    assert_eq!(rejected.len(), 1, "{body}");
    assert_eq!(rejected[0]["object"], "s3://photos/globex/b.png");
    assert_eq!(rejected[0]["status"], 403);
    assert!(
        rejected[0]["error"].as_str().unwrap().contains("prefixes"),
        "{body}"
    );

    // globex may read its object, but the rule's output lies outside its
    // `out=`: refused too, and nothing is enqueued.
    let (status, _, body) = send(&h.state, json_post("/v1/events/s3", Some(GLOBEX), event)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["accepted"].as_array().unwrap().is_empty(), "{body}");
    let rejected = body["rejected"].as_array().unwrap();
    assert_eq!(rejected.len(), 2, "{body}");
    assert!(
        rejected.iter().any(|r| r["error"]
            .as_str()
            .unwrap()
            .contains("s3://results/globex/b.png.json")),
        "{body}"
    );
}
