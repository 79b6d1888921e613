//! Reading a job submission in any of the encodings clients send.
//!
//! - a raw image or video body (`image/*`, `video/*`, `application/octet-stream`);
//! - `multipart/form-data`: a file part (`file` or `image`) plus optional
//!   `model`, `model_uri`, `version`, `top_k`, `output_uri`, `deadline`,
//!   `timeout`, `webhook_url`, `webhook_format`, `fps` and `max_frames` fields;
//! - JSON: `{"model", "model_uri", "version", "top_k", "deadline", "timeout", "fps",
//!   "max_frames", "input": {...}, "output": {"uri"}, "webhook": {"url", "format"}}`
//!   where `input` is exactly one of `{"b64": "<base64 or data: URL>"}` (the
//!   TF Serving convention), `{"uri": "gs://…|s3://…|https://…|file:///…"}`
//!   or `{"tensor": [[[…]]]}` (a nested list in the model's input layout).
//!
//! Everything here is cheap: images are only sniffed, URIs only checked
//! syntactically (the worker fetches them), tensors only flattened. Model
//! specific checks (tensor shape and dtype) happen once the model is known.
//! The request limits of [`crate::http::request_limits`] (JSON size and depth, URI length)
//! are applied here, whatever the encoding. Raw and multipart bodies are read up
//! to the larger of the image and video limits, then held to the limit of what
//! their first bytes say they are ([`check_size`]).

use axum::body::Body;
use axum::extract::{FromRequest, Multipart, Request};
use axum::http::{HeaderMap, header};
use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use bytes::Bytes;
use serde::Deserialize;

use crate::http::body::read_body;
use crate::http::body_budget::BodyCharge;
use crate::http::error::ApiError;
use crate::http::request_limits::{check_json_depth, check_uri_len};
use crate::intake::json_tensor::JsonTensor;
use inferq_backends::fetch::StorageUri;
use inferq_runtime::config::LimitConfig;

/// Per-job options, from the query string and/or the body (the body wins).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobOptions {
    pub model: Option<String>,
    /// The model by storage reference (see [`crate::intake::model_uri`]).
    pub model_uri: Option<String>,
    pub version: Option<u64>,
    pub top_k: Option<usize>,
    pub output_uri: Option<String>,
    /// The job must start by this instant (RFC 3339) or it ends `expired`.
    pub deadline: Option<String>,
    /// The job must start within this many seconds of acceptance.
    pub timeout: Option<f64>,
    /// Where to POST a signed notification when the job is final.
    pub webhook_url: Option<String>,
    /// `standard` (default) or `cloudevents`.
    pub webhook_format: Option<String>,
    /// Video inputs: frames sampled per second of video (absent: all).
    pub fps: Option<f64>,
    /// Video inputs: most frames run (absent: the worker's default cap).
    pub max_frames: Option<u64>,
}

impl JobOptions {
    fn overlay(&mut self, body: JobOptions) {
        self.model = body.model.or(self.model.take());
        self.model_uri = body.model_uri.or(self.model_uri.take());
        self.version = body.version.or(self.version);
        self.top_k = body.top_k.or(self.top_k);
        self.output_uri = body.output_uri.or(self.output_uri.take());
        self.deadline = body.deadline.or(self.deadline.take());
        self.timeout = body.timeout.or(self.timeout);
        self.webhook_url = body.webhook_url.or(self.webhook_url.take());
        self.webhook_format = body.webhook_format.or(self.webhook_format.take());
        self.fps = body.fps.or(self.fps);
        self.max_frames = body.max_frames.or(self.max_frames);
    }
}

/// The input itself.
#[derive(Debug, Clone)]
pub enum Payload {
    /// Encoded image (or video) bytes; `encoding` says how they arrived.
    Image {
        bytes: Bytes,
        encoding: &'static str,
    },
    /// A storage reference the worker will fetch.
    Uri(String),
    /// A ready model input: row-major values and their shape.
    Tensor { shape: Vec<usize>, values: Vec<f32> },
}

