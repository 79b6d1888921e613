//! The node list of a clustered broker: one AMQP URL per node, given as a
//! comma-separated list, and URLs made fit for logs.

/// The URLs of a comma-separated list (one per cluster node).
pub fn split_urls(urls: &str) -> Vec<String> {
    urls.split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The URL without its password, for logs.
pub(super) fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}{}", &url[..scheme + 3], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_lists_split_and_redact() {
        assert_eq!(
            split_urls(" amqp://a:5672/%2f, ,amqp://b/%2f,"),
            ["amqp://a:5672/%2f", "amqp://b/%2f"]
        );
        assert_eq!(split_urls("amqp://a/%2f"), ["amqp://a/%2f"]);
        assert_eq!(
            redacted("amqp://guest:pw@h1:5672/%2f"),
            "amqp://h1:5672/%2f"
        );
        assert_eq!(redacted("amqp://h1/%2f"), "amqp://h1/%2f");
    }
}
