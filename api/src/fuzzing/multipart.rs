//! Fuzz harness body of target `multipart`: the `multipart/form-data`
//! intake of `POST /v1/jobs`, through [`encodings::parse`] exactly as the
//! handler calls it (axum's `Multipart` extractor, then the form fields).
//!
//! Input layout: the first line is the `Content-Type` value (seeds use
//! `multipart/form-data; boundary=…`, so the boundary parameter is fuzzed
//! too), the rest is the body. An input without a newline is all body,
//! sent with a fixed boundary.

use axum::body::Body;
use axum::extract::Request;
use axum::http::header;

use crate::intake::encodings::{self, JobOptions, Payload};

/// `multipart`: a form is refused with a 4xx error or gives one image no
/// larger than the body and options within the request limits. Returns
/// whether it was accepted.
pub fn multipart(data: &[u8]) -> bool {
    let (content_type, body) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&b"multipart/form-data; boundary=X"[..], data),
    };
    let Ok(request) = Request::builder()
        .method("POST")
        .uri("/v1/jobs")
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from(body.to_vec()))
    else {
        // Not a valid header value: no client can send it.
        return false;
    };
    let limits = super::limits();
    let parsed = super::block_on(encodings::parse(request, JobOptions::default(), &limits));
    let submission = match parsed {
        Err(e) => {
            assert!(e.status().is_client_error(), "{e:?}");
            return false;
        }
        Ok(s) => s,
    };
    // A form or a raw body gives an image; a JSON body (the fuzzer may
    // change the content type) any payload, its image decoded from base64.
    if let Payload::Image { bytes, .. } = &submission.payload {
        assert!(
            bytes.len() <= body.len(),
            "{} > {}",
            bytes.len(),
            body.len()
        );
    }
    let o = &submission.options;
    for uri in [&o.output_uri, &o.webhook_url, &o.model_uri]
        .into_iter()
        .flatten()
    {
        assert!(uri.len() <= limits.max_uri_bytes, "{}", uri.len());
    }
    true
}
