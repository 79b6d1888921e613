//! `inferq models import` end to end: one tiny Keras classifier saved in every format the
//! command reads (tests/fixtures/make_import_models.py, one Python process), each imported
//! with the real binary, served by the embedded server, and answering the class the original
//! framework answers on the same image. Also the refusals (unknown format, unreadable file,
//! tolerance exceeded, unsupported op, missing signature, existing version, bad flags) leave
//! nothing behind, and `--server` uploads through the registration route with an API key.
//!
//! Needs `.cache/tf-venv` with tensorflowjs (`make models-seed`; `make test` builds it). When it
//! is missing the tests skip, unless INFERQ_TEST_REQUIRE_MODELS is set (`make test`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use base64::Engine;

use inferq_tests::*;
use serde_json::Value;

/// (fixture format key, source path in the fixture dir)
const FORMATS: &[(&str, &str)] = &[
    ("savedmodel", "savedmodel"),
    ("keras", "model.keras"),
    ("h5", "model.h5"),
    ("tfjs_graph", "tfjs_graph"),
    ("tfjs_layers", "tfjs_layers/model.json"),
    ("tflite", "model.tflite"),
    ("onnx", "model.onnx"),
];

fn tf_python() -> PathBuf {
    root().join(".cache/tf-venv/bin/python")
}

/// The fixtures directory, made once per test binary; None (after printing why) to skip.
fn fixtures() -> Option<&'static Path> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    DIR.get_or_init(|| {
        let py = tf_python();
        let tfjs = root().join(".cache/tf-venv/.tfjs-installed");
        if !py.is_file() || !tfjs.is_file() || !ort_library().is_file() {
            let why = "no .cache/tf-venv with tensorflowjs, or no ONNX Runtime: `make models-seed`";
            assert!(
                std::env::var("INFERQ_TEST_REQUIRE_MODELS").is_err(),
                "{why}"
            );
            eprintln!("SKIPPED: {why}");
            return None;
        }
        // Under target/tmp, replaced on every run (not piling up in /tmp).
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("import-fixtures");
        let _ = std::fs::remove_dir_all(&dir);
        let t = Instant::now();
        let out = Command::new(&py)
            .arg(root().join("tests/fixtures/make_import_models.py"))
            .arg(&dir)
            .output()
            .expect("run the fixture script");
        assert!(
            out.status.success(),
            "fixture script failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!(
            "fixtures: every format in {:.1} s",
            t.elapsed().as_secs_f64()
        );
        Some(dir)
    })
    .as_deref()
}

fn expected(fx: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(fx.join("expected.json")).unwrap()).unwrap()
}

