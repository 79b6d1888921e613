//! Storage references against real servers: the GCS and S3 emulators from
//! PyPI (see `inferq_tests::emulators`) and a small HTTP server in this test
//! on 127.0.0.1, which also shows the SSRF guard refusing loopback unless it
//! is allow-listed.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use inferq_backends::fetch::{FetchConfig, FetchError, Fetcher, StorageUri};
use inferq_tests::emulators::{Emulator, Kind, emulators_available, pattern};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn uri(s: &str) -> StorageUri {
    StorageUri::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

/// Everything a worker does with a bucket, against one emulator.
async fn exercise_bucket_store(kind: Kind) {
    if !emulators_available() {
        return;
    }
    let emu = Emulator::start(kind).await;
    emu.create_bucket("inferq-in").await;
    emu.create_bucket("inferq-out").await;
    emu.create_bucket("inferq-secret").await;
    let small = pattern(100_000, 1);
    emu.upload("inferq-in", "images/cat.bin", small.clone())
        .await;
    emu.upload("inferq-in", "images/big.bin", pattern(300_000, 2))
        .await;
    emu.upload("inferq-secret", "x.bin", pattern(10, 3)).await;

    let mut cfg = FetchConfig {
        fetch_allow_buckets: vec!["inferq-in".into(), "inferq-out".into()],
        fetch_max_bytes: 200_000,
        fetch_timeout_secs: 20,
        ..Default::default()
    };
    let scheme = match kind {
        Kind::Gcs => {
            cfg.gcs_endpoint = Some(emu.endpoint.clone());
            "gs"
        }
        Kind::S3 => {
            cfg.s3_endpoint = Some(emu.endpoint.clone());
            "s3"
        }
    };
    let f = Fetcher::new(&cfg).unwrap();
    let u = |rest: &str| uri(&format!("{scheme}://{rest}"));

    // Exact bytes.
    let got = f.get(&u("inferq-in/images/cat.bin")).await.unwrap();
    assert_eq!(got.len(), small.len());
    assert!(got == small, "{scheme}: bytes differ");

    // Missing object.
    let err = f.get(&u("inferq-in/images/none.bin")).await.unwrap_err();
    assert!(matches!(err, FetchError::NotFound(_)), "{scheme}: {err:?}");

    // Over the cap.
    let err = f.get(&u("inferq-in/images/big.bin")).await.unwrap_err();
    assert_eq!(err, FetchError::TooLarge { limit: 200_000 }, "{scheme}");

    // Write a result, read it back through the fetcher and the emulator's own API.
    let result = Bytes::from_static(br#"{"top_k":[{"index":281,"score":0.9}]}"#);
    let out = u("inferq-out/results/job-1.json");
    f.put(&out, result.clone(), "application/json")
        .await
        .unwrap();
    assert_eq!(f.get(&out).await.unwrap(), result);
    let (content_type, body) = emu.download("inferq-out", "results/job-1.json").await;
    assert_eq!(body, result.to_vec());
    assert!(
        content_type.starts_with("application/json"),
        "{scheme}: stored content type {content_type}"
    );

    // A bucket that exists but is not allowed: refused, never read or written.
    for err in [
        f.get(&u("inferq-secret/x.bin")).await.unwrap_err(),
        f.put(&u("inferq-secret/y.bin"), result.clone(), "text/plain")
            .await
            .unwrap_err(),
    ] {
        assert!(matches!(err, FetchError::Forbidden(_)), "{scheme}: {err:?}");
    }
    assert!(f.check(&u("inferq-secret/x.bin")).is_err());
}

#[tokio::test]
async fn gcs_emulator() {
    exercise_bucket_store(Kind::Gcs).await;
}

#[tokio::test]
async fn s3_emulator() {
    exercise_bucket_store(Kind::S3).await;
}

// ---------------------------------------------------------------------------------------------
// HTTP

/// A minimal HTTP/1.1 server on 127.0.0.1 with fixed routes.
struct WebServer {
    port: u16,
    /// Requests received.
    requests: Arc<AtomicUsize>,
    /// Body bytes written by `/stream` before the client went away.
    streamed: Arc<AtomicUsize>,
    /// Body of the last `PUT /upload`.
    uploaded: Arc<std::sync::Mutex<Vec<u8>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for WebServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

const SMALL_LEN: usize = 1000;
/// `/stream` would send this much (in 16 KiB chunks, 1 ms apart) if nobody stopped it.
const STREAM_LIMIT: usize = 256 * 1024 * 1024;

impl WebServer {
    async fn start() -> WebServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(AtomicUsize::new(0));
        let streamed = Arc::new(AtomicUsize::new(0));
        let uploaded = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (r, s, up) = (requests.clone(), streamed.clone(), uploaded.clone());
        let task = tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                r.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(handle(sock, port, s.clone(), up.clone()));
            }
        });
        WebServer {
            port,
            requests,
            streamed,
            uploaded,
            task,
        }
    }

    fn url(&self, host: &str, path: &str) -> StorageUri {
        uri(&format!("http://{host}:{}{path}", self.port))
    }
}

