//! Load of a cluster run and the account of every job it got accepted.
//!
//! Each job is one request with its own `Idempotency-Key`. Client `c`
//! starts with API `c mod n`; any answer but 202 (a 503 while a node fails
//! over, a connection error from a killed API, 409 while the key's first
//! request is in flight) sends the same request with the same key to the
//! next API after a short pause, until `give_up`. A job counts as accepted
//! when a 202 named its id; its submit latency runs from the first send to
//! that 202, retries included.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::account::{Final, settle_one};

/// How much load, how fast.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LoadSpec {
    pub(crate) jobs: u64,
    /// Submissions per second; 0 sends as fast as the clients can.
    pub(crate) rate: f64,
    pub(crate) clients: usize,
    pub(crate) give_up: Duration,
}

/// What happened to one key.
#[derive(Debug, Clone, Default)]
pub(crate) struct KeyResult {
    /// Seconds after the load started that the first request went out.
    pub(crate) sent_at: f64,
    /// Seconds from the first send to the 202.
    pub(crate) latency: Option<f64>,
    /// The job id the 202 named.
    pub(crate) id: Option<String>,
    /// The last answer that did not accept it.
    pub(crate) last_refusal: String,
}

/// Progress visible while the load runs (faults fire on it).
#[derive(Default)]
pub(crate) struct Progress {
    pub(crate) accepted: AtomicU64,
    next: AtomicU64,
    results: Mutex<Vec<KeyResult>>,
    refused: Mutex<BTreeMap<String, u64>>,
}

