//! The `auth` option group: whether the API requires keys, and the keys.
//!
//! Written like the groups in [`inferq_runtime::config`] (one definition gives the
//! flag, the `INFERQ_*` variable, the file key and the `--help` text) so the
//! API and the embedded server can flatten it in. `auth` defaults to on here,
//! which is what the production `inferq-api` wants; the embedded `inferq`
//! overrides that default (see its config), because a laptop demo on
//! loopback should work without first minting a key.
//!
//! Keys come from `api_keys` (flag, `INFERQ_API_KEYS` or the config file)
//! and from `api_keys_file`; both are merged. Secrets are hashed as soon as
//! they are parsed, and neither this type's `Debug` nor any error message
//! shows one.

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::ApiKey;

/// API keys (`Authorization: Bearer <key>`), scopes and tenant isolation.
#[derive(Clone, clap::Args, Serialize, Deserialize)]
pub struct AuthConfig {
    /// Require an API key (`Authorization: Bearer <key>`) on every request
    /// except /healthz and /readyz. On by default for inferq-api, off by
    /// default for the embedded inferq. With it on, at least one key must be
    /// configured or the process refuses to start.
    #[arg(long, env = "INFERQ_AUTH", default_value_t = true, action = clap::ArgAction::Set)]
    pub auth: bool,
    /// API keys, comma-separated entries `tenant:scopes:secret`: `scopes` is
    /// `+`-separated from submit, read, admin (admin implies the others and
    /// sees every tenant's jobs); `secret` is the key (16 characters or more,
    /// e.g. from `openssl rand -hex 32`) or `sha256:<hex digest of the key>`.
    #[arg(
        long,
        env = "INFERQ_API_KEYS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    #[serde(default)]
    pub api_keys: Vec<KeyEntry>,
    /// File of API keys, one `tenant:scopes:secret` entry per line (same
    /// format as --api-keys); blank lines and lines starting with `#` are
    /// skipped. Used together with --api-keys.
    #[arg(long, env = "INFERQ_API_KEYS_FILE")]
    #[serde(default)]
    pub api_keys_file: Option<PathBuf>,
}

impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthConfig")
            .field("auth", &self.auth)
            .field("api_keys", &self.api_keys)
            .field("api_keys_file", &self.api_keys_file)
            .finish()
    }
}

/// One configured key entry as written (`tenant:scopes:secret`), not yet
/// validated: parsing happens in [`AuthConfig::keys`], so that a bad entry
/// is reported by position instead of by clap, which would echo the value.
#[derive(Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KeyEntry(String);

impl FromStr for KeyEntry {
    type Err = Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(KeyEntry(s.to_owned()))
    }
}

impl fmt::Debug for KeyEntry {
    /// Shows the tenant and scopes of a well-formed entry, never the secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = self.0.splitn(3, ':');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(tenant), Some(scopes), Some(_)) => write!(f, "\"{tenant}:{scopes}:<redacted>\""),
            _ => f.write_str("\"<redacted>\""),
        }
    }
}

/// Key configuration that cannot be used. No variant carries a secret.
#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    #[error("{origin}: {message}")]
    Entry { origin: String, message: String },
    #[error("cannot read the API key file {}: {source}", path.display())]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{origin} holds the same key as {first}")]
    Duplicate { origin: String, first: String },
    #[error(
        "authentication is on but no API keys are configured: set --api-keys \
         (INFERQ_API_KEYS) or --api-keys-file (INFERQ_API_KEYS_FILE), or turn \
         authentication off with --auth false"
    )]
    NoKeys,
}

impl AuthConfig {
    /// Authentication off and no keys (the embedded server's defaults).
    pub fn off() -> Self {
        AuthConfig {
            auth: false,
            api_keys: Vec::new(),
            api_keys_file: None,
        }
    }

    /// The configured keys, parsed and hashed; empty when authentication is
    /// off (the keys are then not even read). With authentication on, no
    /// keys is an error rather than an API that nobody, or everybody, can use.
    pub fn keys(&self) -> Result<Vec<ApiKey>, AuthConfigError> {
        if !self.auth {
            return Ok(Vec::new());
        }
        let mut entries: Vec<(String, ApiKey)> = Vec::new();
        for (i, KeyEntry(text)) in self.api_keys.iter().enumerate() {
            let origin = format!("api_keys entry {}", i + 1);
            entries.push(parse(origin, text)?);
        }
        if let Some(path) = &self.api_keys_file {
            entries.extend(read_key_file(path)?);
        }
        if entries.is_empty() {
            return Err(AuthConfigError::NoKeys);
        }
        // The same key twice would make its tenant ambiguous.
        let mut seen: HashMap<[u8; 32], &str> = HashMap::new();
        for (origin, key) in &entries {
            if let Some(first) = seen.insert(key.digest, origin.as_str()) {
                return Err(AuthConfigError::Duplicate {
                    origin: origin.clone(),
                    first: first.to_owned(),
                });
            }
        }
        Ok(entries.into_iter().map(|(_, key)| key).collect())
    }
}

fn parse(origin: String, text: &str) -> Result<(String, ApiKey), AuthConfigError> {
    match ApiKey::parse(text.trim()) {
        Ok(key) => Ok((origin, key)),
        Err(message) => Err(AuthConfigError::Entry { origin, message }),
    }
}

/// Reads a key file: one entry per line, `#` comments and blank lines skipped.
fn read_key_file(path: &Path) -> Result<Vec<(String, ApiKey)>, AuthConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| AuthConfigError::File {
        path: path.to_owned(),
        source,
    })?;
    warn_if_world_readable(path);
    text.lines()
        .enumerate()
        .filter(|(_, line)| {
            let line = line.trim();
            !line.is_empty() && !line.starts_with('#')
        })
        .map(|(n, line)| parse(format!("{} line {}", path.display(), n + 1), line))
        .collect()
}

