//! Every output kind end to end through RabbitMQ and Redis, on generated
//! models whose outputs are known exactly (scripts/make_test_models.py),
//! plus the real MoveNet SinglePose and MultiPose models (`make models-pose`, which
//! `make test` runs; outside it the two tests skip when the models are missing).

use inferq_tests::*;

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-4
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_output_kind() {
    if !services_available() {
        return;
    }
    let ns = Namespace::new();
    let api = start_api(&ns, &test_models(), "tiny-mean", &[]).await;
    let worker = start_worker(&ns, &test_models(), &["--threads", "2"]).await;
    let client = reqwest::Client::new();
    let base = api.url();
    let red = solid_png(64, 48, [255, 0, 0]);

    // Keypoints: normalised (y, x) in a 64x64 input, stretched from 64x48.
    let pose = run_job(&client, &base, "?model=tiny-pose", red.clone()).await;
    let r = &pose["result"];
    assert_eq!(r["kind"], "keypoints");
    let points: Vec<(String, f64, f64, f64)> = r["keypoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            let f = |n: &str| k[n].as_f64().unwrap();
            (
                k["name"].as_str().unwrap().to_owned(),
                f("x"),
                f("y"),
                f("score"),
            )
        })
        .collect();
    let expected = [
        ("head", 32.0, 12.0, 0.9),
        ("left_hand", 16.0, 24.0, 0.8),
        ("right_hand", 48.0, 36.0, 0.1),
    ];
    assert_eq!(points.len(), 3, "{r}");
    for ((name, x, y, s), (en, ex, ey, es)) in points.iter().zip(expected) {
        assert_eq!(name, en);
        assert!(
            close(*x, ex) && close(*y, ey) && close(*s, es),
            "{name}: {x},{y},{s}"
        );
    }
    assert_eq!(r["skeleton"], serde_json::json!([[0, 1], [0, 2]]));

    // Several people: rows below person_score_threshold dropped, the rest
    // best first with boxes; `keypoints` repeats the best person's points.
    let multi = run_job(&client, &base, "?model=tiny-multipose", red.clone()).await;
    let r = &multi["result"];
    assert_eq!(r["kind"], "keypoints");
    let people = r["persons"].as_array().expect("persons listed");
    assert_eq!(people.len(), 2, "{r}");
    let boxes: Vec<[f64; 5]> = people
        .iter()
        .map(|p| {
            let b = |n: &str| p["box"][n].as_f64().unwrap();
            [
                b("x1"),
                b("y1"),
                b("x2"),
                b("y2"),
                p["score"].as_f64().unwrap(),
            ]
        })
        .collect();
    for (got, want) in boxes
        .iter()
        .zip([[36.0, 6.0, 60.0, 36.0, 0.8], [4.0, 6.0, 28.0, 36.0, 0.6]])
    {
        assert!(
            got.iter().zip(want).all(|(g, w)| close(*g, w)),
            "{got:?} vs {want:?}"
        );
    }
    let head = |v: &serde_json::Value| (v["x"].as_f64().unwrap(), v["y"].as_f64().unwrap());
    assert_eq!(head(&people[0]["keypoints"][0]), (48.0, 12.0));
    assert_eq!(head(&people[1]["keypoints"][0]), (16.0, 12.0));
    assert_eq!(r["keypoints"], people[0]["keypoints"]);
    assert_eq!(people[0]["keypoints"].as_array().unwrap().len(), 3);
    // A one-person model says nothing about persons.
    assert!(
        pose["result"].get("persons").is_none(),
        "{}",
        pose["result"]
    );

    // Detection: threshold 0.3 drops one box, NMS 0.5 another; pixels of a
    // 100x100 input mapped back to 64x48.
    let det = run_job(&client, &base, "?model=tiny-detect", red.clone()).await;
    let found = det["result"]["detections"].as_array().unwrap();
    assert_eq!(found.len(), 2, "{}", det["result"]);
    assert_eq!(found[0]["label"], "dog");
    assert!(close(found[0]["score"].as_f64().unwrap(), 0.9));
    let b = &found[0]["box"];
    let coords: Vec<f64> = ["x1", "y1", "x2", "y2"]
        .iter()
        .map(|k| b[*k].as_f64().unwrap())
        .collect();
    assert_eq!(coords, vec![16.0, 12.0, 48.0, 36.0]);
    assert_eq!(found[1]["label"], "cat");
    let b = &found[1]["box"];
    let coords: Vec<f64> = ["x1", "y1", "x2", "y2"]
        .iter()
        .map(|k| b[*k].as_f64().unwrap())
        .collect();
    assert_eq!(coords, vec![0.0, 0.0, 8.0, 24.0]);

    // Embedding: raw [3, 4, 0, 0], L2-normalised.
    let emb = run_job(&client, &base, "?model=tiny-embed", red.clone()).await;
    let values: Vec<f64> = emb["result"]["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(emb["result"]["dimensions"], 4);
    for (v, e) in values.iter().zip([0.6, 0.8, 0.0, 0.0]) {
        assert!(close(*v, e), "{values:?}");
    }

    // Image: 1 - x, served as PNG at the job's output URL.
    let dark = solid_png(20, 10, [10, 20, 30]);
    let inv = run_job(&client, &base, "?model=tiny-invert", dark.clone()).await;
    let r = &inv["result"];
    assert_eq!(
        (
            r["kind"].as_str(),
            r["width"].as_u64(),
            r["height"].as_u64()
        ),
        (Some("image"), Some(32), Some(32))
    );
    let href = r["href"].as_str().unwrap();
    let resp = client.get(format!("{base}{href}")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "image/png");
    let png = image::load_from_memory(&resp.bytes().await.unwrap())
        .unwrap()
        .to_rgb8();
    assert_eq!(png.dimensions(), (32, 32));
    assert!(
        png.pixels().all(|p| p.0 == [245, 235, 225]),
        "{:?}",
        png.get_pixel(0, 0)
    );

    // Tensor: both raw outputs with shapes.
    let t = run_job(&client, &base, "?model=tiny-tensor", dark).await;
    let outputs = t["result"]["outputs"].as_array().unwrap();
    assert_eq!(outputs.len(), 2);
    assert_eq!(outputs[0]["name"], "mean");
    assert_eq!(outputs[0]["shape"], serde_json::json!([1, 3]));
    let mean: Vec<f64> = outputs[0]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let double: Vec<f64> = outputs[1]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    for (i, c) in [10.0, 20.0, 30.0].iter().enumerate() {
        assert!((mean[i] - c / 255.0).abs() < 1e-6, "{mean:?}");
        assert!((double[i] - 2.0 * c / 255.0).abs() < 1e-6, "{double:?}");
    }

    worker.stop().await;
    api.stop().await;
    ns.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn movenet_finds_the_astronauts_face_and_shoulders() {
    if !real_model_ready("movenet-lightning", "models-pose") {
        return;
    }
    let server = start_embedded(&real_models(), "movenet-lightning", &[]).await;
    let client = reqwest::Client::new();
    let base = server.url();
    let job = run_job(
        &client,
        &base,
        "?model=movenet-lightning",
        image("astronaut.png"),
    )
    .await;
    let points = job["result"]["keypoints"].as_array().unwrap();
    assert_eq!(points.len(), 17);
    // Reference positions (original 512x512 pixels) from the Python ORT
    // pipeline; resize filters differ, so allow a few pixels.
    let expected = [
        ("nose", 221.9, 121.2),
        ("left_eye", 246.5, 101.1),
        ("right_eye", 203.9, 98.8),
        ("left_shoulder", 317.8, 271.2),
        ("right_shoulder", 108.9, 255.9),
    ];
    for (name, ex, ey) in expected {
        let p = points
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("{name} missing"));
        let (x, y, s) = (
            p["x"].as_f64().unwrap(),
            p["y"].as_f64().unwrap(),
            p["score"].as_f64().unwrap(),
        );
        assert!(
            (x - ex).abs() < 10.0 && (y - ey).abs() < 10.0,
            "{name} at ({x:.1}, {y:.1}), expected ({ex}, {ey})"
        );
        assert!(s > 0.3, "{name} score {s}");
    }
    assert!(!job["result"]["skeleton"].as_array().unwrap().is_empty());
    server.stop().await;
}

