//! Configuration: defaults → file → environment → command-line flags.
//!
//! Each binary has one flat config struct, assembled from the option groups
//! below with `#[command(flatten)]` / `#[serde(flatten)]`. A single
//! definition per option gives its documentation (`--help`), its default, its
//! environment variable (`INFERQ_<NAME>`) and its file key (`<name>` in the
//! TOML/JSON file given by `--config`). [`load`] layers them: a value set on
//! the command line wins over the environment, which wins over the file,
//! which wins over the default.

use std::collections::BTreeSet;
use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches};
use inferq_core::manifest::Provider;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

mod events;
mod video;
pub use events::EventConfig;
pub use video::VideoConfig;

/// Where jobs are queued (RabbitMQ).
#[derive(Debug, Clone, clap::Args, Serialize, Deserialize)]
pub struct BrokerConfig {
    /// AMQP URL of the RabbitMQ broker, or a comma-separated list of them
    /// (the nodes of a cluster, tried in turn).
    #[arg(
        long,
        env = "INFERQ_AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    pub amqp_url: String,
    /// Name of the durable (quorum) queue jobs are published to.
    #[arg(long, env = "INFERQ_QUEUE", default_value = "inferq.jobs")]
    pub queue: String,
}

/// Where results and large images live (Redis).
#[derive(Debug, Clone, clap::Args, Serialize, Deserialize)]
pub struct StoreConfig {
    /// Redis URL for job records, results and out-of-band images:
    /// `redis://…`, or `redis+sentinel://h1:26379,h2:26379/NAME[/DB]` to
    /// follow the primary that Redis Sentinel names.
    #[arg(
        long,
        env = "INFERQ_REDIS_URL",
        default_value = "redis://127.0.0.1:6379/"
    )]
    pub redis_url: String,
    /// Prefix of every Redis key and channel, so deployments can share a Redis.
    #[arg(long, env = "INFERQ_KEY_PREFIX", default_value = "inferq")]
    pub key_prefix: String,
}

/// How long things are kept and how big they may be.
#[derive(Debug, Clone, clap::Args, Serialize, Deserialize)]
pub struct RetentionConfig {
    /// Seconds a job record and its result are kept after the last update.
    #[arg(long, env = "INFERQ_RESULT_TTL_SECS", default_value_t = 86_400)]
    pub result_ttl_secs: u64,
    /// Seconds an out-of-band image is kept (it is deleted once its job ends).
    #[arg(long, env = "INFERQ_BLOB_TTL_SECS", default_value_t = 3_600)]
    pub blob_ttl_secs: u64,
    /// Seconds an `Idempotency-Key` keeps naming the job it created.
    #[arg(long, env = "INFERQ_IDEMPOTENCY_TTL_SECS", default_value_t = 86_400)]
    pub idempotency_ttl_secs: u64,
    /// Seconds a dead-lettered job (record and message, for a replay) is kept.
    #[arg(long, env = "INFERQ_DEAD_LETTER_TTL_SECS", default_value_t = 7 * 86_400)]
    pub dead_letter_ttl_secs: u64,
}

/// Where Prometheus metrics are served (docs/operations.md).
#[derive(Debug, Clone, clap::Args, Serialize, Deserialize)]
pub struct MetricsConfig {
    /// Address of the separate `/metrics` listener; empty turns it off.
    /// Workers default to port 9091 so an API and a worker fit on one host.
    #[arg(long, env = "INFERQ_METRICS_LISTEN", default_value = "0.0.0.0:9090")]
    pub metrics_listen: String,
}

