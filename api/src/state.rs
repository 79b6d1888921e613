//! What every handler can reach.

use std::sync::Arc;
use std::time::Duration;

use inferq_backends::broker::JobQueue;
use inferq_backends::repository::{LiveRepository, ModelEntry, ModelRepository};
use inferq_backends::store::ResultStore;
use inferq_runtime::config::LimitConfig;

/// Shared, cheaply clonable handler state.
#[derive(Clone)]
pub struct AppState {
    pub queue: Arc<dyn JobQueue>,
    pub store: Arc<dyn ResultStore>,
    pub models: Arc<dyn ModelCatalog>,
    /// Policy for storage references (checked at submission; the worker fetches).
    pub fetcher: Arc<inferq_backends::fetch::Fetcher>,
    pub settings: Arc<Settings>,
    /// API keys, or authentication off (see [`crate::http::auth`]).
    pub auth: Arc<crate::http::auth::principal::Authenticator>,
}

/// The models the API knows, kept current as the repository changes.
#[async_trait::async_trait]
pub trait ModelCatalog: Send + Sync + 'static {
    /// The repository as of now.
    fn current(&self) -> Arc<ModelRepository>;

    /// Whether an on-demand rescan is allowed now (they are rate-limited,
    /// so a flood of requests for an unknown model does not become a flood
    /// of directory scans).
    fn may_rescan(&self) -> bool;

    /// Rescans now; returns whether anything changed.
    async fn rescan(&self) -> bool;

    /// Finds a model version, rescanning once when it is not known yet (a
    /// model registered a moment ago must not be a 404).
    async fn find(&self, name: &str, version: Option<u64>) -> Option<Arc<ModelEntry>> {
        if let Some(e) = self.current().get(name, version) {
            return Some(e.clone());
        }
        if self.may_rescan() && self.rescan().await {
            return self.current().get(name, version).cloned();
        }
        None
    }
}

/// The API's catalog: a [`LiveRepository`] published as soon as scanned (the
/// API loads no sessions, so there is nothing to prepare).
pub struct ApiCatalog(pub Arc<LiveRepository>);

#[async_trait::async_trait]
impl ModelCatalog for ApiCatalog {
    fn current(&self) -> Arc<ModelRepository> {
        self.0.current()
    }

    fn may_rescan(&self) -> bool {
        self.0.may_rescan()
    }

    async fn rescan(&self) -> bool {
        let live = self.0.clone();
        let scanned = tokio::task::spawn_blocking(move || live.scan_if_changed()).await;
        match scanned {
            Ok(Ok(Some(repo))) => {
                tracing::info!(models = ?repo.names().collect::<Vec<_>>(), "model repository changed");
                self.0.publish(Arc::new(repo));
                true
            }
            Ok(Ok(None)) => false,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "model rescan failed");
                false
            }
            Err(_) => false,
        }
    }
}

/// Request-handling settings distilled from the config.
#[derive(Debug, Clone)]
pub struct Settings {
    pub default_model: String,
    /// Model repository settings (directory, uploads).
    pub models: inferq_runtime::config::ModelConfig,
    pub limits: LimitConfig,
    pub retention: Retention,
    /// Cap on `?wait=`.
    pub max_wait: Duration,
    /// Deadline for enqueueing a job.
    pub request_timeout: Duration,
    /// Jobs per model accepted and not yet final before 429 (0 = no limit).
    pub max_backlog: u64,
    /// Requests handled at once before 503.
    pub max_inflight_requests: usize,
    /// Bytes of request bodies held at once (see [`crate::http::body_budget`]).
    pub body_budget_bytes: u64,
    /// Time requests in progress get to finish after a shutdown signal.
    pub shutdown_grace: Duration,
    /// Storage-event rules (see [`crate::routes::events::rules`]); none by default.
    pub event_rules: Vec<crate::routes::events::rules::EventRule>,
    /// Whether jobs may ask for a completion webhook (a signing secret is set).
    pub webhooks: bool,
    /// Batch prediction limits and pacing.
    pub batch: inferq_runtime::config::BatchConfig,
    /// Origins besides the API's own whose pages may send state-changing
    /// requests (see [`crate::http::origin`]).
    pub allowed_origins: crate::http::origin::AllowedOrigins,
    /// Verifies Pub/Sub push tokens on the event routes, when configured.
    pub event_oidc: Option<std::sync::Arc<crate::routes::events::oidc::OidcVerifier>>,
    /// Verifies SNS deliveries on `POST /v1/events/sns`, when topics are set.
    pub event_sns: Option<crate::routes::events::sns::SharedSnsVerifier>,
}

/// Record and blob lifetimes.
#[derive(Debug, Clone)]
pub struct Retention {
    pub result_ttl: Duration,
    pub blob_ttl: Duration,
    /// How long a dead-lettered job stays parked (and a replay possible).
    pub dead_letter_ttl: Duration,
    /// How long an `Idempotency-Key` names its job.
    pub idempotency_ttl: Duration,
}

/// The option groups request handling is configured from; the API's and the
/// embedded server's configs both hold them.
pub struct SettingsSources<'a> {
    pub http: &'a inferq_runtime::config::HttpConfig,
    pub models: &'a inferq_runtime::config::ModelConfig,
    pub limits: &'a LimitConfig,
    pub retention: &'a inferq_runtime::config::RetentionConfig,
    pub admission: &'a inferq_runtime::config::AdmissionConfig,
    pub events: &'a inferq_runtime::config::EventConfig,
    pub webhooks: &'a inferq_runtime::config::WebhookConfig,
    pub batches: &'a inferq_runtime::config::BatchConfig,
}