/// MoveNet MultiPose on a real photo of two people side by side: two
/// persons, each one's confident keypoints inside its own half, the
/// astronaut's face where the single-person model finds it; also through the
/// KServe v2 route (`persons`, `person_count`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipose_finds_two_people_each_in_its_own_half() {
    if !real_model_ready("movenet-multipose", "models-pose") {
        return;
    }
    let server = start_embedded(&real_models(), "movenet-multipose", &[]).await;
    let client = reqwest::Client::new();
    let base = server.url();
    let photo = image("two-people.jpg");
    let job = run_job(&client, &base, "?model=movenet-multipose", photo.clone()).await;
    let r = &job["result"];
    let people = r["persons"].as_array().expect("persons listed");
    assert_eq!(people.len(), 2, "{r}");
    // Left of x = 512 the astronaut, right of it the cameraman.
    let mut halves = Vec::new();
    for p in people {
        let score = p["score"].as_f64().unwrap();
        assert!(score >= 0.3, "person score {score}");
        let confident: Vec<(f64, f64)> = p["keypoints"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|k| k["score"].as_f64().unwrap() > 0.3)
            .map(|k| (k["x"].as_f64().unwrap(), k["y"].as_f64().unwrap()))
            .collect();
        assert!(confident.len() >= 8, "{p}");
        let left = confident.iter().all(|(x, _)| *x < 512.0);
        let right = confident.iter().all(|(x, _)| *x > 512.0);
        assert!(
            left || right,
            "keypoints straddle both photos: {confident:?}"
        );
        let b = &p["box"];
        let (x1, x2) = (b["x1"].as_f64().unwrap(), b["x2"].as_f64().unwrap());
        assert!(if left { x2 <= 520.0 } else { x1 >= 504.0 }, "box {b}");
        halves.push(left);
    }
    assert_ne!(halves[0], halves[1], "one person per half");
    let astronaut = &people[halves.iter().position(|l| *l).unwrap()];
    let nose = astronaut["keypoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "nose")
        .expect("nose");
    let (x, y) = (nose["x"].as_f64().unwrap(), nose["y"].as_f64().unwrap());
    // The single-person model puts the nose at (221.9, 121.2) in the same photo.
    assert!(
        (x - 222.0).abs() < 12.0 && (y - 121.0).abs() < 12.0,
        "nose at ({x}, {y})"
    );

    let body = serde_json::json!({"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES",
        "data": [base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &photo)]}],
        "outputs": [{"name": "persons"}, {"name": "person_count"}]});
    let v2: serde_json::Value = client
        .post(format!("{base}/v2/models/movenet-multipose/infer"))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        v2["outputs"][0]["shape"],
        serde_json::json!([1, 2, 56]),
        "{v2}"
    );
    assert_eq!(v2["outputs"][1]["data"], serde_json::json!([2]), "{v2}");
    let rows = v2["outputs"][0]["data"].as_array().unwrap();
    assert!(
        (rows[4].as_f64().unwrap() - people[0]["score"].as_f64().unwrap()).abs() < 1e-6,
        "the best person first"
    );
    server.stop().await;
}

