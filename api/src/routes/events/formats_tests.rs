use axum::http::{HeaderMap, HeaderValue};
use base64::Engine;
use serde_json::json;

use super::*;

fn b64(v: &Value) -> String {
    base64::engine::general_purpose::STANDARD.encode(v.to_string())
}

fn object_json() -> Value {
    json!({"kind": "storage#object", "bucket": "in", "name": "cats/a b.jpg",
           "generation": "1700000000000001", "contentType": "image/jpeg", "size": "1234"})
}

fn created(p: Parsed) -> ObjectEvent {
    match p {
        Parsed::Created(e) => e,
        other => panic!("created expected, got {other:?}"),
    }
}

#[test]
fn wrapped_pubsub_push_reads_attributes_and_data() {
    let body = json!({
        "message": {
            "attributes": {"eventType": "OBJECT_FINALIZE", "bucketId": "in",
                           "objectId": "cats/a b.jpg", "objectGeneration": "1700000000000001",
                           "payloadFormat": "JSON_API_V1"},
            "data": b64(&object_json()),
            "messageId": "42", "publishTime": "2026-11-29T10:00:00Z"
        },
        "subscription": "projects/p/subscriptions/inferq"
    });
    let e = created(gcs_push(&HeaderMap::new(), body.to_string().as_bytes()).unwrap());
    assert_eq!(
        (e.scheme, e.bucket.as_str(), e.name.as_str()),
        ("gs", "in", "cats/a b.jpg")
    );
    assert_eq!(e.version.as_deref(), Some("1700000000000001"));
    assert_eq!(e.content_type.as_deref(), Some("image/jpeg"));
    assert_eq!(
        e.dedupe_key(),
        "storage-event:gs://in/cats/a b.jpg#1700000000000001"
    );

    // Payload format NONE: no data, the attributes are enough.
    let bare = json!({"message": {"attributes": {"eventType": "OBJECT_FINALIZE",
        "bucketId": "in", "objectId": "x.png", "objectGeneration": "7"}}});
    let e = created(gcs_push(&HeaderMap::new(), bare.to_string().as_bytes()).unwrap());
    assert_eq!(
        (e.name.as_str(), e.version.as_deref(), e.content_type),
        ("x.png", Some("7"), None)
    );
}

#[test]
fn other_gcs_event_types_are_ignored() {
    for kind in ["OBJECT_DELETE", "OBJECT_ARCHIVE", "OBJECT_METADATA_UPDATE"] {
        let body = json!({"message": {"attributes": {"eventType": kind, "bucketId": "in",
            "objectId": "x.jpg"}}});
        match gcs_push(&HeaderMap::new(), body.to_string().as_bytes()).unwrap() {
            Parsed::Ignored { reason, .. } => assert!(reason.contains(kind), "{reason}"),
            other => panic!("{kind}: {other:?}"),
        }
    }
}

#[test]
fn unwrapped_pubsub_push_reads_the_body_and_attribute_headers() {
    let mut headers = HeaderMap::new();
    headers.insert("eventtype", HeaderValue::from_static("OBJECT_FINALIZE"));
    headers.insert("x-goog-pubsub-message-id", HeaderValue::from_static("42"));
    let e = created(gcs_push(&headers, object_json().to_string().as_bytes()).unwrap());
    assert_eq!((e.bucket.as_str(), e.name.as_str()), ("in", "cats/a b.jpg"));
    // Without metadata headers the body alone is taken as a finalize.
    let e = created(gcs_push(&HeaderMap::new(), object_json().to_string().as_bytes()).unwrap());
    assert_eq!(e.version.as_deref(), Some("1700000000000001"));
    headers.insert("eventtype", HeaderValue::from_static("OBJECT_DELETE"));
    assert!(matches!(
        gcs_push(&headers, object_json().to_string().as_bytes()).unwrap(),
        Parsed::Ignored { .. }
    ));
}

