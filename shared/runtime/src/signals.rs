//! Process signals and shutdown plumbing shared by every binary.
//!
//! Each long-running part of a process (HTTP server, consumers, watchers,
//! listeners) takes a shutdown *future*, so `main` wires them to SIGTERM and
//! tests decide themselves when a process drains: [`shutdown_signal`] is the
//! production trigger, [`stopped`] turns one `watch` flag into as many such
//! futures as there are parts.

/// Resolves on the first SIGTERM or Ctrl-C; a second one exits at once, so an
/// operator can always stop a process whose drain hangs.
pub async fn shutdown_signal() {
    wait_for_signal().await;
    tracing::info!("shutdown requested; draining (signal again to force exit)");
    tokio::spawn(async {
        wait_for_signal().await;
        tracing::warn!("second signal: exiting now");
        std::process::exit(130);
    });
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Fires on SIGHUP and, when `poll` is set, every `poll`: the triggers for
/// rescanning the model directory.
pub struct ReloadTrigger {
    #[cfg(unix)]
    hangup: Option<tokio::signal::unix::Signal>,
    interval: Option<tokio::time::Interval>,
}

impl ReloadTrigger {
    pub fn new(poll: Option<std::time::Duration>) -> Self {
        let interval = poll.filter(|p| !p.is_zero()).map(|p| {
            let mut i = tokio::time::interval_at(tokio::time::Instant::now() + p, p);
            i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            i
        });
        ReloadTrigger {
            #[cfg(unix)]
            hangup: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok(),
            interval,
        }
    }

    /// Waits for the next trigger; never returns if there is none.
    pub async fn next(&mut self) {
        let tick = async {
            match &mut self.interval {
                Some(i) => {
                    i.tick().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(unix)]
        let hup = async {
            match &mut self.hangup {
                Some(s) => {
                    s.recv().await;
                    tracing::info!("SIGHUP: rescanning models");
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let hup = std::future::pending::<()>();
        tokio::select! {
            _ = tick => {}
            _ = hup => {}
        }
    }
}

/// Resolves once the flag turns true (or its sender is gone): one shutdown
/// signal fanned out to every part of a process.
pub async fn stopped(mut rx: tokio::sync::watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// The model directory's poll period from the option (seconds; 0 or less
/// turns polling off and leaves only SIGHUP).
pub fn poll_interval(secs: f64) -> Option<std::time::Duration> {
    (secs > 0.0 && secs.is_finite()).then(|| std::time::Duration::from_secs_f64(secs))
}
