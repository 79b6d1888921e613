//! The instance shapes of TF Serving and Vertex AI, read into a job's
//! [`Payload`]; shared by `:predict` and batch prediction's JSONL input so
//! that a line of a batch file takes exactly what a `:predict` instance
//! takes.
//!
//! An instance is a bare nested list (a tensor in the model's layout), a
//! bare string (base64, a `data:` URL, or a storage URI such as
//! `gs://b/x.jpg` — base64 has no `:` so the two cannot be confused),
//! `{"b64": "…"}`, TF Serving's `{"image_bytes": {"b64": "…"}}`,
//! `{"uri": "…"}` or `{"tensor": [...]}`.
//!
//! A batch line may carry more members than the instance itself — Vertex's
//! `key`, or any name the caller uses to join results back — which
//! [`batch_instance`] leaves out of the job and [`extras`] returns so the
//! output line can repeat them.

use std::collections::{BTreeMap, HashMap};

use inferq_runtime::config::LimitConfig;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::http::error::ApiError;
use crate::http::request_limits::check_json_depth;
use crate::intake::encodings::{Payload, b64_instance, parse_instance};
use crate::intake::json_tensor::JsonTensor;

/// The members of an instance object that are the instance itself.
const INSTANCE_MEMBERS: [&str; 4] = ["b64", "image_bytes", "uri", "tensor"];

/// Members a batch output line uses itself, so an input line may not bring
/// them along as extras.
const RESERVED: [&str; 5] = ["instance", "prediction", "error", "job", "outputs"];

/// Schemes that make a bare string a storage reference rather than base64.
const URI_SCHEMES: [&str; 5] = ["gs://", "s3://", "https://", "http://", "file://"];

fn invalid(e: serde_json::Error) -> ApiError {
    ApiError::InvalidArgument(format!("invalid instance: {e}"))
}

/// Whether a bare string instance names an object to fetch.
pub fn is_uri(s: &str) -> bool {
    URI_SCHEMES.iter().any(|p| s.starts_with(p))
}

/// One `:predict` instance in the shape the job submission path reads.
pub fn instance(raw: &RawValue, limits: &LimitConfig) -> Result<Payload, ApiError> {
    let text = raw.get().trim_start();
    match text.as_bytes().first() {
        Some(b'[') => {
            let tensor: JsonTensor = serde_json::from_str(text).map_err(invalid)?;
            Ok(Payload::Tensor {
                shape: tensor.shape,
                values: tensor.values,
            })
        }
        Some(b'"') => {
            let s: String = serde_json::from_str(text).map_err(invalid)?;
            if is_uri(&s) {
                let object = serde_json::json!({ "uri": s }).to_string();
                parse_instance(object.as_bytes(), limits)
            } else {
                b64_instance(Some(s), limits)
            }
        }
        Some(b'{') => {
            // Only the keys are owned; values stay slices of the body.
            let mut fields: HashMap<String, &RawValue> =
                serde_json::from_str(text).map_err(invalid)?;
            match fields.remove("image_bytes") {
                None => parse_instance(text.as_bytes(), limits),
                Some(inner) if inner.get().trim_start().starts_with('{') => {
                    let mut inner: HashMap<String, &RawValue> =
                        serde_json::from_str(inner.get()).map_err(invalid)?;
                    let b64 = match inner.remove("b64") {
                        Some(v) => serde_json::from_str::<Option<String>>(v.get())
                            .map_err(invalid)?,
                        None => None,
                    };
                    b64_instance(b64, limits)
                }
                Some(_) => Err(ApiError::InvalidArgument(
                    "`image_bytes` must be {\"b64\": \"…\"}".into(),
                )),
            }
        }
        _ => Err(ApiError::InvalidArgument(
            "an instance is {\"b64\"}, {\"image_bytes\": {\"b64\"}}, {\"uri\"}, {\"tensor\"}, a URI or base64 string, or a nested list".into(),
        )),
    }
}

/// One line of a batch's JSONL input: any [`instance`] shape; an object may
/// carry extra members (such as `key`), which are not part of the job.
pub fn batch_instance(line: &[u8], limits: &LimitConfig) -> Result<Payload, ApiError> {
    check_json_depth(line, limits.max_json_depth)?;
    let text = std::str::from_utf8(line)
        .map_err(|_| ApiError::InvalidArgument("invalid instance: not UTF-8".into()))?;
    let raw: &RawValue = serde_json::from_str(text).map_err(invalid)?;
    if !raw.get().starts_with('{') {
        return instance(raw, limits);
    }
    let fields: BTreeMap<String, &RawValue> = serde_json::from_str(text).map_err(invalid)?;
    if let Some(name) = fields.keys().find(|k| RESERVED.contains(&k.as_str())) {
        return Err(ApiError::InvalidArgument(format!(
            "`{name}` is a member of the output line; name the extra member differently"
        )));
    }
    let own: BTreeMap<String, &RawValue> = fields
        .into_iter()
        .filter(|(k, _)| INSTANCE_MEMBERS.contains(&k.as_str()))
        .collect();
    if own.is_empty() {
        return Err(ApiError::InvalidArgument(
            "the line has none of `b64`, `image_bytes`, `uri` or `tensor`".into(),
        ));
    }
    let rebuilt = serde_json::to_string(&own).map_err(invalid)?;
    let raw = RawValue::from_string(rebuilt).map_err(invalid)?;
    instance(&raw, limits)
}

