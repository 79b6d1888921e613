//! `inferq submit`: send images as jobs, optionally wait for them and save
//! their image outputs.
//!
//! Each input is one job: a file's bytes (`-` reads standard input once), or
//! a storage reference (`gs://`, `s3://`, `http(s)://`, `file://`) the
//! workers fetch. Every submission carries its own `Idempotency-Key` —
//! `--idempotency-key K` for one input, `K-1`, `K-2`, … for several, a
//! random one otherwise — so the retries of [`crate::http`] after a 429 or
//! 503, and a re-run of the same command with the same key, never make a
//! second job. With several inputs a progress bar and a summary go to
//! stderr; the job documents go to stdout, one JSON line each.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::{Value, json};

use crate::{Api, ClientError, SubmitArgs, job_exit_status, print, set_given};

/// Where a job's input comes from.
enum Input {
    /// A storage reference the workers fetch.
    Reference(String),
    /// Bytes read here, with the name outputs are saved under.
    Bytes { name: String, bytes: Vec<u8> },
}

fn is_reference(s: &str) -> bool {
    ["gs://", "s3://", "http://", "https://", "file://"]
        .iter()
        .any(|p| s.starts_with(p))
}

/// Reads every input before anything is sent, so a missing file is a
/// usage error (status 2) rather than half a submission.
fn read_inputs(inputs: &[String]) -> Result<Vec<Input>, ClientError> {
    if inputs.iter().filter(|i| *i == "-").count() > 1 {
        return Err(ClientError::Input(
            "`-` (standard input) may be given once".into(),
        ));
    }
    inputs
        .iter()
        .map(|input| {
            if is_reference(input) {
                return Ok(Input::Reference(input.clone()));
            }
            let bytes = if input == "-" {
                let mut buf = Vec::new();
                std::io::stdin()
                    .read_to_end(&mut buf)
                    .map_err(|e| ClientError::Input(format!("standard input: {e}")))?;
                buf
            } else {
                std::fs::read(Path::new(input))
                    .map_err(|e| ClientError::Input(format!("{input}: {e}")))?
            };
            let name = if input == "-" {
                "stdin".to_owned()
            } else {
                Path::new(input)
                    .file_stem()
                    .map_or_else(|| "output".into(), |s| s.to_string_lossy().into_owned())
            };
            Ok(Input::Bytes { name, bytes })
        })
        .collect()
}

/// The name an input's outputs are saved under.
fn stem(input: &Input) -> String {
    match input {
        Input::Bytes { name, .. } => name.clone(),
        Input::Reference(uri) => {
            let last = uri
                .trim_end_matches('/')
                .rsplit('/')
                .next()
                .unwrap_or("output");
            let stem = last.rsplit_once('.').map_or(last, |(s, _)| s);
            if stem.is_empty() {
                "output".into()
            } else {
                stem.into()
            }
        }
    }
}

/// The idempotency key of input `i` of `n`.
fn key_for(given: Option<&str>, i: usize, n: usize) -> String {
    match given {
        Some(k) if n == 1 => k.to_owned(),
        Some(k) => format!("{k}-{}", i + 1),
        None => uuid::Uuid::new_v4().to_string(),
    }
}

/// `--output`: a storage prefix (it has a scheme) goes to the job as its
/// `output_uri`; anything else is a local directory for image outputs.
fn output_target(a: &SubmitArgs) -> Result<(Option<String>, Option<PathBuf>), ClientError> {
    match (&a.output, &a.output_uri) {
        (Some(_), Some(_)) if a.output.as_deref().is_some_and(|o| o.contains("://")) => Err(
            ClientError::Input("give the storage prefix once (--output-uri)".into()),
        ),
        (Some(o), uri) if o.contains("://") => {
            Ok((Some(o.clone()), uri.clone().map(PathBuf::from)))
        }
        (Some(dir), uri) => Ok((uri.clone(), Some(PathBuf::from(dir)))),
        (None, uri) => Ok((uri.clone(), None)),
    }
}

