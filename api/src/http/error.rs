//! The API's one error type and its single mapping to HTTP.
//!
//! Every failure a handler can produce is a variant of [`ApiError`]; the
//! exhaustive `match` in [`ApiError::parts`] is the only place that decides
//! status codes, so adding a variant forces a decision. Bodies follow RFC 9457
//! (`application/problem+json`) and carry InferQ's stable `code`.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use inferq_backends::broker::BrokerError;
use inferq_backends::store::StoreError;
use inferq_core::ErrorCode;
use inferq_core::job::{JobError, JobStatus};
use inferq_core::sniff::SniffError;
use serde::Serialize;

/// Media type of error bodies.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Everything that can go wrong in a request.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("the request body is empty; send the image bytes as the body")]
    EmptyBody,
    #[error("the body exceeds the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    BadImage(SniffError),
    #[error("no model named `{name}`{}", version.map(|v| format!(" with version {v}")).unwrap_or_default())]
    ModelNotFound { name: String, version: Option<u64> },
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    InvalidUri(String),
    #[error("{0}")]
    Fetch(inferq_backends::fetch::FetchError),
    #[error(
        "model {name} version {version} already exists; versions are immutable, upload a new one"
    )]
    VersionExists { name: String, version: u64 },
    #[error("{0}")]
    Forbidden(String),
    /// No valid API key; answered with `WWW-Authenticate: Bearer`.
    #[error("{0}")]
    Unauthorized(String),
    /// Internal marker for a lost race; mapped to a specific error before
    /// it reaches a client.
    #[error("conflict")]
    Conflict,
    #[error("no job with id `{0}` (it may have expired)")]
    JobNotFound(String),
    #[error("{0}")]
    OutputNotFound(String),
    #[error("no batch with id `{0}` (it may have expired)")]
    BatchNotFound(String),
    #[error("batch {id} already finished ({state})")]
    BatchFinished { id: String, state: String },
    #[error("job {id} already finished ({status}); only queued or running jobs can be canceled")]
    JobFinished { id: String, status: String },
    #[error("no route for {0}")]
    RouteNotFound(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Overloaded(String),
    #[error(
        "{backlog} jobs of model {model} are waiting or running (the limit is {max}); retry in {retry_after} s"
    )]
    BacklogFull {
        model: String,
        backlog: u64,
        max: u64,
        retry_after: u32,
    },
    #[error("the server is handling as many requests as it may; retry shortly")]
    Busy,
    #[error(
        "the server holds as many request bodies as its memory budget allows ({budget} bytes, --body-budget-mib); retry shortly"
    )]
    BodyBudgetSpent { budget: u64 },
    #[error(
        "the body needs {needed} bytes but the in-flight body budget is {budget} bytes (--body-budget-mib)"
    )]
    BodyOverBudget { needed: u64, budget: u64 },
    #[error("job {id} is {status}, not dead-lettered; only dead-lettered jobs can be replayed")]
    NotDeadLettered { id: String, status: String },
    #[error("{0}")]
    IdempotencyKeyReused(String),
    #[error("the first request with this Idempotency-Key is still in progress; retry shortly")]
    IdempotencyKeyInUse,
    /// A job of a synchronous call (`:predict`, KServe `/infer`) ended
    /// without a result; its status and error code decide the answer
    /// ([`job_failure`]).
    #[error("instance {instance} {status}: {}", error.as_ref().map(|e| format!("{}: {}", e.code, e.message)).unwrap_or_default())]
    JobFailed {
        instance: usize,
        status: JobStatus,
        error: Option<JobError>,
    },
    /// A synchronous call's jobs did not finish within `--max-wait-secs`.
    #[error("the results were not ready within {secs} s; the jobs were canceled")]
    WaitTimeout { secs: u64 },
    #[error("internal error: {0}")]
    Internal(String),
}

