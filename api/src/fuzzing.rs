//! Fuzz harness bodies for the API's parsers, one function per target of
//! the `fuzz/` package: JSON job bodies (`request_json`, here), the
//! multipart intake ([`multipart`]), KServe v2 requests with the binary
//! tensor extension ([`kserve`]), the storage-event formats ([`events`])
//! and OIDC push tokens ([`jwt`]).
//!
//! Like `inferq_vision::fuzzing`, they are shared by libFuzzer (feature
//! `fuzzing`) and by the unit tests below that replay the committed
//! corpora, so `make test` checks every seed and every fixed crash input
//! cheaply. None of them touches the network.

mod events;
mod jwt;
mod kserve;
mod multipart;

use std::future::Future;
use std::sync::OnceLock;

use inferq_runtime::config::LimitConfig;

use crate::intake::encodings::{Payload, check_uri, parse_json};
use crate::intake::json_tensor::MAX_TENSOR_DEPTH;

pub use events::events;
pub use jwt::jwt;
pub use kserve::kserve_binary;
pub use multipart::multipart;

/// Runs an async parser to completion on a one-thread runtime shared by
/// every execution (timers enabled: body reading may drain on a timeout).
fn block_on<F: Future>(future: F) -> F::Output {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("fuzz runtime")
        })
        .block_on(future)
}

/// The limits the target parses under: the defaults, with a 1 MiB body.
pub fn limits() -> LimitConfig {
    LimitConfig {
        max_body_bytes: 1 << 20,
        max_video_bytes: 0,
        video_max_frames: 3000,
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

    /// Every file of `fuzz/corpus/<target>/`, sorted.
    fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../fuzz/corpus")
            .join(target);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        assert!(files.len() >= 3, "{}: too few seeds", dir.display());
        files
            .into_iter()
            .map(|p| {
                let data = std::fs::read(&p).unwrap();
                (p, data)
            })
            .collect()
    }

    /// Replays the corpus of `target` through `harness`, which answers
    /// whether the parser accepted an input: no input panics, and the
    /// corpus holds inputs of both kinds so that both paths stay covered.
    fn replay(target: &str, harness: fn(&[u8]) -> bool) {
        let (mut yes, mut no) = (0, 0);
        for (path, data) in corpus(target) {
            match std::panic::catch_unwind(|| harness(&data)) {
                Ok(true) => yes += 1,
                Ok(false) => no += 1,
                Err(_) => panic!("{target}: {} panics", path.display()),
            }
        }
        assert!(yes > 0 && no > 0, "{target}: {yes} accepted, {no} refused");
    }

    #[test]
    fn request_json_corpus() {
        replay("request_json", |d| {
            super::request_json(d);
            super::parse_json(d, &super::limits()).is_ok()
        });
    }

    #[test]
    fn kserve_binary_corpus() {
        replay("kserve_binary", super::kserve_binary);
    }

    #[test]
    fn multipart_corpus() {
        replay("multipart", super::multipart);
    }

    #[test]
    fn events_corpus() {
        replay("events", super::events);
    }

    #[test]
    fn jwt_corpus() {
        replay("jwt", super::jwt);
    }
}