/// Completion webhooks (docs/webhooks.md). The API refuses jobs that ask
/// for a webhook unless a signing secret is set; workers send them.
#[derive(Debug, Clone, clap::Args, Serialize, Deserialize)]
pub struct WebhookConfig {
    /// Signing secrets in the Standard Webhooks format (`whsec_<base64>`),
    /// comma separated. Every delivery is signed with each, so a secret can
    /// be rotated without losing messages. Empty: webhooks are off.
    #[arg(long, env = "INFERQ_WEBHOOK_SECRETS", value_delimiter = ',')]
    #[serde(default)]
    pub webhook_secrets: Vec<String>,
    /// Delivery attempts before a webhook is marked failed.
    #[arg(long, env = "INFERQ_WEBHOOK_MAX_ATTEMPTS", default_value_t = 8)]
    pub webhook_max_attempts: u32,
    /// Seconds before the first retry; each further retry waits twice as
    /// long (±20 % jitter), up to `webhook_max_backoff_secs`.
    #[arg(long, env = "INFERQ_WEBHOOK_BACKOFF_SECS", default_value_t = 5.0)]
    pub webhook_backoff_secs: f64,
    /// Longest wait between two attempts, in seconds.
    #[arg(
        long,
        env = "INFERQ_WEBHOOK_MAX_BACKOFF_SECS",
        default_value_t = 3600.0
    )]
    pub webhook_max_backoff_secs: f64,
    /// Seconds one delivery attempt may take.
    #[arg(long, env = "INFERQ_WEBHOOK_TIMEOUT_SECS", default_value_t = 10.0)]
    pub webhook_timeout_secs: f64,
    /// The `source` attribute of CloudEvents notifications.
    #[arg(long, env = "INFERQ_WEBHOOK_SOURCE", default_value = "/inferq")]
    pub webhook_source: String,
}

/// Batch prediction (`POST /v1/batches`, docs/batches.md).
#[derive(Debug, Clone, clap::Args, Serialize, Deserialize)]
pub struct BatchConfig {
    /// Jobs of one batch queued or running at once; the rest wait in the
    /// coordinator, so a large batch cannot crowd out interactive jobs.
    #[arg(long, env = "INFERQ_BATCH_WINDOW", default_value_t = 64)]
    pub batch_window: usize,
    /// Seconds a coordinator's claim on a batch lasts unless renewed; when
    /// an API process dies mid-batch, another takes over after this long.
    #[arg(long, env = "INFERQ_BATCH_LEASE_SECS", default_value_t = 30.0)]
    pub batch_lease_secs: f64,
    /// Batches one API process coordinates at once.
    #[arg(long, env = "INFERQ_BATCH_CONCURRENCY", default_value_t = 4)]
    pub batch_concurrency: usize,
    /// Most instances in one batch.
    #[arg(long, env = "INFERQ_BATCH_MAX_INSTANCES", default_value_t = 1_000_000)]
    pub batch_max_instances: usize,
    /// Largest JSONL or file-list input read, in bytes (it is held in memory
    /// while the batch runs).
    #[arg(long, env = "INFERQ_BATCH_MAX_INPUT_BYTES", default_value_t = 256 * 1024 * 1024)]
    pub batch_max_input_bytes: usize,
    /// Instances per results or errors file, unless the request says otherwise.
    #[arg(long, env = "INFERQ_BATCH_SHARD_SIZE", default_value_t = 10_000)]
    pub batch_shard_size: u64,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            batch_window: 64,
            batch_lease_secs: 30.0,
            batch_concurrency: 4,
            batch_max_instances: 1_000_000,
            batch_max_input_bytes: 256 * 1024 * 1024,
            batch_shard_size: 10_000,
        }
    }
}

