//! The few HTTP calls the client makes, and what their failures mean.
//!
//! An answer of 429 or 503 (the API's admission control and its "broker or
//! store unavailable") is retried after the `Retry-After` it carries (1 s
//! when it has none, at most [`MAX_RETRY_AFTER`] each time), up to
//! `--retries` times. That is safe for submissions because the client
//! sends each with its own `Idempotency-Key`: a retry of a request that was
//! accepted after all returns the same job.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::Value;

/// The longest single wait a `Retry-After` may ask for.
pub(crate) const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0}")]
    Input(String),
    #[error("cannot reach {url}: {message}")]
    Connect { url: String, message: String },
    /// The server answered with a problem (4xx/5xx).
    #[error("{status} {code}: {detail}")]
    Refused {
        status: u16,
        code: String,
        detail: String,
    },
}

/// A client of one InferQ API.
pub struct Api {
    client: reqwest::Client,
    base: String,
    /// Retries of a 429/503 answer per request.
    retries: u32,
    /// Requests sent again after a 429/503 (for the summary).
    retried: AtomicU64,
}

impl Api {
    pub fn new(base: &str, key: Option<&str>) -> Result<Self, ClientError> {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(k) = key {
            let v = reqwest::header::HeaderValue::from_str(&format!("Bearer {k}"))
                .map_err(|_| ClientError::Input("the API key is not a valid header".into()))?;
            headers.insert(reqwest::header::AUTHORIZATION, v);
        }
        let client = reqwest::Client::builder()
            .default_headers(headers)
            .user_agent(concat!("inferq-client/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClientError::Input(e.to_string()))?;
        Ok(Api {
            client,
            base: base.trim_end_matches('/').to_owned(),
            retries: 5,
            retried: AtomicU64::new(0),
        })
    }

    /// Retries of a 429/503 answer per request (default 5).
    pub fn with_retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }

    /// Requests sent again after a 429/503 so far.
    pub fn retried(&self) -> u64 {
        self.retried.load(Ordering::Relaxed)
    }

    pub async fn get(&self, path: &str) -> Result<Value, ClientError> {
        self.send(self.client.get(self.url(path))).await
    }

    pub async fn post_json(
        &self,
        path: &str,
        body: &Value,
        idempotency_key: Option<&str>,
    ) -> Result<Value, ClientError> {
        let mut req = self.client.post(self.url(path)).json(body);
        if let Some(k) = idempotency_key {
            req = req.header("idempotency-key", k);
        }
        self.send(req).await
    }

    /// Sends image bytes as the raw body; `options` (model, version,
    /// top_k, output, webhook) go into the query string.
    pub async fn post_image(
        &self,
        options: &Value,
        bytes: Vec<u8>,
        idempotency_key: Option<&str>,
    ) -> Result<Value, ClientError> {
        let mut query: Vec<(&str, String)> = Vec::new();
        for k in ["model", "version", "top_k", "fps", "max_frames"] {
            if let Some(v) = options.get(k) {
                query.push((k, v.as_str().map(str::to_owned).unwrap_or(v.to_string())));
            }
        }
        if let Some(u) = options["output"]["uri"].as_str() {
            query.push(("output_uri", u.to_owned()));
        }
        if let Some(u) = options["webhook"]["url"].as_str() {
            query.push(("webhook_url", u.to_owned()));
        }
        let url = reqwest::Url::parse_with_params(&self.url("/v1/jobs"), &query)
            .map_err(|e| ClientError::Input(format!("{}: {e}", self.base)))?;
        let mut req = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(bytes);
        if let Some(k) = idempotency_key {
            req = req.header("idempotency-key", k);
        }
        self.send(req).await
    }

    /// The bytes and content type of a job's image output.
    pub async fn get_bytes(&self, path: &str) -> Result<(Vec<u8>, String), ClientError> {
        let resp = self.execute(self.client.get(self.url(path))).await?;
        let status = resp.status();
        if !status.is_success() {
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            return Err(refused(status, &body));
        }
        let content_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/octet-stream")
            .to_owned();
        let bytes = resp.bytes().await.map_err(|e| ClientError::Connect {
            url: self.base.clone(),
            message: e.to_string(),
        })?;
        Ok((bytes.to_vec(), content_type))
    }

    /// `PUT` a multipart form (model registration).
    pub async fn put_form(
        &self,
        path: &str,
        form: reqwest::multipart::Form,
    ) -> Result<Value, ClientError> {
        self.send(self.client.put(self.url(path)).multipart(form))
            .await
    }

    /// The base URL requests go to.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<Value, ClientError> {
        let resp = self.execute(req).await?;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(body);
        }
        Err(refused(status, &body))
    }

    /// Sends `req`, again after each 429/503 while retries are left.
    async fn execute(
        &self,
        mut req: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ClientError> {
        let mut left = self.retries;
        loop {
            let again = if left > 0 { req.try_clone() } else { None };
            let resp = req.send().await.map_err(|e| ClientError::Connect {
                url: self.base.clone(),
                message: e.to_string(),
            })?;
            let status = resp.status().as_u16();
            match (again, status) {
                (Some(next), 429 | 503) => {
                    let wait = retry_after(resp.headers());
                    eprintln!(
                        "inferq: {status} from {}; retrying in {:.1} s ({left} retries left)",
                        self.base,
                        wait.as_secs_f64()
                    );
                    self.retried.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(wait).await;
                    left -= 1;
                    req = next;
                }
                _ => return Ok(resp),
            }
        }
    }
}

/// A problem answer as an error.
fn refused(status: reqwest::StatusCode, body: &Value) -> ClientError {
    ClientError::Refused {
        status: status.as_u16(),
        code: body["code"].as_str().unwrap_or("error").to_owned(),
        detail: body["detail"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| body.to_string()),
    }
}

/// The wait a `Retry-After` asks for in seconds (an HTTP date is not worth
/// parsing here: InferQ sends seconds), 1 s without one, capped.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Duration {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map_or(Duration::from_secs(1), Duration::from_secs_f64)
        .min(MAX_RETRY_AFTER)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_read_in_seconds_and_capped() {
        let mut h = reqwest::header::HeaderMap::new();
        assert_eq!(retry_after(&h), Duration::from_secs(1));
        h.insert(reqwest::header::RETRY_AFTER, "3".parse().unwrap());
        assert_eq!(retry_after(&h), Duration::from_secs(3));
        h.insert(reqwest::header::RETRY_AFTER, "86400".parse().unwrap());
        assert_eq!(retry_after(&h), MAX_RETRY_AFTER);
        h.insert(reqwest::header::RETRY_AFTER, "-1".parse().unwrap());
        assert_eq!(retry_after(&h), Duration::from_secs(1));
    }
}
