//! Video jobs end to end through RabbitMQ, Redis, ONNX Runtime and FFmpeg:
//! clips generated here with `ffmpeg` (from the committed test photos or
//! FFmpeg's own test patterns; nothing downloaded) go through
//! `POST /v1/jobs` as a raw body, a multipart form and JSON base64, run on
//! the real EfficientNet-Lite0 and the tiny-invert image model, and come back
//! as JSON Lines at `/v1/jobs/{id}/frames` and an MP4 at `/output`. Bad files
//! fail with a code while the worker keeps serving, a clip over the
//! duration limit is refused, and a cancel kills the decoder mid-video.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use base64::Engine;
use inferq_tests::*;
use serde_json::{Value, json};

/// Whether FFmpeg is installed; under `make test` its absence fails.
fn ffmpeg_available() -> bool {
    let ok = Command::new("ffmpeg").arg("-version").output().is_ok()
        && Command::new("ffprobe").arg("-version").output().is_ok();
    if !ok {
        assert!(
            std::env::var("INFERQ_TEST_REQUIRE_SERVICES").is_err(),
            "ffmpeg/ffprobe missing: apt-get install ffmpeg (make services does it as root)"
        );
        eprintln!("SKIPPED: ffmpeg not installed");
    }
    ok
}

fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("inferq-{tag}-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs ffmpeg with `args` (quietly, overwriting) and returns `out`'s bytes.
fn ffmpeg(args: &[&str], out: &Path) -> Vec<u8> {
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-v", "error", "-y"])
        .args(args)
        .arg(out)
        .status()
        .expect("ffmpeg runs");
    assert!(status.success(), "ffmpeg {args:?} failed");
    std::fs::read(out).unwrap()
}

/// Every frame of a video file as packed RGB bytes (ffmpeg's decode).
fn decode_rgb(path: &Path) -> Vec<u8> {
    Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args(["-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"])
        .output()
        .unwrap()
        .stdout
}

/// A clip of the cat photo (still, `secs` long at `fps`), in `ext`'s container.
fn cat_clip(dir: &Path, secs: u32, fps: u32, ext: &str) -> Vec<u8> {
    let photo = root().join("tests/images/chelsea.png");
    let (secs, rate) = (secs.to_string(), fps.to_string());
    let mut args = vec!["-loop", "1", "-framerate", &rate, "-i"];
    let photo = photo.to_str().unwrap();
    args.push(photo);
    args.extend(["-t", &secs, "-vf", "scale=224:150"]);
    match ext {
        "mp4" => args.extend(["-c:v", "libx264", "-pix_fmt", "yuv420p"]),
        "webm" => args.extend(["-c:v", "libvpx-vp9", "-deadline", "realtime"]),
        _ => {}
    }
    ffmpeg(&args, &dir.join(format!("cat.{ext}")))
}

/// An H.264 MP4 of FFmpeg's generated `source` (a lavfi filter such as
/// `testsrc=…` or `color=…`), `secs` long.
fn lavfi_clip(dir: &Path, name: &str, source: &str, secs: u32) -> Vec<u8> {
    let secs = secs.to_string();
    let args = [
        "-f", "lavfi", "-i", source, "-t", &secs, "-c:v", "libx264", "-pix_fmt", "yuv420p",
    ];
    ffmpeg(&args, &dir.join(name))
}

/// FFmpeg's test pattern, `secs` long at `fps`, `size` (`WxH`), as MP4.
fn pattern_clip(dir: &Path, name: &str, size: &str, secs: u32, fps: u32) -> Vec<u8> {
    lavfi_clip(dir, name, &format!("testsrc=size={size}:rate={fps}"), secs)
}

/// GET `url`, checked to answer 200 with `content_type`.
async fn fetch(client: &reqwest::Client, url: &str, content_type: &str) -> reqwest::Response {
    let resp = client.get(url).send().await.unwrap();
    assert_eq!(resp.status(), 200, "{url}");
    assert_eq!(resp.headers()["content-type"], content_type, "{url}");
    resp
}

/// A finished job's output video, checked to be an MP4 and decoded to raw
/// RGB frames (written to `dir` on the way).
async fn output_rgb(client: &reqwest::Client, base: &str, id: &str, dir: &Path) -> Vec<u8> {
    let video = fetch(client, &format!("{base}/v1/jobs/{id}/output"), "video/mp4")
        .await
        .bytes()
        .await
        .unwrap();
    assert_eq!(&video[4..8], b"ftyp");
    let path = dir.join("out.mp4");
    std::fs::write(&path, &video).unwrap();
    decode_rgb(&path)
}

/// The frames document of a finished job, parsed line by line.
async fn frames(client: &reqwest::Client, base: &str, id: &str) -> Vec<Value> {
    let text = fetch(
        client,
        &format!("{base}/v1/jobs/{id}/frames"),
        "application/x-ndjson",
    )
    .await
    .text()
    .await
    .unwrap();
    text.lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect()
}

async fn finished(client: &reqwest::Client, base: &str, submitted: (u16, Value)) -> Value {
    let (status, body) = submitted;
    assert_eq!(status, 202, "{body}");
    let id = body["id"].as_str().unwrap();
    wait_terminal(client, base, id, Duration::from_secs(120)).await
}

/// Checks a classified cat clip: `n` frames at `fps`, each a cat.
async fn check_cat(client: &reqwest::Client, base: &str, job: &Value, n: u64, fps: f64) {
    assert_eq!(job["status"], "succeeded", "{job}");
    let r = &job["result"];
    assert_eq!(r["kind"], "video", "{job}");
    assert_eq!(r["frames"], n, "{job}");
    assert_eq!(r["fps"].as_f64().unwrap(), fps, "{job}");
    assert_eq!(r["frame_kind"], "classification");
    assert_eq!(
        (r["width"].as_u64(), r["height"].as_u64()),
        (Some(224), Some(150))
    );
    assert_eq!(
        job["progress"],
        json!({"frames_done": n, "frames_total": n})
    );
    let id = job["id"].as_str().unwrap();
    assert_eq!(r["frames_href"], format!("/v1/jobs/{id}/frames"));
    let lines = frames(client, base, id).await;
    assert_eq!(lines.len() as u64, n);
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(line["frame"], i as u64);
        let t = line["time"].as_f64().unwrap();
        assert!((t - i as f64 / fps).abs() < 1e-6, "{line}");
        let top1 = line["result"]["top_k"][0]["index"].as_u64().unwrap();
        assert!(
            [281, 282, 285].contains(&top1),
            "frame {i} is no cat: {line}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clips_in_every_encoding_give_frames_of_cats() {
    if !services_available()
        || !ffmpeg_available()
        || !real_model_ready("efficientnet-lite0", "models")
    {
        return;
    }
    let dir = scratch("video-cat");
    let repo = real_model_subset(&dir, &[("efficientnet-lite0", &["1", "labels.txt"])]);
    let ns = Namespace::new();
    let api = start_api(&ns, &repo, "efficientnet-lite0", &[]).await;
    let worker = start_worker(&ns, &repo, &["--threads", "2"]).await;
    let client = reqwest::Client::new();
    let base = api.url();

    // Raw MP4: 2 s at 5 fps, every frame.
    let mp4 = cat_clip(&dir, 2, 5, "mp4");
    let job = finished(
        &client,
        &base,
        submit(&client, &base, "", "video/mp4", mp4).await,
    )
    .await;
    assert_eq!(job["input"]["format"], "mp4");
    check_cat(&client, &base, &job, 10, 5.0).await;

    // Multipart WebM, sampled at 2 fps and capped at 3 frames.
    let webm = cat_clip(&dir, 2, 5, "webm");
    let form = reqwest::multipart::Form::new()
        .text("fps", "2")
        .text("max_frames", "3")
        .part(
            "file",
            reqwest::multipart::Part::bytes(webm).file_name("cat.webm"),
        );
    let resp = client
        .post(format!("{base}/v1/jobs"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let job = finished(&client, &base, (status, resp.json().await.unwrap())).await;
    assert_eq!(job["input"]["format"], "webm");
    check_cat(&client, &base, &job, 3, 2.0).await;

    // JSON base64 animated GIF, with the options in the body.
    let gif = cat_clip(&dir, 1, 4, "gif");
    let b64 = base64::engine::general_purpose::STANDARD.encode(&gif);
    let body = json!({"input": {"b64": b64}, "fps": 4, "max_frames": 10});
    let job = finished(&client, &base, submit_json(&client, &base, body).await).await;
    assert_eq!(job["input"]["format"], "gif");
    check_cat(&client, &base, &job, 4, 4.0).await;

    // A still image still runs as before.
    let still = run_job(&client, &base, "", image("chelsea.png")).await;
    assert_eq!(still["result"]["kind"], "classification");
    assert!(still.get("progress").is_none(), "{still}");

    worker.stop().await;
    api.stop().await;
    ns.cleanup().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_model_gives_an_output_video() {
    if !services_available() || !ffmpeg_available() {
        return;
    }
    let dir = scratch("video-invert");
    let ns = Namespace::new();
    let api = start_api(&ns, &test_models(), "tiny-invert", &[]).await;
    let worker = start_worker(&ns, &test_models(), &["--threads", "1"]).await;
    let client = reqwest::Client::new();
    let base = api.url();
    // A solid colour: its negative is known (H.264 moves values a little).
    let clip = lavfi_clip(&dir, "solid.mp4", "color=c=0x204060:size=64x48:rate=6", 1);
    let job = finished(
        &client,
        &base,
        submit(&client, &base, "", "video/mp4", clip).await,
    )
    .await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let r = &job["result"];
    assert_eq!(
        (r["frames"].as_u64(), r["frame_kind"].as_str()),
        (Some(6), Some("image"))
    );
    let id = job["id"].as_str().unwrap();
    assert_eq!(r["output"]["href"], format!("/v1/jobs/{id}/output"));
    assert_eq!(r["output"]["content_type"], "video/mp4");
    assert_eq!(
        (
            r["output"]["width"].as_u64(),
            r["output"]["height"].as_u64()
        ),
        (Some(32), Some(32))
    );
    let lines = frames(&client, &base, id).await;
    assert_eq!(lines.len(), 6);
    assert_eq!(lines[0]["result"]["kind"], "image");

    // Decode the output: 6 frames of 32x32 whose colour is the negative.
    let raw = output_rgb(&client, &base, id, &dir).await;
    assert_eq!(raw.len(), 6 * 32 * 32 * 3);
    let mean = |c: usize| {
        raw.iter()
            .skip(c)
            .step_by(3)
            .map(|v| *v as f64)
            .sum::<f64>()
            / (6.0 * 32.0 * 32.0)
    };
    let expected = [255.0 - 32.0, 255.0 - 64.0, 255.0 - 96.0];
    for (c, e) in expected.iter().enumerate() {
        assert!(
            (mean(c) - e).abs() < 12.0,
            "channel {c}: {} vs {e}",
            mean(c)
        );
    }

    worker.stop().await;
    api.stop().await;
    ns.cleanup().await;
    let _ = std::fs::remove_dir_all(dir);
}

/// A pose model's video comes back annotated: the input frames with the
/// points and skeleton drawn where the frame's answer puts them (tiny-pose
/// answers the same three points for any frame: (32, 12) score 0.9,
/// (16, 24) 0.8 and (48, 36) 0.1, below the drawing threshold).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pose_model_gives_an_annotated_video() {
    if !services_available() || !ffmpeg_available() {
        return;
    }
    let dir = scratch("video-pose");
    let ns = Namespace::new();
    let api = start_api(&ns, &test_models(), "tiny-pose", &[]).await;
    let worker = start_worker(&ns, &test_models(), &["--threads", "1"]).await;
    let client = reqwest::Client::new();
    let base = api.url();
    let clip = lavfi_clip(&dir, "black.mp4", "color=c=black:size=64x48:rate=6", 1);
    let job = finished(
        &client,
        &base,
        submit(&client, &base, "", "video/mp4", clip).await,
    )
    .await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let r = &job["result"];
    assert_eq!(r["frame_kind"], "keypoints", "{r}");
    assert_eq!(r["output"]["content_type"], "video/mp4", "{r}");
    assert_eq!(
        (
            r["output"]["width"].as_u64(),
            r["output"]["height"].as_u64()
        ),
        (Some(64), Some(48))
    );
    let id = job["id"].as_str().unwrap();
    let lines = frames(&client, &base, id).await;
    assert_eq!(lines.len(), 6);
    assert_eq!(lines[0]["result"]["keypoints"][0]["x"], 32.0);

    let raw = output_rgb(&client, &base, id, &dir).await;
    let frame = 64 * 48 * 3;
    assert_eq!(raw.len(), 6 * frame);
    // (H.264 with 4:2:0 colour blurs small marks: loose colour checks.)
    let px = |f: usize, x: usize, y: usize| {
        let i = f * frame + (y * 64 + x) * 3;
        (raw[i] as i32, raw[i + 1] as i32, raw[i + 2] as i32)
    };
    for f in [0, 5] {
        for (x, y) in [(32, 12), (16, 24)] {
            let (r, g, b) = px(f, x, y);
            assert!(
                r > 120 && r > g + 40 && r > b + 40,
                "frame {f} point ({x}, {y}): {:?}",
                (r, g, b)
            );
        }
        // The skeleton edge between them is green.
        let (r, g, b) = px(f, 24, 18);
        assert!(g > 120 && g > r + 40, "frame {f} edge: {:?}", (r, g, b));
        // The 0.1 point and the background stay black.
        for (x, y) in [(48, 36), (60, 4)] {
            let (r, g, b) = px(f, x, y);
            assert!(
                r.max(g).max(b) < 50,
                "frame {f} ({x}, {y}): {:?}",
                (r, g, b)
            );
        }
    }

    worker.stop().await;
    api.stop().await;
    ns.cleanup().await;
    let _ = std::fs::remove_dir_all(dir);
}

/// Children of this process that are zombies (state Z).
fn zombie_children() -> Vec<String> {
    let me = std::process::id().to_string();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid …
        let Some(after) = stat.rsplit_once(')').map(|(_, r)| r.trim().to_owned()) else {
            continue;
        };
        let fields: Vec<&str> = after.split_whitespace().collect();
        if fields.first() == Some(&"Z") && fields.get(1) == Some(&me.as_str()) {
            found.push(stat);
        }
    }
    found
}

/// Fails if a child of this process stays a zombie for two seconds (a
/// decoder that just exited is a zombie until its waiter runs).
async fn assert_no_zombies() {
    for _ in 0..20 {
        if zombie_children().is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("zombie children left: {:?}", zombie_children());
}

/// Processes whose command line names this job (its decoder's input file).
fn decoders_of(id: &str) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            std::fs::read(e.path().join("cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(id))
                .unwrap_or(false)
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_videos_fail_with_codes_and_limits_refuse() {
    if !services_available() || !ffmpeg_available() {
        return;
    }
    let dir = scratch("video-bad");
    let ns = Namespace::new();
    let api = start_api(&ns, &test_models(), "tiny-mean", &[]).await;
    let worker = start_worker(
        &ns,
        &test_models(),
        // Its own frame cap (10) below the API's (3000): the worker holds
        // a job the API let through to it.
        &[
            "--threads",
            "1",
            "--video-max-duration-secs",
            "3",
            "--video-max-frames",
            "10",
            "--video-default-max-frames",
            "10",
        ],
    )
    .await;
    let client = reqwest::Client::new();
    let base = api.url();
    let good = pattern_clip(&dir, "good.mp4", "64x48", 2, 5);

    // Truncated: the index (at the end of a plain MP4) is gone.
    let cut = good[..good.len() / 2].to_vec();
    // Random bytes behind a valid `ftyp` box.
    let mut random = good[..32].to_vec();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    random.extend((0..50_000).map(|_| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x as u8
    }));
    for (name, bytes) in [("truncated", cut), ("random", random)] {
        let job = finished(
            &client,
            &base,
            submit(&client, &base, "", "video/mp4", bytes).await,
        )
        .await;
        assert_eq!(job["status"], "failed", "{name}: {job}");
        assert_eq!(job["error"]["code"], "video_decode_failed", "{name}: {job}");
    }

    // Over the duration limit (3 s here): refused from the header.
    let long = pattern_clip(&dir, "long.mp4", "64x48", 5, 5);
    let job = finished(
        &client,
        &base,
        submit(&client, &base, "", "video/mp4", long).await,
    )
    .await;
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["error"]["code"], "video_too_long", "{job}");
    assert!(job.get("progress").is_none(), "nothing was decoded: {job}");
    // Asking for more frames than the worker's cap (but not the API's).
    let (status, body) = submit(&client, &base, "?max_frames=11", "video/mp4", good.clone()).await;
    let job = finished(&client, &base, (status, body)).await;
    assert_eq!(job["error"]["code"], "video_too_large", "{job}");
    // Bad options, and more frames than the API's own cap, are refused by
    // the API before anything is queued.
    for query in ["?fps=0", "?max_frames=100000"] {
        let (status, body) = submit(&client, &base, query, "video/mp4", good.clone()).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (400, Some("invalid_argument")),
            "{query}: {body}"
        );
    }

    // The worker still serves: the good clip and a still image.
    let job = finished(
        &client,
        &base,
        submit(&client, &base, "", "video/mp4", good).await,
    )
    .await;
    assert_eq!(
        (job["status"].as_str(), job["result"]["frames"].as_u64()),
        (Some("succeeded"), Some(10)),
        "{job}"
    );
    run_job(&client, &base, "", solid_png(8, 8, [1, 2, 3])).await;
    assert_no_zombies().await;

    worker.stop().await;
    api.stop().await;
    ns.cleanup().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_the_remaining_frames() {
    if !services_available() || !ffmpeg_available() {
        return;
    }
    let dir = scratch("video-cancel");
    let ns = Namespace::new();
    let api = start_api(&ns, &test_models(), "tiny-slow", &[]).await;
    let worker = start_worker(&ns, &test_models(), &["--threads", "1"]).await;
    let client = reqwest::Client::new();
    let base = api.url();
    // 400 frames of a model that takes ~28 ms each: ten seconds or more.
    let clip = pattern_clip(&dir, "long.mp4", "160x120", 16, 25);
    let (status, body) = submit(&client, &base, "?max_frames=400", "video/mp4", clip).await;
    assert_eq!(status, 202, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();
    // Wait until frames are being done, with the decoder running.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let running = loop {
        let job: Value = client
            .get(format!("{base}/v1/jobs/{id}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if job["progress"]["frames_done"].as_u64().unwrap_or(0) > 0 {
            break job;
        }
        assert_ne!(
            job["status"], "succeeded",
            "finished before the cancel: {job}"
        );
        assert!(std::time::Instant::now() < deadline, "no progress: {job}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(running["progress"]["frames_total"], 400, "{running}");
    assert!(decoders_of(&id) > 0, "the decoder should be running");
    let resp = client
        .post(format!("{base}/v1/jobs/{id}/cancel"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // Within a progress interval or two the decoder is killed and reaped.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while decoders_of(&id) > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "decoder still running after the cancel"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let job = wait_terminal(&client, &base, &id, Duration::from_secs(5)).await;
    assert_eq!(job["status"], "canceled", "{job}");
    let done = job["progress"]["frames_done"].as_u64().unwrap();
    assert!(done < 400, "{job}");
    // No frames document for a canceled job, and no zombie decoder.
    let resp = client
        .get(format!("{base}/v1/jobs/{id}/frames"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_no_zombies().await;
    // The worker is free again at once: a still image is not stuck behind frames.
    run_job(&client, &base, "", solid_png(8, 8, [1, 2, 3])).await;

    worker.stop().await;
    api.stop().await;
    ns.cleanup().await;
    let _ = std::fs::remove_dir_all(dir);
}