impl Progress {
    /// Waits until `n` jobs are accepted.
    pub(crate) async fn wait_accepted(&self, n: u64) {
        while self.accepted.load(Ordering::Relaxed) < n {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The outcome of a load.
#[derive(Debug, Default)]
pub(crate) struct Submitted {
    pub(crate) keys: Vec<KeyResult>,
    /// Answers that did not accept a job, by status or error kind.
    pub(crate) refused: BTreeMap<String, u64>,
}

impl Submitted {
    pub(crate) fn ids(&self) -> Vec<String> {
        self.keys.iter().filter_map(|k| k.id.clone()).collect()
    }

    pub(crate) fn gave_up(&self) -> Vec<&KeyResult> {
        self.keys.iter().filter(|k| k.id.is_none()).collect()
    }

    /// p50, p99 and max submit latency of the jobs first sent within
    /// `[from, to)` seconds after the start of the load.
    pub(crate) fn latency(&self, from: f64, to: f64) -> String {
        let mut l: Vec<f64> = self
            .keys
            .iter()
            .filter(|k| k.sent_at >= from && k.sent_at < to)
            .filter_map(|k| k.latency)
            .collect();
        if l.is_empty() {
            return "no jobs".into();
        }
        l.sort_by(f64::total_cmp);
        let q = |p: f64| l[((l.len() as f64 * p).ceil() as usize).clamp(1, l.len()) - 1];
        format!(
            "p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms over {} jobs",
            q(0.5) * 1e3,
            q(0.99) * 1e3,
            l[l.len() - 1] * 1e3,
            l.len()
        )
    }
}

/// Starts the load; await the handle for its outcome.
pub(crate) fn spawn(
    apis: Vec<String>,
    spec: LoadSpec,
) -> (Arc<Progress>, tokio::task::JoinHandle<Submitted>, Instant) {
    let progress = Arc::new(Progress::default());
    let t0 = Instant::now();
    let image = Arc::new(inferq_tests::solid_png(32, 24, [200, 30, 90]));
    let apis = Arc::new(apis);
    let p = progress.clone();
    let handle = tokio::spawn(async move {
        let mut clients = tokio::task::JoinSet::new();
        for c in 0..spec.clients.max(1) {
            clients.spawn(client(c, apis.clone(), image.clone(), spec, p.clone(), t0));
        }
        while clients.join_next().await.is_some() {}
        Submitted {
            keys: std::mem::take(&mut *p.results.lock().unwrap()),
            refused: std::mem::take(&mut *p.refused.lock().unwrap()),
        }
    });
    (progress, handle, t0)
}

async fn client(
    c: usize,
    apis: Arc<Vec<String>>,
    image: Arc<Vec<u8>>,
    spec: LoadSpec,
    p: Arc<Progress>,
    t0: Instant,
) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("http client");
    let mut api = c % apis.len();
    loop {
        let i = p.next.fetch_add(1, Ordering::Relaxed);
        if i >= spec.jobs {
            return;
        }
        if spec.rate > 0.0 {
            tokio::time::sleep_until((t0 + Duration::from_secs_f64(i as f64 / spec.rate)).into())
                .await;
        }
        let key = uuid::Uuid::new_v4().to_string();
        let sent = Instant::now();
        let mut result = KeyResult {
            sent_at: (sent - t0).as_secs_f64(),
            ..Default::default()
        };
        let mut pause = Duration::from_millis(50);
        loop {
            let answer = http
                .post(inferq_tests::load::submit_url(&apis[api], None))
                .header("content-type", "image/png")
                .header("idempotency-key", &key)
                .body(image.as_ref().clone())
                .send()
                .await;
            let refusal = match answer {
                Ok(r) if r.status() == 202 => {
                    let body: Value = r.json().await.unwrap_or(Value::Null);
                    if let Some(id) = body["id"].as_str() {
                        result.id = Some(id.to_owned());
                        result.latency = Some(sent.elapsed().as_secs_f64());
                        p.accepted.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                    "202 without id".to_string()
                }
                Ok(r) => r.status().as_u16().to_string(),
                Err(e) if e.is_timeout() => "client timeout".into(),
                Err(_) => "connection error".into(),
            };
            *p.refused
                .lock()
                .unwrap()
                .entry(refusal.clone())
                .or_default() += 1;
            result.last_refusal = refusal;
            if sent.elapsed() >= spec.give_up {
                break;
            }
            api = (api + 1) % apis.len();
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(500));
        }
        p.results.lock().unwrap().push(result);
    }
}

/// The final state of every accepted job.
pub(crate) struct Account {
    pub(crate) terminal: u64,
    pub(crate) succeeded: u64,
    pub(crate) duplicated: u64,
    pub(crate) lost: Vec<(String, String)>,
    pub(crate) by_status: BTreeMap<String, u64>,
    pub(crate) by_attempts: BTreeMap<u64, u64>,
    /// The terminal records (for timings).
    pub(crate) records: Vec<Value>,
}

/// Polls every accepted job (through the first API that answers) until it
/// is terminal or `settle` has passed.
pub(crate) async fn account(apis: &[String], ids: &[String], settle: Duration) -> Account {
    let deadline = Instant::now() + settle;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .expect("http client");
    let ids = Arc::new(ids.to_vec());
    let next = Arc::new(AtomicU64::new(0));
    let mut pollers = tokio::task::JoinSet::new();
    for k in 0..32 {
        let (http, ids, next) = (http.clone(), ids.clone(), next.clone());
        let api = apis[k % apis.len()].clone();
        pollers.spawn(async move {
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                let Some(id) = ids.get(i) else { return out };
                out.push((
                    id.clone(),
                    settle_one(&http, &api, id, deadline, false).await,
                ));
            }
        });
    }
    let mut a = Account {
        terminal: 0,
        succeeded: 0,
        duplicated: 0,
        lost: Vec::new(),
        by_status: BTreeMap::new(),
        by_attempts: BTreeMap::new(),
        records: Vec::new(),
    };
    let mut seen = BTreeSet::new();
    while let Some(Ok(out)) = pollers.join_next().await {
        for (id, f) in out {
            if !seen.insert(id.clone()) {
                continue;
            }
            match f {
                Final::Terminal(job) => {
                    a.terminal += 1;
                    let status = job["status"].as_str().unwrap_or("?").to_owned();
                    if status == "succeeded" {
                        a.succeeded += 1;
                    }
                    *a.by_status.entry(status).or_default() += 1;
                    let attempts = job["attempts"].as_u64().unwrap_or(0);
                    *a.by_attempts.entry(attempts).or_default() += 1;
                    a.duplicated += attempts.saturating_sub(1);
                    a.records.push(job);
                }
                Final::Lost(why) => a.lost.push((id, why)),
            }
        }
    }
    a
}

/// Seconds between two RFC 3339 fields of a record.
pub(crate) fn span(job: &Value, from: &str, to: &str) -> Option<f64> {
    let a = chrono::DateTime::parse_from_rfc3339(job[from].as_str()?).ok()?;
    let b = chrono::DateTime::parse_from_rfc3339(job[to].as_str()?).ok()?;
    Some((b - a).num_microseconds()? as f64 / 1e6)
}
