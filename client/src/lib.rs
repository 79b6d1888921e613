//! `inferq submit | get | batch`: the command-line client of the HTTP API.
//!
//! The `inferq` binary runs the embedded server unless its first argument
//! is one of [`COMMANDS`]; then it is this client, talking to any InferQ
//! API (embedded or production) at `--url` / `INFERQ_URL` with the key in
//! `--api-key` / `INFERQ_API_KEY`. Output is JSON on stdout, one document
//! per job, so it pipes into `jq`; progress and summaries go to stderr.
//!
//! - `submit FILE|URI…` sends each image (raw bytes for files, a storage
//!   reference for `gs://`, `s3://`, `http(s)://`, `file://`) and, with
//!   `--wait`, long-polls until each job is final;
//! - `get ID` prints a job (optionally waiting for it);
//! - `batch` creates a batch (or follows one with `--attach`), shows a
//!   progress bar until it is final and prints a summary; `--cancel ID`
//!   cancels one;
//! - `models import SOURCE --name N` converts a TensorFlow SavedModel, Keras
//!   `.keras`/`.h5`, TF.js graph or layers model or `.tflite` file to ONNX
//!   (or takes an `.onnx` as it is), checks it against the original
//!   framework, infers its `model.toml` and writes a new version into
//!   `--models-dir` or uploads it to `--server` (see [`import`] and
//!   docs/models.md).
//!
//! Exit status: 0 when everything succeeded, 1 when a job or batch failed
//! (or, for `models import`, the environment did: no Python or TensorFlow),
//! 2 for usage errors and requests the server refused (or imports refused).

mod http;
pub mod import;

use std::path::Path;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};
use serde_json::{Value, json};

pub use http::{Api, ClientError};

/// The subcommands that make `inferq` a client rather than a server.
pub const COMMANDS: &[&str] = &["submit", "get", "batch", "models"];

/// True when `inferq`'s first argument selects the client.
pub fn is_client_command(first: Option<&str>) -> bool {
    first.is_some_and(|a| COMMANDS.contains(&a))
}

#[derive(Debug, Parser)]
#[command(
    name = "inferq",
    about = "InferQ client (run `inferq` without a command for the server)"
)]
struct Cli {
    #[command(flatten)]
    server: ServerArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct ServerArgs {
    /// Base URL of the InferQ API.
    #[arg(
        long,
        global = true,
        env = "INFERQ_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    url: String,
    /// API key (sent as a bearer token).
    #[arg(long, global = true, env = "INFERQ_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Submit images (files or storage URIs) as jobs.
    Submit(SubmitArgs),
    /// Print a job.
    Get {
        id: String,
        /// Wait up to this many seconds for the job to finish.
        #[arg(long, default_value_t = 0.0)]
        wait: f64,
    },
    /// Run a batch with a progress bar and a summary.
    Batch(BatchArgs),
    /// Manage models.
    Models {
        #[command(subcommand)]
        command: ModelsCommand,
    },
}

#[derive(Debug, Subcommand)]
enum ModelsCommand {
    /// Convert a TensorFlow SavedModel, Keras, TF.js or TFLite model (or take an ONNX file),
    /// check it against the original and add it as a model version.
    Import(import::ImportArgs),
}

#[derive(Debug, Args)]
struct SubmitArgs {
    /// Image files, or gs:// s3:// http(s):// file:// references.
    #[arg(required = true)]
    inputs: Vec<String>,
    #[arg(long)]
    model: Option<String>,
    #[arg(long)]
    version: Option<u64>,
    #[arg(long)]
    top_k: Option<usize>,
    /// Also write each result here (a storage prefix ending in `/`).
    #[arg(long)]
    output: Option<String>,
    /// POST a signed notification here when each job is final.
    #[arg(long)]
    webhook: Option<String>,
    /// Wait for every job to finish and print the final records.
    #[arg(long)]
    wait: bool,
}

#[derive(Debug, Args)]
struct BatchArgs {
    #[arg(long)]
    model: Option<String>,
    #[arg(long)]
    version: Option<u64>,
    #[arg(long)]
    top_k: Option<usize>,
    /// Every image under this storage prefix.
    #[arg(long, group = "input")]
    prefix: Option<String>,
    /// A JSONL file of instances ({"b64"}, {"uri"} or {"tensor"} per line).
    #[arg(long, group = "input")]
    jsonl: Option<String>,
    /// A text file with one image URI per line.
    #[arg(long, group = "input")]
    file_list: Option<String>,
    /// Where results, errors and mirrored per-file outputs are written.
    #[arg(long)]
    output: Option<String>,
    /// Lines per results / errors file.
    #[arg(long)]
    shard_size: Option<u64>,
    /// No per-file outputs, only the results and errors files.
    #[arg(long)]
    no_mirror: bool,
    /// POST a signed notification here when the batch is final.
    #[arg(long)]
    webhook: Option<String>,
    /// Makes re-running the same command find the same batch.
    #[arg(long)]
    idempotency_key: Option<String>,
    /// Follow an existing batch instead of creating one.
    #[arg(long, conflicts_with_all = ["prefix", "jsonl", "file_list"])]
    attach: Option<String>,
    /// Cancel a batch.
    #[arg(long, conflicts_with_all = ["prefix", "jsonl", "file_list", "attach"])]
    cancel: Option<String>,
    /// Print the accepted batch and return without following it.
    #[arg(long)]
    no_wait: bool,
}

/// Runs the client on `args` (program name first); returns the exit status.
pub async fn run<I, S>(args: I) -> i32
where
    I: IntoIterator<Item = S>,
    S: Into<std::ffi::OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    let key = cli.server.api_key.as_deref();
    let result = match (cli.command, Api::new(&cli.server.url, key)) {
        (
            Command::Models {
                command: ModelsCommand::Import(a),
            },
            _,
        ) => {
            return import::run(a, key).await.unwrap_or_else(|e| {
                eprintln!("inferq: {e}");
                e.exit_status()
            });
        }
        (_, Err(e)) => {
            eprintln!("inferq: {e}");
            return 2;
        }
        (Command::Submit(a), Ok(api)) => submit(&api, a).await,
        (Command::Get { id, wait }, Ok(api)) => get(&api, &id, wait).await,
        (Command::Batch(a), Ok(api)) => batch(&api, a).await,
    };
    result.unwrap_or_else(|e| {
        eprintln!("inferq: {e}");
        2
    })
}

