//! The storage-event bridge: "an image arrived in a bucket" becomes a job.
//!
//! Five endpoints take the notifications cloud storage sends, in the
//! formats of [`formats`]: `POST /v1/events/gcs` (Pub/Sub push of Cloud
//! Storage notifications), `POST /v1/events/cloudevents` (Eventarc),
//! `POST /v1/events/s3` (S3 event notifications), `POST
//! /v1/events/eventbridge` (S3 events through EventBridge) and `POST
//! /v1/events/sns` (S3 notifications through an SNS subscription, which
//! authenticates by the SNS signature, see [`sns`]). Each created object that
//! an event [rule](rules) matches is submitted like a `POST /v1/jobs` with
//! the object's URI as input, through the same validation, admission
//! control and confirmed publish.
//!
//! Delivery is at least once on both sides, so every object version gets
//! exactly one job: the bridge derives an idempotency key from scheme,
//! bucket, object name and generation (or S3 version), and a redelivered
//! notification — or the same upload announced by Pub/Sub and by Eventarc —
//! returns the job made the first time. The sender gets its 2xx only after
//! the job is durably enqueued; under overload it gets the 429/503 of the
//! submit path and backs off and retries.

pub mod formats;
pub mod oidc;
pub mod rules;
pub mod schemas;
pub mod sns;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use inferq_core::job::{JobId, JobStatus};
use serde::Serialize;

use crate::http::auth::Principal;
use crate::http::error::ApiError;
use crate::intake::encodings::{JobOptions, Payload, Submission};
use crate::intake::idempotency::IdempotencyKey;
use crate::routes::submit;
use crate::state::AppState;
use formats::{FormatError, Parsed};

/// Largest event body read (an S3 notification with many records stays
/// far below; Pub/Sub pushes of storage notifications are a few KB).
pub const MAX_EVENT_BYTES: usize = 1024 * 1024;

/// What the bridge did with a delivery.
#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
pub struct EventAnswer {
    pub accepted: Vec<AcceptedJob>,
    pub ignored: Vec<IgnoredEvent>,
    pub rejected: Vec<RejectedEvent>,
}

/// A created object the submit path refused for good (a 4xx other than
/// 408, 409 and 429, which are worth retrying).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RejectedEvent {
    pub object: String,
    /// The status `POST /v1/jobs` would have answered.
    pub status: u16,
    pub error: String,
}

fn permanent(e: &ApiError) -> bool {
    let s = e.status();
    s.is_client_error()
        && s != StatusCode::REQUEST_TIMEOUT
        && s != StatusCode::CONFLICT
        && s != StatusCode::TOO_MANY_REQUESTS
}

/// A job made (or found again) for a created object.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AcceptedJob {
    pub id: JobId,
    pub uri: String,
    pub status: JobStatus,
    /// True when this delivery repeated an earlier one.
    pub replayed: bool,
}

/// An event acknowledged without a job.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct IgnoredEvent {
    pub object: String,
    pub reason: String,
}

/// `POST /v1/events/gcs`: a Pub/Sub push, wrapped or unwrapped.
#[utoipa::path(
    post,
    path = "/v1/events/gcs",
    tag = "events",
    request_body(content = schemas::GcsPush, description = "A Pub/Sub push of a Cloud Storage notification", content_type = "application/json"),
    responses((status = 202, description = "Jobs created by the matching rules", body = EventAnswer), (status = 200, description = "Nothing to do for this event", body = EventAnswer), (status = 400, description = "Invalid request", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 401, description = "Missing or unknown API key", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 429, description = "Backlog full; see Retry-After", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 503, description = "Broker or store unavailable", body = crate::http::error::Problem, content_type = "application/problem+json")),
    security(("api_key" = []))
)]
pub async fn gcs(
    State(state): State<AppState>,
    principal: Principal,
    req: Request,
) -> Result<Response, ApiError> {
    let (headers, body) = read(req, &state).await?;
    let parsed = formats::gcs_push(&headers, &body).map_err(invalid)?;
    bridge(&state, &principal, vec![parsed]).await
}

/// `POST /v1/events/cloudevents`: a CloudEvent, binary or structured mode.
#[utoipa::path(
    post,
    path = "/v1/events/cloudevents",
    tag = "events",
    request_body(content = schemas::CloudEvent, description = "A CloudEvent (binary or structured mode), e.g. from Eventarc", content_type = "application/cloudevents+json"),
    responses((status = 202, description = "Jobs created by the matching rules", body = EventAnswer), (status = 200, description = "Nothing to do for this event", body = EventAnswer), (status = 400, description = "Invalid request", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 401, description = "Missing or unknown API key", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 429, description = "Backlog full; see Retry-After", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 503, description = "Broker or store unavailable", body = crate::http::error::Problem, content_type = "application/problem+json")),
    security(("api_key" = []))
)]
pub async fn cloudevents(
    State(state): State<AppState>,
    principal: Principal,
    req: Request,
) -> Result<Response, ApiError> {
    let (headers, body) = read(req, &state).await?;
    let parsed = formats::cloudevent(&headers, &body).map_err(invalid)?;
    bridge(&state, &principal, vec![parsed]).await
}

