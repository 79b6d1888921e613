//! The on-disk model repository.
//!
//! Layout: `<root>/<name>/<version>/` with `model.onnx` and `model.toml`
//! (versions are positive integers; the default is the highest one whose
//! manifest does not opt out with `default = false`). Scanning
//! never fails because of one bad model: broken manifests are returned as
//! errors next to the usable models, so the rest keeps serving.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use inferq_core::manifest::{MANIFEST_FILE, MODEL_FILE, ManifestError, ModelManifest};

/// One servable model version.
#[derive(Debug, Clone)]
pub struct ModelEntry {
    pub name: String,
    pub version: u64,
    pub dir: PathBuf,
    pub manifest: ModelManifest,
    /// Class labels (empty when the manifest names none).
    pub labels: Arc<Vec<String>>,
    /// Changes whenever the manifest, the labels or the ONNX file change
    /// (content of the text files; size and modification time of the
    /// network), so a reload can tell which sessions must be rebuilt.
    pub fingerprint: u64,
}

impl ModelEntry {
    /// Path of the ONNX file.
    pub fn model_path(&self) -> PathBuf {
        self.dir.join(MODEL_FILE)
    }

    /// `name:version`, for logs and errors.
    pub fn key(&self) -> String {
        format!("{}:{}", self.name, self.version)
    }

    /// Loads one version directory.
    pub fn load(name: &str, version: u64, dir: &Path) -> Result<Self, ManifestError> {
        let path = dir.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&path).map_err(|source| ManifestError::Io {
            path: path.clone(),
            source,
        })?;
        let manifest = ModelManifest::parse(&text, &path)?;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        text.hash(&mut hasher);
        let labels = match &manifest.output.labels {
            Some(rel) => {
                let lpath = dir.join(rel);
                let text = std::fs::read_to_string(&lpath).map_err(|source| ManifestError::Io {
                    path: lpath.clone(),
                    source,
                })?;
                text.hash(&mut hasher);
                text.lines().map(|l| l.trim().to_owned()).collect()
            }
            None => Vec::new(),
        };
        if let Ok(meta) = std::fs::metadata(dir.join(MODEL_FILE)) {
            meta.len().hash(&mut hasher);
            meta.modified().ok().hash(&mut hasher);
        }
        Ok(ModelEntry {
            name: name.to_owned(),
            version,
            dir: dir.to_owned(),
            manifest,
            labels: Arc::new(labels),
            fingerprint: hasher.finish(),
        })
    }
}

/// Model names are used in URLs, queue names and metric labels.
pub fn valid_model_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
        && name.as_bytes()[0].is_ascii_alphanumeric()
}

/// All models found under a root directory.
#[derive(Debug, Clone, Default)]
pub struct ModelRepository {
    /// name -> version -> entry
    models: BTreeMap<String, BTreeMap<u64, Arc<ModelEntry>>>,
}

/// The result of scanning: the usable models plus what could not be loaded.
/// A broken model must not take the others down, so errors are returned, not
/// raised.
pub struct Scan {
    pub repository: ModelRepository,
    pub errors: Vec<ManifestError>,
}

impl ModelRepository {
    /// Scans `<root>/<name>/<version>/model.toml`.
    pub fn scan(root: &Path) -> Result<Scan, ManifestError> {
        let io = |source| ManifestError::Io {
            path: root.to_owned(),
            source,
        };
        let mut repo = ModelRepository::default();
        let mut errors = Vec::new();
        let mut names: Vec<_> = std::fs::read_dir(root)
            .map_err(io)?
            .filter_map(Result::ok)
            .collect();
        names.sort_by_key(|e| e.file_name());
        for name_dir in names {
            let name = name_dir.file_name().to_string_lossy().into_owned();
            if !name_dir.path().is_dir() || name.starts_with('.') {
                continue;
            }
            if !valid_model_name(&name) {
                errors.push(ManifestError::Invalid {
                    path: name_dir.path(),
                    reason: "model names use a-z, 0-9, '-', '_' and '.'".into(),
                });
                continue;
            }
            let Ok(versions) = std::fs::read_dir(name_dir.path()) else {
                continue;
            };
            for v in versions.filter_map(Result::ok) {
                let Some(version) = v
                    .file_name()
                    .to_str()
                    .and_then(|s| s.parse::<u64>().ok())
                    .filter(|v| *v > 0)
                else {
                    continue;
                };
                if !v.path().join(MANIFEST_FILE).exists() {
                    continue;
                }
                // A manifest without its network is an optional model that
                // was not built (e.g. `make models-extra` not run): skip it
                // quietly rather than report a broken model.
                if !v.path().join(MODEL_FILE).exists() {
                    tracing::info!(model = %name, version, "no model.onnx yet; skipped");
                    continue;
                }
                match ModelEntry::load(&name, version, &v.path()) {
                    Ok(entry) => {
                        repo.models
                            .entry(name.clone())
                            .or_default()
                            .insert(version, Arc::new(entry));
                    }
                    Err(e) => errors.push(e),
                }
            }
        }
        Ok(Scan {
            repository: repo,
            errors,
        })
    }

    /// Finds a model version; `None` means the default version: the newest
    /// whose manifest does not say `default = false` (the newest of all
    /// when every version says so).
    pub fn get(&self, name: &str, version: Option<u64>) -> Option<&Arc<ModelEntry>> {
        let versions = self.models.get(name)?;
        match version {
            Some(v) => versions.get(&v),
            None => versions
                .values()
                .rev()
                .find(|e| e.manifest.default)
                .or_else(|| versions.values().next_back()),
        }
    }

