//! SNS envelopes signed by an independent implementation (Python
//! `cryptography`, scripts/make_sns_messages.py; the fixtures in
//! `testdata/`), checked here; certificates served by a local HTTP server.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::http::StatusCode;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde_json::Value;

use super::certs::{CertCache, CertError, HostPolicy, MAX_CACHED, UrlRefused};
use super::message::{Kind, MessageError, SnsMessage};
use super::*;

const CERT_PEM: &str = include_str!("testdata/cert.pem");
const SIGNED: &str = include_str!("testdata/signed.json");
const TOPIC: &str = "arn:aws:sns:eu-west-1:111122223333:inferq-uploads";

fn fixtures() -> Vec<Value> {
    serde_json::from_str(SIGNED).unwrap()
}

fn fixture(i: usize) -> Value {
    fixtures().remove(i)
}

fn cert() -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(CERT_PEM.as_bytes()).unwrap()
}

fn parse(v: &Value) -> Result<SnsMessage, MessageError> {
    SnsMessage::parse(v.to_string().as_bytes())
}

#[test]
fn canonical_text_is_the_documented_one_per_type() {
    let n = fixture(0);
    let msg = parse(&n).unwrap();
    assert_eq!(msg.kind, Kind::Notification);
    let expected = format!(
        "Message\n{}\nMessageId\n{}\nSubject\nAmazon S3 Notification\nTimestamp\n{}\nTopicArn\n{TOPIC}\nType\nNotification\n",
        n["Message"].as_str().unwrap(),
        n["MessageId"].as_str().unwrap(),
        n["Timestamp"].as_str().unwrap(),
    );
    assert_eq!(msg.canonical(), expected);
    // Without a Subject the line is left out, not written empty.
    assert!(!parse(&fixture(1)).unwrap().canonical().contains("Subject"));

    let c = fixture(2);
    let msg = parse(&c).unwrap();
    assert_eq!(msg.kind, Kind::SubscriptionConfirmation);
    let expected = format!(
        "Message\n{}\nMessageId\n{}\nSubscribeURL\n{}\nTimestamp\n{}\nToken\n{}\nTopicArn\n{TOPIC}\nType\nSubscriptionConfirmation\n",
        c["Message"].as_str().unwrap(),
        c["MessageId"].as_str().unwrap(),
        c["SubscribeURL"].as_str().unwrap(),
        c["Timestamp"].as_str().unwrap(),
        c["Token"].as_str().unwrap(),
    );
    assert_eq!(msg.canonical(), expected);
}

#[test]
fn signatures_v1_and_v2_of_every_type_verify() {
    let cert = cert();
    for (i, m) in fixtures().iter().enumerate() {
        let msg = parse(m).unwrap();
        msg.verify(&cert)
            .unwrap_or_else(|e| panic!("fixture {i}: {e}"));
    }
    let versions: Vec<String> = fixtures()
        .iter()
        .map(|m| m["SignatureVersion"].as_str().unwrap().to_owned())
        .collect();
    assert!(versions.iter().any(|v| v == "1") && versions.iter().any(|v| v == "2"));
}

type Tamper = Box<dyn Fn(&mut Value)>;

#[test]
fn tampered_messages_do_not_verify() {
    let cert = cert();
    let cases: Vec<(&str, Tamper)> = vec![
        (
            "message",
            Box::new(|m| {
                let s = m["Message"].as_str().unwrap().replace("tom", "tim");
                m["Message"] = s.into();
            }),
        ),
        ("message id", Box::new(|m| m["MessageId"] = "other".into())),
        ("subject", Box::new(|m| m["Subject"] = "Hi".into())),
        (
            "subject dropped",
            Box::new(|m| {
                m.as_object_mut().unwrap().remove("Subject");
            }),
        ),
        (
            "topic",
            Box::new(|m| m["TopicArn"] = format!("{TOPIC}x").into()),
        ),
        (
            "timestamp",
            Box::new(|m| m["Timestamp"] = "2026-11-29T10:00:02.000Z".into()),
        ),
        (
            "version 1 as 2",
            Box::new(|m| m["SignatureVersion"] = "2".into()),
        ),
        (
            "signature bytes",
            Box::new(|m| {
                let s = m["Signature"].as_str().unwrap();
                let flipped = if s.starts_with('A') { "B" } else { "A" };
                m["Signature"] = format!("{flipped}{}", &s[1..]).into();
            }),
        ),
    ];
    for (what, tamper) in cases {
        let mut m = fixture(0);
        assert!(parse(&m).unwrap().verify(&cert).is_ok());
        tamper(&mut m);
        let verdict = parse(&m).and_then(|msg| msg.verify(&cert));
        assert!(verdict.is_err(), "{what} tampered and still verified");
    }
    // The certificate URL is not signed: changing it keeps the signature
    // valid, which is why its host is checked (below).
    let mut m = fixture(1);
    m["SigningCertURL"] = "https://evil.example.com/cert.pem".into();
    assert!(parse(&m).unwrap().verify(&cert).is_ok());
    // A confirmation whose SubscribeURL changed does not verify.
    let mut c = fixture(2);
    c["SubscribeURL"] =
        "https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription&Token=x".into();
    assert_eq!(
        parse(&c).unwrap().verify(&cert),
        Err(MessageError::Signature)
    );
}