/// Runs `inferq models import ARGS` with the TF venv's Python; (status, stdout JSON, stderr).
fn import(args: &[&str], env: &[(&str, &str)]) -> (i32, Value, String) {
    let out = Command::new(binary("inferq"))
        .args(["models", "import"])
        .args(args)
        .arg("--python")
        .arg(tf_python())
        .envs(env.iter().copied())
        .output()
        .expect("run inferq");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let doc = stdout
        .lines()
        .last()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .unwrap_or(Value::Null);
    (
        out.status.code().unwrap_or(-1),
        doc,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn new_repo(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("inferq-{tag}-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

const PREPROCESS: [&str; 2] = ["--std", "255,255,255"];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_format_is_served_with_the_original_top_class() {
    let Some(fx) = fixtures() else { return };
    let expected = expected(fx);
    let repo = new_repo("import");
    let labels = fx.join("labels.txt").display().to_string();
    let repo_s = repo.display().to_string();
    for (key, src) in FORMATS {
        let name = format!("imp-{}", key.replace('_', "-"));
        let source = fx.join(src).display().to_string();
        let t = Instant::now();
        let args = [
            source.as_str(),
            "--name",
            &name,
            "--labels",
            &labels,
            "--models-dir",
            &repo_s,
            PREPROCESS[0],
            PREPROCESS[1],
        ];
        let (code, doc, err) = tokio::task::block_in_place(|| import(&args, &[]));
        assert_eq!(code, 0, "{key}: {err}");
        eprintln!(
            "import {key}: {:.1} s, max abs diff {}",
            t.elapsed().as_secs_f64(),
            doc["check"]["max_abs_diff"]
        );
        assert_eq!(doc["format"], *key, "{doc}");
        assert_eq!(doc["version"], 1);
        assert_eq!(doc["input"]["layout"], "nhwc");
        assert_eq!(doc["input"]["width"], 32);
        if *key != "onnx" {
            assert!(
                doc["check"]["max_abs_diff"].as_f64().unwrap() < 1e-4,
                "{doc}"
            );
        }
        assert!(err.contains("max abs diff") || *key == "onnx", "{err}");
        let dir = repo.join(&name).join("1");
        assert_eq!(entries(&dir), ["labels.txt", "model.onnx", "model.toml"]);
        let toml = std::fs::read_to_string(dir.join("model.toml")).unwrap();
        assert!(toml.contains("kind = \"classification\""), "{toml}");
        assert!(toml.contains("softmax = false"), "{toml}");
        assert_eq!(entries(&repo.join(&name)), ["1"], "no staging left behind");
    }
    // A second import of the same source becomes version 2.
    let source = fx.join("model.onnx").display().to_string();
    let (code, doc, err) = tokio::task::block_in_place(|| {
        import(
            &[&source, "--name", "imp-onnx", "--models-dir", &repo_s],
            &[],
        )
    });
    assert_eq!(code, 0, "{err}");
    assert_eq!(doc["version"], 2);

    let server = start_embedded(&repo, "imp-onnx", &["--threads", "1"]).await;
    let base = server.url();
    let client = reqwest::Client::new();
    let png = std::fs::read(fx.join("image.png")).unwrap();
    for (key, _) in FORMATS {
        let name = format!("imp-{}", key.replace('_', "-"));
        let job = run_job(
            &client,
            &base,
            &format!("?model={name}&version=1"),
            png.clone(),
        )
        .await;
        let want = expected[key]["top1"].as_u64().unwrap();
        assert_eq!(top1(&job), want, "{key}: {job}");
        let labels = ["circle", "square", "triangle", "star"];
        assert_eq!(job["result"]["top_k"][0]["label"], labels[want as usize]);
        let p = job["result"]["top_k"][0]["probability"].as_f64().unwrap();
        let p_orig = expected[key]["probs"][want as usize].as_f64().unwrap();
        assert!(
            (p - p_orig).abs() < 1e-3,
            "{key}: served {p}, original {p_orig}"
        );
    }
    server.stop().await;
    let _ = std::fs::remove_dir_all(&repo);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_leave_nothing_behind() {
    let Some(fx) = fixtures() else { return };
    let repo = new_repo("import-refused");
    let repo_s = repo.display().to_string();
    let cases: &[(&str, &[&str], &str)] = &[
        ("unknown.bin", &[], "unknown format"),
        ("corrupt.keras", &[], "unreadable model"),
        ("noisy_savedmodel", &[], "tolerance exceeded"),
        ("unsupported_savedmodel", &[], "unsupported op: Lgamma"),
        ("unsigned_savedmodel", &[], "missing signature"),
        ("model.onnx", &["--labels", "LABELS3"], "3 lines but output"),
        ("model.onnx", &["--mean", "1,2"], "three numbers"),
        ("model.onnx", &["--size", "64x64"], "wrong size"),
    ];
    let three = repo.with_extension("labels3.txt");
    std::fs::write(&three, "a\nb\nc\n").unwrap();
    for (src, extra, want) in cases {
        let source = fx.join(src).display().to_string();
        let mut args = vec![
            source.as_str(),
            "--name",
            "refused",
            "--models-dir",
            &repo_s,
        ];
        let three_s = three.display().to_string();
        args.extend(
            extra
                .iter()
                .map(|a| if *a == "LABELS3" { three_s.as_str() } else { a }),
        );
        let (code, _, err) = tokio::task::block_in_place(|| import(&args, &[]));
        assert_eq!(code, 2, "{src} {extra:?}: {err}");
        // The first line names the problem; ours is the only line (clap's usage errors add
        // a hint).
        let first = err.lines().next().unwrap_or_default();
        assert!(first.contains(want), "{src}: expected `{want}` in: {err}");
        if first.starts_with("inferq: ") {
            assert_eq!(err.trim().lines().count(), 1, "{err}");
        }
        assert!(
            entries(&repo).is_empty(),
            "{src}: left {:?}",
            entries(&repo)
        );
    }

    // An existing version is refused before converting; the model's other files stay.
    let source = fx.join("model.onnx").display().to_string();
    let (code, _, err) = tokio::task::block_in_place(|| {
        import(&[&source, "--name", "kept", "--models-dir", &repo_s], &[])
    });
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = tokio::task::block_in_place(|| {
        import(
            &[
                &source,
                "--name",
                "kept",
                "--version",
                "1",
                "--models-dir",
                &repo_s,
            ],
            &[],
        )
    });
    assert_eq!(code, 2);
    assert!(err.contains("version exists"), "{err}");
    assert_eq!(entries(&repo.join("kept")), ["1"]);

    // TensorFlow missing (the plain venv's Python): a clear failure, status 1, naming the fix;
    // an ONNX source needs no TensorFlow. (`import` passes --python, so run the binary here.)
    let venv = root().join(".cache/venv/bin/python").display().to_string();
    let sm = fx.join("savedmodel").display().to_string();
    let out = Command::new(binary("inferq"))
        .args([
            "models",
            "import",
            &sm,
            "--name",
            "no-tf",
            "--models-dir",
            &repo_s,
        ])
        .env("INFERQ_IMPORT_PYTHON", &venv)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("make models-seed"), "{err}");
    let out = Command::new(binary("inferq"))
        .args([
            "models",
            "import",
            &source,
            "--name",
            "no-tf",
            "--models-dir",
            &repo_s,
        ])
        .env("INFERQ_IMPORT_PYTHON", &venv)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(entries(&repo), ["kept", "no-tf"]);
    let _ = std::fs::remove_dir_all(&repo);
    let _ = std::fs::remove_file(&three);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn server_upload_registers_a_servable_version() {
    let Some(fx) = fixtures() else { return };
    const KEY: &str = "import-admin-0123456789abcdef";
    let repo = private_repository("tiny-mean", "import-up");
    let keys = format!("ops:admin:{KEY}");
    let server = start_embedded(
        &repo,
        "tiny-mean",
        &[
            "--threads",
            "1",
            "--allow-model-upload",
            "true",
            "--auth",
            "true",
            "--api-keys",
            &keys,
        ],
    )
    .await;
    let base = server.url();
    let source = fx.join("model.tflite").display().to_string();
    let labels = fx.join("labels.txt").display().to_string();
    let args = [
        source.as_str(),
        "--name",
        "uploaded",
        "--server",
        &base,
        "--labels",
        &labels,
        PREPROCESS[0],
        PREPROCESS[1],
    ];
    // Without the key the server refuses (401), with it the version is registered.
    let (code, _, err) = tokio::task::block_in_place(|| import(&args, &[]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("401"), "{err}");
    let (code, doc, err) =
        tokio::task::block_in_place(|| import(&args, &[("INFERQ_API_KEY", KEY)]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(doc["version"], 1, "{doc}");
    assert!(repo.join("uploaded/1/model.onnx").is_file());
    assert!(
        !repo
            .join("uploaded")
            .read_dir()
            .unwrap()
            .any(|e| { e.unwrap().file_name().to_string_lossy().starts_with('.') })
    );

    let client = client_with_key(KEY);
    let png = std::fs::read(fx.join("image.png")).unwrap();
    let job = run_job(&client, &base, "?model=uploaded", png).await;
    assert_eq!(
        top1(&job),
        expected(fx)["tflite"]["top1"].as_u64().unwrap(),
        "{job}"
    );

    // The next upload without --version becomes version 2.
    let (code, doc, err) =
        tokio::task::block_in_place(|| import(&args, &[("INFERQ_API_KEY", KEY)]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(doc["version"], 2, "{doc}");
    server.stop().await;
    let _ = std::fs::remove_dir_all(&repo);
}

/// A job naming a TensorFlow-family model by storage reference (`model_uri`): the API converts
/// it once through the same code as `models import` (`--model-import-python`), installs it
/// under a content-addressed name, serves the original's answer, and reuses it afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn model_uri_converts_a_tensorflow_model_once() {
    let Some(fx) = fixtures() else { return };
    let expected = expected(fx);
    let root = new_repo("model-uri-tf-root");
    let repo = new_repo("model-uri-tf-repo");
    std::os::unix::fs::symlink(test_models().join("tiny-invert"), repo.join("tiny-invert"))
        .unwrap();
    let allowed = root.join("models");
    let options = "# how the pixels are scaled: 0..1\nstd = [255.0, 255.0, 255.0]\n";
    // A TF.js layers folder and a TFLite file, each with labels.txt and import.toml beside it.
    let tfjs = allowed.join("tfjs");
    std::fs::create_dir_all(&tfjs).unwrap();
    for e in std::fs::read_dir(fx.join("tfjs_layers")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), tfjs.join(e.file_name())).unwrap();
    }
    let lite = allowed.join("lite");
    std::fs::create_dir_all(&lite).unwrap();
    std::fs::copy(fx.join("model.tflite"), lite.join("net.tflite")).unwrap();
    for dir in [&tfjs, &lite] {
        std::fs::copy(fx.join("labels.txt"), dir.join("labels.txt")).unwrap();
        std::fs::write(dir.join("import.toml"), options).unwrap();
    }
    // A folder whose flags file is wrong, and an op the converter refuses.
    let bad = allowed.join("bad-options");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::copy(fx.join("tfjs_layers/model.json"), bad.join("model.json")).unwrap();
    std::fs::write(bad.join("import.toml"), "colour = \"blue\"\n").unwrap();
    copy_dir(
        &fx.join("unsupported_savedmodel"),
        &allowed.join("unsupported"),
    );

    let allow = format!("file://{}/", allowed.display());
    let python = tf_python().display().to_string();
    let server = start_embedded(
        &repo,
        "tiny-invert",
        &[
            "--threads",
            "1",
            "--fetch-local-root",
            root.to_str().unwrap(),
            "--model-uri-allow",
            &allow,
            "--model-import-python",
            &python,
        ],
    )
    .await;
    let base = server.url();
    let client = reqwest::Client::new();
    let png = std::fs::read(fx.join("image.png")).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&png);
    let post = |uri: String| {
        let client = client.clone();
        let base = base.clone();
        let body = serde_json::json!({"model_uri": uri, "input": {"b64": b64}});
        async move {
            let resp = client
                .post(format!("{base}/v1/jobs"))
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap())
        }
    };
    let labels = ["circle", "square", "triangle", "star"];
    for (uri, key) in [
        (format!("{allow}tfjs/"), "tfjs_layers"),
        (format!("{allow}lite/net.tflite"), "tflite"),
    ] {
        let t = Instant::now();
        let (status, job) = post(uri.clone()).await;
        let first = t.elapsed();
        assert_eq!(status, 202, "{key}: {job}");
        let name = job["model"].as_str().unwrap().to_owned();
        assert!(name.starts_with("uri-"), "{job}");
        let done = wait_terminal(
            &client,
            &base,
            job["id"].as_str().unwrap(),
            Duration::from_secs(60),
        )
        .await;
        assert_eq!(done["status"], "succeeded", "{done}");
        let want = expected[key]["top1"].as_u64().unwrap();
        assert_eq!(top1(&done), want, "{key}: {done}");
        assert_eq!(
            done["result"]["top_k"][0]["label"], labels[want as usize],
            "{done}"
        );
        let toml = std::fs::read_to_string(repo.join(&name).join("1/model.toml")).unwrap();
        assert!(
            toml.contains("std = [255.0, 255.0, 255.0]"),
            "import.toml applied: {toml}"
        );
        // The same objects again: installed already, nothing converted.
        let t = Instant::now();
        let (status, again) = post(uri).await;
        assert_eq!(status, 202, "{again}");
        assert_eq!(again["model"], name.as_str());
        eprintln!(
            "model_uri {key}: first job {:.1} s (conversion), second {:.3} s",
            first.as_secs_f64(),
            t.elapsed().as_secs_f64()
        );
    }
    let imported = || {
        entries(&repo)
            .into_iter()
            .filter(|n| n.starts_with("uri-"))
            .count()
    };
    assert_eq!(imported(), 2);
    let (status, body) = post(format!("{allow}bad-options/")).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("import.toml"),
        "{body}"
    );
    let (status, body) = post(format!("{allow}unsupported/")).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("cannot import"),
        "{body}"
    );
    assert_eq!(imported(), 2, "refusals install nothing");
    server.stop().await;
    let _ = std::fs::remove_dir_all(&root);
    let _ = std::fs::remove_dir_all(&repo);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}
