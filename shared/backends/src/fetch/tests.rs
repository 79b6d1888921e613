//! Fetcher-level unit tests: policy decisions, error codes, the size cap and
//! the option group. Network-backed tests (emulators, a local HTTP server)
//! live in `tests/tests/fetch.rs`.

use super::*;
use clap::Parser;
use std::path::PathBuf;

fn uri(s: &str) -> StorageUri {
    StorageUri::parse(s).unwrap()
}

#[test]
fn error_codes() {
    let cases = [
        (FetchError::InvalidUri("x".into()), ErrorCode::InvalidUri),
        (FetchError::Forbidden("x".into()), ErrorCode::UriForbidden),
        (FetchError::NotFound("x".into()), ErrorCode::InputNotFound),
        (FetchError::TooLarge { limit: 1 }, ErrorCode::InputTooLarge),
        (FetchError::Failed("x".into()), ErrorCode::FetchFailed),
    ];
    for (err, code) in cases {
        assert_eq!(err.code(), code, "{err}");
    }
}

#[test]
fn bucket_allow_list() {
    let open = Fetcher::new(&FetchConfig::default()).unwrap();
    open.check(&uri("gs://any-bucket/x.jpg")).unwrap();
    open.check(&uri("s3://any-bucket/x.jpg")).unwrap();

    let cfg = FetchConfig {
        fetch_allow_buckets: vec!["inputs".into(), " results ".into()],
        ..Default::default()
    };
    let f = Fetcher::new(&cfg).unwrap();
    f.check(&uri("gs://inputs/a/b.png")).unwrap();
    f.check(&uri("s3://results/r.json")).unwrap();
    for bad in [
        "gs://other/a.png",
        "s3://inputs-2/a.png",
        "gs://input/a.png",
    ] {
        let err = f.check(&uri(bad)).unwrap_err();
        assert_eq!(err.code(), ErrorCode::UriForbidden, "{bad}: {err}");
    }
}

#[tokio::test]
async fn forbidden_references_fail_before_io() {
    let cfg = FetchConfig {
        fetch_allow_buckets: vec!["inputs".into()],
        ..Default::default()
    };
    let f = Fetcher::new(&cfg).unwrap();
    for bad in [
        "gs://other/a.png",
        "file:///etc/passwd",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:10.0.0.1]/x",
        "http://localhost/x",
    ] {
        let err = f.get(&uri(bad)).await.unwrap_err();
        assert!(matches!(err, FetchError::Forbidden(_)), "{bad}: {err:?}");
        let err = f
            .put(&uri(bad), Bytes::from_static(b"x"), "text/plain")
            .await
            .unwrap_err();
        assert!(matches!(err, FetchError::Forbidden(_)), "{bad}: {err:?}");
    }
}

#[tokio::test]
async fn local_files_under_the_root_with_a_size_cap() {
    let dir = std::env::temp_dir().join(format!("inferq-fetcher-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(dir.join("in")).unwrap();
    std::fs::write(dir.join("in/img.bin"), vec![7u8; 4096]).unwrap();
    let cfg = FetchConfig {
        fetch_local_root: Some(dir.clone()),
        fetch_max_bytes: 4096,
        ..Default::default()
    };
    let f = Fetcher::new(&cfg).unwrap();
    let u = |p: &str| uri(&format!("file://{}/{p}", dir.display()));
    assert_eq!(f.get(&u("in/img.bin")).await.unwrap().len(), 4096);

    std::fs::write(dir.join("in/big.bin"), vec![7u8; 4097]).unwrap();
    let err = f.get(&u("in/big.bin")).await.unwrap_err();
    assert_eq!(err, FetchError::TooLarge { limit: 4096 });

    let err = f.get(&u("in/missing.bin")).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::InputNotFound);
    let err = f.get(&u("../etc/passwd")).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::UriForbidden);

    f.put(
        &u("out/r.json"),
        Bytes::from_static(b"{}"),
        "application/json",
    )
    .await
    .unwrap();
    assert_eq!(std::fs::read(dir.join("out/r.json")).unwrap(), b"{}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn missing_local_root_is_a_config_error() {
    let cfg = FetchConfig {
        fetch_local_root: Some(PathBuf::from("/nonexistent/inferq/root")),
        ..Default::default()
    };
    assert!(matches!(Fetcher::new(&cfg), Err(FetchError::Failed(_))));
}

#[test]
fn file_references_need_a_root() {
    let f = Fetcher::new(&FetchConfig::default()).unwrap();
    let err = f.check(&uri("file:///tmp/x.png")).unwrap_err();
    assert_eq!(err.code(), ErrorCode::UriForbidden);
}

#[test]
fn capped_buffer() {
    assert_eq!(
        Capped::new(Some(11), 10).unwrap_err(),
        FetchError::TooLarge { limit: 10 }
    );
    let mut c = Capped::new(None, 10).unwrap();
    c.push(b"12345").unwrap();
    c.push(b"12345").unwrap();
    assert!(c.push(b"1").is_err());
    assert_eq!(c.buf.len(), 10, "nothing past the cap is kept");
    // A lying Content-Length does not let the body grow past the cap.
    let mut c = Capped::new(Some(2), 10).unwrap();
    assert!(c.push(&[0u8; 11]).is_err());
    assert_eq!(&Capped::new(Some(0), 10).unwrap().finish()[..], b"");
}

#[derive(Debug, Parser, serde::Serialize, serde::Deserialize)]
struct Demo {
    #[arg(long)]
    #[serde(skip)]
    config: Option<PathBuf>,
    #[command(flatten)]
    #[serde(flatten)]
    fetch: FetchConfig,
}

#[test]
fn option_group_parses() {
    let d: Demo = inferq_runtime::config::load([
        "demo",
        "--fetch-allow-hosts",
        "127.0.0.1,10.0.0.0/8,files.internal",
        "--fetch-allow-buckets",
        "a-bucket,b-bucket",
        "--fetch-max-bytes",
        "1024",
        "--s3-endpoint",
        "http://127.0.0.1:5000",
    ])
    .unwrap();
    assert_eq!(d.fetch.fetch_allow_hosts.len(), 3);
    assert_eq!(d.fetch.fetch_allow_buckets, ["a-bucket", "b-bucket"]);
    assert_eq!(d.fetch.fetch_max_bytes, 1024);
    assert_eq!(d.fetch.fetch_timeout_secs, DEFAULT_TIMEOUT_SECS);
    assert_eq!(
        d.fetch.s3_endpoint.as_deref(),
        Some("http://127.0.0.1:5000")
    );
    Fetcher::new(&d.fetch).unwrap();

    let d: Demo = inferq_runtime::config::load(["demo"]).unwrap();
    assert_eq!(d.fetch.fetch_max_bytes, DEFAULT_MAX_BYTES);
    assert!(d.fetch.fetch_local_root.is_none());
}

#[test]
fn bad_allow_host_is_a_config_error() {
    let cfg = FetchConfig {
        fetch_allow_hosts: vec!["http://x/".into()],
        ..Default::default()
    };
    assert!(matches!(Fetcher::new(&cfg), Err(FetchError::Failed(_))));
}

#[test]
fn result_targets_for_prefixes_and_exact_names() {
    assert_eq!(
        super::result_targets("gs://out/cats/", "42"),
        (
            "gs://out/cats/42.json".into(),
            "gs://out/cats/42.png".into()
        )
    );
    assert_eq!(
        super::result_targets("s3://out/a/result.json", "42"),
        (
            "s3://out/a/result.json".into(),
            "s3://out/a/result.png".into()
        )
    );
}
