//! A worker SIGKILLed in the middle of a video job. The job's message was
//! never acked, so RabbitMQ hands it to the next worker, which runs the
//! clip again from frame 0 and stores the whole frames document in place of
//! the partial one: the job succeeds once, with two attempts, every frame
//! exactly once, and the killed worker's decoder does not outlive it.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use inferq_tests::*;
use serde_json::Value;

const FLAGS: [&str; 4] = ["--threads", "1", "--prefetch", "1"];

fn log_path(name: &str) -> std::path::PathBuf {
    let dir = root().join("target/test-logs");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

async fn record(client: &reqwest::Client, base: &str, id: &str) -> Value {
    client
        .get(format!("{base}/v1/jobs/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_video_loses_nothing_and_repeats_no_frame() {
    let ffmpeg = Command::new("ffmpeg").arg("-version").output().is_ok();
    if !services_available() || !ffmpeg {
        assert!(
            std::env::var("INFERQ_TEST_REQUIRE_SERVICES").is_err(),
            "ffmpeg missing: apt-get install ffmpeg"
        );
        return;
    }
    let dir = std::env::temp_dir().join(format!("inferq-video-crash-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let clip_path = dir.join("clip.mp4");
    // 120 frames of a ~28 ms model: a few seconds of work to cut into.
    let made = Command::new("ffmpeg")
        .args(["-hide_banner", "-v", "error", "-y", "-f", "lavfi"])
        .args(["-i", "testsrc=size=64x48:rate=10", "-t", "12"])
        .args(["-c:v", "libx264", "-pix_fmt", "yuv420p"])
        .arg(&clip_path)
        .status()
        .unwrap();
    assert!(made.success());
    let clip = std::fs::read(&clip_path).unwrap();

    let ns = Namespace::new();
    let api = start_api(&ns, &test_models(), "tiny-slow", &[]).await;
    let client = reqwest::Client::new();
    let base = api.url();
    let mut victim =
        WorkerProcess::spawn(&ns, &test_models(), &FLAGS, &log_path("video-victim.log"));
    let (status, body) = submit(&client, &base, "", "video/mp4", clip).await;
    assert_eq!(status, 202, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();

    // Kill it once it is well into the clip.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let job = record(&client, &base, &id).await;
        let done = job["progress"]["frames_done"].as_u64().unwrap_or(0);
        if done >= 20 {
            assert!(done < 120, "the clip finished before the kill: {job}");
            break;
        }
        assert!(Instant::now() < deadline, "no progress: {job}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    victim.signal(libc::SIGKILL);
    victim.wait_exit(Duration::from_secs(10)).expect("killed");
    let job = record(&client, &base, &id).await;
    assert_eq!(job["status"], "running", "{job}");

    let survivor =
        WorkerProcess::spawn(&ns, &test_models(), &FLAGS, &log_path("video-survivor.log"));
    let job = wait_terminal(&client, &base, &id, Duration::from_secs(120)).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["attempts"], 2, "{job}");
    assert_eq!(job["result"]["frames"], 120, "{job}");

    let text = client
        .get(format!("{base}/v1/jobs/{id}/frames"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let frames: Vec<u64> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["frame"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(frames.len(), 120, "one line per frame");
    assert_eq!(
        frames.iter().copied().collect::<BTreeSet<_>>(),
        (0..120).collect::<BTreeSet<_>>(),
        "every frame once"
    );
    // The killed worker's decoder went with it (PDEATHSIG) or was reaped.
    let left = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            std::fs::read(e.path().join("cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(&id))
                .unwrap_or(false)
        })
        .count();
    assert_eq!(left, 0, "a decoder of the job outlived its worker");

    drop(survivor);
    api.stop().await;
    ns.cleanup().await;
    let _ = std::fs::remove_dir_all(dir);
}
