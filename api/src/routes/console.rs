//! The web console: a static page at `/` for trying models in a browser
//! (an image or a whole clip as one video job, or the camera and a video
//! file frame by frame) and for adding a model through the registration
//! route.
//!
//! The page, its stylesheet and its scripts are compiled into the binary
//! (`include_bytes!` of `api/console/`), so there is nothing to deploy next
//! to it and nothing is fetched from a CDN. The routes sit outside API-key
//! authentication: the files are the same for everyone and reveal nothing;
//! the page's own calls to `/v1/…` carry the key the user types in, and get
//! 401 without one like any other client.
//!
//! Caching: the page is `no-cache` (always revalidated, so an upgrade shows
//! at once) and names its assets with `?v=<content hash>`; a request with the
//! current hash is `immutable` for a year, any other is `no-cache`. Every
//! response has a strong `ETag` and answers `If-None-Match` with 304. The
//! page gets a Content-Security-Policy that allows scripts, styles and API
//! calls from this origin only.

use std::sync::LazyLock;

use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

/// One embedded file.
struct Asset {
    content_type: &'static str,
    bytes: Vec<u8>,
    etag: HeaderValue,
}

impl Asset {
    fn new(content_type: &'static str, bytes: Vec<u8>) -> Self {
        let hash = hex16(&bytes);
        Asset {
            content_type,
            bytes,
            etag: HeaderValue::from_str(&format!("\"{hash}\"")).expect("hex is a header value"),
        }
    }
}

/// The first 16 hex digits of a SHA-256: enough to tell versions apart.
fn hex16(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The static files after `/console/`, with their media types.
const FILES: &[(&str, &str, &[u8])] = &[
    (
        "app.css",
        "text/css; charset=utf-8",
        include_bytes!("../../console/app.css"),
    ),
    (
        "api.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../console/api.js"),
    ),
    (
        "draw.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../console/draw.js"),
    ),
    (
        "stats.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../console/stats.js"),
    ),
    (
        "meter.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../console/meter.js"),
    ),
    (
        "onnxinfo.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../console/onnxinfo.js"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../console/app.js"),
    ),
    (
        "stream.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../console/stream.js"),
    ),
    (
        "addmodel.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../console/addmodel.js"),
    ),
    (
        "icon.svg",
        "image/svg+xml",
        include_bytes!("../../console/icon.svg"),
    ),
];

const INDEX: &str = include_str!("../../console/index.html");

/// What the page may load: everything from this origin; images also from
/// `blob:`/`data:` (a dropped file, an output image) and any http(s) URL (a
/// picture the user names by its address); media from `blob:` (a video file
/// the user chose, played locally in the Video file mode; the camera's
/// stream is attached directly and needs no source).
const CSP: &str = "default-src 'self'; img-src 'self' blob: data: https: http:; \
     media-src 'self' blob:; style-src 'self'; script-src 'self'; connect-src 'self'; object-src 'none'; \
     base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

struct Console {
    /// The hash of every asset together: the `?v=` the page uses.
    version: String,
    index: Asset,
    files: Vec<(&'static str, Asset)>,
}

static CONSOLE: LazyLock<Console> = LazyLock::new(|| {
    let files: Vec<(&'static str, Asset)> = FILES
        .iter()
        .map(|(name, ct, bytes)| (*name, Asset::new(ct, bytes.to_vec())))
        .collect();
    let all: Vec<u8> = FILES
        .iter()
        .flat_map(|(_, _, b)| b.iter().copied())
        .collect();
    let version = hex16(&all);
    let page = INDEX.replace("{{v}}", &version);
    Console {
        index: Asset::new("text/html; charset=utf-8", page.into_bytes()),
        version,
        files,
    }
});

/// The console page. Routed outside authentication (see [`crate::app`]).
#[utoipa::path(get, path = "/", tag = "console",
    responses((status = 200, description = "The web console (HTML)", body = crate::http::media::Html, content_type = "text/html"),
        (status = 304, description = "Not modified (If-None-Match)")))]
pub async fn index(headers: HeaderMap) -> Response {
    let mut resp = respond(&CONSOLE.index, &headers, false);
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    resp
}

/// One of the page's scripts, its stylesheet or its icon.
#[utoipa::path(get, path = "/console/{file}", tag = "console",
    params(("file" = String, Path, description = "app.js, api.js, draw.js, stats.js, meter.js, onnxinfo.js, stream.js, addmodel.js, app.css or icon.svg"),
        ("v" = Option<String>, Query, description = "The content hash the page adds; the current one makes the answer immutable")),
    responses((status = 200, description = "The file", content((String = "text/javascript"), (String = "text/css"), (String = "image/svg+xml"))),
        (status = 304, description = "Not modified (If-None-Match)"),
        (status = 404, description = "No such file", body = crate::http::error::Problem, content_type = "application/problem+json")))]
pub async fn file(
    axum::extract::Path(name): axum::extract::Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let Some((_, asset)) = CONSOLE.files.iter().find(|(n, _)| *n == name) else {
        return crate::http::error::ApiError::RouteNotFound(uri.path().to_owned()).into_response();
    };
    let current = uri
        .query()
        .unwrap_or_default()
        .split('&')
        .any(|kv| kv.strip_prefix("v=") == Some(CONSOLE.version.as_str()));
    respond(asset, &headers, current)
}

/// The asset, or 304 when the client holds it already.
fn respond(asset: &Asset, headers: &HeaderMap, immutable: bool) -> Response {
    let cache = if immutable {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let fresh = headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|tag| {
            let tag = tag.trim();
            tag == "*" || tag.trim_start_matches("W/") == asset.etag
        });
    let common = [
        (header::ETAG, asset.etag.clone()),
        (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
    ];
    if fresh {
        return (StatusCode::NOT_MODIFIED, common).into_response();
    }
    (
        common,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        )],
        asset.bytes.clone(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_names_every_script_and_style_with_the_version() {
        let page = String::from_utf8(CONSOLE.index.bytes.clone()).unwrap();
        assert!(!page.contains("{{v}}"));
        for (name, _, _) in FILES {
            if name.ends_with(".js") || name.ends_with(".css") {
                let want = format!("/console/{name}?v={}", CONSOLE.version);
                assert!(page.contains(&want), "{want} missing from the page");
            }
        }
    }
}