/// Which models are served.
#[derive(Debug, Clone, clap::Args, Serialize, Deserialize)]
pub struct ModelConfig {
    /// Model repository root: `<dir>/<name>/<version>/{model.onnx,model.toml}`.
    #[arg(long, env = "INFERQ_MODEL_DIR", default_value = "models")]
    pub model_dir: PathBuf,
    /// Model used when a request names none.
    #[arg(
        long,
        env = "INFERQ_DEFAULT_MODEL",
        default_value = "efficientnet-lite0"
    )]
    pub default_model: String,
    /// Seconds between rescans of the model directory for new or changed
    /// models (SIGHUP rescans at once); 0 disables polling.
    #[arg(long, env = "INFERQ_MODEL_POLL_SECS", default_value_t = 10.0)]
    pub model_poll_secs: f64,
    /// Accept new model versions over HTTP (`PUT /v1/models/{name}/versions/{v}`),
    /// written into the model directory (which workers must share). Off by
    /// default; when on and API keys are on, only `admin` keys may upload.
    #[arg(long, env = "INFERQ_ALLOW_MODEL_UPLOAD", default_value_t = false, action = clap::ArgAction::Set)]
    pub allow_model_upload: bool,
    /// Largest model upload, in bytes.
    #[arg(long, env = "INFERQ_MAX_MODEL_BYTES", default_value_t = 512 * 1024 * 1024)]
    pub max_model_bytes: usize,
    /// Storage prefixes under which a job or batch may name its model by
    /// reference (`model_uri`: a folder holding `model.onnx` + `model.toml`,
    /// or an `.onnx` file with its `model.toml` beside it), comma
    /// separated, e.g. `gs://models/,file:///srv/models/`. The API installs
    /// each object version once under a content-addressed name. Empty (the
    /// default): `model_uri` is refused.
    #[arg(long, env = "INFERQ_MODEL_URI_ALLOW", value_delimiter = ',')]
    #[serde(default)]
    pub model_uri_allow: Vec<String>,
    /// Python interpreter with the TensorFlow converters (tf2onnx, TensorFlow, tensorflowjs,
    /// onnxruntime; e.g. `.cache/tf-venv/bin/python`), used to import a `model_uri` naming a
    /// TensorFlow-family model (SavedModel or TF.js folder, `.keras`, `.h5`, `.tflite`) once.
    /// Unset (the default): such references are refused with a pointer to
    /// `inferq models import`.
    #[arg(long, env = "INFERQ_MODEL_IMPORT_PYTHON")]
    #[serde(default)]
    pub model_import_python: Option<PathBuf>,
    /// Longest a `model_uri` conversion may run, in seconds; the converter is killed after it.
    #[arg(
        long,
        env = "INFERQ_MODEL_IMPORT_TIMEOUT_SECS",
        default_value_t = 600.0
    )]
    #[serde(default = "default_import_timeout")]
    pub model_import_timeout_secs: f64,
}

fn default_import_timeout() -> f64 {
    600.0
}

/// Input limits, checked cheaply by the API and again by the decoder.
#[derive(Debug, Clone, clap::Args, Serialize, Deserialize)]
pub struct LimitConfig {
    /// Largest accepted request body, in bytes.
    #[arg(long, env = "INFERQ_MAX_BODY_BYTES", default_value_t = 20 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Largest accepted video (MP4, MOV, WebM, animated GIF) in bytes, sent
    /// raw or as multipart, or fetched from `input.uri`; 0 = the same as
    /// max_body_bytes. (A JSON body keeps its own limit, so a base64 video
    /// is held to max_body_bytes.) Above inline_max_bytes a video waits in
    /// Redis, not in the queue message.
    #[arg(long, env = "INFERQ_MAX_VIDEO_BYTES", default_value_t = 64 * 1024 * 1024)]
    #[serde(default = "default_video_bytes")]
    pub max_video_bytes: usize,
    /// Most frames one video job may run. The API refuses a job whose
    /// `max_frames` is above it (`400`); the worker stops any video there
    /// (`video_too_large` when the header already says it would need more).
    /// Set it to the same value for both (one env variable does).
    #[arg(long, env = "INFERQ_VIDEO_MAX_FRAMES", default_value_t = 3000)]
    #[serde(default = "default_video_frames")]
    pub video_max_frames: u64,
    /// Largest accepted image, in pixels (width × height) — the
    /// decompression-bomb guard.
    #[arg(long, env = "INFERQ_MAX_PIXELS", default_value_t = 40_000_000)]
    pub max_pixels: u64,
    /// Images up to this many bytes travel inside the queue message; larger
    /// ones are stored in the result store and referenced. The default equals
    /// the default `max_body_bytes`, so every upload travels in the durable
    /// queue and survives a Redis that loses its data; set below
    /// `max_body_bytes`, the larger images depend on Redis persistence.
    #[arg(long, env = "INFERQ_INLINE_MAX_BYTES", default_value_t = 20 * 1024 * 1024)]
    pub inline_max_bytes: usize,
    /// Largest accepted JSON job body, in bytes. Unset, it is 4/3 of
    /// max_body_bytes plus 64 KiB: a base64 image as large as a raw upload
    /// still fits. The decoded image must stay within max_body_bytes either way.
    #[arg(long, env = "INFERQ_MAX_JSON_BYTES")]
    #[serde(default)]
    pub max_json_bytes: Option<usize>,
    /// Deepest nesting of arrays and objects in a JSON body, checked by a
    /// cheap scan before the JSON is parsed.
    #[arg(long, env = "INFERQ_MAX_JSON_DEPTH", default_value_t = 32)]
    pub max_json_depth: usize,
    /// Longest storage reference (`input.uri`, `output_uri`) in bytes; it can
    /// lower, not raise, the URI parser's own cap of 2048.
    #[arg(long, env = "INFERQ_MAX_URI_BYTES", default_value_t = 2048)]
    pub max_uri_bytes: usize,
    /// Most inputs one request may carry (endpoints that take a list of inputs).
    #[arg(long, env = "INFERQ_MAX_INSTANCES", default_value_t = 64)]
    pub max_instances: usize,
}

