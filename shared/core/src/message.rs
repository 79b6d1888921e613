//! The wire format of a queued job.
//!
//! A message is a small JSON header followed by the raw image bytes:
//!
//! ```text
//! +---------+----------------------+-----------------------------+
//! | "IQ1"   | u32 BE header length | header JSON | image bytes   |
//! +---------+----------------------+-----------------------------+
//! ```
//!
//! Keeping the image out of the JSON avoids a 33 % base64 inflation and a
//! copy on both ends; the header stays human-readable in the RabbitMQ
//! management UI. By default every upload is carried here, so the durable
//! queue alone holds all a worker needs and a Redis that lost its data loses
//! no accepted job. Only images above a lowered inline threshold are not
//! carried: the header names a blob key in the result store instead (for
//! brokers that cap message size below the largest upload).

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::job::JobId;
use crate::trace::TraceContext;

const MAGIC: &[u8; 3] = b"IQ1";
const MAX_HEADER: usize = 64 * 1024;

/// Where the worker finds the input bytes.
#[derive(Debug, Clone, PartialEq)]
pub enum ImageSource {
    /// The bytes travel inside the message.
    Inline(Bytes),
    /// The bytes were stored under this key in the result store.
    Blob(String),
    /// The worker fetches the bytes from storage (`gs://`, `s3://`,
    /// `https://`, `file://`).
    Uri(String),
}

/// One job as the worker receives it.
#[derive(Debug, Clone, PartialEq)]
pub struct JobMessage {
    pub id: JobId,
    pub model: String,
    pub version: u64,
    /// Override of the manifest's `top_k`.
    pub top_k: Option<usize>,
    pub created_at: DateTime<Utc>,
    pub image: ImageSource,
    /// When set, the input bytes are not an encoded image but a ready model
    /// input: little-endian f32 values of this shape.
    pub tensor: Option<Vec<usize>>,
    /// Where the result should also be written (a storage prefix).
    pub output_uri: Option<String>,
    /// The job must start before this instant (a copy of the record's, so
    /// a worker can expire a job even when its record is gone).
    pub deadline: Option<DateTime<Utc>>,
    /// The submitting tenant, so a worker that has to recreate a lost job
    /// record keeps it visible to its owner only.
    pub owner: Option<String>,
    /// The completion webhook (a copy of the record's, like `deadline`).
    pub webhook: Option<crate::webhook::Webhook>,
    /// The W3C trace the job belongs to (see [`crate::trace`]); the span
    /// id is the API's. Also sent as the AMQP `traceparent` header.
    pub trace: Option<TraceContext>,
    /// How to sample a video input (ignored for a still image).
    pub video: Option<crate::video::VideoParams>,
}

#[derive(Serialize, Deserialize)]
struct Header {
    id: JobId,
    model: String,
    version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    top_k: Option<usize>,
    created_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    blob: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tensor: Option<Vec<usize>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    output_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    deadline: Option<DateTime<Utc>>,
    owner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    webhook: Option<crate::webhook::Webhook>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    traceparent: Option<TraceContext>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    video: Option<crate::video::VideoParams>,
}

/// A message that cannot be understood. The worker acks these (retrying
/// cannot help) and fails the job if the id could be recovered.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("message does not start with the InferQ magic bytes")]
    BadMagic,
    #[error("message header is truncated or longer than {MAX_HEADER} bytes")]
    BadLength,
    #[error("message header is not valid JSON: {0}")]
    BadHeader(#[from] serde_json::Error),
}

impl JobMessage {
    /// Serialises the message for the broker.
    pub fn encode(&self) -> Vec<u8> {
        let (blob, uri, payload): (Option<String>, Option<String>, &[u8]) = match &self.image {
            ImageSource::Inline(b) => (None, None, b),
            ImageSource::Blob(k) => (Some(k.clone()), None, &[]),
            ImageSource::Uri(u) => (None, Some(u.clone()), &[]),
        };
        let header = Header {
            id: self.id,
            model: self.model.clone(),
            version: self.version,
            top_k: self.top_k,
            created_at: self.created_at,
            blob,
            uri,
            tensor: self.tensor.clone(),
            output_uri: self.output_uri.clone(),
            deadline: self.deadline,
            owner: self.owner.clone(),
            webhook: self.webhook.clone(),
            traceparent: self.trace,
            video: self.video,
        };
        let json = serde_json::to_vec(&header).expect("header serialises");
        let mut out = Vec::with_capacity(7 + json.len() + payload.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(json.len() as u32).to_be_bytes());
        out.extend_from_slice(&json);
        out.extend_from_slice(payload);
        out
    }

