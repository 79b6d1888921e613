//! The OpenAPI 3 document (`GET /openapi.json`) and a page to browse it
//! (`GET /docs`).
//!
//! The document is generated from the code: each handler carries a
//! `#[utoipa::path]` attribute next to its implementation and the job
//! types derive their schemas, so the description moves with the code; a
//! test (`api/tests/openapi.rs`) checks that every route the router serves
//! is in it and nothing else. The page is a small self-contained viewer
//! (no CDN, no external script) that renders the document by operation.

use axum::Json;
use axum::http::header;
use axum::response::IntoResponse;
use utoipa::Modify;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "InferQ",
        description = "Job-queue image inference: submit images or videos, poll results; TF Serving and KServe v2 compatible synchronous calls. See the README and docs/ for behaviour and guarantees."
    ),
    paths(
        crate::routes::submit::submit,
        crate::routes::jobs::get,
        crate::routes::jobs::output,
        crate::routes::frames::frames,
        crate::routes::jobs::cancel,
        crate::routes::batch_prediction::create,
        crate::routes::batch_prediction::get,
        crate::routes::batch_prediction::cancel,
        crate::routes::events::gcs,
        crate::routes::events::cloudevents,
        crate::routes::events::s3,
        crate::routes::events::eventbridge,
        crate::routes::events::sns_delivery,
        crate::routes::models::list,
        crate::routes::stats::get,
        crate::routes::models::get,
        crate::routes::models::get_version,
        crate::routes::register::put_version,
        crate::routes::predict::model,
        crate::routes::predict::version,
        crate::routes::tf_metadata::model,
        crate::routes::tf_metadata::version,
        crate::routes::dead_letters::list,
        crate::routes::dead_letters::replay_one,
        crate::routes::dead_letters::replay_many,
        crate::routes::kserve::health::server,
        crate::routes::kserve::health::live,
        crate::routes::kserve::health::ready,
        crate::routes::kserve::model_metadata,
        crate::routes::kserve::version_metadata,
        crate::routes::kserve::config::model_config,
        crate::routes::kserve::config::version_config,
        crate::routes::kserve::health::model_ready,
        crate::routes::kserve::health::version_ready,
        crate::routes::kserve::model_infer,
        crate::routes::kserve::version_infer,
        crate::routes::health::healthz,
        crate::routes::health::readyz,
        crate::routes::console::index,
        crate::routes::console::file,
        document,
        page,
    ),
    modifiers(&ApiKey),
    tags(
        (name = "jobs", description = "Submit images and read results"),
        (name = "batches", description = "Batch prediction over a prefix, JSONL or file list"),
        (name = "events", description = "Storage-event bridge (Pub/Sub, Eventarc, S3)"),
        (name = "models", description = "Served models and versions"),
        (name = "predict", description = "TF Serving / Vertex AI predict"),
        (name = "kserve", description = "KServe v2 / Open Inference Protocol"),
        (name = "admin", description = "Dead letters"),
        (name = "stats", description = "Live service numbers"),
        (name = "console", description = "The web console (static, no key)"),
        (name = "health", description = "Probes"),
        (name = "docs", description = "This document"),
    )
)]
pub struct ApiDoc;

/// Bearer API keys (`--api-keys-file`); routes work without one when no
/// keys are configured.
struct ApiKey;

impl Modify for ApiKey {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// An OpenAPI 3 document (this one), by its top-level members.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct OpenApiDocument {
    /// `3.1.0`.
    openapi: String,
    info: std::collections::BTreeMap<String, serde_json::Value>,
    paths: std::collections::BTreeMap<String, serde_json::Value>,
    components: Option<std::collections::BTreeMap<String, serde_json::Value>>,
    tags: Option<Vec<serde_json::Value>>,
}

/// The document, built once per process.
pub fn spec() -> &'static serde_json::Value {
    static SPEC: std::sync::OnceLock<serde_json::Value> = std::sync::OnceLock::new();
    SPEC.get_or_init(|| {
        let mut doc = ApiDoc::openapi();
        doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
        serde_json::to_value(&doc).expect("the OpenAPI document serialises")
    })
}

/// The OpenAPI document.
#[utoipa::path(get, path = "/openapi.json", tag = "docs",
    responses((status = 200, description = "This document", body = OpenApiDocument)))]
pub async fn document() -> Json<&'static serde_json::Value> {
    Json(spec())
}

/// A page that renders the document.
#[utoipa::path(get, path = "/docs", tag = "docs",
    responses((status = 200, description = "HTML reference", body = crate::http::media::Html, content_type = "text/html")))]
pub async fn page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        include_str!("../../assets/api-docs.html"),
    )
}
