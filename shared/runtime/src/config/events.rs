//! The storage-event bridge's options (docs/events.md): the rules that
//! turn "an object arrived" into a job, and how pushed events are
//! authenticated (OIDC push tokens, SNS signatures). Kept apart from the
//! other option groups because the event sources bring most of the
//! defaults with them.

use serde::{Deserialize, Serialize};

/// The storage-event bridge of the API (docs/events.md).
#[derive(Debug, Clone, clap::Args, Serialize, Deserialize)]
pub struct EventConfig {
    /// A rule turning storage events into jobs, e.g.
    /// `match=gs://in/photos/,suffix=.jpg,model=efficientnet-lite0,output=gs://out/{name}.json`.
    /// Repeat the flag for more rules (in the environment and the file: rules
    /// separated by `;`). The first matching rule wins; without rules every
    /// event is acknowledged and ignored.
    #[arg(long = "event-rule", env = "INFERQ_EVENT_RULES", value_delimiter = ';')]
    #[serde(default)]
    pub event_rule: Vec<String>,
    /// Turns on OIDC verification of push tokens: the `aud` a Pub/Sub push
    /// subscription's token must carry (its push endpoint URL, or the
    /// audience set on the subscription). The event routes then take the
    /// push's bearer token instead of an API key.
    #[arg(long, env = "INFERQ_EVENT_OIDC_AUDIENCE")]
    #[serde(default)]
    pub event_oidc_audience: Option<String>,
    /// Where the token signing keys are: a JWKS URL or file path.
    #[arg(
        long,
        env = "INFERQ_EVENT_OIDC_JWKS",
        default_value = "https://www.googleapis.com/oauth2/v3/certs"
    )]
    #[serde(default = "default_jwks")]
    pub event_oidc_jwks: String,
    /// Accepted `iss` values, comma separated.
    #[arg(
        long,
        env = "INFERQ_EVENT_OIDC_ISSUERS",
        value_delimiter = ',',
        default_value = "https://accounts.google.com,accounts.google.com"
    )]
    #[serde(default = "default_issuers")]
    pub event_oidc_issuers: Vec<String>,
    /// Service accounts (`email` claim) allowed to push, comma separated;
    /// empty accepts any account Google signed a token for.
    #[arg(long, env = "INFERQ_EVENT_OIDC_EMAILS", value_delimiter = ',')]
    #[serde(default)]
    pub event_oidc_emails: Vec<String>,
    /// Tenant that owns jobs made by verified pushes.
    #[arg(long, env = "INFERQ_EVENT_OIDC_TENANT", default_value = "pubsub")]
    #[serde(default = "default_oidc_tenant")]
    pub event_oidc_tenant: String,
    /// Turns on `POST /v1/events/sns` for these SNS topics (ARNs, comma
    /// separated). The route authenticates by the SNS message signature
    /// instead of an API key, so only messages of these topics are taken.
    #[arg(long, env = "INFERQ_EVENT_SNS_TOPICS", value_delimiter = ',')]
    #[serde(default)]
    pub event_sns_topics: Vec<String>,
    /// Hosts an SNS `SigningCertURL` or `SubscribeURL` may name, comma
    /// separated; `*` stands for one DNS label, `:port` is optional.
    #[arg(
        long,
        env = "INFERQ_EVENT_SNS_HOSTS",
        value_delimiter = ',',
        default_value = "sns.*.amazonaws.com,sns.*.amazonaws.com.cn"
    )]
    #[serde(default = "default_sns_hosts")]
    pub event_sns_hosts: Vec<String>,
    /// Also accept plain `http://` certificate and subscribe URLs (tests
    /// with a local certificate server only).
    #[arg(long, env = "INFERQ_EVENT_SNS_ALLOW_HTTP")]
    #[serde(default)]
    pub event_sns_allow_http: bool,
    /// Tenant that owns jobs made by SNS notifications.
    #[arg(long, env = "INFERQ_EVENT_SNS_TENANT", default_value = "sns")]
    #[serde(default = "default_sns_tenant")]
    pub event_sns_tenant: String,
}

fn default_sns_hosts() -> Vec<String> {
    vec![
        "sns.*.amazonaws.com".into(),
        "sns.*.amazonaws.com.cn".into(),
    ]
}

fn default_sns_tenant() -> String {
    "sns".into()
}

fn default_jwks() -> String {
    "https://www.googleapis.com/oauth2/v3/certs".into()
}

fn default_issuers() -> Vec<String> {
    vec![
        "https://accounts.google.com".into(),
        "accounts.google.com".into(),
    ]
}

fn default_oidc_tenant() -> String {
    "pubsub".into()
}
