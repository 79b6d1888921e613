//! Event rules: which storage objects become jobs, for which model, and
//! where their results go.
//!
//! A rule is one line of `key=value` pairs separated by commas, so that it
//! fits a command-line flag, an environment variable (rules separated by
//! `;`) and a config file alike:
//!
//! ```text
//! match=gs://photos-in/cats/,suffix=.jpg,content_type=image/,model=efficientnet-lite0,output=gs://photos-out/{name}.json
//! ```
//!
//! - `match` (required): a URI prefix — scheme, bucket and optionally the
//!   start of the object name (`gs://photos-in/`, `s3://bucket/uploads/`);
//! - `suffix`: the object name must end with it (e.g. `.jpg`);
//! - `content_type`: the object's content type must start with it (e.g.
//!   `image/`); objects whose event carries no content type pass;
//! - `model`, `version`, `top_k`: the job's options (default: the API's
//!   default model, its latest version);
//! - `output`: where the worker writes the result, a template with
//!   `{bucket}`, `{name}` (the object name) and `{relative}` (the name after
//!   the `match` prefix) — `gs://out/{name}.json` mirrors the input's
//!   folder hierarchy in another bucket.
//!
//! The first rule that matches wins; an object no rule matches is ignored.

use std::fmt;

/// One parsed rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRule {
    /// `scheme://bucket/` plus an optional name prefix.
    pub prefix: String,
    pub suffix: String,
    pub content_type: String,
    pub model: Option<String>,
    pub version: Option<u64>,
    pub top_k: Option<usize>,
    pub output: Option<String>,
}

/// A rule that cannot be used, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event rule `{rule}`: {reason}")]
pub struct RuleError {
    pub rule: String,
    pub reason: String,
}

/// The object an event names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRef<'a> {
    /// `gs` or `s3`.
    pub scheme: &'a str,
    pub bucket: &'a str,
    pub name: &'a str,
    pub content_type: Option<&'a str>,
}

impl ObjectRef<'_> {
    pub fn uri(&self) -> String {
        format!("{}://{}/{}", self.scheme, self.bucket, self.name)
    }
}

/// What a matching rule makes of an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobPlan {
    pub model: Option<String>,
    pub version: Option<u64>,
    pub top_k: Option<usize>,
    pub output_uri: Option<String>,
}

impl EventRule {
    /// Parses `key=value,key=value`.
    pub fn parse(text: &str) -> Result<EventRule, RuleError> {
        let fail = |reason: String| RuleError {
            rule: text.to_owned(),
            reason,
        };
        let mut rule = EventRule {
            prefix: String::new(),
            suffix: String::new(),
            content_type: String::new(),
            model: None,
            version: None,
            top_k: None,
            output: None,
        };
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| fail(format!("`{part}` is not key=value")))?;
            let value = value.trim().to_owned();
            match key.trim() {
                "match" => rule.prefix = value,
                "suffix" => rule.suffix = value,
                "content_type" => rule.content_type = value,
                "model" => rule.model = Some(value),
                "version" => {
                    rule.version = Some(
                        value
                            .parse()
                            .map_err(|_| fail(format!("version `{value}` is not a number")))?,
                    )
                }
                "top_k" => {
                    rule.top_k = Some(
                        value
                            .parse()
                            .map_err(|_| fail(format!("top_k `{value}` is not a number")))?,
                    )
                }
                "output" => rule.output = Some(value),
                other => return Err(fail(format!("unknown key `{other}`"))),
            }
        }
        let (scheme, rest) = rule
            .prefix
            .split_once("://")
            .ok_or_else(|| fail("`match` must be a gs:// or s3:// prefix".into()))?;
        let bucket = rest.split('/').next().unwrap_or("");
        if !matches!(scheme, "gs" | "s3") || bucket.is_empty() {
            return Err(fail(
                "`match` must name a scheme (gs or s3) and a bucket, e.g. gs://photos/".into(),
            ));
        }
        if !rest.contains('/') {
            // `gs://bucket` means the whole bucket, not buckets starting so.
            rule.prefix.push('/');
        }
        if let Some(out) = &rule.output {
            let probe = render(out, "bucket", "name", "relative");
            if !probe.contains("://") {
                return Err(fail(format!("output `{out}` is not a storage URI")));
            }
        }
        Ok(rule)
    }

    /// Parses every rule; the first bad one is the error.
    pub fn parse_all(rules: &[String]) -> Result<Vec<EventRule>, RuleError> {
        rules.iter().map(|r| EventRule::parse(r)).collect()
    }

    fn matches(&self, object: &ObjectRef, uri: &str) -> bool {
        uri.starts_with(&self.prefix)
            && object.name.ends_with(&self.suffix)
            && object
                .content_type
                .is_none_or(|t| t.starts_with(&self.content_type))
    }

    fn plan(&self, object: &ObjectRef, uri: &str) -> JobPlan {
        let relative = &uri[self.prefix.len()..];
        JobPlan {
            model: self.model.clone(),
            version: self.version,
            top_k: self.top_k,
            output_uri: self
                .output
                .as_deref()
                .map(|t| render(t, object.bucket, object.name, relative)),
        }
    }
}

