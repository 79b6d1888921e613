//! OpenAPI schemas of the event bodies the bridge reads, for the document
//! only.
//!
//! The parsers in [`super::formats`] read these bodies leniently from JSON
//! values (senders add members over time, and a Pub/Sub push comes wrapped
//! or bare), so there is no Rust type to derive a schema from. These types
//! describe what the parsers use, so that clients and property-based
//! testers see the shape instead of an untyped object; members the parsers
//! ignore are allowed and not listed.

use std::collections::BTreeMap;

use utoipa::ToSchema;

/// A Pub/Sub push of a Cloud Storage notification (`OBJECT_FINALIZE`).
/// The bare form (the object resource itself, with the attributes in
/// headers) is accepted too.
#[derive(ToSchema)]
pub struct GcsPush {
    pub message: PubSubMessage,
    /// `projects/…/subscriptions/…`.
    pub subscription: Option<String>,
}

/// The Pub/Sub message of a push.
#[derive(ToSchema)]
pub struct PubSubMessage {
    /// `eventType` (`OBJECT_FINALIZE` makes jobs), `bucketId`, `objectId`,
    /// `objectGeneration`, `payloadFormat`.
    pub attributes: BTreeMap<String, String>,
    /// Base64 of the object resource JSON (`bucket`, `name`, `generation`,
    /// `size`, `contentType`).
    pub data: Option<String>,
    #[schema(rename = "messageId")]
    pub message_id: Option<String>,
    #[schema(rename = "publishTime")]
    pub publish_time: Option<String>,
}

/// A CloudEvent in structured mode (binary mode: the same attributes as
/// `ce-*` headers and `data` as the body), e.g. Eventarc's
/// `google.cloud.storage.object.v1.finalized`.
#[derive(ToSchema)]
pub struct CloudEvent {
    /// `1.0`.
    pub specversion: String,
    pub id: String,
    pub source: String,
    #[schema(rename = "type")]
    pub kind: String,
    pub subject: Option<String>,
    pub time: Option<String>,
    /// The storage object: `bucket`, `name`, `generation`, `size`.
    pub data: Option<BTreeMap<String, serde_json::Value>>,
}

/// An S3 event notification: every `ObjectCreated:*` record makes a job;
/// `s3:TestEvent` is acknowledged.
#[derive(ToSchema)]
pub struct S3Notification {
    #[schema(rename = "Records")]
    pub records: Vec<S3Record>,
}

/// One record of an S3 notification.
#[derive(ToSchema)]
pub struct S3Record {
    #[schema(rename = "eventName")]
    pub event_name: String,
    pub s3: S3Entity,
}

/// The bucket and object of an S3 record.
#[derive(ToSchema)]
pub struct S3Entity {
    pub bucket: S3Bucket,
    pub object: S3Object,
}

/// An S3 bucket.
#[derive(ToSchema)]
pub struct S3Bucket {
    pub name: String,
}

/// An S3 object as notifications describe it (`key` URL-encoded).
#[derive(ToSchema)]
pub struct S3Object {
    pub key: String,
    pub size: Option<u64>,
    #[schema(rename = "eTag")]
    pub e_tag: Option<String>,
    #[schema(rename = "versionId")]
    pub version_id: Option<String>,
    pub sequencer: Option<String>,
}

/// An Amazon EventBridge event of S3 (`source` `aws.s3`, `detail-type`
/// `Object Created`).
#[derive(ToSchema)]
pub struct EventBridgeEvent {
    pub id: String,
    pub source: String,
    #[schema(rename = "detail-type")]
    pub detail_type: String,
    pub time: Option<String>,
    /// `bucket.name`, `object.key` (not URL-encoded), `object.size`,
    /// `object.etag`, `object.version-id`, `object.sequencer`.
    pub detail: BTreeMap<String, serde_json::Value>,
}

/// What `POST /v1/events/sns` answers with 200: the subscription handled,
/// or the bridge's answer for a notification that made no job.
#[derive(serde::Serialize, ToSchema)]
#[serde(untagged)]
pub enum SnsAnswer {
    Subscription(SnsSubscription),
    Event(super::EventAnswer),
}

/// A subscription handshake done: the topic confirmed, or the
/// unsubscription acknowledged.
#[derive(serde::Serialize, ToSchema)]
pub struct SnsSubscription {
    /// The topic ARN whose subscription was confirmed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub confirmed: Option<String>,
    /// The topic ARN that ended the subscription.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unsubscribed: Option<String>,
}
