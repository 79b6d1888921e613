//! `Content-Encoding: gzip | deflate` request bodies, decoded under the
//! same size limit and body budget as plain ones, and `gzip | deflate`
//! response bodies for clients that accept them.
//!
//! `tritonclient` compresses KServe v2 requests and asks for compressed
//! answers when told to (`request_compression_algorithm`,
//! `response_compression_algorithm`). A compressed body is small on the
//! wire and large in memory — a few KiB of gzip can inflate to gigabytes —
//! so the route's size limit bounds what it *decodes to*: [`read_decoded`]
//! reads the compressed body with [`crate::http::body::read_body`] (limit
//! and budget as usual), then inflates it in [`CHUNK`]-sized steps,
//! reserving each step in the request's [`BodyCharge`] before it is
//! written and answering `413` the moment the output would pass the limit.
//! Memory for one request therefore stays within the compressed body plus
//! the limit, all of it reserved in the budget; a zip bomb costs at most
//! the limit's worth of inflating.
//!
//! `deflate` is the zlib format (RFC 9110 §8.4.1.2), which is what
//! `tritonclient` and browsers send. Other codings are `415`.

use std::io::Read;

use axum::body::Body;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use bytes::{Bytes, BytesMut};

use crate::http::body::read_body;
use crate::http::body_budget::{BodyCharge, next_step};
use crate::http::error::ApiError;

/// Bytes inflated between two checks of the limit and the reservation.
pub const CHUNK: usize = 64 * 1024;

/// Response bodies smaller than this are sent as they are: compressing
/// them saves nothing worth the CPU.
pub const MIN_COMPRESSED_RESPONSE: usize = 1024;

/// A content coding InferQ reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    Gzip,
    /// zlib-wrapped deflate.
    Deflate,
}

impl Coding {
    fn token(self) -> &'static str {
        match self {
            Coding::Gzip => "gzip",
            Coding::Deflate => "deflate",
        }
    }
}

/// The request body's coding: `None` for identity, 415 for one InferQ does
/// not read (or for several stacked codings).
pub fn request_coding(headers: &HeaderMap) -> Result<Option<Coding>, ApiError> {
    let Some(value) = headers.get(header::CONTENT_ENCODING) else {
        return Ok(None);
    };
    let value = value.to_str().unwrap_or("").trim().to_ascii_lowercase();
    match value.as_str() {
        "" | "identity" => Ok(None),
        "gzip" | "x-gzip" => Ok(Some(Coding::Gzip)),
        "deflate" => Ok(Some(Coding::Deflate)),
        other => Err(ApiError::UnsupportedMediaType(format!(
            "Content-Encoding `{other}` is not supported; send gzip, deflate or an uncompressed body"
        ))),
    }
}

/// Reads the request body and, when it is compressed, inflates it: at
/// most `limit` bytes either way, reserved in the body budget first.
pub async fn read_decoded(parts: &Parts, body: Body, limit: usize) -> Result<Bytes, ApiError> {
    let coding = request_coding(&parts.headers)?;
    let raw = read_body(parts, body, limit).await?;
    match coding {
        None => Ok(raw),
        Some(coding) => inflate(coding, raw, limit, parts.extensions.get::<BodyCharge>()).await,
    }
}

async fn inflate(
    coding: Coding,
    raw: Bytes,
    limit: usize,
    charge: Option<&BodyCharge>,
) -> Result<Bytes, ApiError> {
    let compressed = raw.len() as u64;
    let mut decoder: Box<dyn Read + Send> = match coding {
        Coding::Gzip => Box::new(flate2::read::MultiGzDecoder::new(&raw[..])),
        Coding::Deflate => Box::new(flate2::read::ZlibDecoder::new(&raw[..])),
    };
    let mut out = BytesMut::new();
    // The compressed body is already reserved; the output is reserved on
    // top of it, ahead of being written.
    let mut reserved = 0u64;
    loop {
        if out.len() >= limit {
            // One byte more decides between "exactly the limit" and "over".
            let mut probe = [0u8; 1];
            return match decoder.read(&mut probe) {
                Ok(0) => Ok(out.freeze()),
                Ok(_) => Err(ApiError::PayloadTooLarge { limit }),
                Err(e) => Err(corrupt(coding, e)),
            };
        }
        let want = CHUNK.min(limit - out.len());
        let needed = (out.len() + want) as u64;
        if needed > reserved
            && let Some(charge) = charge
        {
            reserved = next_step(reserved, needed, limit as u64);
            charge.reserve(compressed + reserved).await?;
        }
        let start = out.len();
        out.resize(start + want, 0);
        let n = decoder
            .read(&mut out[start..])
            .map_err(|e| corrupt(coding, e))?;
        out.truncate(start + n);
        if n == 0 {
            return Ok(out.freeze());
        }
    }
}

fn corrupt(coding: Coding, e: std::io::Error) -> ApiError {
    ApiError::InvalidArgument(format!(
        "the {} request body could not be decompressed: {e}",
        coding.token()
    ))
}