#[test]
fn malformed_gcs_bodies_are_errors() {
    for body in [
        &b"not json"[..],
        br#"[1, 2]"#,
        br#"{"message": {"attributes": {"eventType": "OBJECT_FINALIZE"}}}"#,
        br#"{"message": {"data": "%%%"}}"#,
    ] {
        assert!(
            gcs_push(&HeaderMap::new(), body).is_err(),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
}

#[test]
fn cloudevents_binary_and_structured_agree() {
    let mut headers = HeaderMap::new();
    for (k, v) in [
        ("ce-specversion", "1.0"),
        ("ce-id", "1234"),
        (
            "ce-source",
            "//storage.googleapis.com/projects/_/buckets/in",
        ),
        ("ce-type", GCS_FINALIZED),
        ("ce-subject", "objects/cats/a b.jpg"),
        ("content-type", "application/json"),
    ] {
        headers.insert(k, HeaderValue::from_static(v));
    }
    let binary = created(cloudevent(&headers, object_json().to_string().as_bytes()).unwrap());

    let mut h = HeaderMap::new();
    h.insert(
        "content-type",
        HeaderValue::from_static("application/cloudevents+json; charset=utf-8"),
    );
    let event = json!({"specversion": "1.0", "id": "1234", "type": GCS_FINALIZED,
        "source": "//storage.googleapis.com/projects/_/buckets/in",
        "subject": "objects/cats/a b.jpg", "datacontenttype": "application/json",
        "data": object_json()});
    let structured = created(cloudevent(&h, event.to_string().as_bytes()).unwrap());
    assert_eq!(binary, structured);
    // The same object version as the Pub/Sub path: the same dedupe key.
    assert_eq!(
        binary.dedupe_key(),
        "storage-event:gs://in/cats/a b.jpg#1700000000000001"
    );

    let event = json!({"specversion": "1.0", "id": "1", "type": GCS_FINALIZED, "source": "s",
        "data_base64": b64(&object_json())});
    assert_eq!(
        created(cloudevent(&h, event.to_string().as_bytes()).unwrap()),
        structured
    );
}

#[test]
fn other_cloudevents_are_ignored_and_non_events_refused() {
    let mut h = HeaderMap::new();
    h.insert(
        "content-type",
        HeaderValue::from_static("application/cloudevents+json"),
    );
    let deleted = json!({"specversion": "1.0", "id": "9", "source": "s",
        "type": "google.cloud.storage.object.v1.deleted", "data": object_json()});
    assert!(matches!(
        cloudevent(&h, deleted.to_string().as_bytes()).unwrap(),
        Parsed::Ignored { .. }
    ));
    let no_id = json!({"specversion": "1.0", "source": "s", "type": GCS_FINALIZED});
    let err = cloudevent(&h, no_id.to_string().as_bytes()).unwrap_err();
    assert!(err.0.contains("`id`"), "{err}");
    // Binary mode without ce- headers is not a CloudEvent.
    assert!(cloudevent(&HeaderMap::new(), object_json().to_string().as_bytes()).is_err());
}

#[test]
fn s3_records_decode_keys_and_skip_other_events() {
    let body = json!({"Records": [
        {"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "up"},
            "object": {"key": "photos/cat+one%281%29.jpg", "size": 10, "eTag": "abc",
                       "sequencer": "0055AED6DCD90281E5"}}},
        {"eventName": "ObjectRemoved:Delete", "s3": {"bucket": {"name": "up"},
            "object": {"key": "old.jpg", "sequencer": "1"}}},
        {"eventName": "ObjectCreated:CompleteMultipartUpload", "s3": {"bucket": {"name": "up"},
            "object": {"key": "big.png", "versionId": "v2", "sequencer": "2"}}}
    ]});
    let parsed = s3(body.to_string().as_bytes()).unwrap();
    assert_eq!(parsed.len(), 3);
    let first = created(parsed[0].clone());
    assert_eq!(first.name, "photos/cat one(1).jpg");
    assert_eq!(first.version.as_deref(), Some("seq:55aed6dcd90281e5"));
    assert_eq!(first.object().uri(), "s3://up/photos/cat one(1).jpg");
    assert!(matches!(parsed[1], Parsed::Ignored { .. }));
    assert_eq!(created(parsed[2].clone()).version.as_deref(), Some("v2"));

    let test = json!({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "up"});
    assert!(matches!(
        s3(test.to_string().as_bytes()).unwrap()[..],
        [Parsed::Ignored { .. }]
    ));
    assert!(s3(br#"{"records": []}"#).is_err());
    let bad_key = json!({"Records": [{"eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": "up"}, "object": {"key": "a%zz"}}}]});
    assert!(s3(bad_key.to_string().as_bytes()).is_err());
}

/// `%` must be followed by two hex digits; a sign is not one (found by
/// the `events` fuzz target's seeds: `u8::from_str_radix("+f", 16)` is 15).
#[test]
fn s3_keys_need_two_hex_digits_after_percent() {
    for key in ["a%+fb.jpg", "a%-1.jpg", "a% f.jpg", "a%f", "a%"] {
        let body = json!({"Records": [{"eventName": "ObjectCreated:Put",
            "s3": {"bucket": {"name": "up"}, "object": {"key": key}}}]});
        assert!(s3(body.to_string().as_bytes()).is_err(), "{key}");
    }
    assert_eq!(form_decode("a%2Bb%2fc").as_deref(), Some("a+b/c"));
}

fn s3_put(key: &str, version_id: Option<&str>, sequencer: &str) -> Vec<u8> {
    let mut object = json!({"key": key, "size": 10, "eTag": "same-bytes", "sequencer": sequencer});
    if let Some(v) = version_id {
        object["versionId"] = json!(v);
    }
    json!({"Records": [{"eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": "up"}, "object": object}}]})
    .to_string()
    .into_bytes()
}

fn s3_key(body: &[u8]) -> String {
    created(s3(body).unwrap().remove(0)).dedupe_key()
}

