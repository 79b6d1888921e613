//! Leak watch: a few hundred jobs through a real worker process for every
//! default model kind, with the worker's RSS sampled after a warm-up and at
//! the end. Growth beyond [`bound_bytes`] fails the test.
//!
//! Each kind gets its own `inferq-worker` process (two unpinned inference
//! threads) loading only that model, so its RSS is that model's steady
//! state and nothing else's; the API runs in this test process. The
//! warm-up lets the allocator's arenas and ONNX Runtime's kernels reach
//! their working size (the first jobs always grow RSS); after it, a worker
//! that keeps nothing per job stays flat within allocator noise. Images
//! are small real photos so the run stays short; the jobs go in eight at a
//! time, so micro-batches form for the models that batch.
//!
//! The bound and the measured figures are in docs/reliability.md ("Leak
//! watch"); the test prints its figures.

use std::io::Cursor;
use std::time::{Duration, Instant};

use inferq_tests::*;

/// Jobs in flight at once.
const CONCURRENCY: usize = 8;

/// Growth allowed after the warm-up: 5 % of the warmed-up RSS or 8 MiB,
/// whichever is larger (docs/reliability.md says why).
fn bound_bytes(warm: u64) -> u64 {
    (warm / 20).max(8 << 20)
}

/// One default model kind and its run.
struct Kind {
    model: &'static str,
    parts: &'static [&'static str],
    /// Builds the test image (PNG).
    image: fn() -> Vec<u8>,
    warm_up: usize,
    jobs: usize,
}

/// A `w`×`h` crop of the cat photo, as PNG.
fn cat_crop(w: u32, h: u32) -> Vec<u8> {
    let img = image::load_from_memory(&image("chelsea.png")).unwrap();
    let crop = img.crop_imm(120, 40, w, h).to_rgb8();
    let mut out = Cursor::new(Vec::new());
    crop.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

const KINDS: &[Kind] = &[
    Kind {
        model: "efficientnet-lite0",
        parts: &["1", "labels.txt"],
        image: || image("chelsea.png"),
        warm_up: 60,
        jobs: 300,
    },
    Kind {
        model: "movenet-lightning",
        parts: &["1"],
        image: || image("astronaut.png"),
        warm_up: 60,
        jobs: 300,
    },
    Kind {
        model: "movenet-multipose",
        parts: &["1"],
        image: || image("astronaut.png"),
        warm_up: 40,
        jobs: 200,
    },
    Kind {
        model: "esrgan-psnr-small",
        parts: &["1"],
        image: || cat_crop(48, 40),
        warm_up: 40,
        jobs: 200,
    },
    Kind {
        model: "heatmap-bright",
        parts: &["1"],
        image: || cat_crop(160, 120),
        warm_up: 40,
        jobs: 200,
    },
];

/// Runs `n` jobs of `model`, `CONCURRENCY` at a time; all must succeed.
async fn run_jobs(client: &reqwest::Client, base: &str, model: &str, png: &[u8], n: usize) {
    let mut left = n;
    while left > 0 {
        let round = left.min(CONCURRENCY);
        left -= round;
        let tasks: Vec<_> = (0..round)
            .map(|_| {
                let (client, base, png) = (client.clone(), base.to_owned(), png.to_vec());
                let query = format!("?model={model}");
                tokio::spawn(async move {
                    let (status, body) = submit(&client, &base, &query, "image/png", png).await;
                    assert_eq!(status, 202, "{body}");
                    let id = body["id"].as_str().unwrap().to_owned();
                    wait_terminal(&client, &base, &id, Duration::from_secs(120)).await
                })
            })
            .collect();
        for t in tasks {
            let job = t.await.unwrap();
            assert_eq!(job["status"], "succeeded", "{model}: {job}");
        }
    }
}

fn rss_bytes(pid: u32) -> u64 {
    cluster::rss_kib(pid).expect("worker RSS") * 1024
}

fn mib(b: u64) -> f64 {
    b as f64 / f64::from(1 << 20)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_rss_stays_flat_over_hundreds_of_jobs_per_model_kind() {
    if !services_available() {
        return;
    }
    for kind in KINDS {
        let make = if kind.model == "efficientnet-lite0" {
            "models"
        } else {
            "models-seed"
        };
        if !real_model_ready(kind.model, make) {
            return;
        }
    }
    let dir = root().join(format!(
        "target/tmp/leak-watch-{}",
        uuid::Uuid::new_v4().simple()
    ));
    let ns = Namespace::new();
    let api = start_api(&ns, &real_models(), "efficientnet-lite0", &[]).await;
    let client = reqwest::Client::new();
    let base = api.url();
    let mut report = Vec::new();
    let mut failures = Vec::new();
    for kind in KINDS {
        let started = Instant::now();
        let repo = real_model_subset(&dir.join(kind.model), &[(kind.model, kind.parts)]);
        let log = dir.join(format!("{}.log", kind.model));
        let mut worker = WorkerProcess::spawn(
            &ns,
            &repo,
            &["--threads", "2", "--pin-threads", "false"],
            &log,
        );
        let pid = worker.child.id();
        let png = (kind.image)();
        // The warm-up also waits for the worker to come up.
        run_jobs(&client, &base, kind.model, &png, kind.warm_up).await;
        let warm = rss_bytes(pid);
        run_jobs(&client, &base, kind.model, &png, kind.jobs / 2).await;
        let half = rss_bytes(pid);
        run_jobs(&client, &base, kind.model, &png, kind.jobs - kind.jobs / 2).await;
        let end = rss_bytes(pid);
        assert!(
            worker.child.try_wait().unwrap().is_none(),
            "worker died; log in {}",
            log.display()
        );
        worker.signal(15);
        let _ = worker.wait_exit(Duration::from_secs(30));
        let growth = end.saturating_sub(warm);
        let bound = bound_bytes(warm);
        let line = format!(
            "{:<20} warm {:7.1} MiB  half {:7.1} MiB  end {:7.1} MiB  growth {:+6.1} MiB \
             ({:+.2} %, bound {:.1} MiB) over {} jobs in {:.1} s",
            kind.model,
            mib(warm),
            mib(half),
            mib(end),
            end as f64 / f64::from(1 << 20) - mib(warm),
            (end as f64 / warm as f64 - 1.0) * 100.0,
            mib(bound),
            kind.jobs,
            started.elapsed().as_secs_f64()
        );
        eprintln!("{line}");
        if growth > bound {
            failures.push(line.clone());
        }
        report.push(line);
    }
    api.stop().await;
    ns.cleanup().await;
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        failures.is_empty(),
        "RSS grew beyond the bound after warm-up:\n{}\n(all:\n{})",
        failures.join("\n"),
        report.join("\n")
    );
}

#[test]
fn the_bound_is_five_percent_with_a_floor() {
    assert_eq!(bound_bytes(100 << 20), 8 << 20);
    assert_eq!(bound_bytes(400 << 20), 20 << 20);
}
