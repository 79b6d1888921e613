//! TF Serving's `{"error": "…"}` member on every failed `:predict` answer.
//!
//! TF Serving's REST clients read a failure's message from the body's
//! `error` member. InferQ's errors are problem+json bodies built in one
//! place ([`crate::http::error`]), and some of them on a `:predict` path
//! come from middleware that knows nothing of the route (authentication,
//! the in-flight limit, the body budget, the origin check, the 404 and 405
//! fallbacks). This layer wraps all of them: on a `/v1/models/…:predict`
//! path, an error answer that is a JSON object gains `error` (its `detail`)
//! when it lacks one, and any other error body becomes `{"error": text}`.
//! Every problem member is kept, so InferQ clients see no difference.
//!
//! Error bodies are small; one larger than [`MAX_ERROR_BODY`] is not
//! buffered but replaced by its status's reason.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use serde_json::{Map, Value};

/// The largest error body read to add the member.
pub const MAX_ERROR_BODY: usize = 64 * 1024;

/// Whether a request path is a TF Serving predict call.
pub fn is_predict_path(path: &str) -> bool {
    let ends = |suffix: &str| {
        path.len() >= suffix.len()
            && path.as_bytes()[path.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
    };
    path.starts_with("/v1/models/") && (ends(":predict") || ends("%3apredict"))
}

/// The middleware: passes everything through, adding `error` to the error
/// answers of `:predict` paths.
pub async fn add_error_member(req: Request, next: Next) -> Response {
    let predict = is_predict_path(req.uri().path());
    let resp = next.run(req).await;
    let status = resp.status();
    if !predict || !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_ERROR_BODY)
        .await
        .unwrap_or_default();
    let reason = || status.canonical_reason().unwrap_or("error").to_owned();
    let body = match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(mut fields)) => {
            if !fields.contains_key("error") {
                let message = fields
                    .get("detail")
                    .or_else(|| fields.get("title"))
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .unwrap_or_else(reason);
                fields.insert("error".into(), Value::String(message));
            }
            Value::Object(fields)
        }
        _ => {
            let text = String::from_utf8_lossy(&bytes).trim().to_owned();
            let mut fields = Map::new();
            let message = if text.is_empty() { reason() } else { text };
            fields.insert("error".into(), Value::String(message));
            parts.headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            Value::Object(fields)
        }
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    let encoded = serde_json::to_vec(&body).expect("a JSON value serialises");
    Response::from_parts(parts, Body::from(encoded))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn predict_paths_are_recognised() {
        for p in [
            "/v1/models/m:predict",
            "/v1/models/m/versions/2:predict",
            "/v1/models/m%3Apredict",
        ] {
            assert!(is_predict_path(p), "{p}");
        }
        for p in ["/v1/models/m", "/v1/jobs", "/v2/models/m/infer", "/predict"] {
            assert!(!is_predict_path(p), "{p}");
        }
    }
}
