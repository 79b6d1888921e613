//! The InferQ HTTP API.
//!
//! A thin front: it validates image jobs cheaply, enqueues them with
//! publisher confirms and serves results. It never decodes pixels and never
//! runs inference — that is the workers' job — so a burst of submissions
//! cannot starve the event loop that also answers health checks and polls.
//!
//! [`app`] builds the router from an [`AppState`] (tests drive it with
//! `oneshot` and in-memory backends); [`serve`] runs it on a listener until a
//! shutdown future resolves; [`run`] wires the production backends
//! (RabbitMQ, Redis) from an [`ApiConfig`].

pub mod config;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
pub mod http;
pub mod intake;
pub mod metrics;
pub mod routes;
pub mod state;

use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::Uri;
use axum::middleware;
use axum::routing::{get, post, put};
use inferq_backends::broker::amqp::AmqpQueue;
use inferq_backends::fetch::Fetcher;
use inferq_backends::repository::{LiveRepository, ModelRepository};
use inferq_backends::store::redis::RedisStore;
use inferq_runtime::signals::ReloadTrigger;
use tower_http::trace::TraceLayer;

use http::{auth, body_budget, concurrency, error_member, origin, server, trace};
use routes::{
    batch_prediction, console, dead_letters, events, frames, health, jobs, kserve, models, openapi,
    predict, register, stats, submit, tf_metadata,
};

pub use config::ApiConfig;
pub use http::error::ApiError;
pub use state::{ApiCatalog, AppState, ModelCatalog, Settings, SettingsSources};

