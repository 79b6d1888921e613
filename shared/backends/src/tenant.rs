//! What an API key entry says about its tenant beyond who it is: the
//! storage prefixes it may read and write, and its webhook signing secrets.
//!
//! A key entry is `tenant:scopes:secret` followed by whitespace-separated
//! attributes (a key never contains whitespace, so the split is
//! unambiguous):
//!
//! ```text
//! acme:submit+read:<key> in=gs://photos/acme/ out=gs://results/acme/ webhook-secret=whsec_…
//! ```
//!
//! Why here and not in the API: the worker's webhook dispatcher signs a
//! tenant's notifications with that tenant's secret, so it reads the same
//! entries (only the tenant name and the attributes; it authenticates
//! nobody). Both processes share this one parser.

use std::collections::HashMap;

use crate::fetch::fence::{FenceError, StorageFence};

/// The attributes after `tenant:scopes:secret`.
#[derive(Clone, Default)]
pub struct TenantAttributes {
    /// Prefixes (`in=`) storage references may be read from.
    pub inputs: Vec<String>,
    /// Prefixes (`out=`) results may be written to.
    pub outputs: Vec<String>,
    /// `webhook-secret=whsec_…` (repeatable, for rotation).
    pub webhook_secrets: Vec<String>,
}

impl std::fmt::Debug for TenantAttributes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantAttributes")
            .field("inputs", &self.inputs)
            .field("outputs", &self.outputs)
            .field("webhook_secrets", &self.webhook_secrets.len())
            .finish()
    }
}

impl TenantAttributes {
    /// The storage fence these prefixes draw (syntax-checked).
    pub fn fence(&self) -> Result<StorageFence, FenceError> {
        StorageFence::new(&self.inputs, &self.outputs)
    }
}

/// Splits an entry into its `tenant:scopes:secret` head and its attributes.
/// Errors name the attribute, never the key.
pub fn split_entry(entry: &str) -> Result<(&str, TenantAttributes), String> {
    let mut words = entry.split_whitespace();
    let head = words.next().unwrap_or("");
    let mut attrs = TenantAttributes::default();
    for word in words {
        // Nothing of the entry is echoed: a stray space inside a key would
        // otherwise put part of the key into the error (and the log).
        let Some((name, value)) = word.split_once('=') else {
            return Err(
                "unexpected whitespace: tenant names and keys contain none, and \
                 what follows the key must be attributes (in=…, out=…, webhook-secret=…)"
                    .into(),
            );
        };
        if value.is_empty() {
            return Err("an attribute has no value after `=`".into());
        }
        match name {
            "in" => attrs.inputs.push(value.to_owned()),
            "out" => attrs.outputs.push(value.to_owned()),
            "webhook-secret" => attrs.webhook_secrets.push(value.to_owned()),
            _ => {
                return Err(
                    "unknown attribute name (expected in=, out= or webhook-secret=)".into(),
                );
            }
        }
    }
    Ok((head, attrs))
}

/// The webhook secrets of every tenant in these key entries (the tenant is
/// the entry's text before the first `:`); entries of one tenant are merged.
/// Blank entries and `#` comments are skipped.
pub fn webhook_secrets<'a>(
    entries: impl IntoIterator<Item = (String, &'a str)>,
) -> Result<HashMap<String, Vec<String>>, String> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for (origin, entry) in entries {
        let entry = entry.trim();
        if entry.is_empty() || entry.starts_with('#') {
            continue;
        }
        let (head, attrs) = split_entry(entry).map_err(|e| format!("{origin}: {e}"))?;
        let tenant = head.split(':').next().unwrap_or_default();
        if !attrs.webhook_secrets.is_empty() {
            out.entry(tenant.to_owned())
                .or_default()
                .extend(attrs.webhook_secrets);
        }
    }
    Ok(out)
}

