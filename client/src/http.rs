//! The few HTTP calls the client makes, and what their failures mean.

use serde_json::Value;

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
        })
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
    pub async fn post_image(&self, options: &Value, bytes: Vec<u8>) -> Result<Value, ClientError> {
        let mut query: Vec<(&str, String)> = Vec::new();
        for k in ["model", "version", "top_k"] {
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
        let req = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(bytes);
        self.send(req).await
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
        let resp = req.send().await.map_err(|e| ClientError::Connect {
            url: self.base.clone(),
            message: e.to_string(),
        })?;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(body);
        }
        Err(ClientError::Refused {
            status: status.as_u16(),
            code: body["code"].as_str().unwrap_or("error").to_owned(),
            detail: body["detail"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| body.to_string()),
        })
    }
}