fn render(template: &str, bucket: &str, name: &str, relative: &str) -> String {
    template
        .replace("{bucket}", bucket)
        .replace("{name}", name)
        .replace("{relative}", relative)
}

/// The plan of the first rule matching `object`, if any.
pub fn plan(rules: &[EventRule], object: &ObjectRef) -> Option<JobPlan> {
    let uri = object.uri();
    rules
        .iter()
        .find(|r| r.matches(object, &uri))
        .map(|r| r.plan(object, &uri))
}

impl fmt::Display for EventRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "match={}", self.prefix)?;
        if !self.suffix.is_empty() {
            write!(f, ",suffix={}", self.suffix)?;
        }
        if !self.content_type.is_empty() {
            write!(f, ",content_type={}", self.content_type)?;
        }
        if let Some(m) = &self.model {
            write!(f, ",model={m}")?;
        }
        if let Some(o) = &self.output {
            write!(f, ",output={o}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object<'a>(scheme: &'a str, bucket: &'a str, name: &'a str) -> ObjectRef<'a> {
        ObjectRef {
            scheme,
            bucket,
            name,
            content_type: Some("image/jpeg"),
        }
    }

    #[test]
    fn first_matching_rule_wins_and_the_output_mirrors_the_path() {
        let rules = EventRule::parse_all(&[
            "match=gs://in/cats/,suffix=.png,model=tiny-mean".into(),
            "match=gs://in/,suffix=.jpg,content_type=image/,model=efficientnet-lite0,version=1,top_k=3,output=gs://out/{name}.json".into(),
        ])
        .unwrap();
        let p = plan(&rules, &object("gs", "in", "cats/2026/a.jpg")).unwrap();
        assert_eq!(p.model.as_deref(), Some("efficientnet-lite0"));
        assert_eq!((p.version, p.top_k), (Some(1), Some(3)));
        assert_eq!(
            p.output_uri.as_deref(),
            Some("gs://out/cats/2026/a.jpg.json")
        );
        let p = plan(&rules, &object("gs", "in", "cats/b.png")).unwrap();
        assert_eq!(p.model.as_deref(), Some("tiny-mean"));
        assert_eq!(p.output_uri, None);
        // Other bucket, other scheme, other suffix, other content type.
        assert_eq!(plan(&rules, &object("gs", "in2", "a.jpg")), None);
        assert_eq!(plan(&rules, &object("s3", "in", "a.jpg")), None);
        assert_eq!(plan(&rules, &object("gs", "in", "a.txt")), None);
        let text = ObjectRef {
            content_type: Some("text/plain"),
            ..object("gs", "in", "a.jpg")
        };
        assert_eq!(plan(&rules, &text), None);
    }

    #[test]
    fn a_bare_bucket_matches_only_that_bucket_and_relative_paths_work() {
        let rules =
            EventRule::parse_all(&["match=s3://up,output=s3://done/{relative}.json".into()])
                .unwrap();
        assert_eq!(rules[0].prefix, "s3://up/");
        assert_eq!(plan(&rules, &object("s3", "upload", "a.jpg")), None);
        let p = plan(&rules, &object("s3", "up", "x/y.jpg")).unwrap();
        assert_eq!(p.output_uri.as_deref(), Some("s3://done/x/y.jpg.json"));
        let rules = EventRule::parse_all(&[
            "match=gs://in/raw/,output=gs://{bucket}-out/{relative}.json".into(),
        ])
        .unwrap();
        let p = plan(&rules, &object("gs", "in", "raw/a/b.jpg")).unwrap();
        assert_eq!(p.output_uri.as_deref(), Some("gs://in-out/a/b.jpg.json"));
    }

    #[test]
    fn bad_rules_are_refused_with_the_reason() {
        for (rule, reason) in [
            ("suffix=.jpg", "match"),
            ("match=http://x/", "scheme"),
            ("match=gs://", "bucket"),
            ("match=gs://a/,colour=red", "unknown key `colour`"),
            ("match=gs://a/,version=one", "version"),
            ("match=gs://a/,nothing", "key=value"),
            ("match=gs://a/,output=/tmp/{name}", "storage URI"),
        ] {
            let err = EventRule::parse(rule).unwrap_err();
            assert!(err.to_string().contains(reason), "{rule}: {err}");
        }
    }
}