/// A parsed submission.
#[derive(Debug)]
pub struct Submission {
    pub options: JobOptions,
    pub payload: Payload,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JsonJob {
    model: Option<String>,
    model_uri: Option<String>,
    version: Option<u64>,
    top_k: Option<usize>,
    deadline: Option<String>,
    timeout: Option<f64>,
    /// Video inputs: frames sampled per second of video (absent: every frame).
    fps: Option<f64>,
    /// Video inputs: most frames run (absent: the server's default cap).
    max_frames: Option<u64>,
    input: JsonInput,
    output: Option<JsonOutput>,
    webhook: Option<JsonWebhook>,
}

/// A job as a `multipart/form-data` form, for the OpenAPI document (the
/// parts are read one by one by [`multipart`]): the image in `file` (or
/// `image`, or any part with a filename) and the options as text fields.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct FormJob {
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
    model: Option<String>,
    model_uri: Option<String>,
    version: Option<u64>,
    top_k: Option<usize>,
    output_uri: Option<String>,
    /// RFC 3339 time after which the job is not started.
    deadline: Option<String>,
    timeout: Option<f64>,
    webhook_url: Option<String>,
    webhook_format: Option<String>,
    /// Video: frames per second to sample.
    fps: Option<f64>,
    /// Video: most frames to run.
    max_frames: Option<u64>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JsonWebhook {
    url: String,
    format: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JsonInput {
    b64: Option<String>,
    uri: Option<String>,
    /// A nested list in the model's input layout.
    #[schema(value_type = Option<Vec<serde_json::Value>>)]
    tensor: Option<JsonTensor>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JsonOutput {
    uri: String,
}

fn media_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// Reads the request body in whichever encoding it declares; `options`
/// (from the query string) are overridden by those in the body.
pub async fn parse(
    req: Request,
    mut options: JobOptions,
    limits: &LimitConfig,
) -> Result<Submission, ApiError> {
    let ct = media_type(req.headers());
    let payload =
        if ct.starts_with("image/") || ct.starts_with("video/") || ct == "application/octet-stream"
        {
            let (parts, body) = req.into_parts();
            let bytes = read_body(&parts, body, limits.upload_limit()).await?;
            check_size(&bytes, limits)?;
            Payload::Image {
                bytes,
                encoding: "raw",
            }
        } else if ct == "multipart/form-data" {
            if let Some(charge) = req.extensions().get::<BodyCharge>() {
                charge
                    .reserve_declared(req.headers(), limits.upload_limit())
                    .await?;
            }
            let (form, payload) = multipart(req).await?;
            if let Payload::Image { bytes, .. } = &payload {
                check_size(bytes, limits)?;
            }
            options.overlay(form);
            payload
        } else if ct == "application/json" {
            let (parts, body): (_, Body) = req.into_parts();
            let bytes = read_body(&parts, body, limits.json_limit()).await?;
            let job = parse_json(&bytes, limits)?;
            options.overlay(job.options);
            job.payload
        } else {
            return Err(ApiError::UnsupportedMediaType(format!(
                "content type `{ct}` is not accepted; send a raw image or video (image/*, \
             video/*, application/octet-stream), multipart/form-data or application/json"
            )));
        };
    if let Some(uri) = &options.output_uri {
        check_uri_len("output_uri", uri, limits)?;
    }
    if let Some(uri) = &options.model_uri {
        check_uri_len("model_uri", uri, limits)?;
    }
    if let Some(url) = &options.webhook_url {
        check_uri_len("webhook_url", url, limits)?;
    }
    Ok(Submission { options, payload })
}

/// Parses a JSON job body (already read, within the JSON size limit).
///
/// Pure, so the fuzz target `request_json` exercises exactly what the
/// handler runs. The nesting depth is checked before the parser runs.
pub fn parse_json(bytes: &[u8], limits: &LimitConfig) -> Result<Submission, ApiError> {
    check_json_depth(bytes, limits.max_json_depth)?;
    let job: JsonJob = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::InvalidArgument(format!("invalid JSON job: {e}")))?;
    let options = JobOptions {
        model: job.model,
        model_uri: job.model_uri,
        version: job.version,
        top_k: job.top_k,
        output_uri: job.output.map(|o| o.uri),
        deadline: job.deadline,
        timeout: job.timeout,
        webhook_url: job.webhook.as_ref().map(|w| w.url.clone()),
        webhook_format: job.webhook.and_then(|w| w.format),
        fps: job.fps,
        max_frames: job.max_frames,
    };
    if let Some(uri) = &options.output_uri {
        check_uri_len("output.uri", uri, limits)?;
    }
    if let Some(uri) = &options.model_uri {
        check_uri_len("model_uri", uri, limits)?;
    }
    if let Some(url) = &options.webhook_url {
        check_uri_len("webhook.url", url, limits)?;
    }
    let payload = json_input(job.input, limits)?;
    Ok(Submission { options, payload })
}

async fn multipart(req: Request) -> Result<(JobOptions, Payload), ApiError> {
    let mut form = Multipart::from_request(req, &()).await.map_err(|e| {
        ApiError::InvalidArgument(format!("invalid multipart body: {}", e.body_text()))
    })?;
    let mut options = JobOptions::default();
    let mut image = None;
    let too_large = |e: axum::extract::multipart::MultipartError| {
        if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge { limit: 0 }
        } else {
            ApiError::InvalidArgument(format!("invalid multipart body: {}", e.body_text()))
        }
    };
    while let Some(field) = form.next_field().await.map_err(too_large)? {
        let name = field.name().unwrap_or_default().to_owned();
        let is_file = field.file_name().is_some();
        match name.as_str() {
            "file" | "image" => image = Some(field.bytes().await.map_err(too_large)?),
            _ if is_file => image = Some(field.bytes().await.map_err(too_large)?),
            "model" | "model_uri" | "version" | "top_k" | "output_uri" | "deadline" | "timeout"
            | "webhook_url" | "webhook_format" | "fps" | "max_frames" => {
                let text = field.text().await.map_err(too_large)?;
                let text = text.trim().to_owned();
                let number = |t: &str| {
                    t.parse().map_err(|_| {
                        ApiError::InvalidArgument(format!("field `{name}` must be a number"))
                    })
                };
                match name.as_str() {
                    "model" => options.model = Some(text),
                    "model_uri" => options.model_uri = Some(text),
                    "version" => options.version = Some(number(&text)?),
                    "top_k" => options.top_k = Some(number(&text)? as usize),
                    "timeout" | "fps" => {
                        let value = Some(text.parse().map_err(|_| {
                            ApiError::InvalidArgument(format!("field `{name}` must be a number"))
                        })?);
                        if name == "fps" {
                            options.fps = value;
                        } else {
                            options.timeout = value;
                        }
                    }
                    "max_frames" => options.max_frames = Some(number(&text)?),
                    "deadline" => options.deadline = Some(text),
                    "webhook_url" => options.webhook_url = Some(text),
                    "webhook_format" => options.webhook_format = Some(text),
                    _ => options.output_uri = Some(text),
                }
            }
            other => {
                return Err(ApiError::InvalidArgument(format!(
                    "unknown form field `{other}`; expected file, model, model_uri, version, top_k, output_uri, deadline, timeout, webhook_url, webhook_format, fps, max_frames"
                )));
            }
        }
    }
    let bytes = image.ok_or_else(|| {
        ApiError::InvalidArgument("the form has no `file` part with the image".into())
    })?;
    Ok((
        options,
        Payload::Image {
            bytes,
            encoding: "multipart",
        },
    ))
}

/// One instance of a batch's JSONL input: `{"b64": …}`, `{"uri": …}` or
/// `{"tensor": …}`, checked like the `input` of a JSON job.
pub fn parse_instance(line: &[u8], limits: &LimitConfig) -> Result<Payload, ApiError> {
    check_json_depth(line, limits.max_json_depth)?;
    let input: JsonInput = serde_json::from_slice(line)
        .map_err(|e| ApiError::InvalidArgument(format!("invalid instance: {e}")))?;
    json_input(input, limits)
}

/// An instance given as base64 alone (TF Serving's bare string and
/// `{"image_bytes": {"b64"}}`), checked like `{"b64": …}`.
pub fn b64_instance(b64: Option<String>, limits: &LimitConfig) -> Result<Payload, ApiError> {
    json_input(
        JsonInput {
            b64,
            uri: None,
            tensor: None,
        },
        limits,
    )
}

fn json_input(input: JsonInput, limits: &LimitConfig) -> Result<Payload, ApiError> {
    // A base64 image must obey the same limit as one sent raw.
    let image = |text: &str| {
        let bytes = decode_b64(text)?;
        check_size(&bytes, limits)?;
        Ok(Payload::Image {
            bytes,
            encoding: "b64",
        })
    };
    match (input.b64, input.uri, input.tensor) {
        (Some(b64), None, None) => image(&b64),
        (None, Some(uri), None) if uri.starts_with("data:") => image(&uri),
        (None, Some(uri), None) => {
            check_uri_len("input.uri", &uri, limits)?;
            check_uri(&uri)?;
            Ok(Payload::Uri(uri))
        }
        (None, None, Some(JsonTensor { shape, values })) => Ok(Payload::Tensor { shape, values }),
        _ => Err(ApiError::InvalidArgument(
            "`input` must have exactly one of `b64`, `uri` or `tensor`".into(),
        )),
    }
}

/// Holds an upload to its limit: `max_video_bytes` for a video (see
/// [`inferq_core::video::sniff`]), `max_body_bytes` for anything else.
pub fn check_size(bytes: &[u8], limits: &LimitConfig) -> Result<(), ApiError> {
    let limit = if inferq_core::video::sniff(bytes).is_some() {
        limits.video_limit()
    } else {
        limits.max_body_bytes
    };
    if bytes.len() > limit {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    Ok(())
}

/// Standard or URL-safe base64, padded or not, or a `data:…;base64,` URL.
pub fn decode_b64(text: &str) -> Result<Bytes, ApiError> {
    let data = if let Some(rest) = text.strip_prefix("data:") {
        let (meta, data) = rest.split_once(',').ok_or_else(|| {
            ApiError::InvalidArgument("a data: URL needs a comma before the data".into())
        })?;
        if !meta.ends_with(";base64") {
            return Err(ApiError::InvalidArgument(
                "only base64 data: URLs are accepted (data:image/png;base64,…)".into(),
            ));
        }
        data
    } else {
        text
    };
    let config =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    let standard = GeneralPurpose::new(&base64::alphabet::STANDARD, config);
    let url_safe = GeneralPurpose::new(&base64::alphabet::URL_SAFE, config);
    let data = data.trim();
    standard
        .decode(data)
        .or_else(|_| url_safe.decode(data))
        .map(Bytes::from)
        .map_err(|e| ApiError::InvalidArgument(format!("`b64` is not valid base64: {e}")))
}

/// Syntax of a storage reference (scheme, bucket or host, length). Policy
/// (allow-lists, private addresses, local root) is checked by the caller
/// against the fetcher, and enforced again where the bytes are fetched.
pub fn check_uri(uri: &str) -> Result<StorageUri, ApiError> {
    StorageUri::parse(uri).map_err(ApiError::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_variants_and_data_urls() {
        assert_eq!(&decode_b64("aGk=").unwrap()[..], b"hi");
        assert_eq!(&decode_b64("aGk").unwrap()[..], b"hi");
        assert_eq!(
            &decode_b64("data:image/png;base64,aGk=").unwrap()[..],
            b"hi"
        );
        assert_eq!(&decode_b64("-_8").unwrap()[..], [0xfb, 0xff]);
        assert!(decode_b64("data:text/plain,hi").is_err());
        assert!(decode_b64("not base64!").is_err());
    }

    #[test]
    fn uri_syntax() {
        for ok in [
            "gs://bucket/k.jpg",
            "s3://bucket/k",
            "https://example.com/a.png",
            "file:///data/x.png",
        ] {
            check_uri(ok).unwrap();
        }
        for bad in [
            "ftp://x/y",
            "gs:///k",
            "file://relative",
            "nope",
            "https://a/\n",
        ] {
            assert!(check_uri(bad).is_err(), "{bad}");
        }
        assert!(check_uri(&format!("gs://bucket/{}", "k".repeat(5000))).is_err());
    }
}
