//! What the benchmarks that run the whole stack share: where its servers are, unique names for
//! each run's topics and groups, and where the service binaries are.

use std::path::PathBuf;

use anyhow::Context;

/// The native stack's servers (scripts/bench.sh sets these from scripts/lib/env.sh).
#[derive(Debug, clap::Args)]
pub struct StackArgs {
    #[arg(long, env = "VP_KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    pub brokers: String,
    #[arg(long, env = "VP_S3_ENDPOINT", default_value = "http://127.0.0.1:4566")]
    pub s3_endpoint: String,
    /// An existing bucket to write to.
    #[arg(long, default_value = "video-pipeline-results")]
    pub bucket: String,
    #[arg(long, env = "VP_RTSP_BASE", default_value = "rtsp://127.0.0.1:8554")]
    pub rtsp_base: String,
}

/// A name no earlier run used, so runs never read each other's messages or offsets.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// The release binaries of the services, built beside this one.
pub fn service_dir() -> anyhow::Result<PathBuf> {
    Ok(std::env::current_exe()?
        .parent()
        .context("bench has a directory")?
        .to_path_buf())
}