async fn handle(
    mut sock: TcpStream,
    port: u16,
    streamed: Arc<AtomicUsize>,
    uploaded: Arc<std::sync::Mutex<Vec<u8>>>,
) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 8192 {
        match sock.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let head = String::from_utf8_lossy(&head).to_string();
    let mut words = head.split_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let header = |status: &str, extra: &str| {
        format!("HTTP/1.1 {status}\r\nConnection: close\r\n{extra}\r\n").into_bytes()
    };
    let _ = match (method, path) {
        ("GET", "/small") => {
            let mut out = header("200 OK", &format!("Content-Length: {SMALL_LEN}\r\n"));
            out.extend(pattern(SMALL_LEN, 7));
            sock.write_all(&out).await
        }
        ("GET", "/announced-big") => {
            let out = header("200 OK", "Content-Length: 100000000\r\n");
            let _ = sock.write_all(&out).await;
            sock.write_all(&[0u8; 1024]).await
        }
        ("GET", "/stream") => {
            let _ = sock
                .write_all(&header("200 OK", "Transfer-Encoding: chunked\r\n"))
                .await;
            let chunk = [b'x'; 16 * 1024];
            let mut frame = format!("{:x}\r\n", chunk.len()).into_bytes();
            frame.extend_from_slice(&chunk);
            frame.extend_from_slice(b"\r\n");
            let mut sent = 0;
            while sent < STREAM_LIMIT {
                if sock.write_all(&frame).await.is_err() {
                    break;
                }
                sent += chunk.len();
                streamed.store(sent, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            Ok(())
        }
        ("GET", "/redirect-ok") => {
            sock.write_all(&header(
                "302 Found",
                "Location: /small\r\nContent-Length: 0\r\n",
            ))
            .await
        }
        ("GET", "/redirect-out") => {
            let loc = format!("Location: http://127.0.0.2:{port}/small\r\nContent-Length: 0\r\n");
            sock.write_all(&header("302 Found", &loc)).await
        }
        ("GET", "/redirect-loop") => {
            let loc = "Location: /redirect-loop\r\nContent-Length: 0\r\n";
            sock.write_all(&header("302 Found", loc)).await
        }
        ("GET", "/hang") => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            Ok(())
        }
        ("PUT", "/upload") => {
            let len = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0)
                .min(1 << 20);
            let mut body = vec![0u8; len];
            if sock.read_exact(&mut body).await.is_ok() {
                *uploaded.lock().unwrap() = body;
            }
            sock.write_all(&header("201 Created", "Content-Length: 0\r\n"))
                .await
        }
        _ => {
            sock.write_all(&header("404 Not Found", "Content-Length: 0\r\n"))
                .await
        }
    };
    let _ = sock.shutdown().await;
}

fn fetcher(allow_hosts: &[&str], max_bytes: usize, timeout_secs: u64) -> Fetcher {
    Fetcher::new(&FetchConfig {
        fetch_allow_hosts: allow_hosts.iter().map(|s| s.to_string()).collect(),
        fetch_max_bytes: max_bytes,
        fetch_timeout_secs: timeout_secs,
        ..Default::default()
    })
    .unwrap()
}

