//! The delivery path without ONNX Runtime: a stand-in [`Inference`] and the
//! in-memory store, so what is stored and how a delivery is settled can be
//! checked for each way a job can end.

use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use inferq_backends::fetch::FetchConfig;
use inferq_backends::repository::ModelEntry;
use inferq_backends::store::Records;
use inferq_backends::store::memory::MemoryStore;
use inferq_core::job::{JobId, JobStatus};
use inferq_core::manifest::ModelManifest;
use inferq_core::prediction::ClassScore;

use super::*;
use crate::engine::Outcome;

const MANIFEST: &str = r#"
kind = "classification"
[input]
name = "input"
dtype = "float32"
layout = "nchw"
width = 4
height = 4
color = "rgb"
[preprocess]
resize = "stretch"
resize_to = 4
mean = [0.0, 0.0, 0.0]
std = [1.0, 1.0, 1.0]
[output]
name = "logits"
"#;

/// What the stand-in answers.
enum Answer {
    Class(&'static str),
    BadInput,
    Stopped,
}

struct FakeInference {
    entry: Arc<ModelEntry>,
    answer: Mutex<Answer>,
    calls: AtomicUsize,
}

#[async_trait]
impl Inference for FakeInference {
    async fn model(&self, name: &str, version: u64) -> Option<Arc<ModelEntry>> {
        (name == self.entry.name && version == self.entry.version).then(|| self.entry.clone())
    }

    async fn infer(
        &self,
        _job: JobId,
        _model: Arc<ModelEntry>,
        input: WorkInput,
        _top_k: Option<usize>,
    ) -> Result<Outcome, InferError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        assert!(matches!(input, WorkInput::Encoded(ref b) if b.as_ref() == b"img"));
        match *self.answer.lock().unwrap() {
            Answer::Class(label) => Ok(Outcome {
                prediction: Prediction::Classification {
                    top_k: vec![ClassScore {
                        index: 7,
                        label: label.into(),
                        probability: 0.9,
                    }],
                },
                artifact: None,
                views: Vec::new(),
                decode_ms: 1.0,
                preprocess_ms: 1.0,
                inference_ms: 2.0,
                batch_size: 1,
                memory: crate::engine::JobMemory {
                    rss_before: 100,
                    rss_after: 101,
                    decoded: 12,
                    input_tensor: 48,
                    model: 7,
                },
            }),
            Answer::BadInput => Err(InferError::Job(JobError::new(
                ErrorCode::DecodeFailed,
                "not an image",
            ))),
            Answer::Stopped => Err(InferError::Stopped),
        }
    }
}

fn setup(answer: Answer) -> (Processor, Arc<FakeInference>, Arc<MemoryStore>) {
    let manifest = ModelManifest::parse(MANIFEST, Path::new("model.toml")).unwrap();
    let entry = Arc::new(ModelEntry {
        name: "fake".into(),
        version: 1,
        dir: "/nonexistent".into(),
        manifest,
        labels: Arc::new(vec![]),
        fingerprint: 0,
    });
    let inference = Arc::new(FakeInference {
        entry,
        answer: Mutex::new(answer),
        calls: AtomicUsize::new(0),
    });
    let store = Arc::new(MemoryStore::new(100));
    let processor = Processor {
        inference: inference.clone(),
        store: store.clone(),
        fetcher: Arc::new(Fetcher::new(&FetchConfig::default()).unwrap()),
        tenants: Arc::new(inferq_backends::tenant::TenantDirectory::off()),
        result_ttl: Duration::from_secs(60),
        delivery_limit: 3,
        store_patience: Duration::from_millis(10),
        dead_letter_ttl: Duration::from_secs(60),
        video: crate::video::VideoSettings::default(),
    };
    (processor, inference, store)
}

fn message(model: &str) -> JobMessage {
    JobMessage {
        id: JobId::new(),
        model: model.into(),
        version: 1,
        top_k: None,
        created_at: Utc::now(),
        image: ImageSource::Inline(Bytes::from_static(b"img")),
        tensor: None,
        output_uri: None,
        deadline: None,
        owner: None,
        webhook: None,
        trace: None,
        video: None,
    }
}