/// `POST /v1/events/s3`: an S3 event notification (all its records).
#[utoipa::path(
    post,
    path = "/v1/events/s3",
    tag = "events",
    request_body(content = schemas::S3Notification, description = "An S3 event notification", content_type = "application/json"),
    responses((status = 202, description = "Jobs created by the matching rules", body = EventAnswer), (status = 200, description = "Nothing to do for this event", body = EventAnswer), (status = 400, description = "Invalid request", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 401, description = "Missing or unknown API key", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 429, description = "Backlog full; see Retry-After", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 503, description = "Broker or store unavailable", body = crate::http::error::Problem, content_type = "application/problem+json")),
    security(("api_key" = []))
)]
pub async fn s3(
    State(state): State<AppState>,
    principal: Principal,
    req: Request,
) -> Result<Response, ApiError> {
    let (_, body) = read(req, &state).await?;
    let parsed = formats::s3(&body).map_err(invalid)?;
    bridge(&state, &principal, parsed).await
}

/// `POST /v1/events/eventbridge`: an S3 event from Amazon EventBridge.
#[utoipa::path(
    post,
    path = "/v1/events/eventbridge",
    tag = "events",
    request_body(content = schemas::EventBridgeEvent, description = "An EventBridge event of S3 (`source` aws.s3, `detail-type` Object Created), as an API destination posts it", content_type = "application/json"),
    responses((status = 202, description = "Jobs created by the matching rules", body = EventAnswer), (status = 200, description = "Nothing to do for this event", body = EventAnswer), (status = 400, description = "Invalid request", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 401, description = "Missing or unknown API key", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 429, description = "Backlog full; see Retry-After", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 503, description = "Broker or store unavailable", body = crate::http::error::Problem, content_type = "application/problem+json")),
    security(("api_key" = []))
)]
pub async fn eventbridge(
    State(state): State<AppState>,
    principal: Principal,
    req: Request,
) -> Result<Response, ApiError> {
    let (_, body) = read(req, &state).await?;
    let parsed = formats::eventbridge(&body).map_err(invalid)?;
    bridge(&state, &principal, vec![parsed]).await
}