/// The members of a batch line that are not the instance (`key` and the
/// like), by name, to repeat in its output line. Empty for lines that are
/// not objects.
pub fn extras(line: &[u8]) -> Map<String, Value> {
    match serde_json::from_slice::<Value>(line) {
        Ok(Value::Object(fields)) => fields
            .into_iter()
            .filter(|(k, _)| {
                !INSTANCE_MEMBERS.contains(&k.as_str()) && !RESERVED.contains(&k.as_str())
            })
            .collect(),
        _ => Map::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> LimitConfig {
        crate::fuzzing::limits()
    }

    fn one(json: &str) -> Result<Payload, String> {
        let raw: &RawValue = serde_json::from_str(json).unwrap();
        instance(raw, &limits()).map_err(|e| e.to_string())
    }

    #[test]
    fn each_instance_shape_becomes_its_payload() {
        match one("[[[0.5, 1], [2, 3]]]").unwrap() {
            Payload::Tensor { shape, values } => {
                assert_eq!(shape, vec![1, 2, 2]);
                assert_eq!(values, vec![0.5, 1.0, 2.0, 3.0]);
            }
            other => panic!("{other:?}"),
        }
        for json in [
            r#""aGk=""#,
            r#"{"b64": "aGk="}"#,
            r#"{"image_bytes": {"b64": "aGk="}}"#,
        ] {
            match one(json).unwrap() {
                Payload::Image { bytes, .. } => assert_eq!(&bytes[..], b"hi", "{json}"),
                other => panic!("{json}: {other:?}"),
            }
        }
        for json in [r#"{"uri": "gs://bucket/o.png"}"#, r#""s3://bucket/o.png""#] {
            assert!(matches!(one(json).unwrap(), Payload::Uri(_)), "{json}");
        }
    }

    #[test]
    fn bad_instances_keep_their_messages() {
        for (json, why) in [
            ("[[1, 2], [3]]", "invalid instance: `tensor`: ragged"),
            ("3", "an instance is"),
            ("null", "an instance is"),
            (r#"{"image_bytes": 3}"#, "`image_bytes` must be"),
            (r#"{"image_bytes": null}"#, "`image_bytes` must be"),
            (r#"{"image_bytes": {}}"#, "exactly one of"),
            (
                r#"{"image_bytes": {"b64": 3}}"#,
                "invalid instance: invalid type",
            ),
            (r#"{"b64": "aGk=", "x": 1}"#, "unknown field `x`"),
            (r#""%%%""#, "not valid base64"),
        ] {
            let err = one(json).unwrap_err();
            assert!(err.contains(why), "{json}: {err}");
        }
        // A URI with no bucket is refused like `{"uri": "gs://"}`.
        assert!(one(r#""gs://""#).is_err());
    }

    #[test]
    fn batch_lines_take_predict_shapes_and_keep_their_extras() {
        for line in [
            r#"{"image_bytes": {"b64": "aGk="}, "key": "a"}"#,
            r#"{"b64": "aGk=", "key": 7, "source": "cam-2"}"#,
            r#""aGk=""#,
        ] {
            match batch_instance(line.as_bytes(), &limits()).unwrap() {
                Payload::Image { bytes, .. } => assert_eq!(&bytes[..], b"hi", "{line}"),
                other => panic!("{line}: {other:?}"),
            }
        }
        assert!(matches!(
            batch_instance(br#"[[1, 2], [3, 4]]"#, &limits()).unwrap(),
            Payload::Tensor { .. }
        ));
        assert!(matches!(
            batch_instance(br#""gs://bucket/x.jpg""#, &limits()).unwrap(),
            Payload::Uri(_)
        ));
        let e = extras(br#"{"key": "a", "b64": "aGk=", "source": 2}"#);
        assert_eq!(
            Value::Object(e),
            serde_json::json!({"key": "a", "source": 2})
        );
        assert!(extras(br#""aGk=""#).is_empty());
        for (line, why) in [
            (r#"{"key": "a"}"#, "none of"),
            (
                r#"{"b64": "aGk=", "prediction": 1}"#,
                "member of the output line",
            ),
            ("not json", "invalid instance"),
        ] {
            let err = batch_instance(line.as_bytes(), &limits())
                .unwrap_err()
                .to_string();
            assert!(err.contains(why), "{line}: {err}");
        }
    }
}