/// Status, code and title of a synchronous call whose job ended `status`
/// with `error`: the client's fault (undecodable image, bad input, a
/// reference it may not read) is a 4xx, the server's (inference failed,
/// a store that lost data, too many attempts) a 5xx, an expired job a 504.
pub fn job_failure(
    status: JobStatus,
    error: Option<&JobError>,
) -> (StatusCode, ErrorCode, &'static str) {
    use ErrorCode as C;
    let code = match (status, error) {
        (JobStatus::Expired, _) => {
            return (
                StatusCode::GATEWAY_TIMEOUT,
                C::DeadlineExceeded,
                "Job expired",
            );
        }
        (JobStatus::Canceled, _) => {
            return (StatusCode::CONFLICT, C::JobFinished, "Job canceled");
        }
        (_, Some(e)) => e.code,
        (_, None) => C::Internal,
    };
    let (status, title) = match code {
        C::EmptyBody | C::InvalidImage | C::InvalidArgument | C::InvalidUri => {
            (StatusCode::BAD_REQUEST, "Invalid input")
        }
        C::PayloadTooLarge | C::InputTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "Input too large"),
        C::UnsupportedMediaType | C::UnsupportedImageFormat => (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Unsupported image format",
        ),
        C::TooManyPixels | C::DecodeFailed => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "Image could not be decoded",
        ),
        C::VideoDecodeFailed | C::VideoTooLong | C::VideoTooLarge => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "Video refused or not decodable",
        ),
        C::Forbidden | C::UriForbidden | C::Unauthorized => {
            (StatusCode::FORBIDDEN, "Input not allowed")
        }
        C::InputNotFound | C::ModelNotFound => (StatusCode::NOT_FOUND, "Input not found"),
        C::FetchFailed => (StatusCode::BAD_GATEWAY, "Fetch failed"),
        C::DeadlineExceeded => (StatusCode::GATEWAY_TIMEOUT, "Deadline exceeded"),
        C::BlobMissing | C::Unavailable | C::Overloaded => {
            (StatusCode::SERVICE_UNAVAILABLE, "Service unavailable")
        }
        C::InferenceFailed
        | C::TooManyAttempts
        | C::Internal
        | C::VersionExists
        | C::JobNotFound
        | C::JobFinished
        | C::BatchNotFound
        | C::BatchFinished
        | C::OutputNotFound
        | C::NotDeadLettered
        | C::IdempotencyKeyReused
        | C::IdempotencyKeyInUse => (StatusCode::INTERNAL_SERVER_ERROR, "Job failed"),
    };
    (status, code, title)
}

/// An RFC 9457 problem: the body of every error answer.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Problem<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    detail: String,
    code: ErrorCode,
    /// The detail again under the name the KServe v2 protocol gives it, so
    /// its clients (`tritonclient`) show the message; v2 routes only.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

impl ApiError {
    /// Status, stable code, short title and the Retry-After hint (seconds).
    fn parts(&self) -> (StatusCode, ErrorCode, &'static str, Option<u32>) {
        use ApiError::*;
        match self {
            EmptyBody => (
                StatusCode::BAD_REQUEST,
                ErrorCode::EmptyBody,
                "Empty body",
                None,
            ),
            PayloadTooLarge { .. } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::PayloadTooLarge,
                "Payload too large",
                None,
            ),
            UnsupportedMediaType(_) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                ErrorCode::UnsupportedMediaType,
                "Unsupported media type",
                None,
            ),
            BadImage(e) => match e {
                SniffError::Empty => (
                    StatusCode::BAD_REQUEST,
                    ErrorCode::EmptyBody,
                    "Empty body",
                    None,
                ),
                SniffError::UnknownFormat => (
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    ErrorCode::UnsupportedImageFormat,
                    "Unsupported image format",
                    None,
                ),
                SniffError::BadHeader(_) => (
                    StatusCode::BAD_REQUEST,
                    ErrorCode::InvalidImage,
                    "Invalid image",
                    None,
                ),
                SniffError::TooManyPixels { .. } => (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    ErrorCode::TooManyPixels,
                    "Image too large",
                    None,
                ),
            },
            ModelNotFound { .. } => (
                StatusCode::NOT_FOUND,
                ErrorCode::ModelNotFound,
                "Model not found",
                None,
            ),
            InvalidArgument(_) => (
                StatusCode::BAD_REQUEST,
                ErrorCode::InvalidArgument,
                "Invalid argument",
                None,
            ),
            VersionExists { .. } => (
                StatusCode::CONFLICT,
                ErrorCode::VersionExists,
                "Version exists",
                None,
            ),
            Conflict => (
                StatusCode::CONFLICT,
                ErrorCode::VersionExists,
                "Conflict",
                None,
            ),
            Forbidden(_) => (
                StatusCode::FORBIDDEN,
                ErrorCode::Forbidden,
                "Forbidden",
                None,
            ),
            Unauthorized(_) => (
                StatusCode::UNAUTHORIZED,
                ErrorCode::Unauthorized,
                "Unauthorized",
                None,
            ),
            Fetch(e) => {
                use inferq_backends::fetch::FetchError as F;
                let (status, title) = match e {
                    F::InvalidUri(_) => (StatusCode::BAD_REQUEST, "Invalid URI"),
                    F::Forbidden(_) => (StatusCode::FORBIDDEN, "URI not allowed"),
                    F::NotFound(_) => (StatusCode::NOT_FOUND, "Input not found"),
                    F::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "Input too large"),
                    F::Failed(_) => (StatusCode::BAD_GATEWAY, "Fetch failed"),
                };
                (status, e.code(), title, None)
            }
            InvalidUri(_) => (
                StatusCode::BAD_REQUEST,
                ErrorCode::InvalidUri,
                "Invalid URI",
                None,
            ),
            JobNotFound(_) => (
                StatusCode::NOT_FOUND,
                ErrorCode::JobNotFound,
                "Job not found",
                None,
            ),
            JobFinished { .. } => (
                StatusCode::CONFLICT,
                ErrorCode::JobFinished,
                "Job already finished",
                None,
            ),
            BatchNotFound(_) => (
                StatusCode::NOT_FOUND,
                ErrorCode::BatchNotFound,
                "Batch not found",
                None,
            ),
            BatchFinished { .. } => (
                StatusCode::CONFLICT,
                ErrorCode::BatchFinished,
                "Batch already finished",
                None,
            ),
            OutputNotFound(_) => (
                StatusCode::NOT_FOUND,
                ErrorCode::OutputNotFound,
                "No output",
                None,
            ),
            RouteNotFound(_) => (
                StatusCode::NOT_FOUND,
                ErrorCode::InvalidArgument,
                "Not found",
                None,
            ),
            MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                ErrorCode::InvalidArgument,
                "Method not allowed",
                None,
            ),
            Unavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::Unavailable,
                "Service unavailable",
                Some(2),
            ),
            Overloaded(_) => (
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::Overloaded,
                "Too many jobs waiting",
                Some(1),
            ),
            BacklogFull { retry_after, .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::Overloaded,
                "Too many jobs waiting",
                Some(*retry_after),
            ),
            Busy | BodyBudgetSpent { .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::Overloaded,
                "Server busy",
                Some(1),
            ),
            BodyOverBudget { .. } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::PayloadTooLarge,
                "Payload too large",
                None,
            ),
            NotDeadLettered { .. } => (
                StatusCode::CONFLICT,
                ErrorCode::NotDeadLettered,
                "Not dead-lettered",
                None,
            ),
            IdempotencyKeyReused(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCode::IdempotencyKeyReused,
                "Idempotency key reused",
                None,
            ),
            IdempotencyKeyInUse => (
                StatusCode::CONFLICT,
                ErrorCode::IdempotencyKeyInUse,
                "Idempotency key in use",
                Some(1),
            ),
            JobFailed { status, error, .. } => {
                let (status, code, title) = job_failure(*status, error.as_ref());
                let retry = (status == StatusCode::SERVICE_UNAVAILABLE).then_some(1);
                (status, code, title, retry)
            }
            WaitTimeout { .. } => (
                StatusCode::GATEWAY_TIMEOUT,
                ErrorCode::DeadlineExceeded,
                "Timed out",
                None,
            ),
            Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                ErrorCode::Internal,
                "Internal error",
                None,
            ),
        }
    }

    /// HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        self.parts().0
    }

    /// The stable error code of this error.
    pub fn code(&self) -> ErrorCode {
        self.parts().1
    }
}

