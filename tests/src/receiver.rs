//! A webhook receiver for the tests: records every request and answers
//! with planned statuses (e.g. two 503s, then 200) per path.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use serde_json::{Value, json};

/// One request as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: String,
    pub at: Instant,
}

#[derive(Default)]
struct Inner {
    got: Vec<Received>,
    plans: HashMap<String, VecDeque<u16>>,
}

/// The receiver; cheap to clone.
#[derive(Clone)]
pub struct Receiver {
    inner: Arc<Mutex<Inner>>,
    pub addr: SocketAddr,
}

async fn record(
    State(inner): State<Arc<Mutex<Inner>>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let mut i = inner.lock().unwrap();
    let path = uri.path().to_owned();
    i.got.push(Received {
        path: path.clone(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_owned()))
            .collect(),
        body: String::from_utf8_lossy(&body).into_owned(),
        at: Instant::now(),
    });
    let status = i
        .plans
        .get_mut(&path)
        .and_then(|p| p.pop_front())
        .unwrap_or(200);
    StatusCode::from_u16(status).unwrap()
}

impl Receiver {
    pub async fn start() -> Self {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = axum::Router::new()
            .fallback(axum::routing::post(record))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Receiver { inner, addr }
    }

    /// The URL of `path` on this receiver.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Answers the next requests to `path` with these statuses, then 200.
    pub fn plan(&self, path: &str, statuses: &[u16]) {
        self.inner
            .lock()
            .unwrap()
            .plans
            .insert(path.to_owned(), statuses.iter().copied().collect());
    }

    /// Requests to `path` so far.
    pub fn got(&self, path: &str) -> Vec<Received> {
        let i = self.inner.lock().unwrap();
        i.got.iter().filter(|r| r.path == path).cloned().collect()
    }

    /// Waits until `path` got `n` requests; returns them.
    pub async fn wait_for(&self, path: &str, n: usize, timeout: Duration) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.got(path);
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "{path}: {} of {n} webhook requests after {timeout:?}",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Runs `scripts/verify_webhooks.py` (the Standard Webhooks and CloudEvents
/// reference libraries) over `deliveries`; one JSON verdict per delivery.
pub fn verify_with_python(secret: &str, deliveries: &[Received]) -> Vec<Value> {
    let list: Vec<Value> = deliveries
        .iter()
        .map(|d| json!({"headers": d.headers, "body": d.body}))
        .collect();
    let file = std::env::temp_dir().join(format!("inferq-hooks-{}.json", uuid::Uuid::new_v4()));
    std::fs::write(&file, serde_json::to_vec(&list).unwrap()).unwrap();
    let out = std::process::Command::new(crate::test_python())
        .arg(crate::root().join("scripts/verify_webhooks.py"))
        .args(["--secret", secret])
        .arg(&file)
        .output()
        .expect("run verify_webhooks.py (make test-venv installs its packages)");
    let _ = std::fs::remove_file(&file);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "verification failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}
