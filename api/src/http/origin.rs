//! Cross-site request refusal: a browser page on another origin must not be
//! able to make the API change state on the user's behalf.
//!
//! Why: the embedded `inferq` has keys off by default and gives the anonymous
//! caller every scope, so any web page the user visits could `fetch()` a
//! `POST http://127.0.0.1:8080/v1/...` (a "simple" request needs no CORS
//! preflight) and submit, cancel or replay jobs, or upload models. Browsers
//! always send `Origin` on such requests; curl and the SDKs do not. So a
//! state-changing request (POST, PUT, PATCH, DELETE) whose `Origin` is
//! neither the API's own (the same host and port as its `Host` header) nor
//! listed in `--allowed-origins` is refused with 403 before authentication
//! or the handler runs. Requests without `Origin`, and safe methods, pass.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::http::error::ApiError;

/// The origins allowed besides the API's own, normalised (lowercase, no
/// trailing `/`).
#[derive(Debug, Clone, Default)]
pub struct AllowedOrigins(Arc<Vec<String>>);

impl AllowedOrigins {
    /// From the `--allowed-origins` option.
    pub fn new(origins: &[String]) -> Self {
        AllowedOrigins(Arc::new(
            origins
                .iter()
                .map(|o| normalise(o))
                .filter(|o| !o.is_empty())
                .collect(),
        ))
    }

    /// Whether a request with this method and these headers may pass.
    /// `Err` carries the reason for the 403.
    pub fn check(&self, method: &Method, headers: &HeaderMap) -> Result<(), String> {
        if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
            return Ok(());
        }
        let Some(origin) = headers.get(header::ORIGIN) else {
            return Ok(());
        };
        let origin = origin.to_str().map(normalise).unwrap_or_default();
        if self.0.contains(&origin) {
            return Ok(());
        }
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(|h| h.trim().to_ascii_lowercase());
        let authority = origin.split_once("://").map(|(_, a)| a);
        match (authority, host) {
            (Some(a), Some(h)) if !a.is_empty() && a == h => Ok(()),
            _ => Err(format!(
                "cross-site request refused: Origin `{origin}` is not this server's origin \
                 and not in --allowed-origins (INFERQ_ALLOWED_ORIGINS)"
            )),
        }
    }
}

fn normalise(origin: &str) -> String {
    origin.trim().trim_end_matches('/').to_ascii_lowercase()
}

/// Middleware: 403 `forbidden` for a cross-site state-changing request.
pub async fn same_origin(
    State(allowed): State<AllowedOrigins>,
    req: Request,
    next: Next,
) -> Response {
    match allowed.check(req.method(), req.headers()) {
        Ok(()) => next.run(req).await,
        Err(reason) => {
            tracing::info!(method = %req.method(), path = %req.uri().path(), %reason,
                "request refused: cross-site");
            ApiError::Forbidden(reason).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(origin: Option<&str>, host: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_str(host).unwrap());
        if let Some(o) = origin {
            h.insert(header::ORIGIN, HeaderValue::from_str(o).unwrap());
        }
        h
    }

    #[test]
    fn same_origin_and_no_origin_pass_other_origins_do_not() {
        let none = AllowedOrigins::new(&[]);
        let post = Method::POST;
        assert!(none.check(&post, &headers(None, "127.0.0.1:8080")).is_ok());
        assert!(
            none.check(
                &post,
                &headers(Some("http://127.0.0.1:8080"), "127.0.0.1:8080")
            )
            .is_ok()
        );
        for evil in [
            "https://evil.example",
            "http://127.0.0.1:8081",
            "null",
            "http://127.0.0.1:8080.evil.example",
        ] {
            let err = none
                .check(&post, &headers(Some(evil), "127.0.0.1:8080"))
                .unwrap_err();
            assert!(err.contains("cross-site"), "{evil}: {err}");
        }
        for m in [Method::PUT, Method::DELETE, Method::PATCH] {
            assert!(
                none.check(&m, &headers(Some("https://evil.example"), "localhost:8080"))
                    .is_err()
            );
        }
        // Reads are not state-changing.
        assert!(
            none.check(
                &Method::GET,
                &headers(Some("https://evil.example"), "localhost:8080")
            )
            .is_ok()
        );
    }

    #[test]
    fn configured_origins_pass() {
        let allowed = AllowedOrigins::new(&["https://Console.Example.com/".into()]);
        assert!(
            allowed
                .check(
                    &Method::POST,
                    &headers(Some("https://console.example.com"), "api.internal:8080")
                )
                .is_ok()
        );
        assert!(
            allowed
                .check(
                    &Method::POST,
                    &headers(Some("https://other.example.com"), "api.internal:8080")
                )
                .is_err()
        );
    }
}