#[tokio::test]
async fn a_successful_job_is_stored_before_it_is_acked() {
    let (p, fake, store) = setup(Answer::Class("tabby"));
    let msg = message("fake");
    let id = msg.id;
    assert_eq!(p.process(msg).await, Settle::Ack);
    let r = store.get(id).await.unwrap().expect("stored");
    assert_eq!(r.status, JobStatus::Succeeded);
    assert_eq!(r.attempts, 1);
    match r.result {
        Some(Prediction::Classification { top_k }) => assert_eq!(top_k[0].label, "tabby"),
        other => panic!("unexpected result {other:?}"),
    }
    let t = r.timings.expect("timings");
    assert_eq!((t.inference_ms, t.batch_size), (2.0, 1));
    assert_eq!(
        (
            t.rss_before_bytes,
            t.rss_after_bytes,
            t.decoded_bytes,
            t.input_tensor_bytes,
            t.model_bytes
        ),
        (100, 101, 12, 48, 7),
        "the engine's memory figures reach the record"
    );
    assert_eq!(fake.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_redelivered_finished_job_is_acked_without_running_again() {
    let (p, fake, store) = setup(Answer::Class("tabby"));
    let msg = message("fake");
    let id = msg.id;
    assert_eq!(p.process(msg.clone()).await, Settle::Ack);
    *fake.answer.lock().unwrap() = Answer::Class("other");
    assert_eq!(p.process(msg).await, Settle::Ack);
    assert_eq!(fake.calls.load(Ordering::SeqCst), 1, "ran twice");
    let r = store.get(id).await.unwrap().unwrap();
    assert_eq!(r.attempts, 1);
}

#[tokio::test]
async fn bad_input_fails_the_job_and_is_not_retried() {
    let (p, _, store) = setup(Answer::BadInput);
    let msg = message("fake");
    let id = msg.id;
    assert_eq!(p.process(msg).await, Settle::Ack);
    let r = store.get(id).await.unwrap().unwrap();
    assert_eq!(r.status, JobStatus::Failed);
    assert_eq!(r.error.unwrap().code, ErrorCode::DecodeFailed);
}

#[tokio::test]
async fn a_stopping_engine_requeues_and_the_next_delivery_finishes_it() {
    let (p, fake, store) = setup(Answer::Stopped);
    let msg = message("fake");
    let id = msg.id;
    assert_eq!(p.process(msg.clone()).await, Settle::Requeue);
    let r = store.get(id).await.unwrap().unwrap();
    assert_eq!((r.status, r.attempts), (JobStatus::Running, 1));
    *fake.answer.lock().unwrap() = Answer::Class("tabby");
    assert_eq!(p.process(msg).await, Settle::Ack);
    let r = store.get(id).await.unwrap().unwrap();
    assert_eq!((r.status, r.attempts), (JobStatus::Succeeded, 2));
}

#[tokio::test]
async fn an_unknown_model_fails_the_job() {
    let (p, fake, store) = setup(Answer::Class("tabby"));
    let msg = message("nope");
    let id = msg.id;
    assert_eq!(p.process(msg).await, Settle::Ack);
    let r = store.get(id).await.unwrap().unwrap();
    assert_eq!(r.status, JobStatus::Failed);
    assert_eq!(r.error.unwrap().code, ErrorCode::ModelNotFound);
    assert_eq!(fake.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_job_out_of_attempts_is_rejected_to_the_dead_letter_queue() {
    let (p, fake, _) = setup(Answer::Stopped);
    let msg = message("fake");
    for _ in 0..3 {
        assert_eq!(p.process(msg.clone()).await, Settle::Requeue);
    }
    assert_eq!(p.process(msg).await, Settle::Reject);
    assert_eq!(fake.calls.load(Ordering::SeqCst), 3);
}

/// A root with two tenants' folders, each holding an "image", and a
/// processor whose tenant `acme` may read `acme/` and write `acme/out/`.
fn fenced_setup() -> (
    Processor,
    Arc<FakeInference>,
    Arc<MemoryStore>,
    std::path::PathBuf,
) {
    let root = std::env::temp_dir().join(format!("inferq-fence-{}", JobId::new()));
    for dir in ["acme", "other", "acme/out", "other/out"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    std::fs::write(root.join("acme/a.png"), b"img").unwrap();
    std::fs::write(root.join("other/a.png"), b"img").unwrap();
    let (mut p, fake, store) = setup(Answer::Class("tabby"));
    p.fetcher = Arc::new(
        Fetcher::new(&FetchConfig {
            fetch_local_root: Some(root.clone()),
            ..FetchConfig::default()
        })
        .unwrap(),
    );
    let r = root.display();
    let entry = format!("acme:submit:sha256:00 in=file://{r}/acme/ out=file://{r}/acme/out/");
    let tenants = inferq_backends::tenant::directory([("1".to_owned(), entry.as_str())]).unwrap();
    p.tenants = Arc::new(tenants);
    (p, fake, store, root)
}

#[tokio::test]
async fn the_worker_fences_reads_to_the_owners_prefixes() {
    let (p, fake, store, root) = fenced_setup();
    let r = root.display();
    // Inside acme's prefix: runs.
    let mut ok = message("fake");
    ok.owner = Some("acme".into());
    ok.image = ImageSource::Uri(format!("file://{r}/acme/a.png"));
    let ok_id = ok.id;
    assert_eq!(p.process(ok).await, Settle::Ack);
    assert_eq!(
        store.get(ok_id).await.unwrap().unwrap().status,
        JobStatus::Succeeded
    );
    // The other tenant's file, readable under the global root: refused as
    // a failed job, without running the model.
    for owner in [Some("acme"), None] {
        let mut bad = message("fake");
        bad.owner = owner.map(Into::into);
        bad.image = ImageSource::Uri(format!("file://{r}/other/a.png"));
        let id = bad.id;
        assert_eq!(p.process(bad).await, Settle::Ack);
        let rec = store.get(id).await.unwrap().unwrap();
        assert_eq!(rec.status, JobStatus::Failed, "{owner:?}");
        let err = rec.error.unwrap();
        assert_eq!(err.code, ErrorCode::UriForbidden);
        assert!(err.message.contains("prefixes"), "{}", err.message);
    }
    assert_eq!(fake.calls.load(Ordering::SeqCst), 1);
    std::fs::remove_dir_all(root).unwrap();
}

#[tokio::test]
async fn the_worker_fences_writes_to_the_owners_prefixes() {
    let (p, _, store, root) = fenced_setup();
    let r = root.display();
    let job = |out: &str| {
        let mut m = message("fake");
        m.owner = Some("acme".into());
        m.output_uri = Some(format!("file://{r}/{out}"));
        m
    };
    let inside = job("acme/out/");
    let (inside_id, outside) = (inside.id, job("other/out/"));
    let outside_id = outside.id;
    assert_eq!(p.process(inside).await, Settle::Ack);
    assert_eq!(p.process(outside).await, Settle::Ack);
    let written = store.get(inside_id).await.unwrap().unwrap().output.unwrap();
    assert!(
        written.error.is_none() && written.uris.len() == 1,
        "{written:?}"
    );
    assert!(root.join(format!("acme/out/{inside_id}.json")).exists());
    // The result is kept in the record; the write is refused and named.
    let rec = store.get(outside_id).await.unwrap().unwrap();
    assert_eq!(rec.status, JobStatus::Succeeded);
    let refused = rec.output.unwrap();
    assert_eq!(refused.error.unwrap().code, ErrorCode::UriForbidden);
    assert!(refused.uris.is_empty());
    assert_eq!(
        std::fs::read_dir(root.join("other/out")).unwrap().count(),
        0
    );
    std::fs::remove_dir_all(root).unwrap();
}
