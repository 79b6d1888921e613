//! Each job's timings carry its memory figures, and `/v1/stats` and
//! `/metrics` show the per-model and per-process memory (embedded server,
//! real models).
//!
//! The figures that follow from the input are checked exactly: a PNG of
//! w×h decodes to w×h×3 bytes; EfficientNet-Lite0 is fed a float32
//! 1×3×224×224 tensor (602,112 bytes) whatever the photo's size; the
//! heatmap model is fed the whole image as float32 (w×h×3×4). RSS and the
//! model's resident bytes are checked for plausibility.

use std::time::Duration;

use inferq_tests::*;
use serde_json::Value;

fn u64_at(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or_else(|| panic!("no {key} in {v}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_records_stats_and_metrics_show_memory() {
    if !real_model_ready("efficientnet-lite0", "models")
        || !real_model_ready("heatmap-bright", "models-seed")
    {
        return;
    }
    let dir = root().join(format!(
        "target/tmp/job-memory-{}",
        uuid::Uuid::new_v4().simple()
    ));
    let repo = real_model_subset(
        &dir,
        &[
            ("efficientnet-lite0", &["1", "labels.txt"]),
            ("heatmap-bright", &["1"]),
        ],
    );
    let metrics_port = cluster::free_port().unwrap();
    let metrics_addr = format!("127.0.0.1:{metrics_port}");
    let server = start_embedded(
        &repo,
        "efficientnet-lite0",
        &["--threads", "1", "--metrics-listen", &metrics_addr],
    )
    .await;
    let client = reqwest::Client::new();
    let base = server.url();

    let (w, h) = (300, 200);
    let job = run_job(&client, &base, "", solid_png(w, h, [200, 40, 90])).await;
    let t = &job["timings"];
    assert_eq!(u64_at(t, "decoded_bytes"), u64::from(w * h * 3), "{job}");
    assert_eq!(u64_at(t, "input_tensor_bytes"), 3 * 224 * 224 * 4, "{job}");
    let model_bytes = u64_at(t, "model_bytes");
    // The float network's weights alone are 18 MB; its session is below 200 MB.
    assert!(
        ((4 << 20)..(200 << 20)).contains(&model_bytes),
        "model bytes {model_bytes}: {job}"
    );
    for key in ["rss_before_bytes", "rss_after_bytes"] {
        let rss = u64_at(t, key);
        assert!(rss > model_bytes && rss < 8 << 30, "{key} {rss}: {job}");
    }

    let (hw, hh) = (96, 64);
    let heat = run_job(
        &client,
        &base,
        "?model=heatmap-bright",
        solid_png(hw, hh, [250, 250, 250]),
    )
    .await;
    let t = &heat["timings"];
    assert_eq!(u64_at(t, "decoded_bytes"), u64::from(hw * hh * 3), "{heat}");
    assert_eq!(
        u64_at(t, "input_tensor_bytes"),
        u64::from(hw * hh * 3 * 4),
        "{heat}"
    );

    let stats: Value = client
        .get(format!("{base}/v1/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let m = stats["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["model"] == "efficientnet-lite0")
        .unwrap_or_else(|| panic!("{stats}"));
    assert_eq!(
        u64_at(&m["memory"], "session_resident_bytes"),
        model_bytes,
        "{stats}"
    );
    assert!(
        u64_at(&m["memory"], "worker_rss_bytes") > model_bytes,
        "{stats}"
    );
    assert!(u64_at(&stats, "process_rss_bytes") > model_bytes, "{stats}");

    let text = client
        .get(format!("http://{metrics_addr}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let sample = |prefix: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {prefix} in:\n{text}"))
    };
    let resident =
        sample("inferq_model_resident_memory_bytes{model=\"efficientnet-lite0\",version=\"1\"}");
    // One inference thread: the gauge is that thread's session.
    assert_eq!(resident as u64, model_bytes);
    assert!(
        sample("inferq_model_resident_memory_bytes{model=\"heatmap-bright\",version=\"1\"}") > 0.0
    );
    assert!(sample("inferq_process_resident_memory_bytes ") > model_bytes as f64);

    server.stop().await;
    tokio::time::sleep(Duration::from_millis(10)).await;
    let _ = std::fs::remove_dir_all(&dir);
}
