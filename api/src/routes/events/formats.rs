//! The event formats the bridge reads, reduced to one [`ObjectEvent`]:
//!
//! - **Pub/Sub push** of Cloud Storage notifications, wrapped
//!   (`{"message": {"attributes": …, "data": base64}, "subscription": …}`)
//!   or unwrapped (the object resource as the body, the attributes as HTTP
//!   headers when the subscription writes metadata);
//! - **CloudEvents** 1.0 of type `google.cloud.storage.object.v1.finalized`
//!   (Eventarc), in binary mode (`ce-*` headers, the object as the body) and
//!   structured mode (`application/cloudevents+json`);
//! - **S3 event notifications** (`{"Records": [...]}`), whose object keys
//!   arrive form-URL-encoded, posted directly or as the `Message` of an SNS
//!   notification (see [`super::sns`]);
//! - **EventBridge** events of S3 (`"source": "aws.s3"`, `"detail-type":
//!   "Object Created"`).
//!
//! Anything that is not "an object was created" is [`Parsed::Ignored`] with
//! a reason, so the sender gets a 2xx and stops redelivering it; a body that
//! is not the format at all is a [`FormatError`] (a 400).

use axum::http::HeaderMap;
use base64::Engine;
use serde::Deserialize;
use serde_json::Value;

use super::rules::ObjectRef;

/// A created object, as the bridge needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectEvent {
    /// `gs` or `s3`.
    pub scheme: &'static str,
    pub bucket: String,
    pub name: String,
    /// What tells this version of the object from an earlier one under the
    /// same name: the GCS generation; for S3 see [`s3_version`].
    pub version: Option<String>,
    pub content_type: Option<String>,
}

impl ObjectEvent {
    pub fn object(&self) -> ObjectRef<'_> {
        ObjectRef {
            scheme: self.scheme,
            bucket: &self.bucket,
            name: &self.name,
            content_type: self.content_type.as_deref(),
        }
    }

    /// The same for every delivery of the same object version, whichever
    /// format carried it — the bridge's idempotency key.
    pub fn dedupe_key(&self) -> String {
        format!(
            "storage-event:{}://{}/{}#{}",
            self.scheme,
            self.bucket,
            self.name,
            self.version.as_deref().unwrap_or("")
        )
    }
}

/// What one event amounts to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    Created(ObjectEvent),
    /// Acknowledged and dropped: `what` names the event, `reason` says why.
    Ignored {
        what: String,
        reason: String,
    },
}

/// The body is not the format the endpoint takes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FormatError(pub String);

fn bad(msg: impl Into<String>) -> FormatError {
    FormatError(msg.into())
}

/// The Cloud Storage object resource (JSON API v1), as far as it is used.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StorageObject {
    bucket: Option<String>,
    name: Option<String>,
    generation: Option<Value>,
    content_type: Option<String>,
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn gcs_event(
    event_type: Option<&str>,
    bucket: Option<String>,
    name: Option<String>,
    generation: Option<String>,
    content_type: Option<String>,
) -> Result<Parsed, FormatError> {
    match event_type {
        None | Some("OBJECT_FINALIZE") => {}
        Some(other) => {
            return Ok(Parsed::Ignored {
                what: format!(
                    "gs://{}/{}",
                    bucket.unwrap_or_default(),
                    name.unwrap_or_default()
                ),
                reason: format!("event type {other} is not OBJECT_FINALIZE"),
            });
        }
    }
    let bucket = bucket
        .filter(|b| !b.is_empty())
        .ok_or_else(|| bad("the event names no bucket"))?;
    let name = name
        .filter(|n| !n.is_empty())
        .ok_or_else(|| bad("the event names no object"))?;
    Ok(Parsed::Created(ObjectEvent {
        scheme: "gs",
        bucket,
        name,
        version: generation,
        content_type,
    }))
}

