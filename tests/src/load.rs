//! Client side of the load tools: one image, one job, submit-and-wait.
//!
//! Shared by the `inferq-load` load generator and the `inferq-chaos` soak
//! run, so both drive the API the same way a real client does: POST the
//! image, then long-poll `GET /v1/jobs/{id}?wait=` until the job is terminal.

use std::fmt;
use std::path::Path;

use serde_json::Value;

/// An encoded image and its content type.
#[derive(Debug, Clone)]
pub struct Image {
    pub bytes: bytes::Bytes,
    pub content_type: &'static str,
}

impl Image {
    /// Reads an image file; the content type comes from the extension
    /// (`.png`, otherwise JPEG).
    pub fn from_file(path: &Path) -> std::io::Result<Self> {
        let png = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("png"));
        Ok(Image {
            bytes: std::fs::read(path)?.into(),
            content_type: if png { "image/png" } else { "image/jpeg" },
        })
    }

    /// A PNG already in memory.
    pub fn png(bytes: Vec<u8>) -> Self {
        Image {
            bytes: bytes.into(),
            content_type: "image/png",
        }
    }
}

/// The submit URL for `base`, naming `model` if given.
pub fn submit_url(base: &str, model: Option<&str>) -> String {
    match model {
        Some(m) => format!("{base}/v1/jobs?model={m}"),
        None => format!("{base}/v1/jobs"),
    }
}

/// Why a submit-and-wait round did not end in a succeeded job.
#[derive(Debug)]
pub enum LoadError {
    /// Connection or protocol failure.
    Http(reqwest::Error),
    /// The submission was answered with this status instead of 202.
    Rejected(u16),
    /// A 202 without a job id, or a poll answer that is not a job.
    Malformed(String),
    /// The job ended `failed` (with its error object) or `canceled`.
    JobFailed(Value),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Http(e) => write!(f, "http: {e}"),
            LoadError::Rejected(s) => write!(f, "submit answered {s}"),
            LoadError::Malformed(m) => write!(f, "unexpected answer: {m}"),
            LoadError::JobFailed(job) => {
                write!(f, "job {}: {}", job["status"], job["error"])
            }
        }
    }
}

impl std::error::Error for LoadError {}

impl From<reqwest::Error> for LoadError {
    fn from(e: reqwest::Error) -> Self {
        LoadError::Http(e)
    }
}

/// Submits `image` to `submit_url` and long-polls the job on `base` until it
/// is terminal; returns the succeeded job.
pub async fn one_job(
    client: &reqwest::Client,
    submit_url: &str,
    base: &str,
    image: &Image,
) -> Result<Value, LoadError> {
    let resp = client
        .post(submit_url)
        .header("content-type", image.content_type)
        .body(image.bytes.clone())
        .send()
        .await?;
    if resp.status() != 202 {
        return Err(LoadError::Rejected(resp.status().as_u16()));
    }
    let job: Value = resp.json().await?;
    let id = job["id"]
        .as_str()
        .ok_or_else(|| LoadError::Malformed(job.to_string()))?
        .to_owned();
    loop {
        let job: Value = client
            .get(format!("{base}/v1/jobs/{id}?wait=30"))
            .send()
            .await?
            .json()
            .await?;
        match job["status"].as_str() {
            Some("succeeded") => return Ok(job),
            Some("failed" | "canceled" | "expired" | "dead_lettered") => {
                return Err(LoadError::JobFailed(job));
            }
            Some("queued" | "running") => {}
            _ => return Err(LoadError::Malformed(job.to_string())),
        }
    }
}
