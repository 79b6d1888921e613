//! The bare Python pipeline row: what InferQ is compared with by users.
//!
//! Runs `scripts/bare_pipeline.py` with the project's pinned venv
//! (`.cache/venv`: Pillow, numpy, onnxruntime from the same wheel whose
//! library the workers load) once per image: one process per core, pinned,
//! the same model file and the manifest's preprocessing, a closed loop over
//! the image for the measurement time. The script prints one JSON object;
//! [`BareOutput::parse`] reads it. Its top-1 class is kept so the run can
//! check that the pipeline computes what InferQ computes.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::cli::Settings;
use crate::images::{BenchImage, image_dir};
use crate::table::{Table, pct, sig};

/// What the script prints (the fields the bench uses).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub(crate) struct BareOutput {
    pub images_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub images: u64,
    pub secs: f64,
    pub processes: usize,
    pub cores: Vec<usize>,
    pub top1: u64,
    pub top5: Vec<u64>,
    /// Python, Pillow, numpy and onnxruntime versions.
    #[serde(default)]
    pub versions: serde_json::Map<String, serde_json::Value>,
}

impl BareOutput {
    /// The JSON object on the last non-empty line of the script's stdout.
    pub(crate) fn parse(stdout: &str) -> anyhow::Result<Self> {
        let line = stdout
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .context("the bare pipeline printed nothing")?;
        let out: BareOutput = serde_json::from_str(line)
            .with_context(|| format!("reading the bare pipeline's output {line:?}"))?;
        if !(out.images_per_sec.is_finite() && out.images_per_sec > 0.0) || out.images == 0 {
            bail!("the bare pipeline finished no image: {line}");
        }
        Ok(out)
    }
}

/// One image's bare-pipeline measurement.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct BareRow {
    pub image: String,
    #[serde(flatten)]
    pub out: BareOutput,
    /// images/s ÷ the in-process full-path images/s for this image.
    pub ratio_to_limit: Option<f64>,
    /// InferQ's top-1 class for this image (from the embedded server).
    pub inferq_top1: Option<u64>,
}

impl BareRow {
    /// Whether the pipeline's top-1 equals InferQ's (`None`: not compared).
    pub(crate) fn agrees(&self) -> Option<bool> {
        self.inferq_top1.map(|t| t == self.out.top1)
    }
}

/// The script, relative to the repository root.
pub(crate) const SCRIPT: &str = "scripts/bare_pipeline.py";

/// The venv's python (`--python`, else `.cache/venv/bin/python`).
pub(crate) fn python(settings: &Settings) -> PathBuf {
    settings
        .python
        .clone()
        .unwrap_or_else(|| inferq_tests::root().join(".cache/venv/bin/python"))
}

/// Runs the script for every image, on `cores`.
pub(crate) fn run(
    settings: &Settings,
    images: &[BenchImage],
    cores: &[usize],
) -> anyhow::Result<Vec<BareRow>> {
    let python = python(settings);
    let script = inferq_tests::root().join(SCRIPT);
    let mut rows = Vec::new();
    for image in images {
        eprintln!("bare: {} on cores {cores:?}", image.name);
        let out = run_one(
            &python,
            &script,
            settings,
            &image_dir().join(&image.name),
            cores,
        )?;
        rows.push(BareRow {
            image: image.name.clone(),
            out,
            ratio_to_limit: None,
            inferq_top1: None,
        });
    }
    Ok(rows)
}