#[tokio::test]
async fn http_loopback_is_refused_by_default() {
    let server = WebServer::start().await;
    let f = fetcher(&[], 1 << 20, 10);
    for host in ["127.0.0.1", "localhost", "[::ffff:127.0.0.1]", "2130706433"] {
        let u = server.url(host, "/small");
        let err = f.get(&u).await.unwrap_err();
        assert!(matches!(err, FetchError::Forbidden(_)), "{host}: {err:?}");
        let err = f
            .put(
                &server.url(host, "/upload"),
                Bytes::from_static(b"x"),
                "text/plain",
            )
            .await
            .unwrap_err();
        assert!(matches!(err, FetchError::Forbidden(_)), "{host}: {err:?}");
    }
    assert_eq!(
        server.requests.load(Ordering::SeqCst),
        0,
        "the guard must refuse before connecting"
    );
}

#[tokio::test]
async fn http_allow_listed_loopback() {
    let server = WebServer::start().await;
    let f = fetcher(&["127.0.0.1"], 64 * 1024, 10);

    let got = f.get(&server.url("127.0.0.1", "/small")).await.unwrap();
    assert_eq!(got.to_vec(), pattern(SMALL_LEN, 7));

    let err = f
        .get(&server.url("127.0.0.1", "/nothing"))
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::NotFound(_)), "{err:?}");

    // Redirects: followed within the policy, refused out of it or in a loop.
    let got = f
        .get(&server.url("127.0.0.1", "/redirect-ok"))
        .await
        .unwrap();
    assert_eq!(got.len(), SMALL_LEN);
    let err = f
        .get(&server.url("127.0.0.1", "/redirect-out"))
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::Forbidden(_)), "{err:?}");
    let err = f
        .get(&server.url("127.0.0.1", "/redirect-loop"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, FetchError::Failed(m) if m.contains("redirects")),
        "{err:?}"
    );

    // Allowing the address does not allow the name (or other loopback addresses).
    let err = f.get(&server.url("localhost", "/small")).await.unwrap_err();
    assert!(matches!(err, FetchError::Forbidden(_)), "{err:?}");
    let err = f.get(&server.url("127.0.0.2", "/small")).await.unwrap_err();
    assert!(matches!(err, FetchError::Forbidden(_)), "{err:?}");

    // PUT (e.g. to a pre-signed URL).
    f.put(
        &server.url("127.0.0.1", "/upload"),
        Bytes::from_static(b"{\"ok\":1}"),
        "application/json",
    )
    .await
    .unwrap();
    assert_eq!(*server.uploaded.lock().unwrap(), b"{\"ok\":1}");
}

#[tokio::test]
async fn http_allow_listed_name_goes_through_the_resolver() {
    let server = WebServer::start().await;
    // `localhost` is resolved by the guarded resolver; allowed by name, its
    // loopback addresses pass.
    let f = fetcher(&["localhost"], 64 * 1024, 10);
    let got = f.get(&server.url("localhost", "/small")).await.unwrap();
    assert_eq!(got.len(), SMALL_LEN);
    // The name does not allow the bare address.
    let err = f.get(&server.url("127.0.0.1", "/small")).await.unwrap_err();
    assert!(matches!(err, FetchError::Forbidden(_)), "{err:?}");
}

#[tokio::test]
async fn http_size_cap_stops_a_streamed_body() {
    let server = WebServer::start().await;
    let cap = 64 * 1024;
    let f = fetcher(&["127.0.0.1"], cap, 20);

    let started = Instant::now();
    let err = f
        .get(&server.url("127.0.0.1", "/stream"))
        .await
        .unwrap_err();
    assert_eq!(err, FetchError::TooLarge { limit: cap });
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    // The connection is dropped at the cap, so the server stops long before its limit.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sent = server.streamed.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        server.streamed.load(Ordering::SeqCst),
        sent,
        "server still streaming"
    );
    assert!(sent < STREAM_LIMIT, "sent {sent}");

    // A Content-Length over the cap fails before the body is read.
    let err = f
        .get(&server.url("127.0.0.1", "/announced-big"))
        .await
        .unwrap_err();
    assert_eq!(err, FetchError::TooLarge { limit: cap });
}

#[tokio::test]
async fn http_timeout() {
    let server = WebServer::start().await;
    let f = fetcher(&["127.0.0.1"], 1024, 1);
    let started = Instant::now();
    let err = f.get(&server.url("127.0.0.1", "/hang")).await.unwrap_err();
    assert!(matches!(err, FetchError::Failed(_)), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
}