    /// All versions of one model, oldest first.
    pub fn versions(&self, name: &str) -> Option<impl Iterator<Item = &Arc<ModelEntry>>> {
        self.models.get(name).map(|v| v.values())
    }

    /// Every loaded version of every model.
    pub fn entries(&self) -> impl Iterator<Item = &Arc<ModelEntry>> {
        self.models.values().flat_map(|v| v.values())
    }

    pub fn is_empty(&self) -> bool {
        self.models.is_empty()
    }

    /// `(name:version, fingerprint)` of every entry: equal sets mean
    /// nothing changed on disk.
    pub fn fingerprints(&self) -> Vec<(String, u64)> {
        self.entries().map(|e| (e.key(), e.fingerprint)).collect()
    }

    /// Model names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.models.keys().map(String::as_str)
    }
}

/// A repository that follows the directory: rescanned on demand (SIGHUP, a
/// poll interval, or a request for a model not seen yet) and swapped
/// atomically, so readers never see a half-loaded state.
pub struct LiveRepository {
    dir: PathBuf,
    current: arc_swap::ArcSwap<ModelRepository>,
    last_scan: std::sync::Mutex<std::time::Instant>,
}

/// Least time between two on-demand rescans (a flood of requests for an
/// unknown model must not turn into a flood of directory scans).
const MIN_RESCAN_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

impl LiveRepository {
    pub fn new(dir: &Path, initial: ModelRepository) -> Self {
        LiveRepository {
            dir: dir.to_owned(),
            current: arc_swap::ArcSwap::from_pointee(initial),
            last_scan: std::sync::Mutex::new(std::time::Instant::now()),
        }
    }

    /// The repository as of the last publish.
    pub fn current(&self) -> Arc<ModelRepository> {
        self.current.load_full()
    }

    /// The model root directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Scans the directory (blocking I/O) and returns the new repository if
    /// anything changed; nothing is published yet, so the caller can
    /// prepare (load sessions) first. Broken models are logged.
    pub fn scan_if_changed(&self) -> Result<Option<ModelRepository>, ManifestError> {
        *self.last_scan.lock().expect("scan lock") = std::time::Instant::now();
        let scan = ModelRepository::scan(&self.dir)?;
        for e in &scan.errors {
            tracing::error!(error = %e, "model skipped");
        }
        let mut old = self.current().fingerprints();
        let mut new = scan.repository.fingerprints();
        old.sort();
        new.sort();
        Ok((old != new).then_some(scan.repository))
    }

    /// Makes `repo` the current repository.
    pub fn publish(&self, repo: Arc<ModelRepository>) {
        self.current.store(repo);
    }

    /// Whether an on-demand rescan is allowed now.
    pub fn may_rescan(&self) -> bool {
        self.last_scan.lock().expect("scan lock").elapsed() >= MIN_RESCAN_INTERVAL
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
kind = "classification"
[input]
name = "input"
dtype = "float32"
layout = "nchw"
width = 224
height = 224
[preprocess]
resize = "stretch"
[output]
name = "logits"
"#;

    #[test]
    fn scans_repository_and_picks_newest() {
        let root = std::env::temp_dir().join(format!("inferq-repo-{}", uuid::Uuid::new_v4()));
        for v in [1, 2] {
            let d = root.join("m").join(v.to_string());
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join(MANIFEST_FILE), GOOD).unwrap();
            std::fs::write(d.join(MODEL_FILE), b"onnx").unwrap();
        }
        // A broken model is reported, not fatal.
        let d = root.join("broken").join("1");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(MANIFEST_FILE), "kind = 3").unwrap();
        std::fs::write(d.join(MODEL_FILE), b"onnx").unwrap();
        // A manifest without its network is skipped, not an error.
        let d = root.join("unbuilt").join("1");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(MANIFEST_FILE), GOOD).unwrap();

        let scan = ModelRepository::scan(&root).unwrap();
        assert_eq!(scan.errors.len(), 1);
        assert!(scan.errors[0].to_string().contains("broken"));
        let repo = scan.repository;
        assert_eq!(repo.get("m", None).unwrap().version, 2);
        assert_eq!(repo.get("m", Some(1)).unwrap().version, 1);
        assert!(repo.get("m", Some(3)).is_none());
        assert!(repo.get("broken", None).is_none());
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn a_version_that_opts_out_is_not_the_default() {
        let root = std::env::temp_dir().join(format!("inferq-repo-{}", uuid::Uuid::new_v4()));
        let write = |v: u64, manifest: &str| {
            let d = root.join("m").join(v.to_string());
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join(MANIFEST_FILE), manifest).unwrap();
            std::fs::write(d.join(MODEL_FILE), b"onnx").unwrap();
        };
        let opted_out = format!("default = false\n{GOOD}");
        write(1, GOOD);
        write(2, GOOD);
        write(3, &opted_out);
        let repo = ModelRepository::scan(&root).unwrap().repository;
        assert_eq!(repo.get("m", None).unwrap().version, 2);
        assert_eq!(repo.get("m", Some(3)).unwrap().version, 3);
        // Every version opting out: the newest is still the default.
        write(1, &opted_out);
        write(2, &opted_out);
        let repo = ModelRepository::scan(&root).unwrap().repository;
        assert_eq!(repo.get("m", None).unwrap().version, 3);
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn model_names() {
        assert!(valid_model_name("efficientnet-lite0"));
        assert!(valid_model_name("a.b_c"));
        assert!(!valid_model_name(""));
        assert!(!valid_model_name("-x"));
        assert!(!valid_model_name("Upper"));
        assert!(!valid_model_name("a/b"));
    }
}
