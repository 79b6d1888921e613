//! Reading request bodies under a size limit and the body budget.
//!
//! Every buffered body of the API (raw and JSON submissions, `:predict`,
//! KServe `/infer`, storage events, batch and registration requests) is read
//! here, so this is where a body reserves its bytes in the in-flight body
//! budget ([`crate::http::body_budget`]) before any of it is buffered.

use std::time::Duration;

use axum::body::Body;
use axum::http::header;
use axum::http::request::Parts;
use bytes::Bytes;
use http_body_util::BodyExt;

use crate::http::body_budget::{BodyCharge, next_step};
use crate::http::error::ApiError;

/// Bytes of an oversized body we still read (and discard) before answering
/// 413. Answering while the client is still sending makes the kernel reset
/// the connection, and most clients then report a broken pipe instead of the
/// 413; draining a bounded amount lets them read the answer.
const DRAIN_CAP: u64 = 32 * 1024 * 1024;
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Reads the whole body of the request whose head is `parts`, refusing it
/// past `limit` bytes. The bytes are reserved in the request's
/// [`BodyCharge`] (when the router gave it one) before they are buffered.
pub async fn read_body(parts: &Parts, mut body: Body, limit: usize) -> Result<Bytes, ApiError> {
    let too_large = || ApiError::PayloadTooLarge { limit };
    let charge = parts.extensions.get::<BodyCharge>();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(n) = declared {
        if n > limit as u64 + DRAIN_CAP {
            return Err(too_large());
        }
        if n > limit as u64 {
            drain(body).await;
            return Err(too_large());
        }
        if let Some(charge) = charge
            && let Err(e) = charge.reserve(n).await
        {
            drain(body).await;
            return Err(e);
        }
    }
    let mut reserved = declared.unwrap_or(0);
    let mut buf = bytes::BytesMut::with_capacity(declared.unwrap_or(0) as usize);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            ApiError::InvalidArgument(format!("the request body could not be read: {e}"))
        })?;
        if let Ok(data) = frame.into_data() {
            let needed = buf.len() + data.len();
            if needed > limit {
                drain(body).await;
                return Err(too_large());
            }
            if needed as u64 > reserved
                && let Some(charge) = charge
            {
                // Chunked (or longer than declared, which hyper refuses
                // anyway): grow the reservation ahead of the buffer.
                reserved = next_step(reserved, needed as u64, limit as u64);
                if let Err(e) = charge.reserve(reserved).await {
                    drop(buf);
                    drain(body).await;
                    return Err(e);
                }
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
}

/// Reads and discards what is left of a body, within [`DRAIN_CAP`] and
/// [`DRAIN_TIMEOUT`].
async fn drain(mut body: Body) {
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, async {
        let mut seen = 0u64;
        while let Some(Ok(frame)) = body.frame().await {
            if let Ok(data) = frame.into_data() {
                seen += data.len() as u64;
                if seen > DRAIN_CAP {
                    break;
                }
            }
        }
    })
    .await;
}