#[cfg(unix)]
fn warn_if_world_readable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o004 != 0
    {
        tracing::warn!(path = %path.display(),
            "the API key file is readable by every user; chmod o-r it");
    }
}

#[cfg(not(unix))]
fn warn_if_world_readable(_: &Path) {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::auth::keys::{Scope, digest};
    use clap::{CommandFactory, Parser};

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbb";

    #[derive(Debug, Parser, Serialize, Deserialize)]
    struct Demo {
        #[arg(long)]
        #[serde(skip)]
        config: Option<PathBuf>,
        #[command(flatten)]
        #[serde(flatten)]
        auth: AuthConfig,
    }

    #[derive(Debug, Parser, Serialize, Deserialize)]
    #[command(mut_arg("auth", |a| a.default_value("false")))]
    struct OffByDefault {
        #[arg(long)]
        #[serde(skip)]
        config: Option<PathBuf>,
        #[command(flatten)]
        #[serde(flatten)]
        auth: AuthConfig,
    }

    fn temp(text: &str, ext: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("inferq-keys-{}{ext}", uuid::Uuid::new_v4()));
        std::fs::write(&p, text).unwrap();
        p
    }

    fn load<T: Parser + Serialize + serde::de::DeserializeOwned>(args: &[&str]) -> T {
        inferq_runtime::config::load(std::iter::once("demo").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn on_by_default_and_no_keys_is_an_error() {
        let d: Demo = load(&[]);
        assert!(d.auth.auth);
        assert!(matches!(d.auth.keys(), Err(AuthConfigError::NoKeys)));
        let off: Demo = load(&["--auth", "false"]);
        assert!(off.auth.keys().unwrap().is_empty());
    }

    #[test]
    fn a_binary_can_default_to_off() {
        let d: OffByDefault = load(&[]);
        assert!(!d.auth.auth);
        let on: OffByDefault = load(&["--auth", "true", "--api-keys", &format!("t:read:{A}")]);
        assert_eq!(on.auth.keys().unwrap().len(), 1);
    }

    #[test]
    fn inline_list_uses_commas() {
        let d: Demo = load(&[
            "--api-keys",
            &format!("acme:submit+read:{A}, ops:admin:{B}"),
        ]);
        let keys = d.auth.keys().unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0].tenant, "acme");
        assert_eq!(keys[1].tenant, "ops");
        assert!(keys[1].scopes.allows(Scope::Submit));
        assert_eq!(keys[1].digest, digest(B.as_bytes()));
    }

    #[test]
    fn file_with_comments_hashes_and_config_file_key() {
        let hex: String = digest(B.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let keys = temp(
            &format!(
                "# production keys\n\n  acme:read:{A}  \n# rotated 2024\nops:admin:sha256:{hex}\n"
            ),
            "",
        );
        let cfg = temp(
            &format!(
                "api_keys = [\"inline:submit:{}\"]\napi_keys_file = \"{}\"\n",
                "c".repeat(20),
                keys.display()
            ),
            ".toml",
        );
        let d: Demo = load(&["--config", cfg.to_str().unwrap()]);
        let parsed = d.auth.keys().unwrap();
        let tenants: Vec<&str> = parsed.iter().map(|k| k.tenant.as_str()).collect();
        assert_eq!(tenants, ["inline", "acme", "ops"]);
        assert_eq!(parsed[2].digest, digest(B.as_bytes()));
        std::fs::remove_file(keys).unwrap();
        std::fs::remove_file(cfg).unwrap();
    }

    #[test]
    fn bad_line_is_reported_by_number_without_the_secret() {
        let path = temp(&format!("# keys\nacme:read:{A}\n\nacme:write:{B}\n"), "");
        let d: Demo = load(&["--api-keys-file", path.to_str().unwrap()]);
        let err = d.auth.keys().unwrap_err().to_string();
        assert!(err.contains(" line 4: unknown scope `write`"), "{err}");
        assert!(!err.contains(B), "{err}");
        std::fs::remove_file(path).unwrap();

        let d: Demo = load(&["--api-keys", &format!("a:read:{A},b:read:tiny-key")]);
        let err = d.auth.keys().unwrap_err().to_string();
        assert!(err.starts_with("api_keys entry 2: "), "{err}");
        assert!(!err.contains("tiny-key"), "{err}");
    }

    #[test]
    fn missing_file_and_duplicate_keys_are_errors() {
        let d: Demo = load(&["--api-keys-file", "/nonexistent/inferq-keys"]);
        assert!(matches!(d.auth.keys(), Err(AuthConfigError::File { .. })));
        let d: Demo = load(&["--api-keys", &format!("a:read:{A},b:admin:{A}")]);
        let err = d.auth.keys().unwrap_err().to_string();
        assert_eq!(
            err,
            "api_keys entry 2 holds the same key as api_keys entry 1"
        );
    }

    #[test]
    fn debug_and_help_do_not_show_secrets() {
        let d: Demo = load(&["--api-keys", &format!("acme:read:{A},garbage{B}")]);
        let shown = format!("{d:?}");
        assert!(shown.contains("acme:read:<redacted>"), "{shown}");
        assert!(!shown.contains(A) && !shown.contains(B), "{shown}");

        // clap prints environment values in --help unless told not to.
        let help = Demo::command().render_long_help().to_string();
        assert!(help.contains("INFERQ_API_KEYS"), "{help}");
        let arg = Demo::command()
            .get_arguments()
            .find(|a| a.get_id() == "api_keys")
            .map(|a| a.is_hide_env_values_set());
        assert_eq!(arg, Some(true));
    }
}