/// `POST /v1/events/sns`: an SNS HTTP(S) delivery, authenticated by its
/// signature and topic (see [`sns`]).
#[utoipa::path(
    post,
    path = "/v1/events/sns",
    tag = "events",
    request_body(content = String, description = "An SNS delivery: the JSON text of a SubscriptionConfirmation, a Notification of an S3 event or an UnsubscribeConfirmation (`Type`, `MessageId`, `TopicArn`, `Message`, `Timestamp`, `SignatureVersion`, `Signature`, `SigningCertURL`), authenticated by its signature", content_type = "text/plain"),
    responses((status = 202, description = "Jobs created by the matching rules", body = EventAnswer), (status = 200, description = "Confirmed, or nothing to do for this event", body = schemas::SnsAnswer), (status = 400, description = "Not an SNS message, or its Message is not an S3 event", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 401, description = "Signature or signing certificate refused", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 403, description = "Topic not allowed", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 404, description = "SNS subscriptions are not configured on this server (`--event-sns-topics`)", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 503, description = "Certificate host, broker or store unavailable", body = crate::http::error::Problem, content_type = "application/problem+json")),
    security(())
)]
pub async fn sns_delivery(
    State(state): State<AppState>,
    req: Request,
) -> Result<Response, ApiError> {
    let Some(verifier) = state.settings.event_sns.clone() else {
        return Err(ApiError::RouteNotFound(req.uri().path().to_owned()));
    };
    let header = req
        .headers()
        .get(sns::MESSAGE_TYPE_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let (_, body) = read(req, &state).await?;
    let msg = verifier.authenticate(&body).await.inspect_err(|e| {
        tracing::warn!(reason = %e, "SNS delivery refused");
    })?;
    if let Some(h) = header.filter(|h| h != msg.kind.as_str()) {
        return Err(ApiError::InvalidArgument(format!(
            "{} is {h} but the message is a {}",
            sns::MESSAGE_TYPE_HEADER,
            msg.kind.as_str()
        )));
    }
    match msg.kind {
        sns::message::Kind::SubscriptionConfirmation => {
            verifier.confirm(&msg).await?;
            tracing::info!(topic = %msg.topic_arn, "SNS subscription confirmed");
            Ok((
                StatusCode::OK,
                Json(schemas::SnsSubscription {
                    confirmed: Some(msg.topic_arn),
                    unsubscribed: None,
                }),
            )
                .into_response())
        }
        sns::message::Kind::UnsubscribeConfirmation => {
            tracing::warn!(topic = %msg.topic_arn, "SNS subscription ended (not resubscribing)");
            Ok((
                StatusCode::OK,
                Json(schemas::SnsSubscription {
                    confirmed: None,
                    unsubscribed: Some(msg.topic_arn),
                }),
            )
                .into_response())
        }
        sns::message::Kind::Notification => {
            let parsed = formats::s3(msg.message.as_bytes()).map_err(|e| {
                ApiError::InvalidArgument(format!("the SNS Message is not an S3 event: {e}"))
            })?;
            let scopes =
                crate::http::auth::keys::Scopes::default().with(crate::http::auth::Scope::Submit);
            let principal = Principal::service(verifier.tenant(), scopes);
            bridge(&state, &principal, parsed).await
        }
    }
}

/// Middleware of the event routes when push tokens are verified: the
/// bearer token must pass [`oidc::OidcVerifier`]; the request then acts as
/// the configured tenant with the `submit` scope.
pub async fn push_auth(
    axum::extract::State(verifier): axum::extract::State<std::sync::Arc<oidc::OidcVerifier>>,
    mut req: Request,
    next: axum::middleware::Next,
) -> Response {
    let token = match crate::http::auth::bearer_token(req.headers()) {
        Ok(t) => t.to_owned(),
        Err(e) => return e.into_response(),
    };
    if let Err(e) = verifier
        .verify(&token, chrono::Utc::now().timestamp())
        .await
    {
        tracing::warn!(path = %req.uri().path(), reason = %e, "push refused: token not valid");
        return ApiError::Unauthorized(format!("the push token is not valid: {e}")).into_response();
    }
    let scopes = crate::http::auth::keys::Scopes::default().with(crate::http::auth::Scope::Submit);
    req.extensions_mut()
        .insert(Principal::service(&verifier.policy().tenant, scopes));
    next.run(req).await
}

fn invalid(e: FormatError) -> ApiError {
    ApiError::InvalidArgument(format!("not a storage event this endpoint takes: {e}"))
}

async fn read(req: Request, state: &AppState) -> Result<(HeaderMap, bytes::Bytes), ApiError> {
    let (parts, body) = req.into_parts();
    let bytes = crate::http::body::read_body(&parts, body, MAX_EVENT_BYTES).await?;
    crate::http::request_limits::check_json_depth(&bytes, state.settings.limits.max_json_depth)?;
    Ok((parts.headers, bytes))
}

/// Submits a job for every created object a rule matches. Any failure to
/// enqueue fails the whole delivery (so the sender retries it); the
/// objects enqueued before it are found again by their idempotency keys.
async fn bridge(
    state: &AppState,
    principal: &Principal,
    events: Vec<Parsed>,
) -> Result<Response, ApiError> {
    let owner = principal.tenant();
    let mut answer = EventAnswer::default();
    for event in events {
        let object = match event {
            Parsed::Ignored { what, reason } => {
                answer.ignored.push(IgnoredEvent {
                    object: what,
                    reason,
                });
                continue;
            }
            Parsed::Created(object) => object,
        };
        let uri = object.object().uri();
        let Some(plan) = rules::plan(&state.settings.event_rules, &object.object()) else {
            tracing::info!(%uri, "storage event ignored: no event rule matches");
            answer.ignored.push(IgnoredEvent {
                object: uri,
                reason: "no event rule matches this object".into(),
            });
            continue;
        };
        let submission = Submission {
            options: JobOptions {
                model: plan.model,
                version: plan.version,
                top_k: plan.top_k,
                output_uri: plan.output_uri,
                ..JobOptions::default()
            },
            payload: Payload::Uri(uri.clone()),
        };
        let key = IdempotencyKey::for_tenant(owner, &object.dedupe_key());
        let enqueued = tokio::time::timeout(
            state.settings.request_timeout,
            submit::enqueue(state, submission, owner, Some(key)),
        )
        .await
        .map_err(|_| ApiError::Unavailable("timed out while enqueueing the job".into()))?;
        match enqueued {
            Ok(done) => {
                tracing::info!(job_id = %done.record.id, %uri, replayed = done.replayed,
                    "storage event accepted");
                answer.accepted.push(AcceptedJob {
                    id: done.record.id,
                    uri,
                    status: done.record.status,
                    replayed: done.replayed,
                });
            }
            // A permanent refusal (the policy forbids the bucket, the rule
            // names an unknown model, the object version already has a job
            // made under a rule that changed since): report it and let the
            // delivery succeed, or the sender would redeliver it forever.
            Err(e) if permanent(&e) => {
                tracing::warn!(%uri, error = %e, "storage event rejected");
                answer.rejected.push(RejectedEvent {
                    object: uri,
                    status: e.status().as_u16(),
                    error: e.to_string(),
                });
            }
            Err(e) => return Err(e),
        }
    }
    let status = if answer.accepted.iter().any(|a| !a.replayed) {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(answer)).into_response())
}