    /// Parses a message received from the broker.
    pub fn decode(data: Bytes) -> Result<Self, DecodeError> {
        if data.len() < 7 || &data[..3] != MAGIC {
            return Err(DecodeError::BadMagic);
        }
        let len = u32::from_be_bytes([data[3], data[4], data[5], data[6]]) as usize;
        if len > MAX_HEADER || data.len() < 7 + len {
            return Err(DecodeError::BadLength);
        }
        let header: Header = serde_json::from_slice(&data[7..7 + len])?;
        let image = match (header.blob, header.uri) {
            (Some(key), _) => ImageSource::Blob(key),
            (None, Some(uri)) => ImageSource::Uri(uri),
            (None, None) => ImageSource::Inline(data.slice(7 + len..)),
        };
        Ok(JobMessage {
            id: header.id,
            model: header.model,
            version: header.version,
            top_k: header.top_k,
            created_at: header.created_at,
            image,
            tensor: header.tensor,
            output_uri: header.output_uri,
            deadline: header.deadline,
            owner: header.owner,
            webhook: header.webhook,
            trace: header.traceparent,
            video: header.video,
        })
    }

    /// The trace context of an encoded message, read from its header alone
    /// (for the broker, which sets it as an AMQP header on publish).
    pub fn peek_trace(data: &[u8]) -> Option<TraceContext> {
        #[derive(Deserialize)]
        struct Peek {
            traceparent: Option<TraceContext>,
        }
        if data.len() < 7 || &data[..3] != MAGIC {
            return None;
        }
        let len = u32::from_be_bytes([data[3], data[4], data[5], data[6]]) as usize;
        let header = data.get(7..7usize.checked_add(len)?)?;
        serde_json::from_slice::<Peek>(header).ok()?.traceparent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(image: ImageSource) -> JobMessage {
        JobMessage {
            id: JobId::new(),
            model: "efficientnet-lite0".into(),
            version: 3,
            top_k: Some(2),
            created_at: Utc::now(),
            image,
            tensor: None,
            output_uri: None,
            deadline: None,
            owner: None,
            webhook: None,
            trace: Some(TraceContext::new_root()),
            video: None,
        }
    }

    #[test]
    fn inline_roundtrip() {
        let m = msg(ImageSource::Inline(Bytes::from_static(b"\x89PNG....")));
        let back = JobMessage::decode(Bytes::from(m.encode())).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn the_trace_is_read_from_the_header_alone() {
        let m = msg(ImageSource::Inline(Bytes::from_static(b"\x89PNG....")));
        assert_eq!(JobMessage::peek_trace(&m.encode()), m.trace);
        let mut untraced = m.clone();
        untraced.trace = None;
        assert_eq!(JobMessage::peek_trace(&untraced.encode()), None);
        assert_eq!(JobMessage::peek_trace(b"IQ1\xff\xff\xff\xff"), None);
    }

    #[test]
    fn blob_roundtrip() {
        let m = msg(ImageSource::Blob("inferq:blob:x".into()));
        let back = JobMessage::decode(Bytes::from(m.encode())).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn uri_tensor_and_output_roundtrip() {
        let mut m = msg(ImageSource::Uri("gs://b/k.jpg".into()));
        m.output_uri = Some("gs://out/prefix/".into());
        m.deadline = Some(Utc::now());
        m.owner = Some("acme".into());
        m.video = Some(crate::video::VideoParams {
            fps: Some(2.5),
            max_frames: Some(40),
        });
        let back = JobMessage::decode(Bytes::from(m.encode())).unwrap();
        assert_eq!(back, m);
        let mut t = msg(ImageSource::Inline(Bytes::from(vec![0u8; 12])));
        t.tensor = Some(vec![1, 3, 1, 1]);
        assert_eq!(JobMessage::decode(Bytes::from(t.encode())).unwrap(), t);
    }

    #[test]
    fn garbage_is_rejected() {
        assert!(matches!(
            JobMessage::decode(Bytes::from_static(b"hello world")),
            Err(DecodeError::BadMagic)
        ));
        assert!(matches!(
            JobMessage::decode(Bytes::from_static(b"IQ1\xff\xff\xff\xff{}")),
            Err(DecodeError::BadLength)
        ));
        assert!(matches!(
            JobMessage::decode(Bytes::from_static(b"IQ1\0\0\0\x02{x")),
            Err(DecodeError::BadHeader(_))
        ));
    }
}
