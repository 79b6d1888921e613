//! Delivering completion webhooks: the outbox dispatcher and its signatures.
//!
//! What a webhook *is* (its URL, format and delivery outcome) is vocabulary
//! ([`inferq_core::webhook`]). Here is the part with I/O: [`dispatch`] claims
//! due outbox entries from the store and POSTs them, [`sign`] computes the
//! Standard Webhooks signatures, and [`spawn_dispatcher`] starts one from
//! the options.

pub mod dispatch;
pub mod sign;

/// The dispatcher settings from the options.
pub fn dispatch_config(
    cfg: &inferq_runtime::config::WebhookConfig,
    result_ttl: std::time::Duration,
) -> dispatch::DispatchConfig {
    let secs = |s: f64, lo: f64, hi: f64| std::time::Duration::from_secs_f64(s.clamp(lo, hi));
    dispatch::DispatchConfig {
        max_attempts: cfg.webhook_max_attempts.max(1),
        backoff: secs(cfg.webhook_backoff_secs, 0.01, 86_400.0),
        max_backoff: secs(cfg.webhook_max_backoff_secs, 0.01, 7.0 * 86_400.0),
        timeout: secs(cfg.webhook_timeout_secs, 0.1, 300.0),
        source: cfg.webhook_source.clone(),
        ttl: result_ttl,
        poll: std::time::Duration::from_millis(50),
        concurrency: 16,
    }
}

/// Starts a [`dispatch::Dispatcher`] on the runtime when signing secrets
/// are configured (global ones, or any tenant's from its API key entry:
/// `tenant_secrets`, see [`crate::tenant::webhook_secrets`]); `Ok(None)`
/// when webhooks are off.
pub fn spawn_dispatcher(
    cfg: &inferq_runtime::config::WebhookConfig,
    tenant_secrets: &std::collections::HashMap<String, Vec<String>>,
    result_ttl: std::time::Duration,
    store: std::sync::Arc<dyn crate::store::ResultStore>,
    fetcher: crate::fetch::Fetcher,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<Option<tokio::task::JoinHandle<()>>, sign::SecretError> {
    let signers = sign::Signers::new(&cfg.webhook_secrets, tenant_secrets)?;
    if signers.is_empty() {
        return Ok(None);
    }
    let dispatcher =
        dispatch::Dispatcher::new(store, fetcher, signers, dispatch_config(cfg, result_ttl));
    Ok(Some(tokio::spawn(dispatcher.run(shutdown))))
}
