//! Kafka helpers for tests: topics made fresh per test, so tests never see each other's data.

use std::time::Duration;

use common::{FrameBatch, wire};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::{ClientConfig, Message};

/// A client config pointing at `brokers`.
pub fn client_config(brokers: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", brokers);
    config
}

/// A producer config that accepts batches up to the pipeline's message limit (librdkafka's own
/// default, ~1 MB, would refuse them before they leave the process).
pub fn producer_config(brokers: &str) -> ClientConfig {
    let mut config = client_config(brokers);
    config
        .set(
            "message.max.bytes",
            common::DEFAULT_MAX_MESSAGE_BYTES.to_string(),
        )
        .set("enable.idempotence", "true")
        .set("acks", "all");
    config
}

/// A manual-commit consumer config for `group` that reads batches up to the message limit.
pub fn consumer_config(brokers: &str, group: &str) -> ClientConfig {
    let max = common::DEFAULT_MAX_MESSAGE_BYTES;
    let mut config = client_config(brokers);
    config
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("max.partition.fetch.bytes", max.to_string())
        .set("fetch.max.bytes", (5 * max).to_string())
        .set("receive.message.max.bytes", (10 * max).to_string())
        // tansu sleeps half of this on every fetch; librdkafka's 500 ms default caps throughput
        .set("fetch.wait.max.ms", "10")
        // A reader subscribed just before the producer creates the topic would otherwise not
        // see it until the next metadata refresh, 5 minutes later (a flaky CI failure).
        .set("topic.metadata.refresh.interval.ms", "1000");
    config
}

/// Creates `name` with `partitions` partitions; an existing topic is an error.
pub async fn create_topic(brokers: &str, name: &str, partitions: i32) -> Result<(), String> {
    let admin: AdminClient<DefaultClientContext> = client_config(brokers)
        .create()
        .map_err(|e| format!("admin client: {e}"))?;
    let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = admin
        .create_topics([&topic], &opts)
        .await
        .map_err(|e| format!("create_topics: {e}"))?;
    for r in results {
        r.map_err(|(topic, code)| format!("create topic {topic}: {code}"))?;
    }
    Ok(())
}

/// End offset ("high watermark") of every partition of `topic`, by partition; empty when the
/// topic does not exist yet.
pub fn end_offsets(brokers: &str, topic: &str) -> Vec<(i32, i64)> {
    let consumer: BaseConsumer = client_config(brokers).create().expect("client");
    let Ok(metadata) = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)) else {
        return Vec::new();
    };
    let mut ends = Vec::new();
    for t in metadata.topics() {
        for p in t.partitions() {
            let (_, high) = consumer
                .fetch_watermarks(topic, p.id(), Duration::from_secs(10))
                .expect("watermarks");
            ends.push((p.id(), high));
        }
    }
    ends.sort_unstable();
    ends
}

/// Committed offsets of `group` on `partitions` of `topic` (0 where nothing was committed).
pub fn committed_offsets(brokers: &str, group: &str, topic: &str, partitions: &[i32]) -> Vec<i64> {
    let consumer: BaseConsumer = consumer_config(brokers, group).create().expect("client");
    let mut list = TopicPartitionList::new();
    for &p in partitions {
        list.add_partition(topic, p);
    }
    let committed = consumer
        .committed_offsets(list, Duration::from_secs(10))
        .expect("committed offsets");
    committed
        .elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(o) => o,
            _ => 0,
        })
        .collect()
}

/// A batch as read back from Kafka.
#[derive(Debug)]
pub struct Published {
    pub batch: FrameBatch,
    pub key: String,
    pub partition: i32,
    pub offset: i64,
}

/// Reads `topic` from the beginning until `enough` says so or `timeout` passes.
pub async fn read_topic(
    brokers: &str,
    topic: &str,
    timeout: Duration,
    mut enough: impl FnMut(&[Published]) -> bool,
) -> Vec<Published> {
    let group = crate::unique_name("testkit-reader");
    let consumer: StreamConsumer = consumer_config(brokers, &group).create().expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let deadline = tokio::time::Instant::now() + timeout;
    let mut seen = Vec::new();
    while !enough(&seen) {
        let message = match tokio::time::timeout_at(deadline, consumer.recv()).await {
            Err(_) => break,
            // The producer may not have created the topic yet.
            Ok(Err(e)) if e.to_string().contains("UnknownTopicOrPartition") => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            Ok(Err(e)) => panic!("consuming {topic}: {e}"),
            Ok(Ok(m)) => m,
        };
        let payload = message.payload().expect("a payload");
        let batch =
            wire::decode(payload).unwrap_or_else(|e| panic!("message does not decode: {e}"));
        seen.push(Published {
            batch,
            key: String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned(),
            partition: message.partition(),
            offset: message.offset(),
        });
    }
    seen
}
