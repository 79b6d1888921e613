//! Fuzz harness body of target `events`: the storage-event formats of
//! `POST /v1/events/{gcs,cloudevents,s3,eventbridge}` ([`formats`]) and the
//! SNS envelope of `POST /v1/events/sns` ([`sns`]), and what the
//! bridge does with a created object (the event rules, the object's URI,
//! its idempotency key).
//!
//! Input layout: like an HTTP message, `name: value` header lines (which
//! carry the unwrapped Pub/Sub attributes and the binary-mode CloudEvent
//! `ce-*` attributes), an empty line, then the body. An input without an
//! empty line is all body. Every input goes through all five parsers,
//! after the body size and nesting-depth checks the handlers make.

use std::sync::OnceLock;

use axum::http::{HeaderMap, HeaderName, HeaderValue};

use crate::http::request_limits::check_json_depth;
use crate::intake::encodings::check_uri;
use crate::routes::events::MAX_EVENT_BYTES;
use crate::routes::events::formats::{self, ObjectEvent, Parsed};
use crate::routes::events::rules::{self, EventRule};
use crate::routes::events::sns::message::{Kind, SnsMessage};

/// Splits a fuzz input into headers and body.
fn split_input(data: &[u8]) -> (HeaderMap, &[u8]) {
    let mut headers = HeaderMap::new();
    let Some(end) = data.windows(2).position(|w| w == b"\n\n") else {
        return (headers, data);
    };
    for line in data[..end].split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let value = line[colon + 1..].trim_ascii();
        // Lines no HTTP client could send are dropped, as hyper would.
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(value),
        ) {
            headers.append(name, value);
        }
    }
    (headers, &data[end + 2..])
}

/// Rules with each kind of condition and an output template.
fn event_rules() -> &'static [EventRule] {
    static RULES: OnceLock<Vec<EventRule>> = OnceLock::new();
    RULES.get_or_init(|| {
        EventRule::parse_all(&[
            "match=gs://in/cats/,suffix=.jpg,content_type=image/,model=m,output=gs://out/{relative}.json".into(),
            "match=s3://in/,output=s3://out/{bucket}/{name}.json,top_k=3".into(),
            "match=gs://in".into(),
        ])
        .expect("fuzz rules")
    })
}

/// What the bridge derives from a created object, with its invariants.
fn check_created(e: &ObjectEvent) {
    assert!(matches!(e.scheme, "gs" | "s3"));
    assert!(!e.bucket.is_empty() && !e.name.is_empty(), "{e:?}");
    let uri = e.object().uri();
    assert!(uri.starts_with(&format!("{}://", e.scheme)));
    assert!(e.dedupe_key().starts_with(&format!("storage-event:{uri}#")));
    // The submit path checks the URI; whatever the event held, that check
    // answers (a refusal is reported as `rejected`).
    let _ = check_uri(&uri);
    if let Some(plan) = rules::plan(event_rules(), &e.object())
        && let Some(out) = plan.output_uri
    {
        let _ = check_uri(&out);
    }
}

/// An SNS envelope: the signed text starts with the message and ends with
/// the type; a notification's message goes through the S3 parser as
/// `POST /v1/events/sns` sends it there (the signature itself cannot be
/// fuzzed without the key, and fails closed).
fn check_sns(msg: &SnsMessage) -> bool {
    let canonical = msg.canonical();
    assert!(canonical.starts_with("Message\n"), "{canonical:?}");
    assert!(
        canonical.ends_with(&format!("Type\n{}\n", msg.kind.as_str())),
        "{canonical:?}"
    );
    if msg.kind == Kind::Notification
        && let Ok(records) = formats::s3(msg.message.as_bytes())
    {
        for p in &records {
            check(p);
        }
    }
    true
}

fn check(parsed: &Parsed) -> bool {
    match parsed {
        Parsed::Created(e) => {
            check_created(e);
            true
        }
        Parsed::Ignored { .. } => true,
    }
}

/// `events`: each format parser either refuses the body or reduces it to
/// created objects that name a bucket and an object, or to ignored events.
/// Returns whether any parser accepted the input.
pub fn events(data: &[u8]) -> bool {
    let (headers, body) = split_input(data);
    if body.len() > MAX_EVENT_BYTES || check_json_depth(body, 32).is_err() {
        return false;
    }
    let mut accepted = false;
    if let Ok(p) = formats::gcs_push(&headers, body) {
        accepted |= check(&p);
    }
    if let Ok(p) = formats::cloudevent(&headers, body) {
        accepted |= check(&p);
    }
    if let Ok(records) = formats::s3(body) {
        for p in &records {
            accepted |= check(p);
        }
    }
    if let Ok(p) = formats::eventbridge(body) {
        accepted |= check(&p);
    }
    if let Ok(msg) = SnsMessage::parse(body) {
        accepted |= check_sns(&msg);
    }
    accepted
}
