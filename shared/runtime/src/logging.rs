//! The tracing subscriber every binary installs: text or JSON lines.

/// Installs the global tracing subscriber: human-readable text or one JSON
/// object per line; levels from `RUST_LOG` (default `info`).
pub fn init(format: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let result = if format.eq_ignore_ascii_case("json") {
        builder.json().with_current_span(true).try_init()
    } else {
        builder.try_init()
    };
    // A second init (tests) keeps the first subscriber.
    let _ = result;
}
