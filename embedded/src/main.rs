//! `inferq`: the embedded single-process server (API + inference, in
//! memory) as `inferq serve` — or with server options and no command, as
//! before — and the command-line client of any InferQ API for `submit`,
//! `get`, `batch` and `models` (see `inferq_client`). `inferq --help` is the
//! client's overview, which lists `serve` with the others.

use std::ffi::OsString;

use anyhow::Context;
use inferq_embedded::EmbeddedConfig;

/// With the `mimalloc` feature the binary allocates through mimalloc, not
/// the system allocator (docs/performance.md, "Allocator").
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// What the first argument asks for.
enum Mode {
    /// Run the server on these arguments (program name first).
    Serve(Vec<OsString>),
    /// Hand the arguments to the client.
    Client(Vec<OsString>),
}

fn mode(mut args: Vec<OsString>) -> Mode {
    let first = args.get(1).and_then(|a| a.to_str()).map(str::to_owned);
    match first.as_deref() {
        Some("serve") => {
            args.remove(1);
            Mode::Serve(args)
        }
        Some("help" | "--help" | "-h" | "--version" | "-V") => Mode::Client(args),
        first if inferq_client::is_client_command(first) => Mode::Client(args),
        _ => Mode::Serve(args),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = match mode(std::env::args_os().collect()) {
        Mode::Client(args) => std::process::exit(inferq_client::run(args).await),
        Mode::Serve(args) => args,
    };
    let config: EmbeddedConfig = inferq_runtime::config::load_or_exit_from(args);
    inferq_runtime::logging::init(&config.log.log_format);
    let listener = tokio::net::TcpListener::bind(&config.http.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.http.listen))?;
    inferq_embedded::run(config, listener, inferq_runtime::signals::shutdown_signal())
        .await
        .context("inferq failed")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(args: &[&str]) -> Mode {
        mode(args.iter().map(OsString::from).collect())
    }

    #[test]
    fn serve_is_a_command_and_bare_options_still_serve() {
        let Mode::Serve(a) = of(&["inferq", "serve", "--listen", "x"]) else {
            panic!("serve")
        };
        assert_eq!(a, ["inferq", "--listen", "x"]);
        assert!(matches!(of(&["inferq", "--listen", "x"]), Mode::Serve(_)));
        assert!(matches!(of(&["inferq"]), Mode::Serve(_)));
        assert!(matches!(of(&["inferq", "--help"]), Mode::Client(_)));
        assert!(matches!(
            of(&["inferq", "submit", "a.png"]),
            Mode::Client(_)
        ));
    }
}
