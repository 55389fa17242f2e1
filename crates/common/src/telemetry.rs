//! Logging setup shared by the services: structured JSON lines by default (what log shippers
//! and `kubectl logs | jq` want), human-readable with `--log-format pretty`.
//!
//! The level filter comes from `RUST_LOG` (default `info`). Fields that identify the work, such
//! as `stream_id`, `batch_seq`, `partition` and `offset`, are set on spans by the services, and
//! JSON lines carry the fields of the current span.

use clap::{Args, ValueEnum};
use tracing_subscriber::EnvFilter;

/// Output format of the logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum LogFormat {
    #[default]
    Json,
    Pretty,
}

/// Logging flags, flattened into each service's config.
#[derive(Debug, Clone, Args)]
pub struct LogArgs {
    /// Log format: `json` (one object per line) or `pretty`.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,
    /// Level filter in `tracing` syntax, e.g. `info` or `info,rdkafka=warn`.
    #[arg(long = "log-level", env = "RUST_LOG", default_value = "info")]
    pub log_filter: String,
}

/// Installs the global subscriber. Call once, first thing in `main`.
pub fn init(args: &LogArgs) -> Result<(), TelemetryError> {
    let filter = EnvFilter::try_new(&args.log_filter)
        .map_err(|e| TelemetryError::Filter(args.log_filter.clone(), e.to_string()))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match args.log_format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
    result.map_err(|e| TelemetryError::AlreadySet(e.to_string()))
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("invalid log filter {0:?}: {1}")]
    Filter(String, String),
    #[error("logging was already initialised: {0}")]
    AlreadySet(String),
}
