//! Request limits that are not about raw body size: JSON nesting depth,
//! storage reference length and the number of inputs per request.
//!
//! They exist so that a request's cost is bounded by the configuration
//! before any real work is done. The nesting check in particular runs
//! *before* serde sees the body: a byte scan costs nothing, whereas a
//! recursive parser given `[[[[…` spends its stack (serde_json stops at 128
//! levels, but everything built from the parse would be recursive too).

use inferq_backends::fetch::MAX_URI_LEN;
use inferq_runtime::config::LimitConfig;

use crate::http::error::ApiError;

/// Checks that no array or object in `json` nests deeper than `max_depth`.
///
/// A byte scan that knows only about strings: brackets inside a string
/// (including after an escaped quote) do not count. It does not validate
/// the JSON; the parser does that afterwards.
pub fn check_json_depth(json: &[u8], max_depth: usize) -> Result<(), ApiError> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in json {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max_depth {
                    return Err(ApiError::InvalidArgument(format!(
                        "the JSON body nests deeper than {max_depth} levels"
                    )));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// The longest storage reference accepted: the configured limit, which can
/// lower but not raise the storage URI parser's own cap.
pub fn max_uri_bytes(limits: &LimitConfig) -> usize {
    limits.max_uri_bytes.min(MAX_URI_LEN)
}

/// Checks the length of a storage reference (`input.uri`, `output_uri`)
/// named `what` in the error.
pub fn check_uri_len(what: &str, uri: &str, limits: &LimitConfig) -> Result<(), ApiError> {
    let max = max_uri_bytes(limits);
    if uri.len() > max {
        return Err(ApiError::InvalidUri(format!(
            "{what} is {} bytes long; at most {max} are accepted",
            uri.len()
        )));
    }
    Ok(())
}

/// Checks the number of inputs one request carries. Every endpoint that
/// accepts a list of inputs (TF Serving `instances`, KServe `inputs`, batch
/// JSONL) calls this before doing any per-input work.
pub fn check_instances(n: usize, limits: &LimitConfig) -> Result<(), ApiError> {
    if n == 0 {
        return Err(ApiError::InvalidArgument(
            "the request carries no inputs".into(),
        ));
    }
    if n > limits.max_instances {
        return Err(ApiError::InvalidArgument(format!(
            "the request carries {n} inputs; at most {} are accepted per request",
            limits.max_instances
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_counts_brackets_outside_strings_only() {
        check_json_depth(br#"{"a": [[1], [2]]}"#, 3).unwrap();
        assert!(check_json_depth(br#"{"a": [[1], [2]]}"#, 2).is_err());
        // Brackets in strings, also after escaped quotes and backslashes.
        check_json_depth(br#"{"a": "[[[[{{{{"}"#, 1).unwrap();
        check_json_depth(br#"{"a": "\"[[[[", "b": "\\"}"#, 1).unwrap();
        assert!(check_json_depth(br#"{"a": "\\", "b": [[1]]}"#, 2).is_err());
        // Closing brackets never drive the depth negative.
        check_json_depth(b"]]]]{}", 1).unwrap();
        assert!(check_json_depth(&[b'['; 33], 32).is_err());
        check_json_depth(&[b'['; 32], 32).unwrap();
    }

    fn limits() -> LimitConfig {
        LimitConfig {
            max_body_bytes: 1 << 20,
            max_video_bytes: 0,
            video_max_frames: 3000,
            max_pixels: 1 << 20,
            inline_max_bytes: 1 << 10,
            max_json_bytes: None,
            max_json_depth: 32,
            max_uri_bytes: 64,
            max_instances: 3,
        }
    }

    #[test]
    fn instances_between_one_and_the_limit() {
        let l = limits();
        assert!(check_instances(0, &l).is_err());
        check_instances(1, &l).unwrap();
        check_instances(3, &l).unwrap();
        let err = check_instances(4, &l).unwrap_err();
        assert!(err.to_string().contains("at most 3"), "{err}");
    }

    #[test]
    fn uri_length_is_capped_by_config_and_parser() {
        let mut l = limits();
        check_uri_len("input.uri", &"a".repeat(64), &l).unwrap();
        assert!(check_uri_len("input.uri", &"a".repeat(65), &l).is_err());
        l.max_uri_bytes = usize::MAX;
        assert_eq!(max_uri_bytes(&l), MAX_URI_LEN);
    }
}