fn run_one(
    python: &Path,
    script: &Path,
    settings: &Settings,
    image: &Path,
    cores: &[usize],
) -> anyhow::Result<BareOutput> {
    let cores: Vec<String> = cores.iter().map(usize::to_string).collect();
    let model_dir = std::path::absolute(&settings.model_dir)?;
    let output = Command::new(python)
        .arg(script)
        .arg("--model-dir")
        .arg(&model_dir)
        .args(["--model", &settings.model])
        .args(["--version", &settings.model_version.to_string()])
        .arg("--image")
        .arg(image)
        .args(["--secs", &settings.measure_secs.as_secs_f64().to_string()])
        .args([
            "--warmup",
            &settings.warmup_secs.as_secs_f64().min(1.0).to_string(),
        ])
        .args(["--cores", &cores.join(",")])
        .output()
        .with_context(|| format!("running {} {}", python.display(), script.display()))?;
    if !output.status.success() {
        bail!(
            "{} failed ({}): {}",
            script.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    BareOutput::parse(&String::from_utf8_lossy(&output.stdout))
}

/// The bare-pipeline table.
pub(crate) fn table(rows: &[BareRow]) -> Table {
    let cores = rows
        .first()
        .map(|r| r.out.cores.clone())
        .unwrap_or_default();
    let mut t = Table::new(
        &format!(
            "Bare Python pipeline: Pillow + numpy + onnxruntime, {} pinned process(es) (cores {cores:?}), closed loop",
            cores.len()
        ),
        &[
            "image",
            "img/s",
            "p50 ms",
            "p99 ms",
            "vs limit",
            "top-1",
            "InferQ top-1",
            "agrees",
        ],
    );
    for r in rows {
        t.row(vec![
            r.image.clone(),
            sig(r.out.images_per_sec),
            sig(r.out.p50_ms),
            sig(r.out.p99_ms),
            pct(r.ratio_to_limit),
            r.out.top1.to_string(),
            r.inferq_top1
                .map(|t| t.to_string())
                .unwrap_or_else(|| "-".into()),
            match r.agrees() {
                Some(true) => "yes".into(),
                Some(false) => "NO".into(),
                None => "-".into(),
            },
        ]);
    }
    t.note(format!(
        "{SCRIPT}: decode + manifest preprocessing + inference (1 intra-op thread) + softmax/top-5 per image; InferQ top-1 = the embedded server's answer for the same image"
    ));
    if let Some(v) = rows.first().map(|r| &r.out.versions)
        && !v.is_empty()
    {
        let list: Vec<String> = v
            .iter()
            .map(|(k, v)| format!("{k} {}", v.as_str().unwrap_or("?")))
            .collect();
        t.note(list.join(", "));
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_read_from_the_last_line() {
        let stdout = "some warning\n{\"images_per_sec\": 70.5, \"p50_ms\": 27.0, \"p99_ms\": 40.0, \
                      \"images\": 352, \"secs\": 5.0, \"processes\": 2, \"cores\": [0, 1], \
                      \"top1\": 967, \"top5\": [967, 968, 925, 960, 504]}\n\n";
        let out = BareOutput::parse(stdout).unwrap();
        assert_eq!(out.images_per_sec, 70.5);
        assert_eq!(out.top1, 967);
        assert_eq!(out.cores, vec![0, 1]);
        assert!(out.versions.is_empty());
    }

    #[test]
    fn empty_garbled_or_idle_output_is_an_error() {
        assert!(BareOutput::parse("").is_err());
        assert!(BareOutput::parse("Traceback (most recent call last):\n").is_err());
        let idle = "{\"images_per_sec\": 0.0, \"p50_ms\": 0.0, \"p99_ms\": 0.0, \"images\": 0, \
                    \"secs\": 5.0, \"processes\": 2, \"cores\": [0, 1], \"top1\": 1, \"top5\": [1]}";
        let e = BareOutput::parse(idle).unwrap_err().to_string();
        assert!(e.contains("finished no image"), "{e}");
    }

    #[test]
    fn agreement_needs_inferq_top1() {
        let out = BareOutput::parse(
            "{\"images_per_sec\": 1.0, \"p50_ms\": 1.0, \"p99_ms\": 1.0, \"images\": 1, \
             \"secs\": 1.0, \"processes\": 1, \"cores\": [0], \"top1\": 5, \"top5\": [5]}",
        )
        .unwrap();
        let mut row = BareRow {
            image: "x".into(),
            out,
            ratio_to_limit: None,
            inferq_top1: None,
        };
        assert_eq!(row.agrees(), None);
        row.inferq_top1 = Some(5);
        assert_eq!(row.agrees(), Some(true));
        row.inferq_top1 = Some(6);
        assert_eq!(row.agrees(), Some(false));
    }
}
