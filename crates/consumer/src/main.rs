//! The `consumer` binary: configuration, logging, signals; the rest is the library.

use anyhow::Context;
use clap::Parser;
use consumer::config::ConsumerConfig;

fn main() -> anyhow::Result<()> {
    let config = ConsumerConfig::parse();
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
        let result = consumer::app::run(config, listener, shutdown).await;
        if let Err(e) = &result {
            tracing::error!(error = format!("{e:#}"), "consumer stopped");
        }
        result
    })
}