/// The API's routes.
///
/// Every `/v1` route, and the 404/405 fallbacks, sit behind
/// [`auth::authenticate`]; each route names the scope it needs with
/// [`auth::require`]. Only the health probes are outside, because
/// orchestrators call them without credentials, and the static files of the
/// web console ([`console`]), which are the same for everyone (the page's API
/// calls carry the user's key).
pub fn app(state: AppState) -> Router {
    use auth::{Scope, require};
    // Multipart bodies are read through axum's limit; raw and JSON bodies
    // through our own reader with the same limit. A video may be larger
    // than an image: each upload is held to its own kind's limit once its
    // first bytes are known (`intake::encodings::check_size`).
    let body_limit = DefaultBodyLimit::max(state.settings.limits.upload_limit());
    let method_not_allowed = || async { ApiError::MethodNotAllowed };
    let events = Router::new()
        .route("/v1/events/gcs", require(Scope::Submit, post(events::gcs)))
        .route(
            "/v1/events/cloudevents",
            require(Scope::Submit, post(events::cloudevents)),
        )
        .route("/v1/events/s3", require(Scope::Submit, post(events::s3)))
        .route(
            "/v1/events/eventbridge",
            require(Scope::Submit, post(events::eventbridge)),
        );
    let inflight = concurrency::InFlight::new(state.settings.max_inflight_requests);
    // With push-token verification the event routes authenticate by the
    // token (Pub/Sub cannot send an API key); otherwise like every route.
    let (keyed_events, pushed_events) = match &state.settings.event_oidc {
        Some(verifier) => (
            Router::new(),
            events
                .layer(middleware::from_fn_with_state(
                    verifier.clone(),
                    events::push_auth,
                ))
                .layer(middleware::from_fn_with_state(
                    inflight.clone(),
                    concurrency::in_flight,
                )),
        ),
        None => (events, Router::new()),
    };
    // SNS cannot send an API key or a token: the message signature and the
    // topic allow-list authenticate it (see events::sns); served only when
    // topics are configured.
    let pushed_events = match &state.settings.event_sns {
        Some(_) => pushed_events.merge(
            Router::new()
                .route("/v1/events/sns", post(events::sns_delivery))
                .layer(middleware::from_fn_with_state(
                    inflight.clone(),
                    concurrency::in_flight,
                )),
        ),
        None => pushed_events,
    };
    let v1 = Router::new()
        .merge(keyed_events)
        .route("/v1/jobs", require(Scope::Submit, post(submit::submit)))
        .route("/v1/jobs/{id}", require(Scope::Read, get(jobs::get)))
        .route(
            "/v1/jobs/{id}/output",
            require(Scope::Read, get(jobs::output)),
        )
        .route(
            "/v1/jobs/{id}/frames",
            require(Scope::Read, get(frames::frames)),
        )
        .route(
            "/v1/jobs/{id}/cancel",
            require(Scope::Submit, post(jobs::cancel)),
        )
        .route(
            "/v1/batches",
            require(Scope::Submit, post(batch_prediction::create)),
        )
        .route(
            "/v1/batches/{id}",
            require(Scope::Read, get(batch_prediction::get)),
        )
        .route(
            "/v1/batches/{id}/cancel",
            require(Scope::Submit, post(batch_prediction::cancel)),
        )
        .route("/v1/models", require(Scope::Read, get(models::list)))
        .route(
            "/v1/models/{name}/metadata",
            require(Scope::Read, get(tf_metadata::model)),
        )
        .route(
            "/v1/models/{name}/versions/{version}/metadata",
            require(Scope::Read, get(tf_metadata::version)),
        )
        .route("/v1/stats", require(Scope::Read, get(stats::get)))
        .route(
            "/v2/models/{name}",
            require(Scope::Read, get(kserve::model_metadata)),
        )
        .route(
            "/v2/models/{name}/versions/{version}",
            require(Scope::Read, get(kserve::version_metadata)),
        )
        .route(
            "/v2/models/{name}/infer",
            require(Scope::Submit, post(kserve::model_infer)),
        )
        .route(
            "/v2/models/{name}/versions/{version}/infer",
            require(Scope::Submit, post(kserve::version_infer)),
        )
        .route(
            "/v2/models/{name}/config",
            require(Scope::Read, get(kserve::config::model_config)),
        )
        .route(
            "/v2/models/{name}/versions/{version}/config",
            require(Scope::Read, get(kserve::config::version_config)),
        )
        .route(
            "/v2/models/{name}/ready",
            require(Scope::Read, get(kserve::health::model_ready)),
        )
        .route(
            "/v2/models/{name}/versions/{version}/ready",
            require(Scope::Read, get(kserve::health::version_ready)),
        )
        .route(
            "/v1/admin/dead-letters",
            require(Scope::Admin, get(dead_letters::list)),
        )
        .route(
            "/v1/admin/dead-letters/replay",
            require(Scope::Admin, post(dead_letters::replay_many)),
        )
        .route(
            "/v1/admin/dead-letters/{id}/replay",
            require(Scope::Admin, post(dead_letters::replay_one)),
        )
        .route(
            "/v1/models/{name}",
            require(Scope::Read, get(models::get))
                .merge(require(Scope::Submit, post(predict::model))),
        )
        .route(
            "/v1/models/{name}/versions/{version}",
            require(Scope::Read, get(models::get_version))
                .merge(require(Scope::Admin, put(register::put_version)))
                .merge(require(Scope::Submit, post(predict::version)))
                .layer(DefaultBodyLimit::max(state.settings.models.max_model_bytes)),
        )
        .fallback(|uri: Uri| async move { ApiError::RouteNotFound(uri.path().to_owned()) })
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            state.auth.clone(),
            auth::authenticate,
        ))
        // Outside auth: a busy server sheds load before spending a hash.
        .layer(middleware::from_fn_with_state(
            inflight,
            concurrency::in_flight,
        ));
    // Probes are outside auth and the in-flight limit: a busy server is
    // still alive and must not be restarted for being busy. The API
    // description is public too, like the documentation it is.
    let probes = Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/openapi.json", get(openapi::document))
        .route("/docs", get(openapi::page))
        .route("/v2", get(kserve::health::server))
        .route("/v2/health/live", get(kserve::health::live))
        .route("/v2/health/ready", get(kserve::health::ready))
        .route("/", get(console::index))
        .route("/console/{file}", get(console::file))
        .method_not_allowed_fallback(method_not_allowed);
    v1.merge(pushed_events)
        .merge(probes)
        // Before authentication: a cross-site page is refused whether or not
        // the browser holds a key (and the embedded server has none).
        .layer(middleware::from_fn_with_state(
            state.settings.allowed_origins.clone(),
            origin::same_origin,
        ))
        .layer(middleware::from_fn(metrics::track))
        .layer(middleware::from_fn_with_state(
            body_budget::BodyBudget::new(
                state.settings.body_budget_bytes,
                state.settings.request_timeout,
            ),
            body_budget::hold,
        ))
        .layer(body_limit)
        // Outside everything that can refuse a request, so that every error
        // on a /v2 or `:predict` path carries the protocol's `error` member.
        .layer(middleware::from_fn(error_member::add_error_member))
        .layer(TraceLayer::new_for_http())
        .layer(middleware::from_fn(trace::propagate))
        .with_state(state)
}

/// Serves the API on `listener` until `shutdown` resolves, then stops
/// accepting connections, answers long-polls at once with the job's current
/// state, and gives the requests in progress the configured grace period to
/// finish before returning.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let grace = state.settings.shutdown_grace;
    let (tx, rx) = tokio::sync::watch::channel(false);
    let signal = async move {
        shutdown.await;
        tracing::info!(grace = ?grace, "shutting down: finishing requests in progress");
        let _ = tx.send(true);
    };
    let router = app(state).layer(axum::Extension(concurrency::Draining(rx.clone())));
    let server = async {
        server::serve_connections(listener, router, signal).await;
        Ok(())
    };
    let mut rx = rx;
    let deadline = async move {
        let _ = rx.wait_for(|d| *d).await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        served = server => served,
        _ = deadline => {
            tracing::warn!("shutdown grace period over; dropping the requests still in progress");
            Ok(())
        }
    }
}

