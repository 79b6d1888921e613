//! Per-tenant storage fences: which prefixes one API key may read from and
//! write to.
//!
//! Why: the worker's credentials reach every bucket (and the local root)
//! the deployment uses, so without a fence any `submit` key could read
//! another tenant's objects by naming them, overwrite them through
//! `output_uri`, or list their prefixes with a batch. The global
//! `--fetch-allow-buckets` / `--fetch-local-root` policy still applies on
//! top; a fence narrows it per key. A fence with no prefixes refuses every
//! reference (deny by default).
//!
//! Both the fence's prefixes and the references are brought to one textual
//! form first ([`normalise`]): `file://` paths have `.`/`..` resolved by URL
//! parsing and are percent-encoded the same way, `gs://`/`s3://` keys may
//! not contain `.`/`..` segments at all. A prefix always ends with `/`, so
//! `gs://b/acme/` never covers `gs://b/acme-other/…`. Symlinks inside a
//! `file://` root are not resolved here (see docs/storage.md).

use url::Url;

use super::FetchError;

/// Reading (job inputs, batch inputs) or writing (outputs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

impl Access {
    fn as_str(self) -> &'static str {
        match self {
            Access::Read => "input (in=)",
            Access::Write => "output (out=)",
        }
    }
}

/// A malformed fence prefix in the configuration.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("storage prefix `{prefix}`: {reason}")]
pub struct FenceError {
    pub prefix: String,
    pub reason: String,
}

/// The prefixes one tenant may read and write.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StorageFence {
    inputs: Vec<String>,
    outputs: Vec<String>,
}

impl StorageFence {
    /// A fence of these prefixes (`gs://bucket/path/`, `s3://bucket/`,
    /// `file:///dir/`, `https://host/path/`); each is normalised and made to
    /// end with `/`.
    pub fn new(inputs: &[String], outputs: &[String]) -> Result<Self, FenceError> {
        let norm = |list: &[String]| {
            list.iter()
                .map(|p| {
                    normalise(p, true).map_err(|reason| FenceError {
                        prefix: p.clone(),
                        reason,
                    })
                })
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(StorageFence {
            inputs: norm(inputs)?,
            outputs: norm(outputs)?,
        })
    }

    /// The normalised prefixes for `access`.
    pub fn prefixes(&self, access: Access) -> &[String] {
        match access {
            Access::Read => &self.inputs,
            Access::Write => &self.outputs,
        }
    }

    /// Whether the fence allows no reference at all.
    pub fn is_closed(&self) -> bool {
        self.inputs.is_empty() && self.outputs.is_empty()
    }

    /// `Ok` when `reference` (an object or a listing prefix) lies below one
    /// of the prefixes for `access`; otherwise `Forbidden`, naming the
    /// reference and the fence.
    pub fn check(&self, access: Access, reference: &str) -> Result<(), FetchError> {
        let prefixes = match access {
            Access::Read => &self.inputs,
            Access::Write => &self.outputs,
        };
        let normal = normalise(reference, false)
            .map_err(|reason| FetchError::InvalidUri(format!("{reason}: {}", short(reference))))?;
        if prefixes.iter().any(|p| normal.starts_with(p.as_str())) {
            return Ok(());
        }
        let fence = if prefixes.is_empty() {
            "none: this API key may not use storage references for that".to_owned()
        } else {
            prefixes.join(", ")
        };
        Err(FetchError::Forbidden(format!(
            "`{}` is outside this API key's {} prefixes ({fence})",
            short(reference),
            access.as_str()
        )))
    }
}

fn short(s: &str) -> String {
    if s.len() <= 200 {
        s.to_owned()
    } else {
        let mut end = 200;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &s[..end])
    }
}

/// The one textual form fences compare. `dir` makes it end with `/`.
pub fn normalise(reference: &str, dir: bool) -> Result<String, String> {
    let reference = reference.trim();
    let (scheme, rest) = reference
        .split_once("://")
        .ok_or("not a storage reference (gs://, s3://, file://, https://)")?;
    let mut out = match scheme.to_ascii_lowercase().as_str() {
        s @ ("gs" | "s3") => {
            let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err("no bucket".into());
            }
            if key.split('/').any(|seg| seg == "." || seg == "..") {
                return Err("`.` and `..` segments are not allowed".into());
            }
            format!("{s}://{}/{key}", bucket.to_ascii_lowercase())
        }
        "file" | "http" | "https" => {
            let mut url = Url::parse(reference).map_err(|e| e.to_string())?;
            url.set_fragment(None);
            if url.scheme() == "file" {
                if url.query().is_some() {
                    return Err("a file reference has no query".into());
                }
                if url.host_str().is_some_and(|h| h != "localhost") {
                    return Err("a file reference has no host".into());
                }
                format!("file://{}", url.path())
            } else {
                url.to_string()
            }
        }
        other => return Err(format!("unsupported scheme `{other}`")),
    };
    if dir && !out.ends_with('/') {
        out.push('/');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fence() -> StorageFence {
        StorageFence::new(
            &["gs://photos/acme".into(), "file:///data/acme/in/".into()],
            &["s3://results/acme/".into()],
        )
        .unwrap()
    }

    #[test]
    fn own_prefixes_pass() {
        let f = fence();
        for ok in [
            "gs://photos/acme/cat.jpg",
            "gs://photos/acme/2026/",
            "file:///data/acme/in/a/b.png",
            "file://localhost/data/acme/in/x.png",
        ] {
            f.check(Access::Read, ok).unwrap();
        }
        f.check(Access::Write, "s3://results/acme/x.json").unwrap();
    }

    #[test]
    fn other_prefixes_and_tricks_are_refused() {
        let f = fence();
        for bad in [
            "gs://photos/acme-other/cat.jpg",
            "gs://photos/acme",
            "gs://photos/other/cat.jpg",
            "s3://photos/acme/cat.jpg",
            "file:///data/acme/in/../../other/x.png",
            "file:///data/acme/inx/x.png",
            "https://photos/acme/cat.jpg",
        ] {
            let e = f.check(Access::Read, bad).unwrap_err();
            assert!(matches!(e, FetchError::Forbidden(_)), "{bad}: {e}");
            assert!(e.to_string().contains("gs://photos/acme/"), "{e}");
        }
        assert!(matches!(
            f.check(Access::Read, "gs://photos/acme/../other/x"),
            Err(FetchError::InvalidUri(_))
        ));
        // Reading does not allow writing, and vice versa.
        assert!(f.check(Access::Write, "gs://photos/acme/out.json").is_err());
        assert!(f.check(Access::Read, "s3://results/acme/x.json").is_err());
    }

    #[test]
    fn an_empty_fence_refuses_everything() {
        let f = StorageFence::default();
        assert!(f.is_closed());
        let e = f.check(Access::Read, "gs://photos/a.jpg").unwrap_err();
        assert!(
            e.to_string().contains("may not use storage references"),
            "{e}"
        );
    }

    #[test]
    fn bad_prefixes_are_refused() {
        assert!(StorageFence::new(&["photos/acme/".into()], &[]).is_err());
        assert!(StorageFence::new(&[], &["gs:///x/".into()]).is_err());
        assert!(StorageFence::new(&["ftp://x/".into()], &[]).is_err());
    }
}
