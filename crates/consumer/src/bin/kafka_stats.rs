//! `kafka-stats`: the broker's topics with, per partition, start and end offsets, the consumer
//! group's committed offset and its lag. Reads only; never joins the group.

// A command-line report: its output is the point.
#![allow(clippy::print_stdout)]

use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use common::kafka::KafkaArgs;
use consumer::lag;
use rdkafka::consumer::BaseConsumer;

/// Topics, partitions, end offsets, committed offsets and lag of a consumer group.
#[derive(Debug, Parser)]
#[command(name = "kafka-stats", version)]
struct Args {
    #[command(flatten)]
    kafka: KafkaArgs,
    #[arg(long, env = "CONSUMER_GROUP", default_value = common::naming::DEFAULT_CONSUMER_GROUP)]
    group: String,
    /// Only these topics (repeatable; default: every topic but the broker's own `__*`).
    #[arg(long = "topic")]
    topics: Vec<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// How long to wait for the broker.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    timeout: Duration,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config = args
        .kafka
        .client_config(&[("group.id", &args.group), ("enable.auto.commit", "false")])?;
    let consumer: BaseConsumer = args
        .kafka
        .properties()?
        .scrubbed(config.create())
        .context("creating the Kafka client")?;
    let partitions = lag::topic_partitions(
        &consumer,
        |t| args.topics.is_empty() || args.topics.iter().any(|a| a == t),
        args.timeout,
    )
    .with_context(|| format!("reading topics from {}", args.kafka.brokers))?;
    let lags = if partitions.count() == 0 {
        Vec::new()
    } else {
        lag::partition_lag(&consumer, &partitions, args.timeout)
            .with_context(|| format!("reading offsets of group {}", args.group))?
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&lags)?);
    } else {
        print!("{}", lag::render_table(&args.group, &lags));
    }
    Ok(())
}
