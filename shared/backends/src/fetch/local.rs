//! `file://` references, confined to one directory (`--fetch-local-root`).
//!
//! Reads and writes go through `object_store`'s `LocalFileSystem` rooted at
//! the canonical root, but only after the requested path has been resolved
//! here: every symlink is followed (`canonicalize`) and the result must
//! still lie below the root, so neither `..` nor a symlink can lead out of
//! it. Writes refuse to replace a symlink and create missing directories only
//! below an ancestor that resolves inside the root. `LocalFileSystem`
//! writes through a staging file and a rename, so a reader never sees half
//! an object.
//!
//! Limitation: the check and the open are two steps. Someone who can create
//! symlinks inside the root while InferQ reads it could swap a checked
//! directory for a link in between; the root is meant to be written by
//! trusted producers only.

use std::path::{Component, Path, PathBuf};

use bytes::Bytes;
use futures::StreamExt;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};

use super::{Capped, FetchError, map_store_error};

/// The directory `file://` references are confined to.
#[derive(Debug)]
pub(crate) struct LocalRoot {
    /// The root as configured, made absolute and lexically normalised.
    configured: PathBuf,
    /// The root with every symlink resolved.
    canonical: PathBuf,
    store: LocalFileSystem,
}

impl LocalRoot {
    /// Opens the root, which must be an existing directory.
    pub(crate) fn new(root: &Path) -> Result<Self, FetchError> {
        let fail = |why: String| {
            FetchError::Failed(format!("--fetch-local-root {}: {why}", root.display()))
        };
        let absolute = std::path::absolute(root).map_err(|e| fail(e.to_string()))?;
        let canonical = std::fs::canonicalize(&absolute).map_err(|e| fail(e.to_string()))?;
        if !canonical.is_dir() {
            return Err(fail("not a directory".into()));
        }
        let store =
            LocalFileSystem::new_with_prefix(&canonical).map_err(|e| fail(e.to_string()))?;
        Ok(LocalRoot {
            configured: lexical_normalise(&absolute),
            canonical,
            store,
        })
    }

    /// The cheap check, without touching the file system: the path must be
    /// absolute, free of `.`/`..` and below the root as configured or as
    /// resolved.
    pub(crate) fn check(&self, path: &Path) -> Result<(), FetchError> {
        if !path.is_absolute() {
            return Err(FetchError::InvalidUri(format!(
                "file path {} is not absolute",
                path.display()
            )));
        }
        if path
            .components()
            .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
        {
            return Err(forbidden(path));
        }
        let inside = |root: &Path| path.starts_with(root) && path != root;
        if inside(&self.configured) || inside(&self.canonical) {
            Ok(())
        } else {
            Err(forbidden(path))
        }
    }