fn default_video_bytes() -> usize {
    64 * 1024 * 1024
}

fn default_video_frames() -> u64 {
    3000
}

impl LimitConfig {
    /// The video size limit in effect (see `max_video_bytes`).
    pub fn video_limit(&self) -> usize {
        if self.max_video_bytes == 0 {
            self.max_body_bytes
        } else {
            self.max_video_bytes
        }
    }

    /// The largest upload of any kind: bodies are read up to this, then
    /// held to the limit of what they turned out to be.
    pub fn upload_limit(&self) -> usize {
        self.max_body_bytes.max(self.video_limit())
    }

    /// The JSON body limit in effect (see `max_json_bytes`).
    pub fn json_limit(&self) -> usize {
        self.max_json_bytes.unwrap_or_else(|| {
            self.max_body_bytes
                .saturating_add(self.max_body_bytes / 3)
                .saturating_add(64 * 1024)
        })
    }
}

/// The HTTP side.
#[derive(Debug, Clone, clap::Args, Serialize, Deserialize)]
pub struct HttpConfig {
    /// Address the HTTP API listens on.
    #[arg(long, env = "INFERQ_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: String,
    /// Longest long-poll (`GET /v1/jobs/{id}?wait=`) in seconds; longer waits are capped.
    #[arg(long, env = "INFERQ_MAX_WAIT_SECS", default_value_t = 30.0)]
    pub max_wait_secs: f64,
    /// Seconds a request (other than a long-poll) may take before it is answered 503.
    #[arg(long, env = "INFERQ_REQUEST_TIMEOUT_SECS", default_value_t = 30.0)]
    pub request_timeout_secs: f64,
    /// Seconds requests in progress may take to finish after a shutdown
    /// signal (long-polls are answered at once); then the server exits.
    #[arg(long, env = "INFERQ_SHUTDOWN_GRACE_SECS", default_value_t = 10.0)]
    pub shutdown_grace_secs: f64,
    /// Origins (`https://console.example.com`, comma-separated) whose
    /// browser pages may send state-changing requests (POST, PUT, PATCH,
    /// DELETE) although they are not the origin of the API itself. A request
    /// whose `Origin` header names neither the API's own `Host` nor one of
    /// these is refused with 403; requests without `Origin` (curl, SDKs) pass.
    #[arg(long, env = "INFERQ_ALLOWED_ORIGINS", value_delimiter = ',')]
    #[serde(default)]
    pub allowed_origins: Vec<String>,
}

/// The inference threads.
#[derive(Debug, Clone, clap::Args, Serialize, Deserialize)]
pub struct InferenceConfig {
    /// Inference threads; 0 means one per CPU this process may run on.
    #[arg(long, env = "INFERQ_THREADS", default_value_t = 0)]
    pub threads: usize,
    /// CPU cores to pin the threads to (comma-separated); empty means the
    /// cores this process may run on. Thread i is pinned to cores[i % len].
    #[arg(long, env = "INFERQ_CORES", value_delimiter = ',')]
    #[serde(default)]
    pub cores: Vec<usize>,
    /// Pin inference threads to cores (off lets the OS schedule them).
    #[arg(long, env = "INFERQ_PIN_THREADS", default_value_t = true, action = clap::ArgAction::Set)]
    pub pin_threads: bool,
    /// Path of the ONNX Runtime shared library (libonnxruntime.so). Falls
    /// back to ORT_DYLIB_PATH.
    #[arg(long, env = "INFERQ_ORT_LIBRARY")]
    #[serde(default)]
    pub ort_library: Option<PathBuf>,
    /// Memory for decoded images, in MiB, shared by all inference threads:
    /// a decode waits until its pixels fit, so concurrent large images run
    /// one after another instead of together. 0 = a quarter of the
    /// container's memory limit (cgroup), or 256 MiB without one.
    #[arg(long, env = "INFERQ_DECODE_MEMORY_MIB", default_value_t = 0)]
    #[serde(default)]
    pub decode_memory_mib: u64,
    /// ONNX Runtime execution providers for models whose manifest has no
    /// `[runtime] providers` (comma-separated, in order of preference):
    /// cpu, openvino, xnnpack, cuda, tensorrt. A provider the loaded library
    /// lacks makes those models fail to load, naming the ones it has.
    #[arg(
        long,
        env = "INFERQ_PROVIDERS",
        value_delimiter = ',',
        default_value = "cpu",
        value_parser = clap::value_parser!(Provider)
    )]
    #[serde(default = "cpu_only")]
    pub providers: Vec<Provider>,
}

