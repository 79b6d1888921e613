//! Memory is bounded per job: two hostile 40-megapixel images at once keep
//! the embedded server (`inferq`, EfficientNet-Lite0) under a stated peak.
//!
//! The images (scripts/make_hostile_images.py) are small on the wire and
//! just under the default pixel limit: 16-bit RGBA PNG with an EXIF
//! rotation, CMYK and RGB JPEG, lossless RGBA WebP, a GIF of 200 frames
//! and an RLE BMP. The GIF, having more than one frame, is a video job since
//! video jobs exist: its 40-megapixel frames are over the video frame limit,
//! so it fails `video_too_large` from its header, before any decoding. For each kind the server's peak RSS (`VmHWM`, reset
//! between kinds through `/proc/<pid>/clear_refs`) is read after two of them
//! ran at the same time. Before the bounded decode path, two such PNGs took
//! the process past 1.4 GB.
//!
//! `INFERQ_MEMORY_TEST_BIN=<path>` runs the same measurement against another
//! `inferq` binary (e.g. one built from an older commit) and only prints.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use inferq_tests::*;

/// Peak RSS allowed, in MB, for two images of one kind at once.
const BOUND_MB: u64 = 600;

fn status_kb(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_huge_images_at_once_stay_under_the_memory_bound() {
    if !real_model_ready("efficientnet-lite0", "models") {
        return;
    }
    let dir = root().join("target/tmp/hostile-images");
    let _ = std::fs::remove_dir_all(&dir);
    let t0 = Instant::now();
    let made = Command::new(test_python())
        .arg(root().join("scripts/make_hostile_images.py"))
        .arg(&dir)
        .status()
        .expect("run make_hostile_images.py");
    assert!(made.success(), "make_hostile_images.py failed");
    eprintln!("images made in {:.1}s", t0.elapsed().as_secs_f64());

    // A repository with the default model's float version only (each model
    // is loaded on every inference thread; the int8 version 2 would add
    // its sessions to the idle RSS).
    let models = dir.join("models");
    std::fs::create_dir_all(models.join("efficientnet-lite0")).unwrap();
    for part in ["1", "labels.txt"] {
        std::os::unix::fs::symlink(
            real_models().join("efficientnet-lite0").join(part),
            models.join("efficientnet-lite0").join(part),
        )
        .unwrap();
    }
    let other = std::env::var_os("INFERQ_MEMORY_TEST_BIN");
    let bin = other
        .clone()
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| binary("inferq"));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log = dir.join("server.log");
    let mut child = Command::new(&bin)
        .args(["--ort-library", &ort_library().display().to_string()])
        .args(["--model-dir", &models.display().to_string()])
        .args(["--default-model", "efficientnet-lite0"])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--metrics-listen", ""])
        .args(["--threads", "2", "--pin-threads", "false"])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("spawn inferq");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let pid = child.id();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = client.get(format!("{base}/readyz")).send().await
            && r.status() == 200
        {
            break;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("inferq exited ({status}); log in {}", log.display());
        }
        assert!(
            Instant::now() < deadline,
            "inferq not ready; log in {}",
            log.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let child = Kill(child);
    let idle_mb = status_kb(pid, "VmRSS:") / 1024;

    // (file, content type, the error code a refused kind ends with)
    let kinds = [
        ("png16-rgba-exif6.png", "image/png", None),
        ("cmyk.jpg", "image/jpeg", None),
        ("rgb.jpg", "image/jpeg", None),
        ("rgba-lossless.webp", "image/webp", None),
        ("frames.gif", "image/gif", Some("video_too_large")),
        ("rle8.bmp", "image/bmp", None),
    ];
    let mut peaks = Vec::new();
    for (file, content_type, refused) in kinds {
        let bytes = std::fs::read(dir.join(file)).unwrap();
        // Reset the high-water mark to the current RSS.
        std::fs::write(format!("/proc/{pid}/clear_refs"), "5").unwrap();
        let t = Instant::now();
        let submit_two = (0..2).map(|_| {
            let (client, base, bytes) = (client.clone(), base.clone(), bytes.clone());
            tokio::spawn(async move {
                let (status, body) = submit(&client, &base, "", content_type, bytes).await;
                assert_eq!(status, 202, "{file}: {body}");
                let id = body["id"].as_str().unwrap().to_owned();
                wait_terminal(&client, &base, &id, Duration::from_secs(60)).await
            })
        });
        let jobs: Vec<_> = futures_join(submit_two).await;
        for job in &jobs {
            match refused {
                None => assert_eq!(job["status"], "succeeded", "{file}: {job}"),
                Some(code) => {
                    assert_eq!(job["status"], "failed", "{file}: {job}");
                    assert_eq!(job["error"]["code"], code, "{file}: {job}");
                }
            }
        }
        let peak_mb = status_kb(pid, "VmHWM:") / 1024;
        eprintln!(
            "{file:<22} {:>8} bytes  two at once: peak RSS {peak_mb:>5} MB  ({:.1}s)",
            bytes.len(),
            t.elapsed().as_secs_f64()
        );
        peaks.push((file, peak_mb));
    }
    drop(child);
    eprintln!("idle RSS {idle_mb} MB; bound {BOUND_MB} MB");
    if other.is_some() {
        return; // measuring another binary: numbers only
    }
    for (file, peak) in peaks {
        assert!(
            peak <= BOUND_MB,
            "{file}: peak RSS {peak} MB above {BOUND_MB} MB"
        );
    }
}

/// Awaits all the spawned tasks, in order.
async fn futures_join(
    tasks: impl Iterator<Item = tokio::task::JoinHandle<serde_json::Value>>,
) -> Vec<serde_json::Value> {
    let handles: Vec<_> = tasks.collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}