    /// Reads a file, at most `max` bytes.
    pub(crate) async fn get(&self, path: &Path, max: usize) -> Result<Bytes, FetchError> {
        self.check(path)?;
        let resolved = tokio::fs::canonicalize(path)
            .await
            .map_err(|e| io_error(path, e))?;
        let location = self.relative(&resolved, path)?;
        let result = self
            .store
            .get(&location)
            .await
            .map_err(|e| map_store_error(&path.display().to_string(), e))?;
        let mut buf = Capped::new(Some(result.meta.size), max)?;
        let mut stream = result.into_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| map_store_error(&path.display().to_string(), e))?;
            buf.push(&chunk)?;
        }
        Ok(buf.finish())
    }

    /// The file's version stamp (size and modification time), without
    /// reading it.
    pub(crate) async fn head(&self, path: &Path) -> Result<super::ObjectStamp, FetchError> {
        self.check(path)?;
        let resolved = tokio::fs::canonicalize(path)
            .await
            .map_err(|e| io_error(path, e))?;
        let location = self.relative(&resolved, path)?;
        let meta = self
            .store
            .head(&location)
            .await
            .map_err(|e| map_store_error(&path.display().to_string(), e))?;
        Ok(super::ObjectStamp::from_meta(&meta))
    }

    /// Writes a file atomically, creating missing directories below the root.
    pub(crate) async fn put(&self, path: &Path, data: Bytes) -> Result<(), FetchError> {
        self.check(path)?;
        let location = self.resolve_for_write(path).await?;
        self.store
            .put(&location, data.into())
            .await
            .map_err(|e| map_store_error(&path.display().to_string(), e))?;
        Ok(())
    }

    /// The files below the directory `dir` (recursively, symlinks not
    /// followed out of the root), as paths relative to `dir`; at most `max`.
    pub(crate) async fn list(&self, dir: &Path, max: usize) -> Result<Vec<String>, FetchError> {
        let shown = dir.display().to_string();
        if !dir.is_absolute() {
            return Err(FetchError::InvalidUri(format!(
                "file path {shown} is not absolute"
            )));
        }
        if dir != self.configured && dir != self.canonical {
            self.check(dir)?;
        }
        let resolved = tokio::fs::canonicalize(dir)
            .await
            .map_err(|e| io_error(dir, e))?;
        let base = if resolved == self.canonical {
            None
        } else {
            Some(self.relative(&resolved, dir)?)
        };
        let mut stream = self.store.list(base.as_ref());
        let mut out = Vec::new();
        while let Some(meta) = stream.next().await {
            let meta = meta.map_err(|e| map_store_error(&shown, e))?;
            if out.len() >= max {
                return Err(FetchError::Failed(format!(
                    "{shown} holds more than {max} files"
                )));
            }
            let full = meta.location.to_string();
            let rel = match &base {
                Some(b) => full
                    .strip_prefix(b.as_ref())
                    .map(|r| r.trim_start_matches('/'))
                    .unwrap_or(&full),
                None => full.as_str(),
            };
            out.push(rel.to_owned());
        }
        Ok(out)
    }

    /// The object path of `path` for writing: its deepest existing ancestor
    /// resolved (must be inside the root) plus the missing components.
    async fn resolve_for_write(&self, path: &Path) -> Result<ObjectPath, FetchError> {
        if let Ok(meta) = tokio::fs::symlink_metadata(path).await
            && meta.file_type().is_symlink()
        {
            return Err(FetchError::Forbidden(format!(
                "{} is a symlink; results are not written through links",
                path.display()
            )));
        }
        let mut missing: Vec<&std::ffi::OsStr> = Vec::new();
        let mut ancestor = path;
        loop {
            match tokio::fs::canonicalize(ancestor).await {
                Ok(resolved) => {
                    let mut full = resolved;
                    full.extend(missing.iter().rev());
                    return self.relative(&full, path);
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    let (Some(parent), Some(name)) = (ancestor.parent(), ancestor.file_name())
                    else {
                        return Err(forbidden(path));
                    };
                    missing.push(name);
                    ancestor = parent;
                }
                Err(e) => return Err(io_error(path, e)),
            }
        }
    }

    /// `resolved` relative to the canonical root, as an object path.
    fn relative(&self, resolved: &Path, requested: &Path) -> Result<ObjectPath, FetchError> {
        let rel = resolved
            .strip_prefix(&self.canonical)
            .map_err(|_| forbidden(requested))?;
        let mut parts = Vec::new();
        for c in rel.components() {
            match c {
                Component::Normal(s) => parts.push(s.to_str().ok_or_else(|| {
                    FetchError::InvalidUri(format!("{} is not UTF-8", requested.display()))
                })?),
                _ => return Err(forbidden(requested)),
            }
        }
        if parts.is_empty() {
            return Err(forbidden(requested));
        }
        ObjectPath::parse(parts.join("/")).map_err(|e| {
            FetchError::InvalidUri(format!("{}: unusable file name ({e})", requested.display()))
        })
    }
}

fn forbidden(path: &Path) -> FetchError {
    FetchError::Forbidden(format!("{} is outside --fetch-local-root", path.display()))
}

fn io_error(path: &Path, e: std::io::Error) -> FetchError {
    match e.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory => {
            FetchError::NotFound(path.display().to_string())
        }
        std::io::ErrorKind::PermissionDenied => {
            FetchError::Forbidden(format!("{}: permission denied", path.display()))
        }
        _ => FetchError::Failed(format!("{}: {e}", path.display())),
    }
}

