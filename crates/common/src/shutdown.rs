//! Graceful shutdown: one pattern for every service.
//!
//! [`on_signals`] returns a [`CancellationToken`] cancelled at the first SIGINT or SIGTERM
//! (Kubernetes sends SIGTERM, then SIGKILL after the grace period). Every long-running task
//! holds a clone, stops taking new work when it is cancelled, finishes or hands back what it
//! has (flush a batch, commit offsets), and returns; `main` waits for the tasks with its own
//! deadline. A second signal does not wait: the process exits at once.

use tokio_util::sync::CancellationToken;

/// Spawns the signal watcher on the current Tokio runtime and returns its token.
pub fn on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let trigger = token.clone();
    tokio::spawn(async move {
        let first = next_signal().await;
        tracing::info!(
            signal = first,
            "shutdown requested; finishing in-flight work"
        );
        trigger.cancel();
        let second = next_signal().await;
        tracing::warn!(signal = second, "second signal; exiting now");
        std::process::exit(130);
    });
    token
}

/// Waits for SIGINT or SIGTERM and names it.
pub async fn next_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                _ = tokio::signal::ctrl_c() => "SIGINT",
                _ = term.recv() => "SIGTERM",
            },
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch SIGTERM; only SIGINT stops this process");
                let _ = tokio::signal::ctrl_c().await;
                "SIGINT"
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "SIGINT"
    }
}
