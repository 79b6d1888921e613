//! The real default model, EfficientNet-Lite0 (ImageNet-1k), on real photos,
//! through both deployments: RabbitMQ + Redis, and the embedded process.

use std::time::Duration;

use inferq_tests::*;

const CAT_CLASSES: [u64; 3] = [281, 282, 285]; // tabby, tiger cat, Egyptian cat
const ESPRESSO: u64 = 967;

fn real_model_present() -> bool {
    let ok = real_models()
        .join("efficientnet-lite0/1/model.onnx")
        .is_file();
    if !ok {
        assert!(
            std::env::var("INFERQ_TEST_REQUIRE_SERVICES").is_err(),
            "models/efficientnet-lite0/1/model.onnx missing; run `make assets`"
        );
        eprintln!("SKIPPED: EfficientNet-Lite0 not converted; run `make assets`");
    }
    ok
}

async fn classify(client: &reqwest::Client, base: &str, file: &str, ct: &str) -> serde_json::Value {
    let (status, body) = submit(client, base, "", ct, image(file)).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["model"], "efficientnet-lite0");
    wait_terminal(
        client,
        base,
        body["id"].as_str().unwrap(),
        Duration::from_secs(60),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn efficientnet_through_rabbitmq_and_redis() {
    if !services_available() || !real_model_present() {
        return;
    }
    let ns = Namespace::new();
    // PNG photos (> 100 kB) travel by blob reference, the 93 kB JPEG inline.
    let api = start_api(
        &ns,
        &real_models(),
        "efficientnet-lite0",
        &["--inline-max-bytes", "100000"],
    )
    .await;
    let worker = start_worker(&ns, &real_models(), &[]).await;
    let client = reqwest::Client::new();
    let base = api.url();

    let cat = classify(&client, &base, "chelsea.png", "image/png").await;
    assert_eq!(cat["status"], "succeeded", "{cat}");
    assert!(
        CAT_CLASSES.contains(&top1(&cat)),
        "cat classified as {}",
        cat["result"]
    );
    let labels: Vec<&str> = cat["result"]["top_k"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["label"].as_str().unwrap())
        .collect();
    assert!(labels.iter().any(|l| l.contains("cat")), "{labels:?}");

    let coffee = classify(&client, &base, "coffee.png", "image/png").await;
    assert_eq!(top1(&coffee), ESPRESSO, "{}", coffee["result"]);
    assert!(
        coffee["result"]["top_k"][0]["probability"]
            .as_f64()
            .unwrap()
            > 0.8
    );

    let photo = classify(&client, &base, "photo-640x480.jpg", "image/jpeg").await;
    assert_eq!(top1(&photo), ESPRESSO, "{}", photo["result"]);

    worker.stop().await;
    api.stop().await;
    ns.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn efficientnet_in_the_embedded_server() {
    if !ort_library().is_file() || !real_model_present() {
        assert!(
            std::env::var("INFERQ_TEST_REQUIRE_SERVICES").is_err(),
            "ONNX Runtime missing"
        );
        return;
    }
    let server = start_embedded(&real_models(), "efficientnet-lite0", &[]).await;
    let client = reqwest::Client::new();
    let base = server.url();
    let cat = classify(&client, &base, "chelsea.png", "image/png").await;
    assert!(CAT_CLASSES.contains(&top1(&cat)), "{}", cat["result"]);
    let coffee = classify(&client, &base, "coffee.png", "image/png").await;
    assert_eq!(top1(&coffee), ESPRESSO);
    // Graceful shutdown returns.
    server.stop().await;
}

/// Reduced-scale JPEG decoding (`jpeg_draft`) only drops detail the model
/// cannot use: a 2400x1600 JPEG decoded at 1/4 scale gets the same answer,
/// with nearly the same probabilities, as the full decode. Runs the worker's
/// own preprocessing and session code on the real model.
#[test]
fn reduced_scale_jpeg_decoding_keeps_the_answer() {
    if !real_model_present() {
        return;
    }
    use inferq_vision::preprocess::Preprocessor;
    use inferq_worker::engine;

    let env = engine::ort_environment(Some(&ort_library())).unwrap();
    let repo = inferq_worker::load_models(&real_models()).unwrap();
    let entry = repo.get("efficientnet-lite0", Some(1)).unwrap().clone();
    let mut session = engine::load_session(&env, &entry).unwrap();

    let coffee = image::load_from_memory(&image("coffee.png"))
        .unwrap()
        .to_rgb8();
    let big = image::imageops::resize(&coffee, 2400, 1600, image::imageops::FilterType::Triangle);
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 92)
        .encode_image(&big)
        .unwrap();

    let mut classify = |draft: f32| -> (u32, Vec<f32>) {
        let mut m = entry.manifest.clone();
        m.preprocess.jpeg_draft = draft;
        let mut prep = Preprocessor::new();
        let decoded = prep.decode(&jpeg, 1 << 26, &m).unwrap();
        let width = decoded.image.width();
        let (tensor, _) = prep.prepare_decoded(&decoded, &m);
        let logits = engine::run(&mut session, &entry, tensor)
            .unwrap()
            .remove(0)
            .data;
        let max = logits.iter().cloned().fold(f32::MIN, f32::max);
        let exp: Vec<f32> = logits.iter().map(|l| (l - max).exp()).collect();
        let sum: f32 = exp.iter().sum();
        (width, exp.iter().map(|e| e / sum).collect())
    };
    let (full_width, full) = classify(0.0);
    let (draft_width, draft) = classify(1.0);
    assert_eq!(full_width, 2400);
    assert_eq!(
        draft_width, 600,
        "1600 px / 4 = 400 px still covers the 256 px resize"
    );
    let argmax = |p: &[f32]| {
        p.iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .unwrap()
            .0 as u64
    };
    assert_eq!(argmax(&full), ESPRESSO);
    assert_eq!(argmax(&draft), ESPRESSO);
    let worst = full
        .iter()
        .zip(&draft)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(worst < 0.05, "probabilities moved by up to {worst}");
}
