//! Metrics end to end on the real RabbitMQ, Redis and ONNX Runtime: jobs
//! submitted while no worker runs raise the backlog and the age of the
//! oldest waiting job (the autoscaling signals, read by any API process
//! from the shared store); a worker drains them and both fall back to 0,
//! while the counters and stage histograms move.

use std::time::{Duration, Instant};

use inferq_tests::cluster::free_port;
use inferq_tests::*;

async fn scrape(port: u16) -> String {
    reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .expect("scrape")
        .text()
        .await
        .unwrap()
}

/// The value of the sample whose line starts with `series` (name and labels).
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

async fn wait_value(port: u16, series: &str, ok: impl Fn(f64) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = scrape(port).await;
        if value(&text, series).is_some_and(&ok) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{series} never satisfied the condition:\n{}",
            text.lines()
                .filter(|l| l.starts_with("inferq_backlog") || l.starts_with("inferq_oldest"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backlog_and_oldest_age_rise_and_fall_and_counters_move() {
    if !services_available() {
        return;
    }
    let repo = private_repository("tiny-mean", "metrics");
    let ns = Namespace::new();
    let (api_port, worker_port) = (free_port().unwrap(), free_port().unwrap());
    let api_metrics = format!("127.0.0.1:{api_port}");
    let api = start_api(&ns, &repo, "tiny-mean", &["--metrics-listen", &api_metrics]).await;
    let client = reqwest::Client::new();
    let base = api.url();
    let mut ids = Vec::new();
    for i in 0..5u8 {
        let (status, job) =
            submit(&client, &base, "", "image/png", solid_png(8, 8, [i, 0, 0])).await;
        assert_eq!(status, 202, "{job}");
        ids.push(job["id"].as_str().unwrap().to_owned());
    }
    let backlog = r#"inferq_backlog_jobs{model="tiny-mean"}"#;
    let oldest = r#"inferq_oldest_waiting_job_age_seconds{model="tiny-mean"}"#;
    let text = wait_value(api_port, backlog, |v| v == 5.0).await;
    let text = if value(&text, oldest).unwrap_or(0.0) > 0.0 {
        text
    } else {
        wait_value(api_port, oldest, |v| v > 0.0).await
    };
    assert_eq!(
        value(&text, r#"inferq_jobs_submitted_total{model="tiny-mean"}"#),
        Some(5.0)
    );
    assert_eq!(
        value(
            &text,
            r#"inferq_http_requests_total{method="POST",route="/v1/jobs",status="202"}"#
        ),
        Some(5.0),
        "requests are counted by route template"
    );
    assert!(!text.contains(&ids[0]), "no job ids in labels");
    assert!(text.contains(r#"inferq_build_info{component="api""#));

    let worker_metrics = format!("127.0.0.1:{worker_port}");
    let worker = start_worker(
        &ns,
        &repo,
        &["--threads", "1", "--metrics-listen", &worker_metrics],
    )
    .await;
    for id in &ids {
        let job = wait_terminal(&client, &base, id, Duration::from_secs(30)).await;
        assert_eq!(job["status"], "succeeded");
    }
    let text = wait_value(api_port, backlog, |v| v == 0.0).await;
    let text = if value(&text, oldest) == Some(0.0) {
        text
    } else {
        wait_value(api_port, oldest, |v| v == 0.0).await
    };
    assert_eq!(value(&text, backlog), Some(0.0));
    let w = scrape(worker_port).await;
    assert_eq!(
        value(
            &w,
            r#"inferq_jobs_completed_total{model="tiny-mean",outcome="succeeded"}"#
        ),
        Some(5.0)
    );
    for stage in [
        "queue",
        "decode",
        "preprocess",
        "inference",
        "store",
        "total",
    ] {
        let count =
            format!(r#"inferq_stage_duration_seconds_count{{model="tiny-mean",stage="{stage}"}}"#);
        assert_eq!(value(&w, &count), Some(5.0), "{stage}");
    }
    assert_eq!(
        value(&w, r#"inferq_batch_size_count{model="tiny-mean"}"#),
        Some(5.0)
    );
    assert!(
        value(&w, r#"inferq_model_load_seconds_count{model="tiny-mean"}"#).unwrap_or(0.0) >= 1.0
    );
    assert!(w.contains(r#"inferq_build_info{component="worker""#));
    assert_eq!(value(&w, "inferq_worker_in_flight_jobs"), Some(0.0));

    worker.stop().await;
    api.stop().await;
    ns.cleanup().await;
}
