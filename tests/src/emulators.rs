//! Local object-store emulators for the storage-reference tests.
//!
//! `gcp-storage-emulator` (Google Cloud Storage) and `moto_server` (S3) are
//! pinned in `scripts/requirements-test.txt` and installed into
//! `.cache/test-venv` by `make test-venv`. Each [`Emulator`] is a child process on a free 127.0.0.1
//! port, killed when dropped; the helpers seed buckets and objects through
//! the emulator's own HTTP API, independently of the code under test.
//!
//! When the binaries are missing the tests skip with a `SKIPPED:` message,
//! unless `INFERQ_TEST_REQUIRE_SERVICES=1`, where that is a failure.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::Url;

/// Which emulator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// gcp-storage-emulator: the GCS JSON and XML APIs.
    Gcs,
    /// moto_server: the S3 API (and the rest of AWS).
    S3,
}

impl Kind {
    fn binary(self) -> PathBuf {
        venv_bin(match self {
            Kind::Gcs => "gcp-storage-emulator",
            Kind::S3 => "moto_server",
        })
    }
}

/// A program from the test-tools venv.
pub fn venv_bin(name: &str) -> PathBuf {
    crate::test_tool(name)
}

/// True when both emulators are installed; otherwise prints `SKIPPED:` (or
/// panics when `INFERQ_TEST_REQUIRE_SERVICES=1`).
pub fn emulators_available() -> bool {
    let missing: Vec<String> = [Kind::Gcs, Kind::S3]
        .iter()
        .map(|k| k.binary())
        .filter(|p| !p.is_file())
        .map(|p| p.display().to_string())
        .collect();
    if missing.is_empty() {
        return true;
    }
    let msg = format!(
        "storage emulators not installed ({}); run `make test-venv`",
        missing.join(", ")
    );
    if std::env::var("INFERQ_TEST_REQUIRE_SERVICES").is_ok_and(|v| v == "1") {
        panic!("{msg}");
    }
    eprintln!("SKIPPED: {msg}");
    false
}

/// A running emulator; killed on drop.
pub struct Emulator {
    kind: Kind,
    child: Child,
    /// `http://127.0.0.1:<port>`
    pub endpoint: String,
    http: reqwest::Client,
    log: PathBuf,
}

impl Emulator {
    /// Starts an emulator on a free port and waits (at most 60 s) until it answers.
    pub async fn start(kind: Kind) -> Emulator {
        let port = free_port();
        let mut cmd = Command::new(kind.binary());
        match kind {
            Kind::Gcs => cmd.args(["start", "--host", "127.0.0.1", "--in-memory", "--quiet"]),
            Kind::S3 => cmd.args(["-H", "127.0.0.1"]),
        };
        match kind {
            Kind::Gcs => cmd.args(["--port", &port.to_string()]),
            Kind::S3 => cmd.args(["-p", &port.to_string()]),
        };
        let log = std::env::temp_dir().join(format!("inferq-{kind:?}-emulator-{port}.log"));
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("emulator log"))
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", kind.binary().display()));
        let mut emu = Emulator {
            kind,
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("client"),
            log: log.clone(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = emu.child.try_wait() {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                panic!("{kind:?} emulator exited with {status}:\n{text}");
            }
            if emu.http.get(&emu.endpoint).send().await.is_ok() {
                return emu;
            }
            assert!(
                Instant::now() < deadline,
                "{kind:?} emulator did not answer on {} within 60 s (log: {})",
                emu.endpoint,
                log.display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Creates a bucket (S3: world-readable and -writable, so unsigned
    /// requests work as they would on a public bucket).
    pub async fn create_bucket(&self, bucket: &str) {
        let resp = match self.kind {
            Kind::Gcs => {
                self.http
                    .post(format!(
                        "{}/storage/v1/b?project=inferq-test",
                        self.endpoint
                    ))
                    .header("content-type", "application/json")
                    .body(serde_json::json!({ "name": bucket }).to_string())
                    .send()
                    .await
            }
            Kind::S3 => {
                self.http
                    .put(format!("{}/{bucket}", self.endpoint))
                    .header("x-amz-acl", "public-read-write")
                    .send()
                    .await
            }
        }
        .expect("create bucket");
        assert!(
            resp.status().is_success(),
            "create bucket {bucket}: {}",
            resp.status()
        );
    }

    /// Uploads an object through the emulator's own API.
    pub async fn upload(&self, bucket: &str, key: &str, data: Vec<u8>) {
        let url = match self.kind {
            Kind::Gcs => {
                let mut u =
                    Url::parse(&format!("{}/upload/storage/v1/b/{bucket}/o", self.endpoint))
                        .unwrap();
                u.query_pairs_mut()
                    .append_pair("uploadType", "media")
                    .append_pair("name", key);
                u
            }
            Kind::S3 => Url::parse(&format!("{}/{bucket}/{key}", self.endpoint)).unwrap(),
        };
        let req = match self.kind {
            Kind::Gcs => self.http.post(url),
            Kind::S3 => self.http.put(url),
        };
        let resp = req
            .header("content-type", "application/octet-stream")
            .body(data)
            .send()
            .await
            .expect("upload");
        assert!(
            resp.status().is_success(),
            "upload {bucket}/{key}: {}",
            resp.status()
        );
    }

    /// Reads an object back through the emulator's own API: (content type, bytes).
    pub async fn download(&self, bucket: &str, key: &str) -> (String, Vec<u8>) {
        let url = match self.kind {
            Kind::Gcs => {
                let mut u =
                    Url::parse(&format!("{}/storage/v1/b/{bucket}/o/", self.endpoint)).unwrap();
                u.path_segments_mut().unwrap().pop().push(key);
                u.query_pairs_mut().append_pair("alt", "media");
                u
            }
            Kind::S3 => Url::parse(&format!("{}/{bucket}/{key}", self.endpoint)).unwrap(),
        };
        let resp = self.http.get(url).send().await.expect("download");
        assert!(
            resp.status().is_success(),
            "download {bucket}/{key}: {}",
            resp.status()
        );
        let ct = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        (ct, resp.bytes().await.expect("body").to_vec())
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !std::thread::panicking() {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// `n` bytes that differ from any other test's (a simple LCG from `seed`).
pub fn pattern(n: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..n)
        .map(|_| {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (x >> 24) as u8
        })
        .collect()
}
