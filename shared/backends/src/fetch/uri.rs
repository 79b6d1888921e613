//! Storage references as clients write them: `gs://bucket/key`,
//! `s3://bucket/key`, `http(s)://host/path` and `file:///absolute/path`.
//!
//! Parsing is syntax only (no configuration, no I/O), so the API can answer a
//! malformed reference with `invalid_uri` before anything else. Whether the
//! reference may be used is policy, decided by [`super::Fetcher::check`].
//! Object keys are kept exactly as written (no percent-decoding), but keys
//! that object stores or the local file system would misread are refused:
//! empty segments, `.` and `..` segments, control characters.

use std::fmt;
use std::path::PathBuf;

use url::Url;

use super::FetchError;

/// Longest accepted reference, in bytes.
pub const MAX_URI_LEN: usize = 2048;

/// A parsed storage reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum StorageUri {
    /// `gs://bucket/key`: Google Cloud Storage.
    Gcs { bucket: String, key: String },
    /// `s3://bucket/key`: Amazon S3 or an S3-compatible store.
    S3 { bucket: String, key: String },
    /// `http://` or `https://`: a plain web URL (fragment removed).
    Http(Url),
    /// `file:///path`: an absolute local path (percent-decoded).
    File(PathBuf),
}

impl StorageUri {
    /// Parses a reference. Checks syntax only; see [`super::Fetcher::check`] for policy.
    pub fn parse(s: &str) -> Result<Self, FetchError> {
        let bad = |why: &str| FetchError::InvalidUri(format!("{why}: {}", shorten(s)));
        if s.is_empty() {
            return Err(FetchError::InvalidUri("empty reference".into()));
        }
        if s.len() > MAX_URI_LEN {
            return Err(FetchError::InvalidUri(format!(
                "reference is {} bytes, longer than {MAX_URI_LEN}",
                s.len()
            )));
        }
        if s.chars().any(char::is_control) {
            return Err(bad("control character in reference"));
        }
        let Some((scheme, rest)) = s.split_once("://") else {
            return Err(bad("not a URI (expected scheme://...)"));
        };
        match scheme.to_ascii_lowercase().as_str() {
            "gs" => {
                let (bucket, key) = bucket_and_key(rest, false).map_err(|w| bad(&w))?;
                Ok(StorageUri::Gcs { bucket, key })
            }
            "s3" => {
                let (bucket, key) = bucket_and_key(rest, true).map_err(|w| bad(&w))?;
                Ok(StorageUri::S3 { bucket, key })
            }
            "http" | "https" => {
                let mut url = Url::parse(s).map_err(|e| bad(&format!("invalid URL ({e})")))?;
                if url.host().is_none() {
                    return Err(bad("URL has no host"));
                }
                if !url.username().is_empty() || url.password().is_some() {
                    return Err(bad("credentials in URLs are not accepted"));
                }
                url.set_fragment(None);
                Ok(StorageUri::Http(url))
            }
            "file" => {
                let url = Url::parse(s).map_err(|e| bad(&format!("invalid file URI ({e})")))?;
                match url.host_str() {
                    None | Some("") | Some("localhost") => {}
                    Some(_) => return Err(bad("file URIs must not name a host")),
                }
                if url.query().is_some() || url.fragment().is_some() {
                    return Err(bad("file URIs take no query or fragment"));
                }
                let path = url
                    .to_file_path()
                    .map_err(|()| bad("not an absolute file path"))?;
                if path.to_str().is_none() {
                    return Err(bad("file path is not UTF-8"));
                }
                Ok(StorageUri::File(path))
            }
            _ => Err(bad("unsupported scheme (use gs, s3, http, https or file)")),
        }
    }

    /// The scheme as written in the canonical form (`gs`, `s3`, `http`, `https`, `file`).
    pub fn scheme(&self) -> &str {
        match self {
            StorageUri::Gcs { .. } => "gs",
            StorageUri::S3 { .. } => "s3",
            StorageUri::Http(url) => url.scheme(),
            StorageUri::File(_) => "file",
        }
    }
}

impl fmt::Display for StorageUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageUri::Gcs { bucket, key } => write!(f, "gs://{bucket}/{key}"),
            StorageUri::S3 { bucket, key } => write!(f, "s3://{bucket}/{key}"),
            StorageUri::Http(url) => write!(f, "{url}"),
            StorageUri::File(path) => match Url::from_file_path(path) {
                Ok(url) => write!(f, "{url}"),
                Err(()) => write!(f, "file://{}", path.display()),
            },
        }
    }
}

impl std::str::FromStr for StorageUri {
    type Err = FetchError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        StorageUri::parse(s)
    }
}