/// Removes `.` and resolves `..` textually (no file system access).
fn lexical_normalise(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    struct TempDir(PathBuf);
    impl TempDir {
        fn new() -> Self {
            let p = std::env::temp_dir().join(format!("inferq-fetch-{}", uuid::Uuid::new_v4()));
            std::fs::create_dir_all(&p).unwrap();
            TempDir(std::fs::canonicalize(p).unwrap())
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// `<tmp>/root/in/cat.bin` plus `<tmp>/secret.txt` outside the root.
    fn fixture() -> (TempDir, LocalRoot) {
        let tmp = TempDir::new();
        std::fs::create_dir_all(tmp.0.join("root/in")).unwrap();
        std::fs::write(tmp.0.join("root/in/cat.bin"), b"0123456789").unwrap();
        std::fs::write(tmp.0.join("secret.txt"), b"secret").unwrap();
        let root = LocalRoot::new(&tmp.0.join("root")).unwrap();
        (tmp, root)
    }

    #[tokio::test]
    async fn reads_inside_the_root() {
        let (tmp, root) = fixture();
        let got = root.get(&tmp.0.join("root/in/cat.bin"), 100).await.unwrap();
        assert_eq!(&got[..], b"0123456789");
        let err = root
            .get(&tmp.0.join("root/in/none"), 100)
            .await
            .unwrap_err();
        assert!(matches!(err, FetchError::NotFound(_)), "{err:?}");
    }

    #[tokio::test]
    async fn dot_dot_escapes_are_refused() {
        let (tmp, root) = fixture();
        // The URI parser already removes `..` (WHATWG), leaving a path outside the root.
        let uri = format!("file://{}/root/../secret.txt", tmp.0.display());
        let super::super::StorageUri::File(path) = super::super::StorageUri::parse(&uri).unwrap()
        else {
            panic!("not a file uri")
        };
        assert_eq!(path, tmp.0.join("secret.txt"));
        assert!(matches!(root.check(&path), Err(FetchError::Forbidden(_))));
        // A path built by hand with `..` is refused before any file system access.
        let raw = tmp.0.join("root/../secret.txt");
        assert!(matches!(root.check(&raw), Err(FetchError::Forbidden(_))));
        assert!(matches!(
            root.get(&raw, 100).await,
            Err(FetchError::Forbidden(_))
        ));
        let etc = PathBuf::from("/etc/passwd");
        assert!(matches!(
            root.get(&etc, 100_000).await,
            Err(FetchError::Forbidden(_))
        ));
        // A sibling whose name starts like the root is not inside it.
        std::fs::write(tmp.0.join("root2"), b"x").unwrap();
        assert!(root.check(&tmp.0.join("root2")).is_err());
        assert!(root.check(&tmp.0.join("root")).is_err());
    }

    #[tokio::test]
    async fn symlinks_out_of_the_root_are_refused() {
        let (tmp, root) = fixture();
        let r = tmp.0.join("root");
        std::os::unix::fs::symlink(tmp.0.join("secret.txt"), r.join("link.txt")).unwrap();
        std::os::unix::fs::symlink(&tmp.0, r.join("up")).unwrap();
        std::os::unix::fs::symlink(r.join("in/cat.bin"), r.join("inner.bin")).unwrap();
        for p in [r.join("link.txt"), r.join("up/secret.txt")] {
            root.check(&p).unwrap(); // lexically fine; only resolution reveals the escape
            let err = root.get(&p, 100).await.unwrap_err();
            assert!(matches!(err, FetchError::Forbidden(_)), "{p:?}: {err:?}");
        }
        // A link that stays inside the root is fine.
        assert_eq!(
            &root.get(&r.join("inner.bin"), 100).await.unwrap()[..],
            b"0123456789"
        );
        // Writing through links is refused, whether they lead out or not.
        for p in [
            r.join("up/new.json"),
            r.join("link.txt"),
            r.join("inner.bin"),
        ] {
            let err = root.put(&p, Bytes::from_static(b"{}")).await.unwrap_err();
            assert!(matches!(err, FetchError::Forbidden(_)), "{p:?}: {err:?}");
        }
        assert_eq!(std::fs::read(tmp.0.join("secret.txt")).unwrap(), b"secret");
    }

    #[tokio::test]
    async fn size_cap_applies() {
        let (tmp, root) = fixture();
        let p = tmp.0.join("root/in/cat.bin");
        assert_eq!(root.get(&p, 10).await.unwrap().len(), 10);
        let err = root.get(&p, 9).await.unwrap_err();
        assert!(matches!(err, FetchError::TooLarge { limit: 9 }), "{err:?}");
        assert_eq!(err.code(), inferq_core::ErrorCode::InputTooLarge);
    }

    #[tokio::test]
    async fn put_creates_directories_inside_the_root() {
        let (tmp, root) = fixture();
        let p = tmp.0.join("root/out/job-1/result.json");
        root.put(&p, Bytes::from_static(b"{\"ok\":true}"))
            .await
            .unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"{\"ok\":true}");
        assert_eq!(&root.get(&p, 100).await.unwrap()[..], b"{\"ok\":true}");
    }
}