pub(crate) async fn submit(api: &Api, a: SubmitArgs) -> Result<i32, ClientError> {
    let (output_uri, save_dir) = output_target(&a)?;
    let inputs = read_inputs(&a.inputs)?;
    if let Some(dir) = &save_dir {
        std::fs::create_dir_all(dir)
            .map_err(|e| ClientError::Input(format!("{}: {e}", dir.display())))?;
    }
    let wait = a.wait || save_dir.is_some();
    let started = Instant::now();
    let bar = progress(inputs.len() as u64, "submitted");
    let mut ids = Vec::with_capacity(inputs.len());
    for (i, input) in inputs.iter().enumerate() {
        let mut body = json!({});
        set_given(
            &mut body,
            [
                ("model", a.model.clone().map(Value::from)),
                ("version", a.version.map(Value::from)),
                ("top_k", a.top_k.map(Value::from)),
                ("fps", a.fps.map(Value::from)),
                ("max_frames", a.max_frames.map(Value::from)),
            ],
        );
        if let Some(o) = &output_uri {
            body["output"] = json!({ "uri": o });
        }
        if let Some(w) = &a.webhook {
            body["webhook"] = json!({ "url": w });
        }
        let key = key_for(a.idempotency_key.as_deref(), i, inputs.len());
        let job = match input {
            Input::Reference(uri) => {
                body["input"] = json!({ "uri": uri });
                api.post_json("/v1/jobs", &body, Some(&key)).await?
            }
            Input::Bytes { bytes, .. } => api.post_image(&body, bytes.clone(), Some(&key)).await?,
        };
        if !wait {
            print(&job);
        }
        ids.push(job["id"].as_str().unwrap_or_default().to_owned());
        bar.inc(1);
    }
    bar.finish_and_clear();
    if inputs.len() > 1 || api.retried() > 0 {
        eprintln!(
            "submitted {} jobs in {:.1} s ({} requests retried after 429/503)",
            ids.len(),
            started.elapsed().as_secs_f64(),
            api.retried()
        );
    }
    if !wait {
        return Ok(0);
    }
    let bar = progress(ids.len() as u64, "finished");
    let mut status = 0;
    let mut counts = std::collections::BTreeMap::<String, u64>::new();
    let mut saved = 0;
    for (id, input) in ids.iter().zip(&inputs) {
        let job = if ids.len() == 1 {
            wait_with_progress(api, id).await?
        } else {
            crate::wait_job(api, id).await?
        };
        status = status.max(job_exit_status(&job));
        let s = job["status"].as_str().unwrap_or("?").to_owned();
        *counts.entry(s).or_default() += 1;
        if let Some(dir) = &save_dir {
            saved += save_outputs(api, &job, dir, &stem(input)).await?;
        }
        bar.suspend(|| print(&job));
        bar.inc(1);
    }
    bar.finish_and_clear();
    if ids.len() > 1 || save_dir.is_some() {
        let states: Vec<String> = counts.iter().map(|(k, v)| format!("{v} {k}")).collect();
        eprintln!(
            "{} jobs final in {:.1} s: {}",
            ids.len(),
            started.elapsed().as_secs_f64(),
            states.join(", ")
        );
        if let Some(dir) = &save_dir {
            eprintln!("saved {saved} image outputs to {}", dir.display());
        }
    }
    Ok(status)
}

/// Waits for one job, drawing a bar of its `progress` (the frames of a
/// video job) on stderr while it runs; a job without progress is just
/// long-polled.
async fn wait_with_progress(api: &Api, id: &str) -> Result<Value, ClientError> {
    let mut bar: Option<indicatif::ProgressBar> = None;
    loop {
        let job = api.get(&format!("/v1/jobs/{id}?wait=2")).await?;
        let s = job["status"].as_str().unwrap_or_default();
        if !matches!(s, "queued" | "running") {
            if let Some(b) = bar {
                b.finish_and_clear();
            }
            return Ok(job);
        }
        let p = &job["progress"];
        if let (Some(done), Some(total)) = (p["frames_done"].as_u64(), p["frames_total"].as_u64()) {
            let b = bar.get_or_insert_with(|| progress_of(total, "frames"));
            b.set_length(total.max(done));
            b.set_position(done);
        }
    }
}

/// A bar on stderr when there is more than one job (hidden when stderr is
/// not a terminal, as indicatif does).
fn progress(len: u64, what: &str) -> indicatif::ProgressBar {
    if len < 2 {
        return indicatif::ProgressBar::hidden();
    }
    progress_of(len, what)
}

/// A bar of `len` steps named `what` on stderr (hidden when stderr is not
/// a terminal).
fn progress_of(len: u64, what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{{bar:40}} {{pos}}/{{len}} {what}  {{per_sec}}  eta {{eta}}"
        ))
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar
}

/// Writes a succeeded job's image output (and its other renderings, the
/// `views` served at `href?view=NAME`) into `dir` as `<stem>.<ext>`
/// (`<stem>.<view>.<ext>`); returns how many were written.
async fn save_outputs(
    api: &Api,
    job: &Value,
    dir: &Path,
    stem: &str,
) -> Result<usize, ClientError> {
    let result = &job["result"];
    if job["status"] != "succeeded" || !result["href"].is_string() {
        return Ok(0);
    }
    let id = job["id"].as_str().unwrap_or_default();
    let href = format!("/v1/jobs/{id}/output");
    let mut paths = vec![(href.clone(), stem.to_owned())];
    for view in result["views"].as_array().into_iter().flatten() {
        if let Some(name) = view.as_str() {
            paths.push((format!("{href}?view={name}"), format!("{stem}.{name}")));
        }
    }
    let mut written = 0;
    for (path, name) in paths {
        let (bytes, content_type) = api.get_bytes(&path).await?;
        let ext = match content_type.split(';').next().unwrap_or_default().trim() {
            "image/png" => "png",
            "image/jpeg" => "jpg",
            "image/webp" => "webp",
            "application/json" => "json",
            _ => "bin",
        };
        let file = dir.join(format!("{name}.{ext}"));
        std::fs::write(&file, bytes)
            .map_err(|e| ClientError::Input(format!("{}: {e}", file.display())))?;
        written += 1;
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_one_per_input() {
        assert_eq!(key_for(Some("k"), 0, 1), "k");
        assert_eq!(key_for(Some("k"), 1, 3), "k-2");
        assert_ne!(key_for(None, 0, 2), key_for(None, 1, 2));
    }

    #[test]
    fn outputs_are_named_after_their_inputs() {
        assert_eq!(stem(&Input::Reference("gs://b/in/cat.jpg".into())), "cat");
        assert_eq!(stem(&Input::Reference("https://h/x/".into())), "x");
        let bytes = Input::Bytes {
            name: "dog".into(),
            bytes: vec![],
        };
        assert_eq!(stem(&bytes), "dog");
    }

    #[test]
    fn stdin_is_read_once() {
        let e = read_inputs(&["-".into(), "-".into()]).err().unwrap();
        assert!(e.to_string().contains("once"), "{e}");
        assert!(matches!(
            read_inputs(&["/nonexistent/x.png".into()]),
            Err(ClientError::Input(_))
        ));
    }
}