impl From<BrokerError> for ApiError {
    fn from(e: BrokerError) -> Self {
        match e {
            BrokerError::Full => ApiError::Overloaded("the job queue is full; retry later".into()),
            BrokerError::Unavailable(_)
            | BrokerError::Rejected(_)
            | BrokerError::Unconfirmed(_)
            | BrokerError::Closed => {
                ApiError::Unavailable(format!("the job could not be enqueued: {e}"))
            }
        }
    }
}

impl From<inferq_backends::fetch::FetchError> for ApiError {
    fn from(e: inferq_backends::fetch::FetchError) -> Self {
        ApiError::Fetch(e)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Full => {
                ApiError::Overloaded("the result store is full; retry later".into())
            }
            StoreError::Unavailable(_) => ApiError::Unavailable(e.to_string()),
            StoreError::Corrupt(_) => ApiError::Internal(e.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.respond(false)
    }
}

impl ApiError {
    /// The problem response with the v2 protocol's `error` member added.
    pub fn into_v2_response(self) -> Response {
        self.respond(true)
    }

    fn respond(self, v2: bool) -> Response {
        let (status, code, title, retry_after) = self.parts();
        if status.is_server_error() {
            tracing::warn!(%code, error = %self, "request failed");
        }
        let body = Problem {
            kind: format!("urn:inferq:problem:{code}"),
            title,
            status: status.as_u16(),
            detail: self.to_string(),
            code,
            error: v2.then(|| self.to_string()),
        };
        let mut resp = (status, Json(body)).into_response();
        let headers = resp.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(secs) = retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if status == StatusCode::UNAUTHORIZED {
            // RFC 9110 requires the challenge on every 401.
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"inferq\""),
            );
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_jobs_answer_by_whose_fault_it_was() {
        let failed = |code| job_failure(JobStatus::Failed, Some(&JobError::new(code, "x"))).0;
        assert_eq!(
            failed(ErrorCode::DecodeFailed),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        assert_eq!(failed(ErrorCode::InvalidImage), StatusCode::BAD_REQUEST);
        assert_eq!(failed(ErrorCode::UriForbidden), StatusCode::FORBIDDEN);
        assert_eq!(
            failed(ErrorCode::InferenceFailed),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        assert_eq!(
            failed(ErrorCode::BlobMissing),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(failed(ErrorCode::FetchFailed), StatusCode::BAD_GATEWAY);
        assert_eq!(
            job_failure(JobStatus::Expired, None).0,
            StatusCode::GATEWAY_TIMEOUT
        );
        assert_eq!(
            job_failure(JobStatus::Failed, None).0,
            StatusCode::INTERNAL_SERVER_ERROR
        );
        let e = ApiError::WaitTimeout { secs: 3 };
        assert_eq!(e.status(), StatusCode::GATEWAY_TIMEOUT);
    }
}
