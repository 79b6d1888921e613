//! `PUT /v1/models/{name}/versions/{version}`: registering a model version
//! over HTTP.
//!
//! The body is either `multipart/form-data` with a `model` part (the ONNX
//! file), a `manifest` part (the `model.toml` text) and optionally a
//! `labels` part, or JSON naming where the API should fetch them:
//! `{"model": "gs://…/model.onnx", "manifest": "gs://…/model.toml",
//! "labels": "gs://…/labels.txt"}` (same storage policy and size cap as job
//! inputs, see `--fetch-*`).
//! The version is written into the shared model directory under a hidden
//! temporary name and renamed into place in one step, so a worker scanning
//! the directory never sees half a model; workers pick it up on their next
//! rescan (poll, SIGHUP, or the first job that names it). Versions are
//! immutable: uploading an existing one is a 409.

use std::path::{Component, Path, PathBuf};

use axum::Json;
use axum::extract::{FromRequest, Multipart, Path as UrlPath, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use inferq_backends::repository::valid_model_name;
use inferq_core::manifest::{MANIFEST_FILE, MODEL_FILE, ModelManifest};

use crate::http::auth::Principal;
use crate::http::error::ApiError;
use crate::state::AppState;

/// The files of one model version.
pub(crate) struct Upload {
    pub(crate) model: Bytes,
    pub(crate) manifest: String,
    pub(crate) labels: Option<Bytes>,
}

/// A registration by storage reference (`application/json`): the files
/// are fetched under the caller's `in=` fence.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct UploadRefs {
    /// URI of the ONNX file (`gs://`, `s3://`, `https://`, `file://`).
    model: String,
    /// URI of `model.toml`.
    manifest: String,
    /// URI of `labels.txt`.
    labels: Option<String>,
}

/// A registration by upload (`multipart/form-data`).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct UploadForm {
    /// The ONNX file.
    #[schema(format = Binary, value_type = String)]
    model: Vec<u8>,
    /// `model.toml` (docs/models.md).
    manifest: String,
    /// `labels.txt`, one label per line.
    #[schema(format = Binary, value_type = Option<String>)]
    labels: Option<Vec<u8>>,
}

/// The version registered.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct Registered {
    name: String,
    version: u64,
    /// `/v1/models/{name}/versions/{version}`.
    href: String,
}

/// Fetches the files a JSON registration names.
/// The references pass the caller's storage fence (its `in=` prefixes) like
/// any job input.
async fn fetch_upload(
    state: &AppState,
    principal: &Principal,
    body: Bytes,
) -> Result<Upload, ApiError> {
    let refs: UploadRefs = serde_json::from_slice(&body)
        .map_err(|e| ApiError::InvalidArgument(format!("invalid registration JSON: {e}")))?;
    let fence = state.auth.fence_for(principal.tenant());
    let fence = &fence;
    let fetch = |uri: String| async move {
        let parsed = crate::intake::encodings::check_uri(&uri)?;
        crate::http::auth::principal::check_fence(
            fence,
            inferq_backends::fetch::fence::Access::Read,
            &uri,
        )?;
        state.fetcher.check(&parsed)?;
        state.fetcher.get(&parsed).await.map_err(ApiError::from)
    };
    let model = fetch(refs.model).await?;
    let manifest = String::from_utf8(fetch(refs.manifest).await?.to_vec())
        .map_err(|_| ApiError::InvalidArgument("the manifest is not UTF-8 text".into()))?;
    let labels = match refs.labels {
        Some(uri) => Some(fetch(uri).await?),
        None => None,
    };
    Ok(Upload {
        model,
        manifest,
        labels,
    })
}

async fn read_upload(req: Request, limit: usize) -> Result<Upload, ApiError> {
    let bad = |m: String| ApiError::InvalidArgument(m);
    if let Some(charge) = req
        .extensions()
        .get::<crate::http::body_budget::BodyCharge>()
    {
        charge.reserve_declared(req.headers(), limit).await?;
    }
    let mut form = Multipart::from_request(req, &())
        .await
        .map_err(|e| bad(format!("expected multipart/form-data: {}", e.body_text())))?;
    let (mut model, mut manifest, mut labels) = (None, None, None);
    let field_err = |e: axum::extract::multipart::MultipartError| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge { limit: 0 }
        } else {
            ApiError::InvalidArgument(format!("invalid multipart body: {}", e.body_text()))
        }
    };
    while let Some(field) = form.next_field().await.map_err(field_err)? {
        match field.name().unwrap_or_default() {
            "model" => model = Some(field.bytes().await.map_err(field_err)?),
            "manifest" => manifest = Some(field.text().await.map_err(field_err)?),
            "labels" => labels = Some(field.bytes().await.map_err(field_err)?),
            other => {
                return Err(bad(format!(
                    "unknown part `{other}`; expected model, manifest, labels"
                )));
            }
        }
    }
    Ok(Upload {
        model: model.ok_or_else(|| bad("the `model` part (ONNX file) is missing".into()))?,
        manifest: manifest
            .ok_or_else(|| bad("the `manifest` part (model.toml) is missing".into()))?,
        labels,
    })
}

/// Where the labels file goes: inside the model's own directory only.
fn labels_path(version_dir: &Path, rel: &str) -> Result<PathBuf, ApiError> {
    let mut depth = 1i32; // version_dir is one below the model directory
    for c in Path::new(rel).components() {
        match c {
            Component::Normal(_) => depth += 1,
            Component::ParentDir => depth -= 1,
            Component::CurDir => {}
            _ => depth = -1,
        }
        if depth < 0 {
            break;
        }
    }
    if depth < 1 {
        return Err(ApiError::InvalidArgument(format!(
            "labels path `{rel}` leaves the model's directory"
        )));
    }
    Ok(version_dir.join(rel))
}

