//! Writing a finished batch's `prediction.results-…` and
//! `prediction.errors_stats-…` files (Vertex AI's names), and the same
//! error lines again as `prediction.errors-…`, the name InferQ used before
//! it followed Vertex, for consumers that read it.
//!
//! Each line leads with its `instance` (the input line as sent, or
//! `{"uri"}`), then the line's extra members (Vertex's `key`), then the
//! `prediction` or the `error`.
//!
//! Lines are read back from the store in instance order, a thousand at a
//! time, joined with the instance they belong to and cut into shards of
//! `shard_size` lines; only one shard is held in memory. Names and order
//! depend only on the input, so writing the files again (a coordinator
//! that took over mid-write, or a re-run of the same batch) produces the
//! same objects. There is always at least one results, one errors_stats
//! and one errors file, so a consumer can rely on each existing.

use bytes::Bytes;
use inferq_backends::store::batch_prediction as stored;
use inferq_core::batch_prediction::{self as batch, BatchRecord};
use serde_json::{Map, Value};

use super::instances::Instances;
use super::run::Run;
use crate::http::error::ApiError;
use crate::intake::encodings::check_uri;

/// Lines read from the store per round trip.
const CHUNK: usize = 1000;

/// One kind of output file, cut into shards.
struct Shards {
    kind: &'static str,
    count: usize,
    size: usize,
    next: usize,
    buf: Vec<u8>,
    lines: usize,
}

impl Shards {
    fn new(kind: &'static str, total: u64, size: u64) -> Self {
        Shards {
            kind,
            count: total.div_ceil(size.max(1)).max(1) as usize,
            size: size.max(1) as usize,
            next: 0,
            buf: Vec::new(),
            lines: 0,
        }
    }

    /// Adds a line; returns a full shard to write.
    fn push(&mut self, line: &[u8]) -> Option<(String, Bytes)> {
        self.buf.extend_from_slice(line);
        self.buf.push(b'\n');
        self.lines += 1;
        (self.lines == self.size && self.next + 1 < self.count).then(|| self.cut())
    }

    fn cut(&mut self) -> (String, Bytes) {
        let name = batch::shard_name(self.kind, self.next, self.count);
        self.next += 1;
        self.lines = 0;
        (name, Bytes::from(std::mem::take(&mut self.buf)))
    }

    /// The remaining shards (the last one, and empty ones if fewer lines
    /// arrived than counted).
    fn rest(&mut self) -> Vec<(String, Bytes)> {
        let mut out = Vec::new();
        while self.next < self.count {
            out.push(self.cut());
        }
        out
    }
}

/// The error files: Vertex's name, and InferQ's earlier one.
const ERROR_KINDS: [&str; 2] = ["errors_stats", "errors"];

/// Joins a stored line with its instance and the input line's extra
/// members: `{"instance": …, "key": …, "prediction": …}`.
fn with_instance(
    instance: Value,
    extras: Map<String, Value>,
    stored: &[u8],
) -> Result<Vec<u8>, ApiError> {
    let rest: Map<String, Value> = serde_json::from_slice(stored)
        .map_err(|e| ApiError::Internal(format!("unreadable batch line: {e}")))?;
    let mut line = Map::new();
    line.insert("instance".into(), instance);
    line.extend(extras);
    line.extend(rest);
    Ok(serde_json::to_vec(&Value::Object(line)).expect("json"))
}

/// Writes all files; returns their URIs and the (succeeded, failed) counts.
pub(super) async fn write(
    run: &mut Run,
    rec: &BatchRecord,
    instances: &Instances,
) -> Result<(Vec<String>, (u64, u64)), ApiError> {
    let state = run.state().clone();
    let store = state.store.as_ref();
    let (ok_key, err_key) = (
        stored::ok_key(store, rec.id),
        stored::err_key(store, rec.id),
    );
    let n_ok = store.hash_len(&ok_key).await?;
    let n_err = store.hash_len(&err_key).await?;
    let mut results = Shards::new("results", n_ok, rec.shard_size);
    let mut errors = ERROR_KINDS.map(|kind| Shards::new(kind, n_err, rec.shard_size));
    let mut files = Vec::new();
    let (mut seen_ok, mut seen_err) = (0u64, 0u64);
    let put = |name: String, data: Bytes| {
        let uri = format!("{}{name}", rec.output);
        let fetcher = state.fetcher.clone();
        async move {
            let target = check_uri(&uri)?;
            fetcher
                .put(&target, data, "application/jsonl")
                .await
                .map_err(ApiError::from)?;
            Ok::<String, ApiError>(uri)
        }
    };
    let n = instances.items.len();
    for first in (0..n).step_by(CHUNK) {
        run.renew().await?;
        let fields: Vec<String> = (first..(first + CHUNK).min(n))
            .map(|i| i.to_string())
            .collect();
        let oks = store.hash_get(&ok_key, &fields).await?;
        let errs = store.hash_get(&err_key, &fields).await?;
        for (offset, (ok, err)) in oks.into_iter().zip(errs).enumerate() {
            let item = &instances.items[first + offset];
            let joined =
                |line: &[u8]| with_instance(instances.echo(item), instances.extras(item), line);
            let full: Vec<(String, Bytes)> = match (ok, err) {
                (Some(line), _) => {
                    seen_ok += 1;
                    results.push(&joined(&line)?).into_iter().collect()
                }
                (None, Some(line)) => {
                    seen_err += 1;
                    let line = joined(&line)?;
                    errors.iter_mut().filter_map(|e| e.push(&line)).collect()
                }
                // Not run (the batch was canceled first).
                (None, None) => Vec::new(),
            };
            for (name, data) in full {
                files.push(put(name, data).await?);
            }
        }
    }
    let [mut stats, mut legacy] = errors;
    let rest = results
        .rest()
        .into_iter()
        .chain(stats.rest())
        .chain(legacy.rest());
    for (name, data) in rest {
        run.renew().await?;
        files.push(put(name, data).await?);
    }
    Ok((files, (seen_ok, seen_err)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_cut_at_the_size_and_always_exist() {
        let mut s = Shards::new("results", 5, 2);
        assert_eq!(s.count, 3);
        assert!(s.push(b"a").is_none());
        let (name, data) = s.push(b"b").unwrap();
        assert_eq!(name, "prediction.results-00000-of-00003");
        assert_eq!(&data[..], b"a\nb\n");
        s.push(b"c");
        s.push(b"d").unwrap();
        // The last shard is never cut early: it takes what remains.
        assert!(s.push(b"e").is_none());
        let rest = s.rest();
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].0, "prediction.results-00002-of-00003");
        assert_eq!(&rest[0].1[..], b"e\n");

        let mut empty = Shards::new("errors_stats", 0, 10);
        let rest = empty.rest();
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].0, "prediction.errors_stats-00000-of-00001");
        assert!(rest[0].1.is_empty());
    }

    #[test]
    fn lines_lead_with_their_instance() {
        let mut extras = Map::new();
        extras.insert("key".into(), Value::from("k-1"));
        let line = with_instance(
            serde_json::json!({"uri": "gs://b/x.jpg"}),
            extras,
            br#"{"prediction": {"top_k": []}}"#,
        )
        .unwrap();
        let v: Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["instance"]["uri"], "gs://b/x.jpg");
        assert_eq!(v["key"], "k-1");
        assert!(v["prediction"].is_object());
    }
}