fn cpu_only() -> Vec<Provider> {
    vec![Provider::Cpu]
}

/// How often a job may be tried before it is dead-lettered.
#[derive(Debug, Clone, clap::Args, Serialize, Deserialize)]
pub struct DeliveryConfig {
    /// A job started this many times without finishing, or returned to the
    /// queue more often than this (its workers keep dying), is dead-lettered
    /// instead of being run again. Also the queue's `x-delivery-limit`: the
    /// API and every worker must use the same value.
    #[arg(long, env = "INFERQ_DELIVERY_LIMIT", default_value_t = 3)]
    pub delivery_limit: u32,
}

/// Admission control: refusing work honestly instead of queueing it forever.
#[derive(Debug, Clone, clap::Args, Serialize, Deserialize)]
pub struct AdmissionConfig {
    /// Jobs of one model that may be accepted and not yet finished (waiting
    /// or running); beyond it submissions get 429 with a Retry-After computed
    /// from the backlog and the model's recent completion rate. 0 = no limit.
    #[arg(long, env = "INFERQ_MAX_BACKLOG", default_value_t = 10_000)]
    pub max_backlog: u64,
    /// HTTP requests handled at once (long-polls included); more get 503
    /// with Retry-After at once instead of piling up. Probes are exempt.
    #[arg(long, env = "INFERQ_MAX_INFLIGHT_REQUESTS", default_value_t = 1024)]
    pub max_inflight_requests: usize,
    /// Request bodies the API may hold in memory at once, in MiB, summed
    /// over the requests in progress: a body reserves its size before it
    /// is read and releases it when its request is answered. A request that
    /// finds the budget spent waits up to --request-timeout-secs, then gets
    /// 503 with Retry-After; a body larger than the whole budget gets 413.
    /// 0 = a quarter of the container's memory limit (cgroup), at least
    /// 64 MiB, or 256 MiB without a limit.
    #[arg(long, env = "INFERQ_BODY_BUDGET_MIB", default_value_t = 0)]
    #[serde(default)]
    pub body_budget_mib: u64,
}