/// The worker's view of the API key entries: it reads them only for the
/// tenants' `webhook-secret=` attributes (it authenticates nobody). Same
/// options and variables as the API's, so one secret store serves both;
/// give the worker entries with `sha256:` digests instead of keys.
#[derive(Clone, Default, clap::Args, serde::Serialize, serde::Deserialize)]
pub struct TenantKeysConfig {
    /// API key entries (`tenant:scopes:secret [webhook-secret=whsec_…]`,
    /// comma-separated), read for each tenant's webhook signing secrets.
    #[arg(
        long,
        env = "INFERQ_API_KEYS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    #[serde(default)]
    pub api_keys: Vec<String>,
    /// File of API key entries, one per line (as for inferq-api), read for
    /// each tenant's webhook signing secrets.
    #[arg(long, env = "INFERQ_API_KEYS_FILE")]
    #[serde(default)]
    pub api_keys_file: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for TenantKeysConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantKeysConfig")
            .field("api_keys", &self.api_keys.len())
            .field("api_keys_file", &self.api_keys_file)
            .finish()
    }
}

/// The key entries could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TenantKeysError {
    #[error("cannot read the API key file {}: {source}", path.display())]
    File {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Entry(String),
}

impl TenantKeysConfig {
    /// Every tenant's webhook secrets from the entries and the file.
    pub fn webhook_secrets(&self) -> Result<HashMap<String, Vec<String>>, TenantKeysError> {
        let mut entries: Vec<(String, String)> = self
            .api_keys
            .iter()
            .enumerate()
            .map(|(i, e)| (format!("api_keys entry {}", i + 1), e.clone()))
            .collect();
        if let Some(path) = &self.api_keys_file {
            let text = std::fs::read_to_string(path).map_err(|source| TenantKeysError::File {
                path: path.clone(),
                source,
            })?;
            entries.extend(
                text.lines()
                    .enumerate()
                    .map(|(n, l)| (format!("{} line {}", path.display(), n + 1), l.to_owned())),
            );
        }
        webhook_secrets(entries.iter().map(|(o, e)| (o.clone(), e.as_str())))
            .map_err(TenantKeysError::Entry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_follow_the_key() {
        let (head, a) = split_entry(
            "acme:submit:sha256:00 in=gs://b/acme/ in=file:///d/acme/ out=s3://o/acme/ webhook-secret=whsec_x",
        )
        .unwrap();
        assert_eq!(head, "acme:submit:sha256:00");
        assert_eq!(a.inputs, ["gs://b/acme/", "file:///d/acme/"]);
        assert_eq!(a.outputs, ["s3://o/acme/"]);
        assert_eq!(a.webhook_secrets, ["whsec_x"]);
        assert!(!format!("{a:?}").contains("whsec_x"));
        let (head, a) = split_entry("acme:read:0123456789abcdef").unwrap();
        assert_eq!(head, "acme:read:0123456789abcdef");
        assert!(a.inputs.is_empty() && a.webhook_secrets.is_empty());
        let e = split_entry("a:read:k inn=x").unwrap_err();
        assert!(e.contains("unknown") && !e.contains("inn"), "{e}");
        let e = split_entry("a:read:0123456789 abcdef0123").unwrap_err();
        assert!(e.contains("whitespace") && !e.contains("abcdef"), "{e}");
        assert!(
            split_entry("a:read:k out=")
                .unwrap_err()
                .contains("no value")
        );
    }

    #[test]
    fn webhook_secrets_are_grouped_by_tenant() {
        let m = webhook_secrets([
            ("1".to_owned(), "a:read:k webhook-secret=s1"),
            ("2".to_owned(), "# comment"),
            ("3".to_owned(), "a:submit:k2 webhook-secret=s2"),
            ("4".to_owned(), "b:read:k3"),
        ])
        .unwrap();
        assert_eq!(m["a"], ["s1", "s2"]);
        assert!(!m.contains_key("b"));
        assert!(
            webhook_secrets([("line 9".to_owned(), "a:read:k bogus=1")])
                .unwrap_err()
                .starts_with("line 9")
        );
    }
}