/// Unversioned buckets send `"versionId": "null"` (or none) for every
/// upload: the sequencer tells a re-upload of the key from a redelivery.
#[test]
fn unversioned_s3_uploads_are_told_apart_by_the_sequencer() {
    for null in [Some("null"), Some(""), None] {
        let first = s3_put("a.jpg", null, "0055AED6DCD90281E5");
        let redelivered = s3_put("a.jpg", null, "0055AED6DCD90281E5");
        let reupload = s3_put("a.jpg", null, "0055AED6DCD90281F0");
        assert_eq!(s3_key(&first), s3_key(&redelivered), "{null:?}");
        assert_ne!(s3_key(&first), s3_key(&reupload), "{null:?}");
        assert_eq!(
            s3_key(&first),
            "storage-event:s3://up/a.jpg#seq:55aed6dcd90281e5"
        );
    }
    // A versioned bucket: the version id names the upload.
    let v1 = s3_put("a.jpg", Some("3HL4kqtJlcpXroDTDmJ"), "0A");
    let v2 = s3_put("a.jpg", Some("3HL4kqtJlcpXroDTDmK"), "0A");
    assert_eq!(
        s3_key(&v1),
        "storage-event:s3://up/a.jpg#3HL4kqtJlcpXroDTDmJ"
    );
    assert_ne!(s3_key(&v1), s3_key(&v2));
    // Neither: the ETag.
    let bare = json!({"Records": [{"eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": "up"}, "object": {"key": "a.jpg", "eTag": "\"abc\""}}}]});
    assert_eq!(
        s3_key(bare.to_string().as_bytes()),
        "storage-event:s3://up/a.jpg#etag:abc"
    );
}

fn eventbridge_event(kind: &str, object: Value) -> Vec<u8> {
    json!({"version": "0", "id": "17793124-05d4-b198-2fde-7ededc63b103",
        "detail-type": kind, "source": "aws.s3", "account": "111122223333",
        "time": "2026-11-29T10:00:00Z", "region": "eu-west-1",
        "resources": ["arn:aws:s3:::up"],
        "detail": {"version": "0", "bucket": {"name": "up"}, "object": object,
                   "request-id": "N4N7GDK58NMKJ12R", "reason": "PutObject"}})
    .to_string()
    .into_bytes()
}

#[test]
fn eventbridge_object_created_makes_the_s3_object() {
    let body = eventbridge_event(
        "Object Created",
        json!({"key": "photos/cat one.jpg", "size": 5, "etag": "b19",
               "version-id": "IYV3p45BT0ac8hjHg1houSdS1a.Mro8e", "sequencer": "00617F08299329D189"}),
    );
    let e = created(eventbridge(&body).unwrap());
    // The key is not URL-encoded in EventBridge events.
    assert_eq!(e.object().uri(), "s3://up/photos/cat one.jpg");
    assert_eq!(
        e.dedupe_key(),
        "storage-event:s3://up/photos/cat one.jpg#IYV3p45BT0ac8hjHg1houSdS1a.Mro8e"
    );

    // Unversioned: the same upload announced by an S3 notification and by
    // EventBridge (sequencer padded and cased differently) is one version.
    let unversioned = eventbridge_event(
        "Object Created",
        json!({"key": "a.jpg", "size": 5, "etag": "b19", "sequencer": "00617F08299329D189"}),
    );
    let via_eventbridge = created(eventbridge(&unversioned).unwrap()).dedupe_key();
    assert_eq!(
        via_eventbridge,
        s3_key(&s3_put("a.jpg", Some("null"), "617f08299329d189"))
    );
    let reupload = eventbridge_event(
        "Object Created",
        json!({"key": "a.jpg", "version-id": "null", "sequencer": "00617F0829932A0000"}),
    );
    assert_ne!(
        created(eventbridge(&reupload).unwrap()).dedupe_key(),
        via_eventbridge
    );
}

#[test]
fn other_eventbridge_events_are_ignored_and_non_events_refused() {
    let deleted = eventbridge_event("Object Deleted", json!({"key": "a.jpg"}));
    assert!(matches!(
        eventbridge(&deleted).unwrap(),
        Parsed::Ignored { .. }
    ));
    let other_source = json!({"detail-type": "Object Created", "source": "aws.ec2", "detail": {}});
    assert!(matches!(
        eventbridge(other_source.to_string().as_bytes()).unwrap(),
        Parsed::Ignored { .. }
    ));
    assert!(eventbridge(b"[]").is_err());
    assert!(eventbridge(b"not json").is_err());
    // An S3 notification is not an EventBridge event.
    assert!(eventbridge(&s3_put("a.jpg", None, "1")).is_err());
    let no_detail = json!({"detail-type": "Object Created", "source": "aws.s3"});
    assert!(eventbridge(no_detail.to_string().as_bytes()).is_err());
    let no_key = eventbridge_event("Object Created", json!({"size": 1}));
    assert!(eventbridge(&no_key).is_err());
}
