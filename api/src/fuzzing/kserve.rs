//! Fuzz harness body of target `kserve_binary`: a KServe v2 inference
//! request, JSON or with the binary-tensor extension, read as
//! `POST /v2/models/{m}/infer` reads it ([`codec::parse_request`], then
//! [`codec::decode_inputs`]).
//!
//! Input layout: the first line is the `Inference-Header-Content-Length`
//! value (an empty line means the header is absent), the rest is the body.
//! Keeping the header in the input lets the fuzzer move the JSON/binary
//! boundary as freely as the bytes themselves.

use bytes::Bytes;

use crate::routes::kserve::codec::{self, DataType, Elements};

/// Nesting depth the target parses under (the default `max_json_depth`).
const MAX_JSON_DEPTH: usize = 32;

/// Splits a fuzz input into the header value and the body.
fn split_input(data: &[u8]) -> (Option<&str>, Bytes) {
    match data.iter().position(|b| *b == b'\n') {
        Some(i) => {
            let line = &data[..i];
            // A header value that is not visible ASCII reaches the codec
            // as "invalid", as the handler passes it.
            let value = std::str::from_utf8(line).unwrap_or("invalid");
            let value = (!line.is_empty()).then_some(value);
            (value, Bytes::copy_from_slice(&data[i + 1..]))
        }
        None => (None, Bytes::copy_from_slice(data)),
    }
}

/// `kserve_binary`: the request is refused with a 4xx error or decoded into
/// inputs whose element count is the product of their shape, with values
/// in their datatype's range and blobs taken from the body. Returns
/// whether it was accepted.
pub fn kserve_binary(data: &[u8]) -> bool {
    let (header, body) = split_input(data);
    let decoded = codec::parse_request(&body, header, MAX_JSON_DEPTH)
        .and_then(|(request, tail)| codec::decode_inputs(request.inputs, tail));
    let inputs = match decoded {
        Err(e) => {
            assert!(e.status().is_client_error(), "{e:?}");
            return false;
        }
        Ok(inputs) => inputs,
    };
    let mut blob_bytes = 0usize;
    for input in &inputs {
        assert!(input.shape.iter().all(|d| *d > 0), "{:?}", input.shape);
        let count = input
            .shape
            .iter()
            .try_fold(1usize, |acc, d| acc.checked_mul(*d))
            .expect("an accepted shape has a representable element count");
        match &input.elements {
            Elements::Blobs(blobs) => {
                assert_eq!(input.datatype, DataType::Bytes);
                assert_eq!(blobs.len(), count);
                blob_bytes += blobs.iter().map(Bytes::len).sum::<usize>();
            }
            Elements::Numbers(values) => {
                assert_ne!(input.datatype, DataType::Bytes);
                assert_eq!(values.len(), count);
                let in_range = |v: f32| match input.datatype {
                    DataType::Uint8 => v.fract() == 0.0 && (0.0..=255.0).contains(&v),
                    DataType::Int32 => v.fract() == 0.0 && v.abs() <= 16_777_216.0,
                    _ => v.is_finite(),
                };
                assert!(values.iter().all(|v| in_range(*v)));
            }
        }
    }
    // Base64 in JSON decodes to fewer bytes than it takes; binary blobs are
    // slices of the tail.
    assert!(blob_bytes <= body.len(), "{blob_bytes} > {}", body.len());
    true
}
