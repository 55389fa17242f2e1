//! Kafka helpers for tests: topics made fresh per test, so tests never see each other's data.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;

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
        .set("fetch.wait.max.ms", "10");
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
