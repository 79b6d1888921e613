//! The web console's static files through the real router (`oneshot`,
//! in-memory backends): types, cache headers, and no key needed.

mod common;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use common::*;
use http_body_util::BodyExt;
use inferq_api::app;
use tower::ServiceExt;

const READER: &str = "reader-secret-0123456789abcd";

async fn raw(h: &Harness, req: Request<Body>) -> (StatusCode, HeaderMap, Vec<u8>) {
    let resp = app(h.state.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    (status, headers, body)
}

/// The `?v=` the page puts on its assets.
fn version_in(page: &str) -> String {
    let at = page
        .find("/console/app.js?v=")
        .expect("the page loads app.js")
        + 18;
    page[at..]
        .chars()
        .take_while(char::is_ascii_hexdigit)
        .collect()
}

#[tokio::test]
async fn the_page_and_its_assets_are_served_with_types_and_cache_headers() {
    let h = harness(1 << 20, 1 << 16);
    let (status, headers, body) = raw(&h, get("/")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
    assert_eq!(headers[header::CACHE_CONTROL], "no-cache");
    assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    let csp = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(csp.contains("script-src 'self'") && csp.contains("connect-src 'self'"));
    // The Video file mode plays a local file from a blob: URL.
    assert!(csp.contains("media-src 'self' blob:"), "{csp}");
    let page = String::from_utf8(body).unwrap();
    assert!(page.contains("<title>InferQ console</title>"));
    // Everything the page loads or links to is on this origin (no CDN).
    for attr in ["src=\"", "href=\""] {
        for (at, _) in page.match_indices(attr) {
            let value = &page[at + attr.len()..];
            assert!(
                value.starts_with('/') || value.starts_with('#'),
                "{attr}{}",
                &value[..value.find('"').unwrap()]
            );
        }
    }
    let etag = headers[header::ETAG].clone();

    // Revalidation: 304 without a body.
    let again = Request::get("/")
        .header(header::IF_NONE_MATCH, etag.clone())
        .body(Body::empty())
        .unwrap();
    let (status, headers, body) = raw(&h, again).await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);
    assert_eq!(headers[header::ETAG], etag);
    assert!(body.is_empty());

    let v = version_in(&page);
    assert_eq!(v.len(), 16, "{page}");
    for (file, ct) in [
        ("app.js", "text/javascript; charset=utf-8"),
        ("api.js", "text/javascript; charset=utf-8"),
        ("draw.js", "text/javascript; charset=utf-8"),
        ("stats.js", "text/javascript; charset=utf-8"),
        ("meter.js", "text/javascript; charset=utf-8"),
        ("onnxinfo.js", "text/javascript; charset=utf-8"),
        ("stream.js", "text/javascript; charset=utf-8"),
        ("addmodel.js", "text/javascript; charset=utf-8"),
        ("app.css", "text/css; charset=utf-8"),
    ] {
        // The versioned URL the page uses is immutable; any other revalidates.
        let (status, headers, body) = raw(&h, get(&format!("/console/{file}?v={v}"))).await;
        assert_eq!(status, StatusCode::OK, "{file}");
        assert_eq!(headers[header::CONTENT_TYPE], ct, "{file}");
        assert_eq!(
            headers[header::CACHE_CONTROL],
            "public, max-age=31536000, immutable"
        );
        assert!(!body.is_empty());
        let (_, headers, _) = raw(&h, get(&format!("/console/{file}?v=old"))).await;
        assert_eq!(headers[header::CACHE_CONTROL], "no-cache", "{file}");
    }
    let (status, headers, _) = raw(&h, get("/console/icon.svg")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "image/svg+xml");
    let missing = send(&h.state, get("/console/nope.js")).await;
    assert_problem(&missing, StatusCode::NOT_FOUND, "invalid_argument");
}

#[tokio::test]
async fn the_console_is_outside_auth_and_its_api_calls_are_not() {
    let h = auth_harness(&[&format!("dashboards:read:{READER}")]);
    for path in ["/", "/console/app.js", "/console/app.css"] {
        let (status, _, _) = raw(&h, get(path)).await;
        assert_eq!(status, StatusCode::OK, "{path}");
    }
    // The page's API calls are not: without a key they get 401.
    let anonymous = send(&h.state, get("/v1/models")).await;
    assert_problem(&anonymous, StatusCode::UNAUTHORIZED, "unauthorized");
    let (status, _, body) = send(&h.state, bearer(get("/v1/models"), READER)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // A POST to the page is not a way around anything.
    let posted = send(&h.state, post("/", "text/plain", b"x".to_vec())).await;
    assert_eq!(posted.0, StatusCode::METHOD_NOT_ALLOWED);
}
