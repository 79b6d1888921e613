//! W3C trace context from the HTTP request, through RabbitMQ, into the
//! worker's spans and onto the inference thread.
//!
//! API and worker run in this test process, so one JSON log subscriber sees
//! both; the test reads the spans back from the log lines, and the AMQP
//! header straight off the queue before any worker runs.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use inferq_tests::*;
use serde_json::Value;
use tracing_subscriber::fmt::format::FmtSpan;

#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn lines(&self) -> Vec<Value> {
        let bytes = self.0.lock().unwrap().clone();
        String::from_utf8_lossy(&bytes)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

/// The spans of a log line, innermost last.
fn spans(line: &Value) -> Vec<&Value> {
    line["spans"]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traceparent_reaches_the_worker_and_the_inference_thread() {
    if !services_available() {
        return;
    }
    let logs = Logs::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .json()
        .with_span_events(FmtSpan::CLOSE)
        .with_current_span(true)
        .with_span_list(true)
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            "info,inferq_worker=debug",
        ))
        .with_writer(move || writer.clone())
        .init();

    let ns = Namespace::new();
    let api = start_api(&ns, &test_models(), "tiny-mean", &[]).await;
    let client = reqwest::Client::new();
    let base = api.url();
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let resp = client
        .post(format!("{base}/v1/jobs"))
        .header("content-type", "image/png")
        .header("traceparent", format!("00-{trace}-{caller_span}-01"))
        .body(solid_png(8, 8, [200, 10, 10]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let job: Value = resp.json().await.unwrap();
    let id = job["id"].as_str().unwrap().to_owned();

    // The record keeps the trace under the API's own span.
    let record: Value = client
        .get(format!("{base}/v1/jobs/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let stored = record["traceparent"].as_str().unwrap().to_owned();
    let parts: Vec<&str> = stored.split('-').collect();
    assert_eq!(parts[1], trace, "{stored}");
    assert_ne!(parts[2], caller_span, "the API starts a span of its own");
    let api_span = parts[2].to_owned();

    // On the queue: the AMQP `traceparent` header, before any worker runs.
    let conn = lapin::Connection::connect(AMQP_URL, lapin::ConnectionProperties::default())
        .await
        .unwrap();
    let channel = conn.create_channel().await.unwrap();
    let got = channel
        .basic_get(
            ns.queue.as_str().into(),
            lapin::options::BasicGetOptions::default(),
        )
        .await
        .unwrap()
        .expect("the job is on the queue");
    let header = got
        .properties
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get("traceparent").cloned());
    match header {
        Some(lapin::types::AMQPValue::LongString(s)) => assert_eq!(s.to_string(), stored),
        other => panic!("no traceparent header: {other:?}"),
    }
    got.acker
        .nack(lapin::options::BasicNackOptions {
            requeue: true,
            ..Default::default()
        })
        .await
        .unwrap();
    conn.close(200, "done".into()).await.unwrap();

    let worker = start_worker(&ns, &test_models(), &["--threads", "1"]).await;
    let done = wait_terminal(&client, &base, &id, Duration::from_secs(30)).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    // Let the span close events land.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let lines = logs.lines();

    // The API's request span: the caller's trace, parented on the caller.
    let http = lines
        .iter()
        .flat_map(spans)
        .find(|s| s["name"] == "http" && s["trace_id"] == trace)
        .unwrap_or_else(|| panic!("no http span with the trace"));
    assert_eq!(http["parent_id"], caller_span);
    assert_eq!(http["span_id"], api_span.as_str());

    // The worker's job span continues it under a span of its own.
    let job_span = lines
        .iter()
        .flat_map(spans)
        .find(|s| s["name"] == "job" && s["job_id"] == id.as_str())
        .unwrap_or_else(|| panic!("no job span for {id}"));
    assert_eq!(job_span["trace_id"], trace);
    assert_eq!(job_span["parent_id"], api_span.as_str());
    assert_ne!(job_span["span_id"], api_span.as_str());

    // And the inference thread's span sits inside the job span: its event
    // lists both.
    let infer = lines
        .iter()
        .find(|l| {
            l["fields"]["message"] == "inference run"
                && l["span"]["name"] == "infer"
                && spans(l)
                    .iter()
                    .any(|s| s["name"] == "job" && s["job_id"] == id.as_str())
        })
        .unwrap_or_else(|| {
            let near: Vec<&Value> = lines
                .iter()
                .filter(|l| l.to_string().contains("infer"))
                .collect();
            panic!("no infer span under job {id}: {near:?}")
        });
    assert!(
        spans(infer).iter().any(|s| s["trace_id"] == trace),
        "{infer}"
    );
    worker.stop().await;
    api.stop().await;
    ns.cleanup().await;
}
