//! Tests of the KServe request codec: JSON and binary inputs, refusals,
//! and shapes whose element or byte count overflows.

use super::*;

fn request(json: &str) -> InferRequest {
    serde_json::from_str(json).unwrap()
}

#[test]
fn json_data_flat_or_nested() {
    let r = request(
        r#"{"inputs":[{"name":"x","shape":[1,2,2],"datatype":"INT32","data":[[1,2],[3,4]]}]}"#,
    );
    let inputs = decode_inputs(r.inputs, Bytes::new()).unwrap();
    assert_eq!(inputs[0].shape, vec![1, 2, 2]);
    assert_eq!(
        inputs[0].elements,
        Elements::Numbers(vec![1.0, 2.0, 3.0, 4.0])
    );
    let r = request(r#"{"inputs":[{"name":"i","shape":[1],"datatype":"BYTES","data":["aGk="]}]}"#);
    let inputs = decode_inputs(r.inputs, Bytes::new()).unwrap();
    assert_eq!(
        inputs[0].elements,
        Elements::Blobs(vec![Bytes::from_static(b"hi")])
    );
}

#[test]
fn binary_tail_in_input_order() {
    let header = r#"{"inputs":[
        {"name":"a","shape":[2],"datatype":"BYTES","parameters":{"binary_data_size":11}},
        {"name":"b","shape":[2],"datatype":"FP32","parameters":{"binary_data_size":8}}]}"#;
    let mut tail = Vec::new();
    tail.extend_from_slice(&2u32.to_le_bytes());
    tail.extend_from_slice(b"hi");
    tail.extend_from_slice(&1u32.to_le_bytes());
    tail.extend_from_slice(b"!");
    tail.extend_from_slice(&1.5f32.to_le_bytes());
    tail.extend_from_slice(&(-2.0f32).to_le_bytes());
    let mut body = header.as_bytes().to_vec();
    body.extend_from_slice(&tail);
    let (json, tail) = split_body(&Bytes::from(body), Some(&header.len().to_string())).unwrap();
    let r: InferRequest = serde_json::from_slice(&json).unwrap();
    let inputs = decode_inputs(r.inputs, tail).unwrap();
    assert_eq!(
        inputs[0].elements,
        Elements::Blobs(vec![Bytes::from_static(b"hi"), Bytes::from_static(b"!")])
    );
    assert_eq!(inputs[1].elements, Elements::Numbers(vec![1.5, -2.0]));
}

/// Shapes whose element count, or whose byte count `count × width`,
/// does not fit in `usize` are a 400, never a panic, a wrapped
/// multiplication that matches a short tail, or a huge allocation.
#[test]
fn overflowing_shapes_are_400() {
    let huge = 1u64 << 62; // × 4 bytes of FP32/INT32 wraps to 0
    for (shape, datatype, size) in [
        (format!("[{huge}]"), "FP32", 0),
        (format!("[{huge}]"), "INT32", 0),
        (format!("[{}, 4]", 1u64 << 61), "FP32", 0),
        (format!("[{huge}, 1, 1, 1]"), "FP32", 0),
        ("[4294967296, 4294967296]".to_owned(), "UINT8", 0),
        ("[4294967296, 4294967296, 2]".to_owned(), "FP32", 8),
        (format!("[{}]", i64::MAX), "BYTES", 0),
        (format!("[{}]", i64::MAX), "FP32", 4),
    ] {
        let json = format!(
            r#"{{"inputs":[{{"name":"x","shape":{shape},"datatype":"{datatype}","parameters":{{"binary_data_size":{size}}}}}]}}"#
        );
        let body = Bytes::from(format!("{json}{}", "\0".repeat(size)));
        let (r, tail) = parse_request(&body, Some(&json.len().to_string()), 32).unwrap();
        let err = decode_inputs(r.inputs, tail).unwrap_err();
        assert_eq!(
            err.status(),
            axum::http::StatusCode::BAD_REQUEST,
            "{json}: {err}"
        );
        if datatype != "BYTES" {
            assert!(err.to_string().contains("too large"), "{json}: {err}");
        }
    }
    // The same through the JSON form: the count is refused before
    // `data` is compared with it.
    let r = request(&format!(
        r#"{{"inputs":[{{"name":"x","shape":[{huge},{huge}],"datatype":"FP32","data":[1]}}]}}"#
    ));
    let err = decode_inputs(r.inputs, Bytes::new()).unwrap_err();
    assert!(err.to_string().contains("too large"), "{err}");
}

#[test]
fn refuses_bad_shapes_types_ranges_and_lengths() {
    for (json, tail, why) in [
        (
            r#"{"name":"x","shape":[3],"datatype":"FP32","data":[1,2]}"#,
            &b""[..],
            "holds 2",
        ),
        (
            r#"{"name":"x","shape":[0],"datatype":"FP32","data":[]}"#,
            b"",
            "positive",
        ),
        (
            r#"{"name":"x","shape":[1],"datatype":"FP16","data":[1]}"#,
            b"",
            "FP16",
        ),
        (
            r#"{"name":"x","shape":[1],"datatype":"UINT8","data":[256]}"#,
            b"",
            "0..=255",
        ),
        (
            r#"{"name":"x","shape":[1],"datatype":"INT32","data":[1.5]}"#,
            b"",
            "integers",
        ),
        (
            r#"{"name":"x","shape":[1],"datatype":"INT32","data":[99999999]}"#,
            b"",
            "16777216",
        ),
        (
            r#"{"name":"x","shape":[1],"datatype":"FP32","data":["a"]}"#,
            b"",
            "numbers",
        ),
        (
            r#"{"name":"x","shape":[1],"datatype":"BYTES","data":[1]}"#,
            b"",
            "base64",
        ),
        (
            r#"{"name":"x","shape":[2],"datatype":"FP32","parameters":{"binary_data_size":8}}"#,
            &[0u8; 4][..],
            "past the end",
        ),
        (
            r#"{"name":"x","shape":[2],"datatype":"FP32","parameters":{"binary_data_size":4}}"#,
            &[0u8; 4][..],
            "needs 8",
        ),
        (
            r#"{"name":"x","shape":[1],"datatype":"BYTES","parameters":{"binary_data_size":4}}"#,
            &[9u8, 0, 0, 0][..],
            "runs past",
        ),
        (
            r#"{"name":"x","shape":[1],"datatype":"FP32","parameters":{"binary_data_size":4}}"#,
            &[0u8; 6][..],
            "follow",
        ),
        (
            r#"{"name":"x","shape":[1],"datatype":"FP32"}"#,
            b"",
            "no `data`",
        ),
    ] {
        let r = request(&format!(r#"{{"inputs":[{json}]}}"#));
        let err = decode_inputs(r.inputs, Bytes::copy_from_slice(tail)).unwrap_err();
        assert!(err.to_string().contains(why), "{json}: {err}");
    }
    assert!(
        serde_json::from_str::<InferRequest>(
            r#"{"inputs":[{"name":"x","shape":[2],"datatype":"FP32","data":[1,"a"]}]}"#
        )
        .is_err()
    );
    assert!(split_body(&Bytes::from_static(b"{}"), Some("9")).is_err());
    assert!(split_body(&Bytes::from_static(b"{}"), Some("99999999999999999999999")).is_err());
    assert!(split_body(&Bytes::from_static(b"{}"), Some("x")).is_err());
}
