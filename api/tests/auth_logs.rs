//! No API key, right or wrong, reaches the logs.
//!
//! A test binary of its own: `tracing` caches per call site whether anyone
//! listens, and tests running in parallel threads without a subscriber can
//! make a thread-local capture miss events.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use axum::http::StatusCode;
use common::*;

const ALICE: &str = "alice-secret-0123456789abcdef";
const BOB: &str = "bob-secret-0123456789abcdef00";
const READER: &str = "reader-secret-0123456789abcd";

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn keys_never_reach_the_logs() {
    let logs = Captured::default();
    let sink = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let h = auth_harness(&[
        &format!("alice:submit+read:{ALICE}"),
        &format!("bob:submit+read:{BOB}"),
        &format!("dashboards:read:{READER}"),
    ]);
    let (status, _, body) = send(
        &h.state,
        bearer(post("/v1/jobs", "image/png", png(4, 4)), ALICE),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();
    let wrong = "alice-secret-0123456789abcdeZ";
    for req in [
        bearer(get(&format!("/v1/jobs/{id}")), ALICE),
        bearer(get(&format!("/v1/jobs/{id}")), BOB),
        bearer(get("/v1/models"), wrong),
        bearer(post("/v1/jobs", "image/png", png(4, 4)), READER),
    ] {
        send(&h.state, req).await;
    }
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    // The capture works, and it names tenants...
    assert!(text.contains("job accepted"), "{text}");
    assert!(
        text.contains("tenant=alice") || text.contains("tenant=\"alice\""),
        "{text}"
    );
    assert!(text.contains("not authenticated"), "{text}");
    // ...but no key, right or wrong.
    for secret in [ALICE, BOB, READER, wrong] {
        assert!(!text.contains(secret), "{secret} logged:\n{text}");
    }
}
