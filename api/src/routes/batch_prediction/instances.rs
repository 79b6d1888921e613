//! Reading a batch's input into numbered instances.
//!
//! Prefix and file-list inputs become a list of URIs that is stored in the
//! batch's `inputs` hash the first time it is read: a coordinator taking
//! the batch over later works on exactly the same instances, even if
//! objects were added under the prefix meanwhile. A JSONL input is read
//! again on takeover (its lines can hold whole images, too much to copy
//! into the store); its size and digest are recorded the first time and a
//! changed file fails the batch rather than mixing two inputs.

use bytes::Bytes;
use inferq_backends::fetch::StorageUri;
use inferq_backends::store::batch_prediction as stored;
use inferq_core::batch_prediction::{BatchRecord, InputKind};
use sha2::{Digest, Sha256};

use crate::http::error::ApiError;
use crate::intake::encodings::Payload;
use crate::intake::tf_instance::{batch_instance, extras, is_uri};
use crate::state::AppState;

/// Hash fields written or read per store round trip.
const CHUNK: usize = 1000;

/// One unit of work of a batch.
#[derive(Debug, Clone)]
pub enum Instance {
    /// An object to fetch; `relative` is its path for a mirrored output.
    Uri { uri: String, relative: String },
    /// A line of the JSONL input (byte range).
    Line { start: usize, end: usize },
}

/// The instances of a batch, in index order.
pub struct Instances {
    pub items: Vec<Instance>,
    /// The JSONL file the `Line` ranges point into.
    body: Bytes,
}

/// Why the batch cannot run at all.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("{0}")]
    Api(#[from] ApiError),
    #[error("the input {uri} changed while the batch was running")]
    Changed { uri: String },
    #[error("the input {uri} holds no instances")]
    Empty { uri: String },
    #[error("the input {uri} holds more than {max} instances")]
    TooMany { uri: String, max: usize },
}

impl Instances {
    /// What a result or error line repeats as its `instance`.
    pub fn echo(&self, item: &Instance) -> serde_json::Value {
        match item {
            Instance::Uri { uri, .. } => serde_json::json!({ "uri": uri }),
            Instance::Line { start, end } => serde_json::from_slice(&self.body[*start..*end])
                .unwrap_or_else(|_| {
                    serde_json::Value::String(
                        String::from_utf8_lossy(&self.body[*start..*end]).into_owned(),
                    )
                }),
        }
    }

    /// The members of a JSONL line that are not the instance (`key` and
    /// the like), repeated at the top of its output line.
    pub fn extras(&self, item: &Instance) -> serde_json::Map<String, serde_json::Value> {
        match item {
            Instance::Uri { .. } => serde_json::Map::new(),
            Instance::Line { start, end } => extras(&self.body[*start..*end]),
        }
    }

    /// The job input of an instance, or why the instance is unusable.
    pub fn payload(
        &self,
        item: &Instance,
        limits: &inferq_runtime::config::LimitConfig,
    ) -> Result<Payload, ApiError> {
        match item {
            Instance::Uri { uri, .. } => Ok(Payload::Uri(uri.clone())),
            Instance::Line { start, end } => batch_instance(&self.body[*start..*end], limits),
        }
    }

    /// The path a mirrored per-file output takes, for instances that are files.
    pub fn relative(&self, item: &Instance) -> Option<String> {
        match item {
            Instance::Uri { relative, .. } => Some(relative.clone()),
            Instance::Line { start, end } => {
                let v: serde_json::Value = serde_json::from_slice(&self.body[*start..*end]).ok()?;
                let uri = match v.as_str() {
                    Some(bare) if is_uri(bare) => bare,
                    _ => v.get("uri")?.as_str()?,
                };
                (!uri.starts_with("data:")).then(|| object_path(uri))
            }
        }
    }
}

/// Parses a storage prefix (`gs://b/dir/`, `gs://b/`, `file:///dir/`):
/// object keys may not end in `/`, so the prefix is parsed without its
/// trailing slash, and a bucket root becomes the bucket with an empty key.
pub fn parse_prefix(uri: &str) -> Result<StorageUri, ApiError> {
    let trimmed = uri.trim_end_matches('/');
    match crate::intake::encodings::check_uri(trimmed) {
        Ok(u) => Ok(u),
        Err(e) => {
            let Some((scheme, bucket)) = trimmed.split_once("://") else {
                return Err(e);
            };
            if bucket.contains('/') {
                return Err(e);
            }
            // The bucket name is checked by parsing an object in it.
            match crate::intake::encodings::check_uri(&format!("{trimmed}/x"))? {
                StorageUri::Gcs { bucket, .. } if scheme == "gs" => Ok(StorageUri::Gcs {
                    bucket,
                    key: String::new(),
                }),
                StorageUri::S3 { bucket, .. } if scheme == "s3" => Ok(StorageUri::S3 {
                    bucket,
                    key: String::new(),
                }),
                _ => Err(e),
            }
        }
    }
}

/// The part of a URI after the scheme and bucket (`gs://b/a/x.jpg` →
/// `a/x.jpg`, `file:///d/x.jpg` → `d/x.jpg`).
pub fn object_path(uri: &str) -> String {
    match StorageUri::parse(uri) {
        Ok(StorageUri::Gcs { key, .. } | StorageUri::S3 { key, .. }) => key,
        Ok(StorageUri::File(p)) => p.display().to_string().trim_start_matches('/').to_owned(),
        Ok(StorageUri::Http(u)) => format!("{}{}", u.host_str().unwrap_or("host"), u.path()),
        Err(_) => uri.to_owned(),
    }
}