/// Splits `bucket/key` and validates both. Bucket names follow the rules
/// common to GCS and S3 (lowercase letters, digits, `-`, `.`; GCS also `_`).
fn bucket_and_key(rest: &str, s3: bool) -> Result<(String, String), String> {
    let Some((bucket, key)) = rest.split_once('/') else {
        return Err("missing object key (expected bucket/key)".into());
    };
    let max = if s3 { 63 } else { 222 };
    let valid_char = |c: char| {
        c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.' || (!s3 && c == '_')
    };
    let edge_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if bucket.len() < 3
        || bucket.len() > max
        || !bucket.chars().all(valid_char)
        || !edge_ok(bucket.chars().next())
        || !edge_ok(bucket.chars().last())
        || bucket.contains("..")
    {
        return Err(format!("invalid bucket name `{}`", shorten(bucket)));
    }
    if key.is_empty() {
        return Err("missing object key".into());
    }
    if key.starts_with('/') || key.ends_with('/') || key.contains("//") {
        return Err("object key has an empty path segment".into());
    }
    if key.split('/').any(|seg| seg == "." || seg == "..") {
        return Err("object key has a `.` or `..` segment".into());
    }
    object_store::path::Path::parse(key).map_err(|e| format!("invalid object key ({e})"))?;
    Ok((bucket.to_string(), key.to_string()))
}

/// At most 100 characters of `s`, for error messages.
pub(crate) fn shorten(s: &str) -> String {
    match s.char_indices().nth(100) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> StorageUri {
        StorageUri::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn good_references() {
        assert_eq!(
            ok("gs://my-bucket/in/cat.jpg"),
            StorageUri::Gcs {
                bucket: "my-bucket".into(),
                key: "in/cat.jpg".into()
            }
        );
        assert_eq!(
            ok("S3://data.example.com/a/b c.png"),
            StorageUri::S3 {
                bucket: "data.example.com".into(),
                key: "a/b c.png".into()
            }
        );
        assert_eq!(ok("gs://under_score/x").scheme(), "gs");
        match ok("https://example.com:8443/img.png?sig=abc#frag") {
            StorageUri::Http(u) => {
                assert_eq!(u.as_str(), "https://example.com:8443/img.png?sig=abc")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            ok("file:///data/in/x%20y.jpg"),
            StorageUri::File("/data/in/x y.jpg".into())
        );
        assert_eq!(
            ok("file://localhost/data/a.png"),
            StorageUri::File("/data/a.png".into())
        );
        // WHATWG parsing removes dot segments, so `..` cannot survive into the path.
        assert_eq!(
            ok("file:///root/../etc/passwd"),
            StorageUri::File("/etc/passwd".into())
        );
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "gs://my-bucket/in/cat.jpg",
            "s3://bkt/a/b.png",
            "https://example.com/x.png?a=1",
            "file:///data/x%20y.jpg",
        ] {
            assert_eq!(ok(s).to_string(), s);
            assert_eq!(ok(&ok(s).to_string()), ok(s));
        }
    }

    #[test]
    fn bad_references() {
        let long = format!("gs://bucket/{}", "a".repeat(MAX_URI_LEN));
        for s in [
            "",
            "cat.jpg",
            "/etc/passwd",
            "ftp://example.com/x",
            "gopher://example.com/",
            "data:image/png;base64,AAAA",
            "gs://bucket",
            "gs://bucket/",
            "gs://Bucket/x",
            "gs://ab/x",
            "gs://-bucket/x",
            "gs://bucket-/x",
            "gs://buc..ket/x",
            "s3://under_score/x",
            "gs://bucket//x",
            "gs://bucket/a//b",
            "gs://bucket/dir/",
            "gs://bucket/a/../b",
            "gs://bucket/./b",
            "gs://bucket/a\nb",
            "s3://bucket/a\u{7}b",
            "http://",
            "https://user:pass@example.com/x",
            "https://user@example.com/x",
            "http://exa mple.com/",
            "file://otherhost/etc/passwd",
            "file:///tmp/x?y=1",
            "file:relative/path",
            long.as_str(),
        ] {
            let err = StorageUri::parse(s).expect_err(s);
            assert!(matches!(err, FetchError::InvalidUri(_)), "{s}: {err:?}");
            assert_eq!(err.code(), inferq_core::ErrorCode::InvalidUri);
        }
    }

    #[test]
    fn error_messages_are_bounded() {
        let s = format!("ftp://{}", "x".repeat(2000));
        let err = StorageUri::parse(&s).unwrap_err().to_string();
        assert!(err.len() < 300, "{}", err.len());
    }
}
