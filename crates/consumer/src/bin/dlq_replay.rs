//! `dlq-replay`: the dead letters of a topic, listed with why they failed, and chosen ones
//! re-published to the topic they came from, once each per run (see `consumer::replay`).
//!
//! ```text
//! dlq-replay list   [--topic video-frames.dlq] [--reason R] [--stream S] [--from-offset N] [--to-offset M] [--json]
//! dlq-replay replay [--topic video-frames.dlq] (--reason R | --stream S | --from-offset N | --to-offset M | --all) [--dry-run]
//! ```

// A command-line tool: its output is the point.
#![allow(clippy::print_stdout)]

use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use common::kafka::KafkaArgs;
use consumer::replay::{self, Selection};

/// List dead letters, or re-publish chosen ones to their source topic.
#[derive(Debug, Parser)]
#[command(name = "dlq-replay", version)]
struct Args {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    kafka: KafkaArgs,
    /// The dead-letter topic (the consumer's `DLQ_TOPIC`; default: `video-frames.dlq`, the
    /// default topic's).
    #[arg(long, global = true)]
    topic: Option<String>,
    /// Only letters with this `dlq-reason` (repeatable).
    #[arg(long = "reason", global = true)]
    reasons: Vec<String>,
    /// Only letters of this stream (the Kafka key; repeatable).
    #[arg(long = "stream", global = true)]
    streams: Vec<String>,
    /// First dead-letter offset, inclusive.
    #[arg(long, global = true)]
    from_offset: Option<i64>,
    /// Last dead-letter offset, exclusive.
    #[arg(long, global = true)]
    to_offset: Option<i64>,
    /// How long to wait for the broker.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration, global = true)]
    timeout: Duration,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the selected letters.
    List {
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Re-publish the selected letters to their source topics.
    Replay {
        /// Every letter, when no other condition is given (a guard against replaying all by
        /// accident).
        #[arg(long)]
        all: bool,
        /// Print what would be re-published, and publish nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dlq_topic = args
        .topic
        .clone()
        .unwrap_or_else(|| common::naming::dead_letter_topic(common::naming::DEFAULT_TOPIC));
    let properties = args.kafka.properties()?;
    let max = common::kafka::record_limit(common::DEFAULT_MAX_MESSAGE_BYTES).to_string();
    let reader = args.kafka.client_config(&[
        // Assigned partitions, never subscribed: the group is never joined or committed.
        ("group.id", "dlq-replay"),
        ("enable.auto.commit", "false"),
        ("enable.partition.eof", "false"),
        ("max.partition.fetch.bytes", &max),
        ("receive.message.max.bytes", "100000000"),
    ])?;
    let selection = Selection {
        reasons: args.reasons.clone(),
        streams: args.streams.clone(),
        from_offset: args.from_offset,
        to_offset: args.to_offset,
    };
    let (topic, timeout) = (dlq_topic.clone(), args.timeout);
    let chosen = selection.clone();
    let letters =
        tokio::task::spawn_blocking(move || replay::read(&reader, &topic, &chosen, timeout))
            .await
            .context("reading thread")?
            .map_err(|e| anyhow::anyhow!(properties.scrub(&e.to_string())))
            .with_context(|| format!("reading {dlq_topic} from {}", args.kafka.brokers))?;

    match args.command {
        Command::List { json: true } => println!("{}", serde_json::to_string_pretty(&letters)?),
        Command::List { json: false } => print!("{}", replay::render_table(&letters)),
        Command::Replay { all, dry_run } => {
            let narrowed = !selection.reasons.is_empty()
                || !selection.streams.is_empty()
                || selection.from_offset.is_some()
                || selection.to_offset.is_some();
            if !narrowed && !all {
                bail!(
                    "say which letters to replay (--reason, --stream, --from-offset, --to-offset), or --all"
                );
            }
            if dry_run {
                print!("{}", replay::render_table(&letters));
                println!("dry run: nothing re-published");
                return Ok(());
            }
            let writer = args.kafka.client_config(&[
                ("enable.idempotence", "true"),
                ("acks", "all"),
                ("message.max.bytes", &max),
            ])?;
            let sent = replay::republish(&writer, &dlq_topic, &letters)
                .await
                .map_err(|e| anyhow::anyhow!(properties.scrub(&e.to_string())))?;
            println!("re-published {sent} letters from {dlq_topic}");
        }
    }
    Ok(())
}