/// Reads (or re-reads) the instances of `record`; may set its
/// `input_digest`, which the caller saves.
pub async fn load(state: &AppState, record: &mut BatchRecord) -> Result<Instances, InputError> {
    let max = state.settings.batch.batch_max_instances;
    let uri = record.input.uri.clone();
    if record.input.kind == InputKind::Jsonl {
        let body = fetch(state, &uri).await?;
        let digest = format!(
            "{}:{}",
            body.len(),
            crate::intake::idempotency::hex(&Sha256::digest(&body))
        );
        match &record.input_digest {
            Some(d) if *d != digest => return Err(InputError::Changed { uri }),
            _ => record.input_digest = Some(digest),
        }
        let mut items = Vec::new();
        let mut start = 0;
        for line in body.split(|b| *b == b'\n') {
            let end = start + line.len();
            let trimmed = line.trim_ascii();
            if !trimmed.is_empty() {
                if items.len() >= max {
                    return Err(InputError::TooMany { uri, max });
                }
                let lead = line.len() - line.trim_ascii_start().len();
                items.push(Instance::Line {
                    start: start + lead,
                    end: start + lead + trimmed.len(),
                });
            }
            start = end + 1;
        }
        if items.is_empty() {
            return Err(InputError::Empty { uri });
        }
        return Ok(Instances { items, body });
    }
    // The total is saved only after the whole list is stored, so a list
    // cut short by a crash is never mistaken for the input.
    let stored = match record.counts.total {
        Some(n) => stored_uris(state, record, n as usize).await?,
        None => None,
    };
    let uris = match stored {
        Some(uris) => uris,
        None => {
            let uris = list(state, record, max).await?;
            store_uris(state, record, &uris).await?;
            uris
        }
    };
    if uris.is_empty() {
        return Err(InputError::Empty { uri });
    }
    let base = if uri.ends_with('/') {
        uri.clone()
    } else {
        format!("{uri}/")
    };
    let items = uris
        .into_iter()
        .map(|u| {
            let relative = match record.input.kind {
                InputKind::Prefix => u.strip_prefix(&base).unwrap_or(&u).to_owned(),
                _ => object_path(&u),
            };
            Instance::Uri { uri: u, relative }
        })
        .collect();
    Ok(Instances {
        items,
        body: Bytes::new(),
    })
}

async fn fetch(state: &AppState, uri: &str) -> Result<Bytes, InputError> {
    let source = crate::intake::encodings::check_uri(uri)?;
    let max = state.settings.batch.batch_max_input_bytes;
    Ok(state
        .fetcher
        .get_capped(&source, max)
        .await
        .map_err(ApiError::from)?)
}

/// Lists a prefix (leaving out anything under the batch's own output
/// prefix, so a re-run does not read its own results) or reads a file list.
async fn list(
    state: &AppState,
    record: &BatchRecord,
    max: usize,
) -> Result<Vec<String>, InputError> {
    let uri = &record.input.uri;
    let found: Vec<String> = match record.input.kind {
        InputKind::Prefix => {
            let source = parse_prefix(uri)?;
            state
                .fetcher
                .list(&source, max.saturating_add(1))
                .await
                .map_err(ApiError::from)?
                .into_iter()
                .filter(|u| !u.starts_with(&record.output))
                .collect()
        }
        _ => {
            let body = fetch(state, uri).await?;
            let text = String::from_utf8_lossy(&body);
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_owned)
                .collect()
        }
    };
    if found.len() > max {
        return Err(InputError::TooMany {
            uri: uri.clone(),
            max,
        });
    }
    Ok(found)
}

async fn stored_uris(
    state: &AppState,
    record: &BatchRecord,
    n: usize,
) -> Result<Option<Vec<String>>, InputError> {
    let store = state.store.as_ref();
    let key = stored::inputs_key(store, record.id);
    if n == 0 || store.hash_len(&key).await.map_err(ApiError::from)? as usize != n {
        return Ok(None);
    }
    let mut uris = Vec::with_capacity(n);
    for first in (0..n).step_by(CHUNK) {
        let fields: Vec<String> = (first..(first + CHUNK).min(n))
            .map(|i| i.to_string())
            .collect();
        let values = store
            .hash_get(&key, &fields)
            .await
            .map_err(ApiError::from)?;
        for v in values {
            let v = v.ok_or_else(|| {
                ApiError::Internal(format!("batch {} lost part of its input list", record.id))
            })?;
            uris.push(String::from_utf8_lossy(&v).into_owned());
        }
    }
    Ok(Some(uris))
}

async fn store_uris(
    state: &AppState,
    record: &BatchRecord,
    uris: &[String],
) -> Result<(), InputError> {
    let store = state.store.as_ref();
    let key = stored::inputs_key(store, record.id);
    let ttl = state.settings.retention.result_ttl;
    for (c, chunk) in uris.chunks(CHUNK).enumerate() {
        let fields: Vec<(String, Vec<u8>)> = chunk
            .iter()
            .enumerate()
            .map(|(i, u)| ((c * CHUNK + i).to_string(), u.as_bytes().to_vec()))
            .collect();
        store
            .hash_set(&key, &fields, ttl)
            .await
            .map_err(ApiError::from)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_paths_drop_scheme_and_bucket() {
        assert_eq!(object_path("gs://bkt/a/x.jpg"), "a/x.jpg");
        assert_eq!(object_path("s3://bkt/x.png"), "x.png");
        assert_eq!(object_path("file:///data/in/x.jpg"), "data/in/x.jpg");
        assert_eq!(
            object_path("https://h.example/p/q.jpg"),
            "h.example/p/q.jpg"
        );
    }
}