#[test]
fn malformed_envelopes_are_errors() {
    assert!(matches!(
        SnsMessage::parse(b"not json"),
        Err(MessageError::Malformed(_))
    ));
    assert!(matches!(
        SnsMessage::parse(b"{}"),
        Err(MessageError::Malformed(_))
    ));
    let mut m = fixture(0);
    m["Type"] = "Other".into();
    assert_eq!(
        parse(&m).unwrap_err(),
        MessageError::UnknownType("Other".into())
    );
    let mut m = fixture(0);
    m["SignatureVersion"] = "3".into();
    assert_eq!(
        parse(&m).unwrap_err(),
        MessageError::SignatureVersion("3".into())
    );
    let mut m = fixture(0);
    m["Signature"] = "%%%".into();
    assert!(matches!(parse(&m), Err(MessageError::Malformed(_))));
    let mut c = fixture(2);
    c.as_object_mut().unwrap().remove("Token");
    assert!(matches!(parse(&c), Err(MessageError::Malformed(_))));
    let mut n = fixture(0);
    n["Message"] = 5.into();
    assert!(matches!(parse(&n), Err(MessageError::Malformed(_))));
    // A certificate that is not one.
    let garbage = CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x01]);
    assert!(matches!(
        parse(&fixture(0)).unwrap().verify(&garbage),
        Err(MessageError::Certificate(_))
    ));
}

#[test]
fn host_policy_takes_sns_hosts_over_https_only() {
    let defaults: Vec<String> = DEFAULT_HOSTS.iter().map(|h| h.to_string()).collect();
    let p = HostPolicy::new(&defaults, false);
    for ok in [
        "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-abc.pem",
        "https://SNS.us-east-1.amazonaws.com/x.pem",
        "https://sns.cn-north-1.amazonaws.com.cn/x.pem",
        "https://sns.eu-west-1.amazonaws.com:443/x.pem",
    ] {
        assert!(p.check(ok).is_ok(), "{ok}");
    }
    for refused in [
        "http://sns.eu-west-1.amazonaws.com/x.pem",
        "https://sns.eu-west-1.amazonaws.com.evil.com/x.pem",
        "https://evil.com/sns.eu-west-1.amazonaws.com/x.pem",
        "https://sns.a.b.amazonaws.com/x.pem",
        "https://sns..amazonaws.com/x.pem",
        "https://sqs.eu-west-1.amazonaws.com/x.pem",
        "https://user@sns.eu-west-1.amazonaws.com/x.pem",
        "file:///etc/passwd",
        "not a url",
    ] {
        assert!(p.check(refused).is_err(), "{refused}");
    }
    // Tests: a local host, with a port, http explicitly allowed.
    let local = HostPolicy::new(&["127.0.0.1:8080".into(), "localhost".into()], true);
    assert!(local.check("http://127.0.0.1:8080/c.pem").is_ok());
    assert!(local.check("http://127.0.0.1:8081/c.pem").is_err());
    assert!(local.check("http://localhost:9/c.pem").is_ok());
    assert!(matches!(
        HostPolicy::new(&["localhost".into()], false).check("http://localhost/c.pem"),
        Err(UrlRefused::Scheme(_))
    ));
}

/// A local certificate server counting its requests.
struct CertServer {
    base: String,
    hits: Arc<AtomicUsize>,
}