fn print(v: &Value) {
    println!("{v}");
}

/// Sets the fields whose option was given.
fn set_given<const N: usize>(body: &mut Value, fields: [(&str, Option<Value>); N]) {
    for (k, v) in fields {
        if let Some(v) = v {
            body[k] = v;
        }
    }
}

fn is_reference(s: &str) -> bool {
    ["gs://", "s3://", "http://", "https://", "file://"]
        .iter()
        .any(|p| s.starts_with(p))
}

async fn submit(api: &Api, a: SubmitArgs) -> Result<i32, ClientError> {
    let mut ids = Vec::new();
    for input in &a.inputs {
        let mut body = json!({});
        set_given(
            &mut body,
            [
                ("model", a.model.clone().map(Value::from)),
                ("version", a.version.map(Value::from)),
                ("top_k", a.top_k.map(Value::from)),
            ],
        );
        if let Some(o) = &a.output {
            body["output"] = json!({ "uri": o });
        }
        if let Some(w) = &a.webhook {
            body["webhook"] = json!({ "url": w });
        }
        let job = if is_reference(input) {
            body["input"] = json!({ "uri": input });
            api.post_json("/v1/jobs", &body, None).await?
        } else {
            let bytes = std::fs::read(Path::new(input))
                .map_err(|e| ClientError::Input(format!("{input}: {e}")))?;
            api.post_image(&body, bytes).await?
        };
        if !a.wait {
            print(&job);
        }
        ids.push(job["id"].as_str().unwrap_or_default().to_owned());
    }
    if !a.wait {
        return Ok(0);
    }
    let mut status = 0;
    for id in ids {
        let job = wait_job(api, &id).await?;
        if job["status"] != "succeeded" {
            status = 1;
        }
        print(&job);
    }
    Ok(status)
}

async fn wait_job(api: &Api, id: &str) -> Result<Value, ClientError> {
    loop {
        let job = api.get(&format!("/v1/jobs/{id}?wait=20")).await?;
        let s = job["status"].as_str().unwrap_or_default();
        if !matches!(s, "queued" | "running") {
            return Ok(job);
        }
    }
}

async fn get(api: &Api, id: &str, wait: f64) -> Result<i32, ClientError> {
    let job = api.get(&format!("/v1/jobs/{id}?wait={wait}")).await?;
    print(&job);
    Ok(i32::from(job["status"] == "failed"))
}

