//! The account of a chaos run: polling every accepted job to its end and
//! tallying the outcomes.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The final state of one accepted job.
pub(crate) enum Final {
    Terminal(Value),
    /// Not terminal at the deadline (last record seen), or no record at all.
    Lost(String),
}

/// Polls one job until it is terminal, it is missing, or `deadline`. After
/// an empty restart of Redis (`wiped`) a missing record is expected until a
/// worker takes the job's message and recreates it: keep asking.
pub(crate) async fn settle_one(
    client: &reqwest::Client,
    api: &str,
    id: &str,
    deadline: Instant,
    wiped: bool,
) -> Final {
    let mut missing = 0;
    let mut last = "never answered".to_string();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Final::Lost(last);
        }
        let wait = left.as_secs_f64().min(10.0);
        let answer = client
            .get(format!("{api}/v1/jobs/{id}?wait={wait:.1}"))
            .send()
            .await;
        match answer {
            Ok(r) if r.status() == 200 => {
                let job: Value = r.json().await.unwrap_or(Value::Null);
                match job["status"].as_str() {
                    Some("succeeded" | "failed" | "canceled" | "expired" | "dead_lettered") => {
                        return Final::Terminal(job);
                    }
                    Some(s) => last = format!("{s} (attempts {})", job["attempts"]),
                    None => last = format!("unreadable: {job}"),
                }
            }
            Ok(r) if r.status() == 404 => {
                // A record gone for good: ask a few times in case of a blip.
                missing += 1;
                last = "no record (404)".into();
                if missing >= 3 && !wiped {
                    return Final::Lost(last);
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Ok(r) => {
                last = format!("poll answered {}", r.status());
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => {
                last = format!("poll failed: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

pub(crate) fn fmt_map<K: std::fmt::Display>(m: &BTreeMap<K, u64>) -> String {
    if m.is_empty() {
        return "none".into();
    }
    m.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Tallies of the final records.
pub(crate) struct Report {
    pub(crate) terminal: u64,
    pub(crate) duplicates: u64,
    pub(crate) lost: Vec<(String, String)>,
    pub(crate) by_status: BTreeMap<String, u64>,
    pub(crate) by_code: BTreeMap<String, u64>,
    pub(crate) by_attempts: BTreeMap<u64, u64>,
}

impl Report {
    pub(crate) fn new(finals: &[(String, Final)]) -> Self {
        let mut r = Report {
            terminal: 0,
            duplicates: 0,
            lost: Vec::new(),
            by_status: BTreeMap::new(),
            by_code: BTreeMap::new(),
            by_attempts: BTreeMap::new(),
        };
        for (id, f) in finals {
            match f {
                Final::Terminal(job) => {
                    r.terminal += 1;
                    let status = job["status"].as_str().unwrap_or("?").to_owned();
                    *r.by_status.entry(status).or_default() += 1;
                    if let Some(code) = job["error"]["code"].as_str() {
                        *r.by_code.entry(code.to_owned()).or_default() += 1;
                    }
                    let attempts = job["attempts"].as_u64().unwrap_or(0);
                    *r.by_attempts.entry(attempts).or_default() += 1;
                    r.duplicates += attempts.saturating_sub(1);
                }
                Final::Lost(why) => r.lost.push((id.clone(), why.clone())),
            }
        }
        r
    }
}