/// The coding to answer with, from the request's `Accept-Encoding`: the
/// acceptable one with the highest weight, gzip first on a tie; `None`
/// when neither is acceptable.
pub fn response_coding(headers: &HeaderMap) -> Option<Coding> {
    let mut best: Option<(Coding, f32)> = None;
    for value in headers.get_all(header::ACCEPT_ENCODING) {
        let Ok(value) = value.to_str() else { continue };
        for item in value.split(',') {
            let mut fields = item.split(';');
            let name = fields.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = fields
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            let coding = match name.as_str() {
                "gzip" | "x-gzip" => Coding::Gzip,
                "deflate" => Coding::Deflate,
                _ => continue,
            };
            if q > 0.0
                && best.is_none_or(|(c, bq)| {
                    q > bq || (q == bq && coding == Coding::Gzip && c != Coding::Gzip)
                })
            {
                best = Some((coding, q));
            }
        }
    }
    best.map(|(c, _)| c)
}

/// Compresses `body` for a client that sent `request_headers`, setting
/// `Content-Encoding` and `Vary` in `headers`; small bodies and clients
/// that accept neither coding get `body` as it is.
pub async fn encode_response(
    request_headers: &HeaderMap,
    headers: &mut HeaderMap,
    body: Vec<u8>,
) -> Result<Vec<u8>, ApiError> {
    headers.append(header::VARY, HeaderValue::from_static("accept-encoding"));
    let Some(coding) = response_coding(request_headers) else {
        return Ok(body);
    };
    if body.len() < MIN_COMPRESSED_RESPONSE {
        return Ok(body);
    }
    let compressed = tokio::task::spawn_blocking(move || {
        let compressed = compress(coding, &body);
        (body, compressed)
    })
    .await;
    match compressed {
        Ok((_, Ok(bytes))) => {
            headers.insert(
                header::CONTENT_ENCODING,
                HeaderValue::from_static(coding.token()),
            );
            headers.remove(header::CONTENT_LENGTH);
            Ok(bytes)
        }
        // Writing into memory does not fail; should it, send it as it is.
        Ok((body, Err(_))) => Ok(body),
        Err(e) => Err(ApiError::Internal(format!("compressing the answer: {e}"))),
    }
}

fn compress(coding: Coding, body: &[u8]) -> std::io::Result<Vec<u8>> {
    use std::io::Write;
    let level = flate2::Compression::fast();
    let out = Vec::with_capacity(body.len() / 2);
    match coding {
        Coding::Gzip => {
            let mut w = flate2::write::GzEncoder::new(out, level);
            w.write_all(body)?;
            w.finish()
        }
        Coding::Deflate => {
            let mut w = flate2::write::ZlibEncoder::new(out, level);
            w.write_all(body)?;
            w.finish()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(v: &str) -> Option<Coding> {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT_ENCODING, HeaderValue::from_str(v).unwrap());
        response_coding(&h)
    }

    #[test]
    fn accept_encoding_weights_are_honoured() {
        assert_eq!(accept("gzip"), Some(Coding::Gzip));
        assert_eq!(accept("deflate"), Some(Coding::Deflate));
        assert_eq!(accept("deflate, gzip"), Some(Coding::Gzip));
        assert_eq!(accept("gzip;q=0.5, deflate"), Some(Coding::Deflate));
        assert_eq!(accept("gzip;q=0, br"), None);
        assert_eq!(accept("identity"), None);
        assert_eq!(response_coding(&HeaderMap::new()), None);
    }

    #[tokio::test]
    async fn inflating_stops_at_the_limit() {
        let data = vec![7u8; 10 * CHUNK + 3];
        let gz = compress(Coding::Gzip, &data).unwrap();
        let z = compress(Coding::Deflate, &data).unwrap();
        for (coding, body) in [(Coding::Gzip, &gz), (Coding::Deflate, &z)] {
            let exact = inflate(coding, Bytes::from(body.clone()), data.len(), None).await;
            assert_eq!(exact.unwrap(), data);
            let over = inflate(coding, Bytes::from(body.clone()), data.len() - 1, None).await;
            assert!(matches!(over, Err(ApiError::PayloadTooLarge { .. })));
        }
    }

    #[tokio::test]
    async fn the_inflated_size_is_reserved_in_the_budget() {
        let budget = crate::http::body_budget::BodyBudget::new(
            1 << 20,
            std::time::Duration::from_millis(50),
        );
        let charge = budget.charge();
        let data = vec![1u8; 4 << 20];
        let gz = Bytes::from(compress(Coding::Gzip, &data).unwrap());
        // Within the route's limit but not the 1 MiB budget.
        let err = inflate(Coding::Gzip, gz, 8 << 20, Some(&charge)).await;
        assert!(
            matches!(err, Err(ApiError::BodyOverBudget { .. })),
            "{err:?}"
        );
    }

    #[test]
    fn unknown_request_codings_are_refused() {
        let mut h = HeaderMap::new();
        assert_eq!(request_coding(&h).unwrap(), None);
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("GZIP"));
        assert_eq!(request_coding(&h).unwrap(), Some(Coding::Gzip));
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("br"));
        assert!(matches!(
            request_coding(&h),
            Err(ApiError::UnsupportedMediaType(_))
        ));
    }
}