fn write_version(dir: &Path, upload: &Upload, manifest: &ModelManifest) -> Result<(), ApiError> {
    let io = |e: std::io::Error| ApiError::Internal(format!("writing the model failed: {e}"));
    std::fs::create_dir_all(dir).map_err(io)?;
    std::fs::write(dir.join(MODEL_FILE), &upload.model).map_err(io)?;
    std::fs::write(dir.join(MANIFEST_FILE), &upload.manifest).map_err(io)?;
    if let (Some(bytes), Some(rel)) = (&upload.labels, &manifest.output.labels) {
        let path = labels_path(dir, rel)?;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        std::fs::write(path, bytes).map_err(io)?;
    }
    Ok(())
}

/// `PUT /v1/models/{name}/versions/{version}`
#[utoipa::path(
    put,
    path = "/v1/models/{name}/versions/{version}",
    tag = "models",
    params(("name" = String, Path, description = "Model name"), ("version" = u64, Path, description = "Model version")),
    request_body(description = "The files as parts `model` (ONNX), `manifest` (model.toml) and optional `labels`, or their storage references as JSON", content((UploadForm = "multipart/form-data"), (UploadRefs = "application/json"))),
    responses((status = 201, description = "Registered", body = Registered), (status = 400, description = "Invalid request", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 401, description = "Missing or unknown API key", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 403, description = "The key lacks the scope", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 409, description = "Conflict with the current state", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 413, description = "Body too large", body = crate::http::error::Problem, content_type = "application/problem+json")),
    security(("api_key" = []))
)]
pub async fn put_version(
    State(state): State<AppState>,
    principal: Principal,
    path: Result<UrlPath<(String, u64)>, axum::extract::rejection::PathRejection>,
    req: Request,
) -> Result<Response, ApiError> {
    let UrlPath((name, version)) = path.map_err(|e| ApiError::InvalidArgument(e.body_text()))?;
    let cfg = &state.settings.models;
    if !cfg.allow_model_upload {
        return Err(ApiError::Forbidden(
            "model upload is disabled; start the API with --allow-model-upload".into(),
        ));
    }
    if !valid_model_name(&name) || version == 0 {
        return Err(ApiError::InvalidArgument(
            "model names use a-z, 0-9, '-', '_', '.'; versions are positive integers".into(),
        ));
    }
    let is_json = req
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let upload = if is_json {
        let (parts, body) = req.into_parts();
        let body = crate::http::body::read_body(&parts, body, 64 * 1024).await?;
        fetch_upload(&state, &principal, body).await?
    } else {
        read_upload(req, cfg.max_model_bytes).await?
    };
    install(&state, &name, version, upload).await?;
    let href = format!("/v1/models/{name}/versions/{version}");
    let body = Registered {
        name,
        version,
        href,
    };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// Validates a model version and installs it into the model directory in
/// one rename, then rescans; [`ApiError::VersionExists`] when it is there.
/// Shared by uploads and models named by storage reference (`model_uri`).
pub(crate) async fn install(
    state: &AppState,
    name: &str,
    version: u64,
    upload: Upload,
) -> Result<(), ApiError> {
    let cfg = &state.settings.models;
    let manifest = ModelManifest::parse(&upload.manifest, Path::new(MANIFEST_FILE))
        .map_err(|e| ApiError::InvalidArgument(format!("invalid manifest: {e}")))?;
    // An ONNX file is a protobuf ModelProto; its first field is ir_version (tag 0x08).
    if upload.model.first() != Some(&0x08) {
        return Err(ApiError::InvalidArgument(
            "the `model` part is not an ONNX file".into(),
        ));
    }
    if manifest.output.labels.is_some() && upload.labels.is_none() {
        let model_dir = cfg.model_dir.join(name);
        let rel = manifest.output.labels.clone().unwrap_or_default();
        if !labels_path(&model_dir.join(version.to_string()), &rel)?.is_file() {
            return Err(ApiError::InvalidArgument(format!(
                "the manifest names labels `{rel}`; send them as the `labels` part"
            )));
        }
    }
    let final_dir = cfg.model_dir.join(name).join(version.to_string());
    if final_dir.exists() {
        return Err(ApiError::VersionExists {
            name: name.to_owned(),
            version,
        });
    }
    let staging = cfg
        .model_dir
        .join(name)
        .join(format!(".incoming-{}", uuid::Uuid::new_v4().simple()));
    let staged = {
        let (staging, final_dir) = (staging.clone(), final_dir.clone());
        tokio::task::spawn_blocking(move || {
            write_version(&staging, &upload, &manifest)?;
            // rename(2) refuses to replace a non-empty directory, so a
            // concurrent upload of the same version loses cleanly.
            std::fs::rename(&staging, &final_dir).map_err(|e| {
                if final_dir.exists() {
                    ApiError::Conflict
                } else {
                    ApiError::Internal(format!("installing the model failed: {e}"))
                }
            })
        })
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
    };
    if let Err(e) = staged {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(match e {
            ApiError::Conflict => ApiError::VersionExists {
                name: name.to_owned(),
                version,
            },
            other => other,
        });
    }
    tracing::info!(model = %name, version, "model version registered");
    state.models.rescan().await;
    Ok(())
}
