//! `inferq serve | submit | get | batch | models`: the `inferq` command
//! line.
//!
//! `inferq serve` (or `inferq` with server options and no command, as
//! before) runs the embedded server; the `inferq` binary handles that
//! itself and hands every other command to [`run`]. The client commands
//! talk to any InferQ API (embedded or production) at `--url` /
//! `INFERQ_URL` with the key in `--api-key` / `INFERQ_API_KEY`. Output is
//! JSON on stdout, one document per job, so it pipes into `jq`; progress
//! bars and summaries go to stderr.
//!
//! - `submit FILE|URI|-…` sends each image (raw bytes for files, `-` for
//!   standard input, a storage reference for `gs://`, `s3://`,
//!   `http(s)://`, `file://`) with its own `Idempotency-Key`, retries 429
//!   and 503 after their `Retry-After`, and with `--wait` long-polls until
//!   each job is final; `--output DIR` also saves image outputs (see
//!   [`submit`]);
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
//! Exit status, the same for every command: 0 when everything succeeded
//! (or, without waiting, was accepted); 1 when a job or batch ended in any
//! other final state (`failed`, `canceled`, `expired`, `dead_lettered`) —
//! or, for `models import`, the environment failed (no Python or
//! TensorFlow); 2 for usage errors and requests the server refused (after
//! the retries); 3 when `get` found the job not final yet.

mod batch;
mod http;
pub mod import;
mod submit;

use clap::{Args, Parser, Subcommand};
use serde_json::Value;

pub use http::{Api, ClientError};

/// The subcommands that make `inferq` a client rather than a server.
pub const COMMANDS: &[&str] = &["submit", "get", "batch", "models"];

/// True when `inferq`'s first argument selects the client.
pub fn is_client_command(first: Option<&str>) -> bool {
    first.is_some_and(|a| COMMANDS.contains(&a))
}

/// Exit status 1: a job ended in a final state other than `succeeded`.
pub const EXIT_NOT_SUCCEEDED: i32 = 1;
/// Exit status 2: a usage error, or a request the server refused.
pub const EXIT_REFUSED: i32 = 2;
/// Exit status 3: `get` found the job still `queued` or `running`.
pub const EXIT_NOT_FINAL: i32 = 3;

/// The exit status a job's record gives (see the module docs).
pub fn job_exit_status(job: &Value) -> i32 {
    match job["status"].as_str() {
        Some("succeeded") => 0,
        Some("queued" | "running") => EXIT_NOT_FINAL,
        _ => EXIT_NOT_SUCCEEDED,
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "inferq",
    version,
    about = "InferQ: the embedded server (`serve`) and the client of any InferQ API",
    after_help = "`inferq` with server options and no command runs `inferq serve` with them.\n\
Exit status: 0 succeeded (or accepted, without waiting); 1 a job or batch ended \
failed, canceled, expired or dead_lettered; 2 usage error or request refused; \
3 `get`: the job is not final yet."
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
    /// Run the embedded server: API and inference in one process, in-memory
    /// queue and store (`inferq serve --help` lists its options).
    Serve(ServeArgs),
    /// Submit images (files, `-` for stdin, or storage URIs) as jobs.
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

/// What follows `serve`: the server's own options, parsed by the `inferq`
/// binary (this parser only lists the command).
#[derive(Debug, Args)]
#[command(disable_help_flag = true)]
struct ServeArgs {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    args: Vec<String>,
}

#[derive(Debug, Subcommand)]
enum ModelsCommand {
    /// Convert a TensorFlow SavedModel, Keras, TF.js or TFLite model (or take an ONNX file),
    /// check it against the original and add it as a model version.
    Import(import::ImportArgs),
}

#[derive(Debug, Args)]
struct SubmitArgs {
    /// Image files, `-` (standard input), or gs:// s3:// http(s):// file:// references.
    #[arg(required = true)]
    inputs: Vec<String>,
    #[arg(long)]
    model: Option<String>,
    #[arg(long)]
    version: Option<u64>,
    #[arg(long)]
    top_k: Option<usize>,
    /// Save each job's image output (and its views) into this local directory as
    /// `<input name>.<ext>`; implies --wait. A value with a scheme (`gs://…/`) is taken as
    /// --output-uri, as in earlier versions.
    #[arg(long)]
    output: Option<String>,
    /// Also have the worker write each result here (a storage prefix ending in `/`).
    #[arg(long)]
    output_uri: Option<String>,
    /// POST a signed notification here when each job is final.
    #[arg(long)]
    webhook: Option<String>,
    /// Wait for every job to finish and print the final records (a single video job
    /// shows a bar of its frames meanwhile).
    #[arg(long)]
    wait: bool,
    /// Video inputs: frames sampled per second of video (default: every frame).
    #[arg(long)]
    fps: Option<f64>,
    /// Video inputs: the most frames run (default: the server's cap).
    #[arg(long)]
    max_frames: Option<u64>,
    /// Idempotency-Key of the submission (`KEY-1`, `KEY-2`, … with several inputs); re-running
    /// the command with it returns the same jobs. Default: a random key per input, so
    /// retries after 429/503 never duplicate a job.
    #[arg(long)]
    idempotency_key: Option<String>,
    /// Retries of a request answered 429 or 503, each after its Retry-After.
    #[arg(long, default_value_t = 5)]
    retries: u32,
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
    let retries = match &cli.command {
        Command::Submit(a) => a.retries,
        _ => 5,
    };
    let result = match (cli.command, Api::new(&cli.server.url, key)) {
        (Command::Serve(_), _) => {
            eprintln!("inferq: `serve` is run by the inferq binary, not this client");
            return EXIT_REFUSED;
        }
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
            return EXIT_REFUSED;
        }
        (Command::Submit(a), Ok(api)) => submit::submit(&api.with_retries(retries), a).await,
        (Command::Get { id, wait }, Ok(api)) => get(&api, &id, wait).await,
        (Command::Batch(a), Ok(api)) => batch::batch(&api, a).await,
    };
    result.unwrap_or_else(|e| {
        eprintln!("inferq: {e}");
        EXIT_REFUSED
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

/// Long-polls a job until it is final.
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
    Ok(job_exit_status(&job))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn exit_status_is_one_rule_for_every_command() {
        for (status, code) in [
            ("succeeded", 0),
            ("failed", 1),
            ("canceled", 1),
            ("expired", 1),
            ("dead_lettered", 1),
            ("queued", 3),
            ("running", 3),
        ] {
            assert_eq!(
                job_exit_status(&json!({ "status": status })),
                code,
                "{status}"
            );
        }
    }

    #[test]
    fn help_lists_every_command() {
        use clap::CommandFactory;
        let help = Cli::command().render_help().to_string();
        for c in ["serve", "submit", "get", "batch", "models"] {
            assert!(help.contains(c), "{c} missing from:\n{help}");
        }
        let cli = Cli::try_parse_from(["inferq", "submit", "-", "--idempotency-key", "k"]).unwrap();
        let Command::Submit(a) = cli.command else {
            panic!("not submit")
        };
        assert_eq!(
            (a.inputs, a.idempotency_key, a.retries),
            (vec!["-".to_owned()], Some("k".into()), 5)
        );
    }

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
        let body = batch::batch_body(&a).unwrap();
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
