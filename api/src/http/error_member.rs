//! The `{"error": "…"}` member the standard inference protocols put on a
//! failure, on every error answered under their paths.
//!
//! KServe v2 (`/v2/…`) and TF Serving (`/v1/models/…:predict`) clients —
//! `tritonclient`, the KServe SDK, TF Serving's REST clients — read a
//! failure's message from the body's `error` member. InferQ's errors are
//! problem+json bodies built in one place ([`crate::http::error`]), and
//! many answers on those paths are made before a handler runs: 401/403 by
//! authentication and the origin check, 503 by the in-flight limit, 413/503
//! by the body limit and budget, 404/405 for a path or method no route
//! serves. [`add_error_member`] wraps the whole router and gives every one
//! of them the member: a problem body keeps all its fields and gains
//! `error` (its `detail`), any other body becomes `{"error": "<its text>"}`.
//! Other paths are untouched, so InferQ's own clients see no difference.
//! Error bodies are small; one larger than [`MAX_ERROR_BODY`] is replaced by
//! the status's reason rather than buffered.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use http_body_util::{BodyExt, Limited};
use serde_json::{Map, Value};

/// Largest error body rewritten; past it the message is the status reason.
pub const MAX_ERROR_BODY: usize = 64 * 1024;

/// Whether `path` is under the KServe v2 protocol's prefix.
pub fn is_v2_path(path: &str) -> bool {
    path == "/v2" || path.starts_with("/v2/")
}

/// Whether `path` is a TF Serving predict call.
pub fn is_predict_path(path: &str) -> bool {
    let ends = |suffix: &str| {
        path.len() >= suffix.len()
            && path.as_bytes()[path.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
    };
    path.starts_with("/v1/models/") && (ends(":predict") || ends("%3apredict"))
}

/// Middleware: adds `error` to every 4xx/5xx answer on a v2 or `:predict`
/// path that lacks it.
pub async fn add_error_member(req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let protocol = is_v2_path(path) || is_predict_path(path);
    let resp = next.run(req).await;
    let status = resp.status();
    if !protocol || !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    with_error_member(resp).await
}

async fn with_error_member(resp: Response) -> Response {
    let (mut parts, body) = resp.into_parts();
    let bytes = Limited::new(body, MAX_ERROR_BODY)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let body = match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) if map.contains_key("error") => {
            return Response::from_parts(parts, Body::from(bytes));
        }
        Ok(Value::Object(mut map)) => {
            let message = ["detail", "title"]
                .iter()
                .find_map(|k| map.get(*k).and_then(Value::as_str))
                .map(str::to_owned)
                .unwrap_or_else(|| reason(parts.status));
            map.insert("error".into(), Value::String(message));
            Value::Object(map)
        }
        _ => {
            let text = String::from_utf8_lossy(&bytes).trim().to_owned();
            let message = if text.is_empty() {
                reason(parts.status)
            } else {
                text
            };
            parts.headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            let mut map = Map::new();
            map.insert("error".into(), Value::String(message));
            Value::Object(map)
        }
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    Response::from_parts(parts, Body::from(bytes))
}

fn reason(status: StatusCode) -> String {
    status
        .canonical_reason()
        .unwrap_or("request failed")
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_protocols_paths_count() {
        assert!(is_v2_path("/v2"));
        assert!(is_v2_path("/v2/models/x/infer"));
        assert!(!is_v2_path("/v2x"));
        assert!(!is_v2_path("/v1/jobs"));
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

    async fn rewrite(resp: Response) -> (StatusCode, Value) {
        let resp = with_error_member(resp).await;
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn problems_keep_their_fields_and_text_becomes_json() {
        let problem = Response::builder()
            .status(StatusCode::UNAUTHORIZED)
            .body(Body::from(r#"{"title":"Unauthorized","detail":"no key"}"#))
            .unwrap();
        let (status, body) = rewrite(problem).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(body["error"], "no key");
        assert_eq!(body["title"], "Unauthorized");
        let text = Response::builder()
            .status(StatusCode::PAYLOAD_TOO_LARGE)
            .body(Body::from("length limit exceeded"))
            .unwrap();
        assert_eq!(rewrite(text).await.1["error"], "length limit exceeded");
        let empty = Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(Body::empty())
            .unwrap();
        assert_eq!(rewrite(empty).await.1["error"], "Not Found");
    }
}