/// A Pub/Sub push delivery of a Cloud Storage notification.
pub fn gcs_push(headers: &HeaderMap, body: &[u8]) -> Result<Parsed, FormatError> {
    let json: Value =
        serde_json::from_slice(body).map_err(|e| bad(format!("body is not JSON: {e}")))?;
    if let Some(message) = json.get("message").filter(|m| m.is_object()) {
        // Wrapped: attributes in the message, the object resource (if the
        // notification's payload format is JSON_API_V1) base64 in `data`.
        let attr = |k: &str| message["attributes"].get(k).and_then(text);
        let object = match message.get("data").and_then(Value::as_str) {
            Some(data) if !data.is_empty() => {
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(data)
                    .map_err(|e| bad(format!("message.data is not base64: {e}")))?;
                Some(
                    serde_json::from_slice::<StorageObject>(&raw)
                        .map_err(|e| bad(format!("message.data is not an object resource: {e}")))?,
                )
            }
            _ => None,
        };
        let (bucket, name, generation, content_type) = match object {
            Some(o) => (
                o.bucket,
                o.name,
                o.generation.as_ref().and_then(text),
                o.content_type,
            ),
            None => (None, None, None, None),
        };
        return gcs_event(
            attr("eventType").as_deref(),
            attr("bucketId").or(bucket),
            attr("objectId").or(name),
            attr("objectGeneration").or(generation),
            content_type,
        );
    }
    // Unwrapped: the object resource is the body; attributes, if the
    // subscription writes metadata, are headers named like the attributes.
    let header = |k: &str| {
        headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let object: StorageObject = serde_json::from_value(json).map_err(|e| {
        bad(format!(
            "body is neither a push envelope nor an object resource: {e}"
        ))
    })?;
    gcs_event(
        header("eventType").as_deref(),
        header("bucketId").or(object.bucket),
        header("objectId").or(object.name),
        header("objectGeneration").or(object.generation.as_ref().and_then(text)),
        object.content_type,
    )
}

/// CloudEvents type of a finished Cloud Storage upload.
pub const GCS_FINALIZED: &str = "google.cloud.storage.object.v1.finalized";

/// A CloudEvent, binary or structured mode.
pub fn cloudevent(headers: &HeaderMap, body: &[u8]) -> Result<Parsed, FormatError> {
    let structured = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/cloudevents+json"));
    // The context attributes (specversion, id, source, type, subject) and
    // the data, from the JSON envelope or from `ce-*` headers and the body.
    let (attrs, data) = if structured {
        let event: Value =
            serde_json::from_slice(body).map_err(|e| bad(format!("body is not JSON: {e}")))?;
        let data = match (
            event.get("data"),
            event.get("data_base64").and_then(Value::as_str),
        ) {
            (Some(d), _) => d.clone(),
            (None, Some(b64)) => {
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .map_err(|e| bad(format!("data_base64 is not base64: {e}")))?;
                serde_json::from_slice(&raw).map_err(|e| bad(format!("data is not JSON: {e}")))?
            }
            (None, None) => Value::Null,
        };
        let Value::Object(attrs) = event else {
            return Err(bad("a structured CloudEvent is a JSON object"));
        };
        (attrs, data)
    } else {
        let data = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(body).map_err(|e| bad(format!("body is not JSON: {e}")))?
        };
        let attrs = headers
            .iter()
            .filter_map(|(name, value)| {
                let key = name.as_str().strip_prefix("ce-")?;
                Some((
                    key.to_owned(),
                    Value::String(value.to_str().ok()?.to_owned()),
                ))
            })
            .collect();
        (attrs, data)
    };
    let attr = |k: &str| attrs.get(k).and_then(text);
    for required in ["specversion", "id", "source", "type"] {
        if attr(required).is_none() {
            return Err(bad(format!(
                "not a CloudEvent: `{required}` is missing (binary mode: ce-{required} header)"
            )));
        }
    }
    let kind = attr("type").unwrap_or_default();
    if kind != GCS_FINALIZED {
        return Ok(Parsed::Ignored {
            what: format!("{} {}", kind, attr("id").unwrap_or_default()),
            reason: format!("event type is not {GCS_FINALIZED}"),
        });
    }
    let object: StorageObject = serde_json::from_value(data)
        .map_err(|e| bad(format!("data is not a Cloud Storage object: {e}")))?;
    // The subject (`objects/<name>`) names the object when data does not.
    let name = object
        .name
        .or_else(|| attr("subject").and_then(|s| s.strip_prefix("objects/").map(str::to_owned)));
    gcs_event(
        None,
        object.bucket,
        name,
        object.generation.as_ref().and_then(text),
        object.content_type,
    )
}

/// An S3 event notification: one result per record.
pub fn s3(body: &[u8]) -> Result<Vec<Parsed>, FormatError> {
    let json: Value =
        serde_json::from_slice(body).map_err(|e| bad(format!("body is not JSON: {e}")))?;
    if json.get("Event").and_then(Value::as_str) == Some("s3:TestEvent") {
        return Ok(vec![Parsed::Ignored {
            what: "s3:TestEvent".into(),
            reason: "test event".into(),
        }]);
    }
    let records = json
        .get("Records")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("not an S3 event notification: no `Records` array"))?;
    records.iter().map(s3_record).collect()
}

