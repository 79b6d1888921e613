//! Fuzz harness body for the API's JSON job parsing (target `request_json`
//! of the `fuzz/` package).
//!
//! Like `inferq_vision::fuzzing`, it is shared by libFuzzer (feature
//! `fuzzing`) and by the unit test below that replays the committed corpus,
//! so `make test` checks every seed and every fixed crash input cheaply.

use inferq_runtime::config::LimitConfig;

use crate::intake::encodings::{Payload, check_uri, parse_json};
use crate::intake::json_tensor::MAX_TENSOR_DEPTH;

/// The limits the target parses under: the defaults, with a 1 MiB body.
pub fn limits() -> LimitConfig {
    LimitConfig {
        max_body_bytes: 1 << 20,
        max_pixels: 40_000_000,
        inline_max_bytes: 256 << 10,
        max_json_bytes: None,
        max_json_depth: 32,
        max_uri_bytes: 2048,
        max_instances: 64,
    }
}

/// `request_json`: a JSON job body is either refused with a 4xx error or
/// parsed into a submission that respects every limit.
pub fn request_json(data: &[u8]) {
    let limits = limits();
    match parse_json(data, &limits) {
        Err(e) => assert!(e.status().is_client_error(), "{e:?}"),
        Ok(sub) => {
            if let Some(uri) = &sub.options.output_uri {
                assert!(uri.len() <= limits.max_uri_bytes);
            }
            match sub.payload {
                Payload::Image { bytes, .. } => assert!(bytes.len() <= limits.max_body_bytes),
                Payload::Uri(uri) => {
                    assert!(uri.len() <= limits.max_uri_bytes);
                    assert!(check_uri(&uri).is_ok());
                }
                Payload::Tensor { shape, values } => {
                    assert!((1..=MAX_TENSOR_DEPTH).contains(&shape.len()), "{shape:?}");
                    assert_eq!(shape.iter().product::<usize>(), values.len());
                    assert!(values.iter().all(|v| v.is_finite()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    /// Replays `fuzz/corpus/request_json/`: no input panics, and the corpus
    /// holds both accepted and refused bodies.
    #[test]
    fn request_json_corpus() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/request_json");
        let (mut yes, mut no) = (0, 0);
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            let outcome = std::panic::catch_unwind(|| super::request_json(&data));
            assert!(outcome.is_ok(), "{} panics", path.display());
            if super::parse_json(&data, &super::limits()).is_ok() {
                yes += 1
            } else {
                no += 1
            }
        }
        assert!(yes > 0 && no > 0, "{yes} accepted, {no} refused");
    }
}