/// Logging.
#[derive(Debug, Clone, clap::Args, Serialize, Deserialize)]
pub struct LogConfig {
    /// Log format: `text` for people, `json` for log pipelines. Levels come from RUST_LOG.
    #[arg(long, env = "INFERQ_LOG_FORMAT", default_value = "text")]
    pub log_format: String,
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("config file {path}: unknown option `{key}`")]
    UnknownKey { path: PathBuf, key: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
    #[error(transparent)]
    Cli(#[from] clap::Error),
}

/// Parses `args` (program name first) into a config, reading the file named
/// by `--config` / `INFERQ_CONFIG` for anything not set by flag or env.
///
/// `T` must have an optional `config` field for the file path; it is not
/// itself read from the file.
pub fn load<T, I, S>(args: I) -> Result<T, ConfigError>
where
    T: CommandFactory + FromArgMatches + Serialize + DeserializeOwned,
    I: IntoIterator<Item = S>,
    S: Into<std::ffi::OsString> + Clone,
{
    let matches = T::command().try_get_matches_from(args)?;
    let parsed = T::from_arg_matches(&matches)?;
    let file: Option<PathBuf> = matches.get_one::<PathBuf>("config").cloned();
    let Some(path) = file else {
        return Ok(parsed);
    };
    let mut value =
        serde_json::to_value(&parsed).map_err(|e| ConfigError::Invalid(e.to_string()))?;
    let overrides = read_file(&path)?;
    let known: BTreeSet<String> = T::command()
        .get_arguments()
        .map(|a| a.get_id().to_string())
        .collect();
    let obj = value
        .as_object_mut()
        .expect("config serialises to an object");
    for (key, v) in overrides {
        if !known.contains(&key) || key == "config" {
            return Err(ConfigError::UnknownKey { path, key });
        }
        if !set_explicitly(&matches, &key) {
            obj.insert(key, v);
        }
    }
    serde_json::from_value(value).map_err(|e| ConfigError::File {
        path,
        message: e.to_string(),
    })
}

/// [`load`] from the process arguments for a binary's `main`: prints help,
/// version or a usage error and exits as a CLI should; any other config
/// error exits with status 2.
pub fn load_or_exit<T>() -> T
where
    T: CommandFactory + FromArgMatches + Serialize + DeserializeOwned,
{
    load_or_exit_from(std::env::args_os())
}

/// [`load_or_exit`] from these arguments (program name first), e.g. with a
/// subcommand word already taken off.
pub fn load_or_exit_from<T, I, S>(args: I) -> T
where
    T: CommandFactory + FromArgMatches + Serialize + DeserializeOwned,
    I: IntoIterator<Item = S>,
    S: Into<std::ffi::OsString> + Clone,
{
    load(args).unwrap_or_else(|e| match e {
        ConfigError::Cli(e) => e.exit(),
        other => {
            eprintln!("{}: {other}", T::command().get_name());
            std::process::exit(2)
        }
    })
}

fn set_explicitly(matches: &ArgMatches, id: &str) -> bool {
    matches!(
        matches.value_source(id),
        Some(ValueSource::CommandLine | ValueSource::EnvVariable)
    )
}

fn read_file(
    path: &std::path::Path,
) -> Result<serde_json::Map<String, serde_json::Value>, ConfigError> {
    let err = |message: String| ConfigError::File {
        path: path.to_owned(),
        message,
    };
    config::Config::builder()
        .add_source(config::File::from(path))
        .build()
        .map_err(|e| err(e.to_string()))?
        .try_deserialize()
        .map_err(|e| err(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser, Serialize, Deserialize)]
    struct Demo {
        #[arg(long, env = "INFERQ_TEST_CONFIG")]
        #[serde(skip)]
        config: Option<PathBuf>,
        #[command(flatten)]
        #[serde(flatten)]
        limits: LimitConfig,
        #[command(flatten)]
        #[serde(flatten)]
        inference: InferenceConfig,
        #[command(flatten)]
        #[serde(flatten)]
        delivery: DeliveryConfig,
    }

    fn file(text: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("inferq-cfg-{}.toml", uuid::Uuid::new_v4()));
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn defaults_apply() {
        let d: Demo = load(["demo"]).unwrap();
        assert_eq!(d.limits.max_pixels, 40_000_000);
        assert_eq!(d.delivery.delivery_limit, 3);
        assert_eq!(d.limits.max_json_depth, 32);
        // A base64 image of the largest raw body fits in the JSON limit.
        let b64 = d.limits.max_body_bytes.div_ceil(3) * 4;
        assert!(d.limits.json_limit() >= b64 + 1024);
        assert!(d.inference.cores.is_empty());
    }

    #[test]
    fn file_overrides_default_and_flag_overrides_file() {
        let p =
            file("max_pixels = 1000\ndelivery_limit = 7\ncores = [1, 0]\nmax_json_bytes = 77\n");
        let d: Demo = load([
            "demo",
            "--config",
            p.to_str().unwrap(),
            "--delivery-limit",
            "9",
        ])
        .unwrap();
        assert_eq!(d.limits.max_pixels, 1000);
        assert_eq!(d.delivery.delivery_limit, 9);
        assert_eq!(d.limits.json_limit(), 77);
        assert_eq!(d.inference.cores, vec![1, 0]);
        std::fs::remove_file(p).unwrap();
    }

    #[test]
    fn unknown_file_keys_are_errors() {
        let p = file("max_pixel = 1000\n");
        let err = load::<Demo, _, _>(["demo", "--config", p.to_str().unwrap()]).unwrap_err();
        assert!(err.to_string().contains("max_pixel"), "{err}");
        std::fs::remove_file(p).unwrap();
    }

    #[test]
    fn bad_flag_is_a_cli_error() {
        assert!(matches!(
            load::<Demo, _, _>(["demo", "--max-pixels", "lots"]),
            Err(ConfigError::Cli(_))
        ));
    }
}
