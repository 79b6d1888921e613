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
use std::sync::Arc;

use crate::fetch::FetchError;
use crate::fetch::fence::{Access, FenceError, StorageFence};

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

/// Per tenant, what its key entries grant beyond authentication: the
/// storage fence and the webhook signing secrets, merged over all of the
/// tenant's entries (several keys of one tenant, e.g. during a rotation,
/// share one grant).
///
/// Both processes hold one: the API fences a job when it is submitted, the
/// worker fences it again when it reads the input and writes the output, so
/// a prefix taken away from a tenant also holds for its jobs already queued
/// (and a message that did not come through the API is fenced too).
#[derive(Debug, Clone, Default)]
pub struct TenantDirectory {
    /// Whether key entries are configured at all: without them nothing is
    /// fenced and the global policy alone applies.
    keys_on: bool,
    grants: HashMap<String, Grant>,
}

#[derive(Debug, Clone, Default)]
struct Grant {
    fence: Arc<StorageFence>,
    webhook_secrets: Vec<String>,
}

impl TenantDirectory {
    /// No key entries: no fences, no per-tenant webhook secrets.
    pub fn off() -> Self {
        Self::default()
    }

    /// Key entries are on; each item is one entry's tenant and attributes.
    pub fn new(
        entries: impl IntoIterator<Item = (String, TenantAttributes)>,
    ) -> Result<Self, FenceError> {
        let mut merged: HashMap<String, TenantAttributes> = HashMap::new();
        for (tenant, attrs) in entries {
            let m = merged.entry(tenant).or_default();
            m.inputs.extend(attrs.inputs);
            m.outputs.extend(attrs.outputs);
            m.webhook_secrets.extend(attrs.webhook_secrets);
        }
        let mut grants = HashMap::with_capacity(merged.len());
        for (tenant, attrs) in merged {
            let fence = Arc::new(attrs.fence()?);
            grants.insert(
                tenant,
                Grant {
                    fence,
                    webhook_secrets: attrs.webhook_secrets,
                },
            );
        }
        Ok(TenantDirectory {
            keys_on: true,
            grants,
        })
    }

    /// Whether key entries are configured.
    pub fn keys_on(&self) -> bool {
        self.keys_on
    }

    /// The storage fence for the jobs of `owner`: `None` means no per-tenant
    /// fence (keys off, or a tenant without a key entry — jobs made by
    /// operator-defined event rules); with keys on, a job without an owner
    /// gets a closed fence. The global fetch policy applies either way.
    pub fn fence_for(&self, owner: Option<&str>) -> Option<Arc<StorageFence>> {
        if !self.keys_on {
            return None;
        }
        match owner {
            None => Some(Arc::new(StorageFence::default())),
            Some(owner) => self.grants.get(owner).map(|g| g.fence.clone()),
        }
    }

    /// Refuses a reference outside `owner`'s fence (`FetchError::Forbidden`,
    /// naming the reference and the fence).
    pub fn check(&self, owner: Option<&str>, access: Access, uri: &str) -> Result<(), FetchError> {
        match self.fence_for(owner) {
            Some(f) => f.check(access, uri),
            None => Ok(()),
        }
    }

    /// Whether jobs of `owner` may ask for webhooks: with keys on, only when
    /// the tenant's entries carry a `webhook-secret=` (its notifications are
    /// signed with that, never with the global secret); with keys off, when
    /// the global secrets (`global`) are set.
    pub fn webhooks_allowed(&self, owner: Option<&str>, global: bool) -> bool {
        match (self.keys_on, owner) {
            (false, _) => global,
            (true, Some(owner)) => self
                .grants
                .get(owner)
                .is_some_and(|g| !g.webhook_secrets.is_empty()),
            (true, None) => false,
        }
    }

    /// Every tenant's webhook signing secrets (tenants without any are left
    /// out), for the webhook dispatcher.
    pub fn webhook_secrets(&self) -> HashMap<String, Vec<String>> {
        self.grants
            .iter()
            .filter(|(_, g)| !g.webhook_secrets.is_empty())
            .map(|(t, g)| (t.clone(), g.webhook_secrets.clone()))
            .collect()
    }
}