async fn cert_server() -> CertServer {
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
        let counted = counted.clone();
        async move {
            counted.fetch_add(1, Ordering::SeqCst);
            match uri.path() {
                "/big.pem" => (StatusCode::OK, "x".repeat(certs::MAX_CERT_BYTES + 1)),
                "/garbage.pem" => (StatusCode::OK, "not a certificate".to_owned()),
                p if p.ends_with(".pem") && p != "/missing.pem" => {
                    (StatusCode::OK, CERT_PEM.to_owned())
                }
                _ => (StatusCode::NOT_FOUND, String::new()),
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    CertServer { base, hits }
}

fn local_cache() -> CertCache {
    CertCache::new(HostPolicy::new(&["127.0.0.1".into()], true)).unwrap()
}

#[tokio::test]
async fn certificates_are_fetched_once_and_cached_within_bounds() {
    let server = cert_server().await;
    let cache = local_cache();
    let url = format!("{}/SimpleNotificationService-1.pem", server.base);
    let first = cache.get(&url).await.unwrap();
    let second = cache.get(&url).await.unwrap();
    assert_eq!(first, second);
    assert_eq!(server.hits.load(Ordering::SeqCst), 1);

    // A failed fetch is not retried at once.
    let missing = format!("{}/missing.pem", server.base);
    assert!(matches!(
        cache.get(&missing).await,
        Err(CertError::Fetch(_))
    ));
    assert!(matches!(
        cache.get(&missing).await,
        Err(CertError::Fetch(_))
    ));
    assert_eq!(server.hits.load(Ordering::SeqCst), 2);
    // Too large, or not PEM: refused.
    let big = format!("{}/big.pem", server.base);
    assert!(matches!(cache.get(&big).await, Err(CertError::Fetch(_))));
    let garbage = format!("{}/garbage.pem", server.base);
    assert!(matches!(
        cache.get(&garbage).await,
        Err(CertError::Parse(_))
    ));
    // Off the allow-list: refused without a request.
    let before = server.hits.load(Ordering::SeqCst);
    let off = server.base.replace("127.0.0.1", "localhost") + "/c.pem";
    assert!(matches!(cache.get(&off).await, Err(CertError::Refused(_))));
    assert_eq!(server.hits.load(Ordering::SeqCst), before);

    // Many distinct URLs: the cache stays bounded.
    for i in 0..(MAX_CACHED + 8) {
        cache
            .get(&format!("{}/c{i}.pem", server.base))
            .await
            .unwrap();
    }
    assert!(cache.entries().await <= MAX_CACHED);
}

fn verifier(topics: &[&str]) -> SnsVerifier {
    let topics: Vec<String> = topics.iter().map(|t| t.to_string()).collect();
    SnsVerifier::from_options(&topics, &["127.0.0.1".into()], true, "sns")
        .unwrap()
        .unwrap()
}

fn served_by(server: &CertServer, mut m: Value) -> Vec<u8> {
    m["SigningCertURL"] = format!("{}/SimpleNotificationService-x.pem", server.base).into();
    m.to_string().into_bytes()
}

#[tokio::test]
async fn deliveries_are_authenticated_by_topic_host_and_signature() {
    let server = cert_server().await;
    let v = verifier(&[TOPIC]);
    for i in 0..4 {
        let msg = v
            .authenticate(&served_by(&server, fixture(i)))
            .await
            .unwrap();
        assert_eq!(msg.topic_arn, TOPIC);
    }
    // Another topic: refused before any certificate is fetched.
    let other = verifier(&["arn:aws:sns:eu-west-1:111122223333:other"]);
    let before = server.hits.load(Ordering::SeqCst);
    let err = other
        .authenticate(&served_by(&server, fixture(0)))
        .await
        .unwrap_err();
    assert!(matches!(err, ApiError::Forbidden(_)), "{err}");
    assert_eq!(server.hits.load(Ordering::SeqCst), before);
    // Tampered: 401.
    let mut tampered = fixture(0);
    tampered["MessageId"] = "forged".into();
    let err = v
        .authenticate(&served_by(&server, tampered))
        .await
        .unwrap_err();
    assert!(matches!(err, ApiError::Unauthorized(_)), "{err}");
    // A certificate URL off the allow-list: 401 without a fetch.
    let mut off = fixture(0);
    off["SigningCertURL"] = "http://evil.example.com/cert.pem".into();
    let err = v
        .authenticate(off.to_string().as_bytes())
        .await
        .unwrap_err();
    assert!(matches!(err, ApiError::Unauthorized(_)), "{err}");
    assert_eq!(server.hits.load(Ordering::SeqCst), before);
    assert!(matches!(
        v.authenticate(b"{}").await.unwrap_err(),
        ApiError::InvalidArgument(_)
    ));
}

#[tokio::test]
async fn confirmation_urls_off_the_allow_list_are_not_called() {
    let server = cert_server().await;
    let v = verifier(&[TOPIC]);
    let msg = v
        .authenticate(&served_by(&server, fixture(4)))
        .await
        .unwrap();
    let err = v.confirm(&msg).await.unwrap_err();
    assert!(matches!(err, ApiError::Forbidden(_)), "{err}");
}

#[test]
fn options_need_topic_arns_and_hosts() {
    let none = SnsVerifier::from_options(&[], &["h".into()], false, "sns").unwrap();
    assert!(none.is_none());
    let blank = SnsVerifier::from_options(&[" ".into()], &["h".into()], false, "sns").unwrap();
    assert!(blank.is_none());
    assert!(matches!(
        SnsVerifier::from_options(&["my-topic".into()], &["h".into()], false, "sns"),
        Err(SnsConfigError::Topic(_))
    ));
    assert!(matches!(
        SnsVerifier::from_options(&[TOPIC.into()], &[], false, "sns"),
        Err(SnsConfigError::NoHosts)
    ));
}