impl Settings {
    /// All settings from their option groups, refusing malformed event
    /// rules and webhook secrets.
    pub fn build(
        src: SettingsSources<'_>,
        fetcher: &inferq_backends::fetch::Fetcher,
    ) -> Result<Self, crate::RunError> {
        Ok(Self::from_config(
            src.http,
            src.models,
            src.limits,
            src.retention,
            src.admission,
        )
        .with_event_rules(src.events)?
        .with_webhooks(src.webhooks)?
        .with_batches(src.batches)
        .with_event_oidc(src.events, fetcher)?
        .with_event_sns(src.events)?)
    }

    /// Turns on `POST /v1/events/sns` when SNS topics are listed.
    pub fn with_event_sns(
        mut self,
        events: &inferq_runtime::config::EventConfig,
    ) -> Result<Self, crate::routes::events::sns::SnsConfigError> {
        self.event_sns = crate::routes::events::sns::SnsVerifier::from_options(
            &events.event_sns_topics,
            &events.event_sns_hosts,
            events.event_sns_allow_http,
            &events.event_sns_tenant,
        )?
        .map(std::sync::Arc::new);
        Ok(self)
    }

    /// Settings from the shared config groups.
    pub fn from_config(
        http: &inferq_runtime::config::HttpConfig,
        models: &inferq_runtime::config::ModelConfig,
        limits: &LimitConfig,
        retention: &inferq_runtime::config::RetentionConfig,
        admission: &inferq_runtime::config::AdmissionConfig,
    ) -> Self {
        Settings {
            default_model: models.default_model.clone(),
            models: models.clone(),
            limits: limits.clone(),
            retention: Retention {
                result_ttl: Duration::from_secs(retention.result_ttl_secs.max(1)),
                blob_ttl: Duration::from_secs(retention.blob_ttl_secs.max(1)),
                dead_letter_ttl: Duration::from_secs(retention.dead_letter_ttl_secs.max(1)),
                idempotency_ttl: Duration::from_secs(retention.idempotency_ttl_secs.max(1)),
            },
            max_wait: Duration::from_secs_f64(http.max_wait_secs.clamp(0.0, 3600.0)),
            request_timeout: Duration::from_secs_f64(http.request_timeout_secs.clamp(0.1, 3600.0)),
            max_backlog: admission.max_backlog,
            max_inflight_requests: admission.max_inflight_requests.max(1),
            body_budget_bytes: crate::http::body_budget::budget_bytes(admission.body_budget_mib),
            shutdown_grace: Duration::from_secs_f64(http.shutdown_grace_secs.clamp(0.0, 3600.0)),
            event_rules: Vec::new(),
            webhooks: false,
            batch: inferq_runtime::config::BatchConfig::default(),
            allowed_origins: crate::http::origin::AllowedOrigins::new(&http.allowed_origins),
            event_oidc: None,
            event_sns: None,
        }
    }

    /// Turns on OIDC verification of push tokens when an audience is set.
    /// An audience without allowed service-account emails is refused: any
    /// Google service account can mint a token for any audience, so the
    /// email is what actually names the sender.
    pub fn with_event_oidc(
        mut self,
        events: &inferq_runtime::config::EventConfig,
        fetcher: &inferq_backends::fetch::Fetcher,
    ) -> Result<Self, crate::routes::events::oidc::NoAllowedEmails> {
        use crate::routes::events::oidc::{OidcPolicy, OidcVerifier};
        self.event_oidc = events
            .event_oidc_audience
            .as_ref()
            .map(|audience| {
                let emails: Vec<String> = events
                    .event_oidc_emails
                    .iter()
                    .map(|e| e.trim().to_owned())
                    .filter(|e| !e.is_empty())
                    .collect();
                if emails.is_empty() {
                    return Err(crate::routes::events::oidc::NoAllowedEmails);
                }
                let policy = OidcPolicy {
                    audience: audience.clone(),
                    issuers: events.event_oidc_issuers.clone(),
                    emails,
                    jwks: events.event_oidc_jwks.clone(),
                    tenant: events.event_oidc_tenant.clone(),
                };
                Ok(std::sync::Arc::new(OidcVerifier::new(
                    policy,
                    fetcher.clone(),
                )))
            })
            .transpose()?;
        Ok(self)
    }

    /// Sets the batch prediction options.
    pub fn with_batches(mut self, cfg: &inferq_runtime::config::BatchConfig) -> Self {
        self.batch = cfg.clone();
        self
    }

    /// Turns webhooks on when signing secrets are set, refusing bad ones.
    pub fn with_webhooks(
        mut self,
        cfg: &inferq_runtime::config::WebhookConfig,
    ) -> Result<Self, inferq_backends::webhook::sign::SecretError> {
        self.webhooks =
            inferq_backends::webhook::sign::Signer::new(&cfg.webhook_secrets)?.is_some();
        Ok(self)
    }

    /// Adds the storage-event rules, refusing the first malformed one.
    pub fn with_event_rules(
        mut self,
        events: &inferq_runtime::config::EventConfig,
    ) -> Result<Self, crate::routes::events::rules::RuleError> {
        self.event_rules = crate::routes::events::rules::EventRule::parse_all(&events.event_rule)?;
        Ok(self)
    }
}
