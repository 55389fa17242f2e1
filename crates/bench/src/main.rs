//! `bench`: measurements that print figures and compare against a limit measured in the same
//! run on the same machine, never against a number from elsewhere.
//!
//! `bench inference`: raw ONNX Runtime `session.run` on preprocessed tensors (the limit) and
//! the real service binary over HTTP with 25-frame binary `FrameBatch` requests, on the same
//! model and thread count, in alternating rounds; prints fps, the median ratio and its spread,
//! where the difference goes, request latency percentiles, the service's CPU and peak RSS, and
//! writes the figures as JSON.
//!
//! `bench producer`: ffmpeg's single-thread decode of a file (the reference), then the producer
//! binary publishing the same file as fast as possible, then one live 720p camera's CPU cost.
//!
//! `bench consumer`: the consumer's own CPU per frame (annotate, encode, upload) over a backlog
//! through the real inference service and S3 API, and a live camera's capture-to-S3 latency.
//!
//! `bench pipeline`: one live RTSP stream through all three services into S3, saturated, against
//! raw `session.run` on the same frames; CPU and peak RSS per service; latency at a sustainable rate.
//!
//! `bench drills`: the pipeline on servers of its own while one part fails mid-stream (see
//! `drills.rs`); frames published, stored, lost, stored twice, time to recover.
//!
//! `bench soak`: four live streams for `--minutes`; RSS and CPU of every service every 10 s,
//! failing on more than 10% growth after the warm-up.

// The report is this binary's output: stdout is the point, progress goes to stderr.
#![allow(clippy::print_stdout)]

mod consumer_bench;
mod drills;
mod inference_bench;
mod pipeline_bench;
mod proc_stats;
mod producer_bench;
mod soak;
mod stack;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "bench")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Raw session.run vs the inference service over HTTP.
    Inference(inference_bench::Args),
    /// The producer's decode + sample + encode + publish throughput and CPU per camera, next
    /// to ffmpeg's single-thread decode of the same file.
    Producer(producer_bench::Args),
    /// The consumer's annotate + encode + upload cost per core over a backlog, and the
    /// capture-to-S3 latency histogram of a live camera.
    Consumer(consumer_bench::Args),
    /// One RTSP stream end to end against the model's limit, per-service CPU and memory, and
    /// capture-to-S3 latency.
    Pipeline(pipeline_bench::Args),
    /// Fault drills: the pipeline while one part fails mid-stream; frames lost, stored twice,
    /// time to recover.
    Drills(drills::Args),
    /// Four live streams for minutes; RSS and CPU of every service sampled, growth checked.
    Soak(soak::Args),
}

/// Writes a benchmark's figures as pretty JSON, creating the directory (bench-report.py and the
/// README read these files).
fn write_report(path: &std::path::Path, report: &serde_json::Value) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, serde_json::to_string_pretty(report)?)?;
    eprintln!("figures written to {}", path.display());
    Ok(())
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Inference(args) => inference_bench::run(args),
        Command::Producer(args) => producer_bench::run(args),
        Command::Consumer(args) => consumer_bench::run(args),
        Command::Pipeline(args) => pipeline_bench::run(args),
        Command::Drills(args) => drills::run(args),
        Command::Soak(args) => soak::run(args),
    }
}
