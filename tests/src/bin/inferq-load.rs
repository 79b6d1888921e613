//! `inferq-load`: a small closed-loop load generator for InferQ.
//!
//! Each of `--concurrency` clients submits an image, long-polls the job
//! until it is terminal, and repeats, for `--duration` seconds (after a
//! warm-up). It prints throughput, end-to-end latency percentiles (submit to
//! terminal answer) and errors, plus its own CPU time so its footprint on a
//! small machine is visible. A measuring tool, not a test.
//!
//! Against an API with keys on, put a key with `submit+read` in
//! `INFERQ_API_KEY` (an environment variable rather than a flag, so the key
//! stays out of process listings).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use inferq_tests::load::{Image, one_job, submit_url};

struct Args {
    url: String,
    concurrency: usize,
    duration: Duration,
    warmup: Duration,
    image: Image,
    model: Option<String>,
}

fn parse() -> anyhow::Result<Args> {
    let mut url = "http://127.0.0.1:8080".to_string();
    let mut concurrency = 1;
    let mut duration = 10.0;
    let mut warmup = 2.0;
    let mut image = "tests/images/chelsea.png".to_string();
    let mut model = None;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--url" => url = value()?,
            "--concurrency" | "-c" => concurrency = value()?.parse()?,
            "--duration" | "-d" => duration = value()?.parse()?,
            "--warmup" => warmup = value()?.parse()?,
            "--image" => image = value()?,
            "--model" => model = Some(value()?),
            "--help" | "-h" => {
                println!(
                    "inferq-load [--url U] [-c N] [-d SECS] [--warmup SECS] [--image FILE] [--model M]"
                );
                std::process::exit(0);
            }
            other => anyhow::bail!("unknown flag {other}"),
        }
    }
    Ok(Args {
        url,
        concurrency,
        duration: Duration::from_secs_f64(duration),
        warmup: Duration::from_secs_f64(warmup),
        image: Image::from_file(std::path::Path::new(&image))
            .with_context(|| format!("reading {image}"))?,
        model,
    })
}

fn cpu_seconds() -> f64 {
    // utime + stime from /proc/self/stat, in clock ticks (100 Hz on Linux).
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Arc::new(parse()?);
    let mut headers = reqwest::header::HeaderMap::new();
    if let Ok(key) = std::env::var("INFERQ_API_KEY") {
        let mut value: reqwest::header::HeaderValue = format!("Bearer {key}")
            .parse()
            .context("INFERQ_API_KEY is not a valid header value")?;
        value.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .default_headers(headers)
        .build()?;
    let submit_url = submit_url(&args.url, args.model.as_deref());
    let recording = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..args.concurrency {
        let (client, args, url) = (client.clone(), args.clone(), submit_url.clone());
        let (recording, stop, errors) = (recording.clone(), stop.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let ok = one_job(&client, &url, &args.url, &args.image).await;
                if recording.load(Ordering::Relaxed) && !stop.load(Ordering::Relaxed) {
                    match ok {
                        Ok(_) => latencies.push(t.elapsed().as_secs_f64() * 1e3),
                        Err(e) => {
                            if errors.fetch_add(1, Ordering::Relaxed) < 3 {
                                eprintln!("error: {e}");
                            }
                        }
                    }
                }
            }
            latencies
        }));
    }
    tokio::time::sleep(args.warmup).await;
    recording.store(true, Ordering::Relaxed);
    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
    tokio::time::sleep(args.duration).await;
    stop.store(true, Ordering::Relaxed);
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await?);
    }
    all.sort_by(f64::total_cmp);
    println!(
        "concurrency={} jobs={} errors={} throughput={:.1}/s p50={:.2}ms p90={:.2}ms p99={:.2}ms max={:.2}ms loadgen_cpu={:.1}%",
        args.concurrency,
        all.len(),
        errors.load(Ordering::Relaxed),
        all.len() as f64 / elapsed,
        percentile(&all, 50.0),
        percentile(&all, 90.0),
        percentile(&all, 99.0),
        all.last().copied().unwrap_or(f64::NAN),
        100.0 * cpu / elapsed,
    );
    Ok(())
}
