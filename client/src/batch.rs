//! `inferq batch`: create a batch (or follow or cancel one), show a
//! progress bar until it is final, and print a summary.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::{Api, BatchArgs, ClientError, print, set_given};

pub(crate) async fn batch(api: &Api, a: BatchArgs) -> Result<i32, ClientError> {
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

pub(crate) fn batch_body(a: &BatchArgs) -> Result<Value, ClientError> {
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
