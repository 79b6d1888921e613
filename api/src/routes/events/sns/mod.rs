//! `POST /v1/events/sns`: S3 event notifications delivered by an Amazon SNS
//! HTTP(S) subscription.
//!
//! SNS cannot send an API key or a bearer token, so on this route the SNS
//! signature *is* the authentication, and it is off unless topics are
//! listed (`--event-sns-topics`). A delivery is accepted only when:
//!
//! - it is an SNS envelope ([`message`]) whose `TopicArn` is one of the
//!   listed topics — a valid signature proves only that SNS sent it, and
//!   anyone can create a topic and subscribe this URL to it;
//! - its `SigningCertURL` is https on an allowed host ([`certs`]), and the
//!   signature (`SignatureVersion` 1 or 2) verifies under that certificate.
//!
//! The route itself is [`super::sns_delivery`]. Then a
//! `SubscriptionConfirmation` is confirmed by GETting its
//! `SubscribeURL` (same host policy), an `UnsubscribeConfirmation` is only
//! logged (we do not resubscribe), and a `Notification`'s `Message` — an S3
//! event notification — goes through the same bridge as `/v1/events/s3`,
//! as the configured tenant (`--event-sns-tenant`) with the submit scope.
//! Raw message delivery must stay off: a raw message carries no signature.

pub mod certs;
pub mod message;

use std::sync::Arc;

use crate::http::error::ApiError;
use certs::{CertCache, CertError, HostPolicy};
use message::SnsMessage;

/// The header SNS sets to the message type.
pub const MESSAGE_TYPE_HEADER: &str = "x-amz-sns-message-type";

/// Hosts allowed by default for `SigningCertURL` and `SubscribeURL`.
pub const DEFAULT_HOSTS: &[&str] = &["sns.*.amazonaws.com", "sns.*.amazonaws.com.cn"];

/// Who may deliver on the SNS route, and as whom the jobs are made.
pub struct SnsVerifier {
    topics: Vec<String>,
    tenant: String,
    certs: CertCache,
}

impl std::fmt::Debug for SnsVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnsVerifier")
            .field("topics", &self.topics)
            .field("tenant", &self.tenant)
            .field("hosts", self.certs.policy())
            .finish_non_exhaustive()
    }
}

/// The SNS route cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum SnsConfigError {
    #[error(
        "--event-sns-topics: `{0}` is not an SNS topic ARN (arn:aws:sns:<region>:<account>:<name>)"
    )]
    Topic(String),
    #[error("--event-sns-hosts is empty: no signing certificate could ever be fetched")]
    NoHosts,
    #[error(transparent)]
    Client(#[from] CertError),
}

impl SnsVerifier {
    /// `None` when no topic is listed (the route is then not served).
    pub fn from_options(
        topics: &[String],
        hosts: &[String],
        allow_http: bool,
        tenant: &str,
    ) -> Result<Option<Self>, SnsConfigError> {
        let topics: Vec<String> = topics
            .iter()
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
            .collect();
        if topics.is_empty() {
            return Ok(None);
        }
        if let Some(bad) = topics
            .iter()
            .find(|t| !t.starts_with("arn:") || t.split(':').count() != 6)
        {
            return Err(SnsConfigError::Topic(bad.clone()));
        }
        let policy = HostPolicy::new(hosts, allow_http);
        if hosts.iter().all(|h| h.trim().is_empty()) {
            return Err(SnsConfigError::NoHosts);
        }
        Ok(Some(SnsVerifier {
            topics,
            tenant: tenant.to_owned(),
            certs: CertCache::new(policy)?,
        }))
    }

    /// The parsed message if it comes from a listed topic and its
    /// signature verifies.
    pub async fn authenticate(&self, body: &[u8]) -> Result<SnsMessage, ApiError> {
        let msg = SnsMessage::parse(body).map_err(|e| ApiError::InvalidArgument(e.to_string()))?;
        if !self.topics.contains(&msg.topic_arn) {
            return Err(ApiError::Forbidden(format!(
                "SNS topic `{}` is not one of --event-sns-topics",
                msg.topic_arn
            )));
        }
        let cert = self
            .certs
            .get(&msg.signing_cert_url)
            .await
            .map_err(|e| match e {
                CertError::Refused(r) => {
                    ApiError::Unauthorized(format!("SigningCertURL refused: {r}"))
                }
                // Worth a retry by SNS: the certificate host is an allowed one.
                CertError::Fetch(e) => {
                    ApiError::Unavailable(format!("SNS signing certificate: {e}"))
                }
                CertError::Parse(e) => {
                    ApiError::Unauthorized(format!("SNS signing certificate unusable: {e}"))
                }
            })?;
        msg.verify(&cert)
            .map_err(|e| ApiError::Unauthorized(format!("SNS message refused: {e}")))?;
        Ok(msg)
    }

    /// The tenant jobs made by notifications belong to.
    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// GETs the `SubscribeURL` of a verified confirmation.
    pub async fn confirm(&self, msg: &SnsMessage) -> Result<(), ApiError> {
        let raw = msg.subscribe_url.as_deref().unwrap_or_default();
        let url = self
            .certs
            .policy()
            .check(raw)
            .map_err(|e| ApiError::Forbidden(format!("SubscribeURL refused: {e}")))?;
        let resp = self.certs.client().get(url).send().await.map_err(|e| {
            ApiError::Unavailable(format!("confirming the SNS subscription failed: {e}"))
        })?;
        if !resp.status().is_success() {
            return Err(ApiError::Unavailable(format!(
                "confirming the SNS subscription failed: status {}",
                resp.status()
            )));
        }
        Ok(())
    }
}

/// Shared handle kept in the settings.
pub type SharedSnsVerifier = Arc<SnsVerifier>;

#[cfg(test)]
mod tests;
