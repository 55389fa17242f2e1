//! The `producer` binary: configuration, logging, signals; the rest is the library.

use anyhow::Context;
use clap::Parser;
use producer::config::ProducerConfig;

fn main() -> anyhow::Result<()> {
    let config = ProducerConfig::parse();
    common::telemetry::init(&config.log)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let shutdown = common::shutdown::on_signals();
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let result = producer::app::run(config, listener, shutdown).await;
        if let Err(e) = &result {
            tracing::error!(error = format!("{e:#}"), "producer stopped");
        }
        result
    })
}
