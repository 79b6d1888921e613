//! Stable, machine-readable error codes.
//!
//! Clients branch on these strings, so they are part of the public API: the
//! same code appears in an HTTP problem body (`code` member) and in a failed
//! job's `error.code`. Adding a code is fine; renaming one is a breaking change.

use serde::{Deserialize, Serialize};

/// Why a request was refused or a job failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request body was empty.
    EmptyBody,
    /// The body exceeds the configured size limit.
    PayloadTooLarge,
    /// The declared content type is not one InferQ accepts.
    UnsupportedMediaType,
    /// The bytes are not an image format InferQ can decode.
    UnsupportedImageFormat,
    /// The image header could not be read.
    InvalidImage,
    /// The image declares more pixels than the configured limit.
    TooManyPixels,
    /// The image header was fine but decoding the pixels failed.
    DecodeFailed,
    /// No model with the requested name (or version) is served.
    ModelNotFound,
    /// A query parameter or option is malformed.
    InvalidArgument,
    /// The model version already exists (versions are immutable).
    VersionExists,
    /// The operation is switched off in this deployment's configuration, or
    /// the API key lacks the scope it needs.
    Forbidden,
    /// No API key, or an unknown one, was presented (authentication is on).
    Unauthorized,
    /// No job with this id exists (or it has expired).
    JobNotFound,
    /// The job already finished, so it cannot be canceled.
    JobFinished,
    /// No batch with this id exists (or it has expired).
    BatchNotFound,
    /// The batch already finished, so it cannot be canceled.
    BatchFinished,
    /// The job has no binary output (not finished, not an image model, or expired).
    OutputNotFound,
    /// A large image stored out of band had expired or vanished.
    BlobMissing,
    /// A storage reference (`gs://`, `s3://`, `https://`, `file://`) is malformed
    /// or uses an unsupported scheme.
    InvalidUri,
    /// A storage reference points somewhere InferQ may not read or write
    /// (private address, path outside the local root, bucket not allowed).
    UriForbidden,
    /// The referenced object does not exist.
    InputNotFound,
    /// The referenced object is larger than the size limit.
    InputTooLarge,
    /// Reading or writing a storage reference failed (network, auth, timeout).
    FetchFailed,
    /// ONNX Runtime rejected the input or failed while running.
    InferenceFailed,
    /// The job was attempted too many times (e.g. it crashed workers).
    TooManyAttempts,
    /// The job's deadline passed before a worker could start it.
    DeadlineExceeded,
    /// Only dead-lettered jobs can be replayed.
    NotDeadLettered,
    /// An `Idempotency-Key` was reused for a different request.
    IdempotencyKeyReused,
    /// The first request with this `Idempotency-Key` is still being handled.
    IdempotencyKeyInUse,
    /// A dependency (broker or store) is unavailable; retry later.
    Unavailable,
    /// Too much work is waiting (for this model, or in the API); retry later.
    Overloaded,
    /// A video could not be decoded (corrupt, truncated, not a video FFmpeg
    /// reads, or the decoder is missing on the worker).
    VideoDecodeFailed,
    /// A video is longer than the worker's duration limit.
    VideoTooLong,
    /// A video exceeds a size limit: frames, pixels per frame or total
    /// decoded bytes.
    VideoTooLarge,
    /// A bug or an unexpected condition.
    Internal,
}

impl ErrorCode {
    /// The snake_case string clients see.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::EmptyBody => "empty_body",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::UnsupportedImageFormat => "unsupported_image_format",
            ErrorCode::InvalidImage => "invalid_image",
            ErrorCode::TooManyPixels => "too_many_pixels",
            ErrorCode::DecodeFailed => "decode_failed",
            ErrorCode::ModelNotFound => "model_not_found",
            ErrorCode::InvalidArgument => "invalid_argument",
            ErrorCode::VersionExists => "version_exists",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::JobNotFound => "job_not_found",
            ErrorCode::OutputNotFound => "output_not_found",
            ErrorCode::BatchNotFound => "batch_not_found",
            ErrorCode::BatchFinished => "batch_finished",
            ErrorCode::JobFinished => "job_finished",
            ErrorCode::BlobMissing => "blob_missing",
            ErrorCode::InvalidUri => "invalid_uri",
            ErrorCode::UriForbidden => "uri_forbidden",
            ErrorCode::InputNotFound => "input_not_found",
            ErrorCode::InputTooLarge => "input_too_large",
            ErrorCode::FetchFailed => "fetch_failed",
            ErrorCode::InferenceFailed => "inference_failed",
            ErrorCode::TooManyAttempts => "too_many_attempts",
            ErrorCode::DeadlineExceeded => "deadline_exceeded",
            ErrorCode::NotDeadLettered => "not_dead_lettered",
            ErrorCode::IdempotencyKeyReused => "idempotency_key_reused",
            ErrorCode::IdempotencyKeyInUse => "idempotency_key_in_use",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Overloaded => "overloaded",
            ErrorCode::VideoDecodeFailed => "video_decode_failed",
            ErrorCode::VideoTooLong => "video_too_long",
            ErrorCode::VideoTooLarge => "video_too_large",
            ErrorCode::Internal => "internal",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_name_matches_as_str() {
        for code in [
            ErrorCode::EmptyBody,
            ErrorCode::TooManyPixels,
            ErrorCode::DecodeFailed,
            ErrorCode::TooManyAttempts,
            ErrorCode::DeadlineExceeded,
            ErrorCode::NotDeadLettered,
            ErrorCode::IdempotencyKeyReused,
            ErrorCode::Unauthorized,
            ErrorCode::VideoTooLong,
            ErrorCode::Internal,
        ] {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
    }
}