async fn batch(api: &Api, a: BatchArgs) -> Result<i32, ClientError> {
    if let Some(id) = &a.cancel {
        let b = api
            .post_json(&format!("/v1/batches/{id}/cancel"), &json!({}), None)
            .await?;
        print(&b);
        return Ok(0);
    }
    let id = match &a.attach {
        Some(id) => id.clone(),
        None => {
            let body = batch_body(&a)?;
            let b = api
                .post_json("/v1/batches", &body, a.idempotency_key.as_deref())
                .await?;
            if a.no_wait {
                print(&b);
                return Ok(0);
            }
            b["id"].as_str().unwrap_or_default().to_owned()
        }
    };
    follow(api, &id).await
}

fn batch_body(a: &BatchArgs) -> Result<Value, ClientError> {
    let input = match (&a.prefix, &a.jsonl, &a.file_list) {
        (Some(p), None, None) => json!({ "prefix": p }),
        (None, Some(j), None) => json!({ "jsonl": j }),
        (None, None, Some(f)) => json!({ "file_list": f }),
        _ => {
            return Err(ClientError::Input(
                "give one of --prefix, --jsonl or --file-list (or --attach ID)".into(),
            ));
        }
    };
    let output = a
        .output
        .as_ref()
        .ok_or_else(|| ClientError::Input("--output PREFIX is required".into()))?;
    let mut body = json!({ "input": input, "output": { "prefix": output } });
    if a.no_mirror {
        body["output"]["mirror"] = json!(false);
    }
    set_given(
        &mut body,
        [
            ("model", a.model.clone().map(Value::from)),
            ("version", a.version.map(Value::from)),
            ("top_k", a.top_k.map(Value::from)),
            ("shard_size", a.shard_size.map(Value::from)),
        ],
    );
    if let Some(w) = &a.webhook {
        body["webhook"] = json!({ "url": w });
    }
    Ok(body)
}

/// Shows a progress bar until the batch is final; prints it and a summary.
async fn follow(api: &Api, id: &str) -> Result<i32, ClientError> {
    let started = Instant::now();
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} {msg:>9} [{bar:40}] {pos}/{len} instances  {per_sec}  eta {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    let record = loop {
        let b = api.get(&format!("/v1/batches/{id}")).await?;
        let counts = &b["counts"];
        let done =
            counts["succeeded"].as_u64().unwrap_or(0) + counts["failed"].as_u64().unwrap_or(0);
        if let Some(total) = counts["total"].as_u64() {
            bar.set_length(total);
        }
        bar.set_position(done);
        let state = b["state"].as_str().unwrap_or_default().to_owned();
        bar.set_message(state.clone());
        if matches!(state.as_str(), "succeeded" | "failed" | "canceled") {
            break b;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    bar.finish();
    let counts = &record["counts"];
    eprintln!(
        "batch {id} {}: {} succeeded, {} failed of {} in {:.1} s",
        record["state"].as_str().unwrap_or("?"),
        counts["succeeded"],
        counts["failed"],
        counts["total"],
        started.elapsed().as_secs_f64()
    );
    for f in record["files"].as_array().into_iter().flatten() {
        eprintln!("  {}", f.as_str().unwrap_or_default());
    }
    if let Some(e) = record.get("error") {
        eprintln!("  error: {e}");
    }
    print(&record);
    Ok(match record["state"].as_str() {
        Some("succeeded") if counts["failed"] == 0 => 0,
        _ => 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_commands_are_recognised() {
        assert!(is_client_command(Some("submit")));
        assert!(is_client_command(Some("batch")));
        assert!(!is_client_command(Some("--listen")));
        assert!(!is_client_command(None));
    }

    #[test]
    fn batch_bodies_follow_the_api() {
        let cli = Cli::try_parse_from([
            "inferq",
            "batch",
            "--prefix",
            "gs://in/x/",
            "--output",
            "gs://out/",
            "--model",
            "m",
            "--shard-size",
            "5",
            "--no-mirror",
        ])
        .unwrap();
        let Command::Batch(a) = cli.command else {
            panic!("not a batch")
        };
        let body = batch_body(&a).unwrap();
        assert_eq!(
            body,
            json!({"input": {"prefix": "gs://in/x/"}, "output": {"prefix": "gs://out/", "mirror": false},
                   "model": "m", "shard_size": 5})
        );
        assert!(
            Cli::try_parse_from(["inferq", "batch", "--prefix", "a", "--jsonl", "b"]).is_err(),
            "inputs are exclusive"
        );
    }
}
