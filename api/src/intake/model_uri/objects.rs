//! The objects a `model_uri` names and the content-addressed name they are installed under:
//! `uri-` and 16 hex digits of a SHA-256 over each file's URI, generation or ETag (a file's
//! modification time) and size. Replacing any object gives a new name, so a running batch
//! never switches models halfway; the same objects are installed once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use inferq_backends::fetch::{ObjectStamp, StorageUri};
use inferq_core::manifest::{MANIFEST_FILE, MODEL_FILE};
use sha2::{Digest, Sha256};

use crate::http::error::ApiError;

/// Version every imported model gets (its name already says which object
/// versions it came from).
pub(crate) const IMPORTED_VERSION: u64 = 1;

/// The model files a reference names.
pub(super) struct Refs {
    pub(super) model: StorageUri,
    pub(super) manifest: StorageUri,
    /// The folder, ending in `/`, for the labels and the TF check.
    pub(super) folder: String,
}

pub(super) fn refs(uri: &str) -> Result<Refs, ApiError> {
    let (model, folder) = if uri.ends_with(".onnx") {
        let cut = uri.rfind('/').map_or(0, |i| i + 1);
        (uri.to_owned(), uri[..cut].to_owned())
    } else {
        let folder = if uri.ends_with('/') {
            uri.to_owned()
        } else {
            format!("{uri}/")
        };
        (format!("{folder}{MODEL_FILE}"), folder)
    };
    let parse = |u: &str| crate::intake::encodings::check_uri(u);
    Ok(Refs {
        model: parse(&model)?,
        manifest: parse(&format!("{folder}{MANIFEST_FILE}"))?,
        folder,
    })
}

/// The content-addressed name of the model at these object versions.
pub(super) fn imported_name(parts: &[(&StorageUri, &ObjectStamp)]) -> String {
    let mut h = Sha256::new();
    for (uri, stamp) in parts {
        h.update(uri.to_string().as_bytes());
        h.update([0]);
        h.update(stamp.version.as_bytes());
        h.update([0]);
        h.update(stamp.size.unwrap_or(u64::MAX).to_le_bytes());
    }
    format!("uri-{}", hex(&h.finalize()[..8]))
}

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One import at a time per name: a batch whose first jobs all name a new
/// model fetches it once, not once per job.
pub(super) fn import_lock(name: &str) -> Arc<tokio::sync::Mutex<()>> {
    static LOCKS: OnceLock<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>> = OnceLock::new();
    let mut locks = LOCKS
        .get_or_init(Default::default)
        .lock()
        .expect("import lock table");
    // Bounded: drop the entries nobody holds before adding one.
    locks.retain(|_, l| Arc::strong_count(l) > 1);
    locks.entry(name.to_owned()).or_default().clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_name_a_folder_or_an_onnx_file() {
        let r = refs("gs://bkt/models/resnet").unwrap();
        assert_eq!(r.model.to_string(), "gs://bkt/models/resnet/model.onnx");
        assert_eq!(r.manifest.to_string(), "gs://bkt/models/resnet/model.toml");
        let r = refs("s3://bkt/m/net-v3.onnx").unwrap();
        assert_eq!(r.model.to_string(), "s3://bkt/m/net-v3.onnx");
        assert_eq!(r.manifest.to_string(), "s3://bkt/m/model.toml");
        assert_eq!(r.folder, "s3://bkt/m/");
        assert!(refs("ftp://x/y").is_err());
    }

    #[test]
    fn names_change_with_any_object_version() {
        let m = StorageUri::parse("gs://bkt/m/model.onnx").unwrap();
        let t = StorageUri::parse("gs://bkt/m/model.toml").unwrap();
        let stamp = |v: &str| ObjectStamp {
            version: v.into(),
            size: Some(10),
        };
        let a = imported_name(&[(&m, &stamp("1")), (&t, &stamp("1"))]);
        assert!(a.starts_with("uri-") && a.len() == 20, "{a}");
        assert!(inferq_backends::repository::valid_model_name(&a));
        assert_eq!(a, imported_name(&[(&m, &stamp("1")), (&t, &stamp("1"))]));
        assert_ne!(a, imported_name(&[(&m, &stamp("2")), (&t, &stamp("1"))]));
        assert_ne!(a, imported_name(&[(&m, &stamp("1")), (&t, &stamp("2"))]));
    }
}
