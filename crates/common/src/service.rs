//! The skeleton every service binary shares, so that each `main.rs` is one call and each
//! service's `run` starts from the same parts.
//!
//! [`main`] parses the service's configuration (flags and environment), starts logging, builds
//! the Tokio runtime, watches SIGINT/SIGTERM ([`crate::shutdown`]), binds the listener and
//! hands all of it to the service's `run`. A setting that does not parse, a log filter that
//! does not compile or an address that cannot be bound stops the process before any work, with
//! exit code 2 (clap) or 1; an error `run` returns is logged as the service's last line and
//! exits 1; a clean stop exits 0.
//!
//! [`OpsServer`] serves `/health`, `/ready` and `/metrics` for a service whose work is not
//! HTTP (the producer, the consumer), with the same connection guards as every listener
//! ([`crate::http`]).

use std::future::Future;
use std::net::SocketAddr;

use anyhow::Context;
use prometheus::Registry;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::http::{self, HttpArgs, HttpMetrics};
use crate::ops::{self, Readiness};
use crate::telemetry::LogArgs;

/// What the skeleton needs of a service's configuration.
pub trait ServiceConfig: clap::Parser {
    /// The service's name in its last log line ("consumer stopped").
    const NAME: &'static str;
    fn log(&self) -> &LogArgs;
    /// The address of the service's one listener (its API, or its ops endpoints).
    fn listen(&self) -> SocketAddr;
}

/// The whole of a service's `main`: configuration, logging, runtime, signals, listener, then
/// `run` until it returns.
pub fn main<C, F, Fut>(run: F) -> anyhow::Result<()>
where
    C: ServiceConfig,
    F: FnOnce(C, TcpListener, CancellationToken) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let config = C::parse();
    crate::telemetry::init(config.log())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let shutdown = crate::shutdown::on_signals();
        let address = config.listen();
        let listener = TcpListener::bind(address)
            .await
            .with_context(|| format!("cannot listen on {address}"))?;
        let result = run(config, listener, shutdown).await;
        if let Err(e) = &result {
            tracing::error!(error = format!("{e:#}"), "{} stopped", C::NAME);
        }
        result
    })
}

/// `/health`, `/ready` and `/metrics` of `registry` and `readiness`, served on `listener` from
/// [`OpsServer::start`] to [`OpsServer::stop`].
#[derive(Debug)]
pub struct OpsServer {
    stop: CancellationToken,
    task: JoinHandle<std::io::Result<()>>,
}

impl OpsServer {
    /// Starts serving; the HTTP server's own metrics go to `registry` too.
    pub fn start(
        listener: TcpListener,
        registry: &Registry,
        readiness: &Readiness,
        limits: &HttpArgs,
    ) -> prometheus::Result<Self> {
        let metrics = HttpMetrics::register(registry)?;
        let stop = CancellationToken::new();
        let task = tokio::spawn(http::serve(
            listener,
            ops::router(registry.clone(), readiness.clone()),
            limits.clone(),
            metrics,
            stop.clone(),
        ));
        Ok(Self { stop, task })
    }

    /// Stops serving and waits for the server's connections to close.
    pub async fn stop(self) {
        self.stop.cancel();
        match self.task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "the ops server failed"),
            Err(e) => tracing::warn!(error = %e, "the ops server task failed"),
        }
    }
}
