//! `Idempotency-Key`: retrying a submission without creating a second job.
//!
//! A client that sent `POST /v1/jobs` and lost the connection cannot know
//! whether the job was accepted. With an `Idempotency-Key` header it can
//! simply send the same request again: the first request binds the key to
//! its job id (in the store, atomically, for the idempotency TTL) and every
//! later request with that key gets that job back — `202` with the job's
//! current state and `Idempotent-Replayed: true` — instead of a new one.
//!
//! Keys are scoped to the caller's tenant (API key), so two tenants can
//! never collide or observe each other's jobs through a guessed key; the
//! store only ever sees a hash of tenant and key. A key reused with a
//! different request (another image, model or option) is refused with
//! `422`, because silently returning the old job would hand the client a
//! result for input it did not send. A request arriving while the first is
//! still being enqueued gets `409` with `Retry-After: 1`.

use axum::http::HeaderMap;
use inferq_core::job::JobId;
use inferq_core::job::JobRecord;
use sha2::{Digest, Sha256};

use crate::http::error::ApiError;
use crate::intake::encodings::{Payload, Submission};
use crate::state::AppState;

/// The header's name.
pub const HEADER: &str = "idempotency-key";
/// Longest key accepted (the IETF draft suggests UUIDs; 255 leaves room).
pub const MAX_KEY_LEN: usize = 255;

/// A validated key, scoped to its tenant and hashed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// Reads the header, if present. `tenant` is the caller's key id when
    /// auth is on.
    pub fn from_headers(
        headers: &HeaderMap,
        tenant: Option<&str>,
    ) -> Result<Option<Self>, ApiError> {
        let Some(value) = headers.get(HEADER) else {
            return Ok(None);
        };
        let bad = || {
            ApiError::InvalidArgument(format!(
                "Idempotency-Key must be 1 to {MAX_KEY_LEN} visible ASCII characters"
            ))
        };
        let key = value.to_str().map_err(|_| bad())?;
        if key.is_empty() || key.len() > MAX_KEY_LEN || !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(bad());
        }
        Ok(Some(Self::for_tenant(tenant, key)))
    }

    /// A key the server derives itself (the storage-event bridge derives one
    /// from bucket, object and generation), scoped like a client's key.
    pub fn for_tenant(tenant: Option<&str>, key: &str) -> Self {
        let mut h = Sha256::new();
        h.update(tenant.unwrap_or("").as_bytes());
        h.update([0u8]);
        h.update(key.as_bytes());
        IdempotencyKey(hex(&h.finalize()))
    }

    /// The store key (tenant and key, hashed).
    pub fn scoped(&self) -> &str {
        &self.0
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A digest of a request body that is entirely options (a batch request).
pub fn fingerprint_bytes(body: &[u8]) -> String {
    hex(&Sha256::digest(body))
}

/// A digest of everything that makes two submissions the same request.
pub fn fingerprint(sub: &Submission) -> String {
    let o = &sub.options;
    let mut h = Sha256::new();
    // The options as one JSON array: unambiguous, so no two sets collide.
    let options = serde_json::json!([
        o.model,
        o.version,
        o.top_k,
        o.output_uri,
        o.deadline,
        o.timeout,
        o.webhook_url,
        o.webhook_format
    ]);
    h.update(options.to_string().as_bytes());
    // Appended only when given, so keys bound before videos existed keep
    // their fingerprints.
    if o.fps.is_some() || o.max_frames.is_some() {
        h.update(
            serde_json::json!(["video", o.fps, o.max_frames])
                .to_string()
                .as_bytes(),
        );
    }
    match &sub.payload {
        Payload::Image { bytes, .. } => {
            h.update(b"image\0");
            h.update(bytes);
        }
        Payload::Uri(uri) => {
            h.update(b"uri\0");
            h.update(uri.as_bytes());
        }
        Payload::Tensor { shape, values } => {
            h.update(b"tensor\0");
            for d in shape {
                h.update((*d as u64).to_le_bytes());
            }
            for v in values {
                h.update(v.to_le_bytes());
            }
        }
    }
    hex(&h.finalize())
}

/// The answer to a repeated request: the bound job as it is now.
pub async fn replay(
    state: &AppState,
    job: JobId,
    same_request: bool,
) -> Result<JobRecord, ApiError> {
    if !same_request {
        return Err(ApiError::IdempotencyKeyReused(format!(
            "this Idempotency-Key was used for a different request (job {job}); use a new key"
        )));
    }
    match state.store.get(job).await? {
        Some(record) => {
            tracing::info!(job_id = %job, "idempotent request replayed");
            Ok(record)
        }
        // Bound but not recorded yet: the first request is mid-flight (or
        // failed and is about to release the key).
        None => Err(ApiError::IdempotencyKeyInUse),
    }
}