/// Failures that stop the API from starting.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot bind {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Models(#[from] inferq_core::manifest::ManifestError),
    #[error(transparent)]
    Store(#[from] inferq_backends::store::StoreError),
    #[error("storage configuration: {0}")]
    Fetch(#[from] inferq_backends::fetch::FetchError),
    #[error("API keys: {0}")]
    Auth(#[from] crate::http::auth::keys::AuthConfigError),
    #[error("server error: {0}")]
    Serve(std::io::Error),
    #[error(transparent)]
    EventRule(#[from] events::rules::RuleError),
    #[error(transparent)]
    Webhook(#[from] inferq_backends::webhook::sign::SecretError),
    #[error(transparent)]
    EventOidc(#[from] events::oidc::NoAllowedEmails),
    #[error(transparent)]
    EventSns(#[from] events::sns::SnsConfigError),
}

/// Loads the model manifests, logging the ones that cannot be used.
pub fn load_models(dir: &Path, default_model: &str) -> Result<ModelRepository, RunError> {
    let scan = ModelRepository::scan(dir)?;
    for e in &scan.errors {
        tracing::error!(error = %e, "model skipped");
    }
    if scan.repository.get(default_model, None).is_none() {
        tracing::warn!(model = default_model, dir = %dir.display(),
            "the default model is not in the repository; requests without ?model= will get 404");
    }
    Ok(scan.repository)
}

/// Builds the production state: manifests, RabbitMQ queue, Redis store.
pub async fn production_state(config: &ApiConfig) -> Result<AppState, RunError> {
    // Keys first: a bad key file should stop the start before any connection.
    let auth = Arc::new(auth::Authenticator::from_config(&config.auth)?);
    let models = load_models(&config.models.model_dir, &config.models.default_model)?;
    let live = Arc::new(LiveRepository::new(&config.models.model_dir, models));
    let queue = AmqpQueue::new(
        &config.broker.amqp_url,
        &config.broker.queue,
        "inferq-api",
        config.delivery.delivery_limit,
    );
    // Connect eagerly so a misconfiguration shows at start, but start anyway:
    // readiness reports the broker until it is back.
    if let Err(e) = inferq_backends::broker::JobQueue::check(&queue).await {
        tracing::warn!(error = %e, "broker not reachable yet");
    }
    let store = RedisStore::new(&config.store.redis_url, &config.store.key_prefix)?;
    let fetcher = Fetcher::new(&config.fetch)?;
    Ok(AppState {
        queue: Arc::new(queue),
        store: Arc::new(store),
        models: Arc::new(ApiCatalog(live)),
        fetcher: Arc::new(fetcher.clone()),
        settings: Arc::new(Settings::build(
            SettingsSources {
                http: &config.http,
                models: &config.models,
                limits: &config.limits,
                retention: &config.retention,
                admission: &config.admission,
                events: &config.events,
                webhooks: &config.webhooks,
                batches: &config.batches,
            },
            &fetcher,
        )?),
        auth,
    })
}

/// Runs the production API (RabbitMQ + Redis) until `shutdown` resolves.
pub async fn run(
    config: ApiConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let listener = tokio::net::TcpListener::bind(&config.http.listen)
        .await
        .map_err(|source| RunError::Bind {
            addr: config.http.listen.clone(),
            source,
        })?;
    run_on(listener, config, shutdown).await
}

/// [`run`] on an already bound listener (tests bind port 0).
pub async fn run_on(
    listener: tokio::net::TcpListener,
    config: ApiConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let state = production_state(&config).await?;
    let limits = &config.limits;
    if limits.inline_max_bytes < limits.max_body_bytes {
        tracing::warn!(
            inline_max_bytes = limits.inline_max_bytes,
            max_body_bytes = limits.max_body_bytes,
            "uploads above inline_max_bytes wait in Redis, not in the queue: \
             a Redis restart without persistence loses them (blob_missing)"
        );
    }
    let catalog = state.models.clone();
    let poll = inferq_runtime::signals::poll_interval(config.models.model_poll_secs);
    let watcher = tokio::spawn(async move {
        let mut trigger = ReloadTrigger::new(poll);
        loop {
            trigger.next().await;
            catalog.rescan().await;
        }
    });
    // One signal stops both the server and the batch coordinator.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let coordinator = tokio::spawn(batch_prediction::coordinator::run(
        state.clone(),
        until(stop_rx.clone()),
    ));
    inferq_runtime::metrics::set_build_info("api");
    let metrics = inferq_runtime::metrics::listener::spawn(
        &config.metrics.metrics_listen,
        until(stop_rx.clone()),
    )
    .await;
    let gauges = tokio::spawn(metrics::refresh_gauges(
        state.store.clone(),
        state.queue.clone(),
        state.models.clone(),
        until(stop_rx.clone()),
    ));
    tracing::info!(addr = ?listener.local_addr().ok(), "inferq-api listening");
    let served = serve(listener, state, until(stop_rx))
        .await
        .map_err(RunError::Serve);
    let _ = coordinator.await;
    let _ = gauges.await;
    if let Some(m) = metrics {
        let _ = m.await;
    }
    watcher.abort();
    served
}

/// Resolves once the flag turns true (or its sender is gone).
pub async fn until(mut stop: tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