/// A model whose outputs are NaN and infinite (tiny-tensor with a
/// normalisation that overflows): the job fails with a clear message and
/// its record stays readable, instead of a record that answers 500.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_finite_outputs_fail_the_job_and_the_record_reads() {
    if !ort_library().is_file() {
        return;
    }
    let repo = std::env::temp_dir().join(format!("inferq-nan-{}", uuid::Uuid::new_v4().simple()));
    let dir = repo.join("tiny-overflow/1");
    std::fs::create_dir_all(&dir).unwrap();
    let src = test_models().join("tiny-tensor/1");
    std::fs::copy(src.join("model.onnx"), dir.join("model.onnx")).unwrap();
    let manifest = std::fs::read_to_string(src.join("model.toml")).unwrap();
    // 1 / 1e-45 overflows to infinity: a zero pixel gives 0 * inf = NaN,
    // any other +inf.
    let overflow = manifest.replace("std = [255.0, 255.0, 255.0]", "std = [1e-45, 1e-45, 1e-45]");
    assert_ne!(overflow, manifest);
    std::fs::write(dir.join("model.toml"), overflow).unwrap();
    let server = start_embedded(&repo, "tiny-overflow", &[]).await;
    let client = reqwest::Client::new();
    let base = server.url();
    let (status, body) = submit(
        &client,
        &base,
        "",
        "image/png",
        solid_png(16, 16, [0, 9, 200]),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let job = wait_terminal(
        &client,
        &base,
        body["id"].as_str().unwrap(),
        std::time::Duration::from_secs(30),
    )
    .await;
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["error"]["code"], "inference_failed", "{job}");
    assert!(
        job["error"]["message"]
            .as_str()
            .unwrap()
            .contains("NaN or infinite"),
        "{job}"
    );
    server.stop().await;
}