fn s3_record(record: &Value) -> Result<Parsed, FormatError> {
    let event = record["eventName"].as_str().unwrap_or("");
    let bucket = record["s3"]["bucket"]["name"].as_str().unwrap_or("");
    let object = &record["s3"]["object"];
    let raw_key = object["key"].as_str().unwrap_or("");
    if bucket.is_empty() || raw_key.is_empty() {
        return Err(bad("an S3 record names no bucket or key"));
    }
    let key =
        form_decode(raw_key).ok_or_else(|| bad(format!("key `{raw_key}` is not URL-encoded")))?;
    // `s3:ObjectCreated:Put` in some senders, `ObjectCreated:Put` in AWS's.
    if !event
        .trim_start_matches("s3:")
        .starts_with("ObjectCreated:")
    {
        return Ok(Parsed::Ignored {
            what: format!("s3://{bucket}/{key}"),
            reason: format!("event {event} is not ObjectCreated:*"),
        });
    }
    Ok(Parsed::Created(ObjectEvent {
        scheme: "s3",
        bucket: bucket.to_owned(),
        name: key,
        version: s3_version(
            object["versionId"].as_str(),
            object["sequencer"].as_str(),
            object["eTag"].as_str(),
        ),
        content_type: None,
    }))
}

/// What tells one upload of an S3 key from another.
///
/// A versioned bucket names each version (`versionId`). An unversioned one
/// sends no version id or the literal `"null"` — the same for every upload
/// of the key, so it cannot tell a re-upload from a redelivery. The
/// `sequencer` can: S3 gives each PUT or DELETE of a key a larger one, and
/// every delivery of one notification repeats it. It is normalised
/// (lower case, no leading zeros) because S3 notifications and EventBridge
/// write the same value with different padding and case. Without either,
/// the ETag: a re-upload of identical bytes then counts as the same version.
pub(super) fn s3_version(
    version_id: Option<&str>,
    sequencer: Option<&str>,
    etag: Option<&str>,
) -> Option<String> {
    if let Some(v) = version_id.filter(|v| !v.is_empty() && *v != "null") {
        return Some(v.to_owned());
    }
    if let Some(seq) = sequencer.filter(|s| !s.is_empty()) {
        let trimmed = seq.trim_start_matches('0');
        let digits = if trimmed.is_empty() { "0" } else { trimmed };
        return Some(format!("seq:{}", digits.to_ascii_lowercase()));
    }
    etag.map(|e| e.trim_matches('"'))
        .filter(|e| !e.is_empty())
        .map(|e| format!("etag:{e}"))
}

/// `detail-type` of an S3 upload delivered by EventBridge.
pub const EVENTBRIDGE_OBJECT_CREATED: &str = "Object Created";

/// An S3 event delivered by Amazon EventBridge (an API destination posts
/// the event as its body). Only `aws.s3` / `Object Created` makes a job;
/// other events are ignored. Unlike S3 notifications, EventBridge does
/// not URL-encode the object key.
pub fn eventbridge(body: &[u8]) -> Result<Parsed, FormatError> {
    let json: Value =
        serde_json::from_slice(body).map_err(|e| bad(format!("body is not JSON: {e}")))?;
    let field = |k: &str| json.get(k).and_then(Value::as_str);
    let (Some(source), Some(kind)) = (field("source"), field("detail-type")) else {
        return Err(bad(
            "not an EventBridge event: `source` or `detail-type` is missing",
        ));
    };
    let detail = json
        .get("detail")
        .filter(|d| d.is_object())
        .ok_or_else(|| bad("not an EventBridge event: no `detail` object"))?;
    let id = field("id").unwrap_or_default();
    if source != "aws.s3" || kind != EVENTBRIDGE_OBJECT_CREATED {
        return Ok(Parsed::Ignored {
            what: format!("{source} {kind} {id}"),
            reason: format!("only aws.s3 \"{EVENTBRIDGE_OBJECT_CREATED}\" events make jobs"),
        });
    }
    let bucket = detail["bucket"]["name"].as_str().unwrap_or("");
    let object = &detail["object"];
    let key = object["key"].as_str().unwrap_or("");
    if bucket.is_empty() || key.is_empty() {
        return Err(bad("the EventBridge event names no bucket or key"));
    }
    Ok(Parsed::Created(ObjectEvent {
        scheme: "s3",
        bucket: bucket.to_owned(),
        name: key.to_owned(),
        version: s3_version(
            object["version-id"].as_str(),
            object["sequencer"].as_str(),
            object["etag"].as_str(),
        ),
        content_type: None,
    }))
}

/// Decodes `application/x-www-form-urlencoded` text (`+` is a space).
fn form_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                // Two hex digits exactly: `from_str_radix` alone would also
                // take a sign (`%+f`).
                let hex = s.get(i + 1..i + 3)?;
                if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return None;
                }
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
#[path = "formats_tests.rs"]
mod tests;