/// The tenant directory of these key entries (the tenant is the entry's
/// text before the first `:`). Blank entries and `#` comments are skipped;
/// none left means keys are off. Errors name the entry's origin, never its
/// content.
pub fn directory<'a>(
    entries: impl IntoIterator<Item = (String, &'a str)>,
) -> Result<TenantDirectory, String> {
    let mut parsed = Vec::new();
    for (origin, entry) in entries {
        let entry = entry.trim();
        if entry.is_empty() || entry.starts_with('#') {
            continue;
        }
        let (head, attrs) = split_entry(entry).map_err(|e| format!("{origin}: {e}"))?;
        let tenant = head.split(':').next().unwrap_or_default();
        attrs.fence().map_err(|e| format!("{origin}: {e}"))?;
        parsed.push((tenant.to_owned(), attrs));
    }
    if parsed.is_empty() {
        return Ok(TenantDirectory::off());
    }
    TenantDirectory::new(parsed).map_err(|e| e.to_string())
}

/// The worker's view of the API key entries: it reads them for the
/// tenants' attributes only — storage fences and `webhook-secret=`s (it
/// authenticates nobody). Same options and variables as the API's, so one
/// secret store serves both; give the worker entries with `sha256:` digests
/// instead of keys.
#[derive(Clone, Default, clap::Args, serde::Serialize, serde::Deserialize)]
pub struct TenantKeysConfig {
    /// API key entries (`tenant:scopes:secret [in=…] [out=…]
    /// [webhook-secret=whsec_…]`, comma-separated), read for each tenant's
    /// storage fence and webhook signing secrets; the same entries as the
    /// API's (none: no per-tenant fences).
    #[arg(
        long,
        env = "INFERQ_API_KEYS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    #[serde(default)]
    pub api_keys: Vec<String>,
    /// File of API key entries, one per line (as for inferq-api), read for
    /// each tenant's storage fence and webhook signing secrets.
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
    /// Every tenant's fence and webhook secrets from the entries and the file.
    pub fn directory(&self) -> Result<TenantDirectory, TenantKeysError> {
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
        directory(entries.iter().map(|(o, e)| (o.clone(), e.as_str())))
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
    fn a_directory_groups_grants_by_tenant() {
        let d = directory([
            ("1".to_owned(), "a:read:k webhook-secret=s1 in=gs://b/a/"),
            ("2".to_owned(), "# comment"),
            (
                "3".to_owned(),
                "a:submit:k2 webhook-secret=s2 out=gs://o/a/",
            ),
            ("4".to_owned(), "b:read:k3"),
        ])
        .unwrap();
        assert!(d.keys_on());
        let m = d.webhook_secrets();
        assert_eq!(m["a"], ["s1", "s2"]);
        assert!(!m.contains_key("b"));
        assert!(d.webhooks_allowed(Some("a"), false));
        assert!(!d.webhooks_allowed(Some("b"), true));
        assert!(!d.webhooks_allowed(None, true));
        // Both of a's entries make one fence.
        assert!(d.check(Some("a"), Access::Read, "gs://b/a/x.jpg").is_ok());
        assert!(d.check(Some("a"), Access::Write, "gs://o/a/r/").is_ok());
        assert!(
            d.check(Some("a"), Access::Read, "gs://b/other/x.jpg")
                .is_err()
        );
        // b has a key but no prefixes: closed. No owner: closed. A tenant
        // without a key (an event rule's service tenant): global policy.
        assert!(d.check(Some("b"), Access::Read, "gs://b/a/x.jpg").is_err());
        assert!(d.check(None, Access::Read, "gs://b/a/x.jpg").is_err());
        assert!(
            d.check(Some("pubsub"), Access::Read, "gs://b/a/x.jpg")
                .is_ok()
        );
        assert!(
            directory([("line 9".to_owned(), "a:read:k bogus=1")])
                .unwrap_err()
                .starts_with("line 9")
        );
        assert!(
            directory([("line 3".to_owned(), "a:read:k in=gs://b/../x/")])
                .unwrap_err()
                .starts_with("line 3")
        );
    }

    #[test]
    fn without_entries_nothing_is_fenced() {
        let d = directory([("1".to_owned(), "  "), ("2".to_owned(), "# only a comment")]).unwrap();
        assert!(!d.keys_on());
        assert!(d.check(None, Access::Write, "gs://any/where/").is_ok());
        assert!(d.webhooks_allowed(None, true) && !d.webhooks_allowed(Some("a"), false));
    }
}
