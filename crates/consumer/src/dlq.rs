//! The dead-letter topic: where a message goes when it can never be processed (it does not
//! decode as a `FrameBatch`, or the inference service refuses it as invalid). The original key
//! and bytes are kept, with headers saying why and where it came from:
//! `dlq-reason`, `dlq-error`, `dlq-source-topic`, `dlq-source-partition`, `dlq-source-offset`,
//! `dlq-failed-at`. Only after the dead-letter write is acknowledged is the offset committed;
//! until then it is retried, so nothing is skipped silently. The topic is created on first use
//! when missing (1 partition, `max.message.bytes` for the largest batch).

use std::time::Duration;

use common::backoff::Backoff;
use common::redact::KafkaProperties;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use tokio_util::sync::CancellationToken;

use crate::metrics::ConsumerMetrics;

#[derive(Clone)]
pub struct DeadLetters {
    producer: FutureProducer,
    /// For creating dead-letter topics on first use (brokers may not auto-create topics).
    admin: Arc<AdminClient<DefaultClientContext>>,
    created: Arc<Mutex<HashSet<String>>>,
    max_message_bytes: usize,
    replication: i32,
    /// Fixed topic, or `None` for `<source topic>.dlq`.
    topic: Option<String>,
    retry_max_delay: Duration,
    metrics: ConsumerMetrics,
}

impl std::fmt::Debug for DeadLetters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadLetters")
            .field("topic", &self.topic)
            .finish()
    }
}

/// A message that cannot be processed, and why.
#[derive(Debug)]
pub struct DeadLetter<'a> {
    pub reason: &'static str,
    pub error: String,
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<&'a [u8]>,
    pub payload: &'a [u8],
}

impl DeadLetters {
    pub fn new(
        mut config: ClientConfig,
        properties: &KafkaProperties,
        topic: Option<String>,
        max_message_bytes: usize,
        replication: i32,
        retry_max_delay: Duration,
        metrics: ConsumerMetrics,
    ) -> anyhow::Result<Self> {
        let admin = properties.scrubbed(config.create())?;
        let record_max = (max_message_bytes + 64 * 1024).to_string();
        config
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("message.max.bytes", &record_max);
        Ok(Self {
            producer: properties.scrubbed(config.create())?,
            admin: Arc::new(admin),
            created: Arc::default(),
            max_message_bytes,
            replication,
            topic,
            retry_max_delay,
            metrics,
        })
    }

    /// Creates `topic` (1 partition, TOPIC_REPLICATION replicas, room for the largest message)
    /// unless it exists.
    async fn ensure_topic(&self, topic: &str) -> Result<(), String> {
        if self
            .created
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(topic)
        {
            return Ok(());
        }
        let max = (self.max_message_bytes + 64 * 1024).to_string();
        let new = NewTopic::new(topic, 1, TopicReplication::Fixed(self.replication))
            .set("max.message.bytes", &max);
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        let results = self
            .admin
            .create_topics([&new], &options)
            .await
            .map_err(|e| e.to_string())?;
        for result in results {
            match result {
                Ok(_) => tracing::info!(topic, "dead-letter topic created"),
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((_, code)) => return Err(format!("creating {topic}: {code}")),
            }
        }
        self.created
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(topic.to_string());
        Ok(())
    }

    /// Writes `letter` to the dead-letter topic, retrying until acknowledged or `cancel`.
    pub async fn send(
        &self,
        letter: &DeadLetter<'_>,
        cancel: &CancellationToken,
    ) -> Result<(), ()> {
        let topic = self
            .topic
            .clone()
            .unwrap_or_else(|| common::naming::dead_letter_topic(letter.topic));
        let mut backoff = Backoff::new(Duration::from_millis(200), self.retry_max_delay);
        let (partition, offset, at) = (
            letter.partition.to_string(),
            letter.offset.to_string(),
            chrono::Utc::now().to_rfc3339(),
        );
        loop {
            if let Err(e) = self.ensure_topic(&topic).await {
                tracing::warn!(error = %e, "cannot create the dead-letter topic; will try again");
            }
            let headers = OwnedHeaders::new()
                .insert(Header {
                    key: "dlq-reason",
                    value: Some(letter.reason),
                })
                .insert(Header {
                    key: "dlq-error",
                    value: Some(letter.error.as_str()),
                })
                .insert(Header {
                    key: "dlq-source-topic",
                    value: Some(letter.topic),
                })
                .insert(Header {
                    key: "dlq-source-partition",
                    value: Some(partition.as_str()),
                })
                .insert(Header {
                    key: "dlq-source-offset",
                    value: Some(offset.as_str()),
                })
                .insert(Header {
                    key: "dlq-failed-at",
                    value: Some(at.as_str()),
                });
            let mut record = FutureRecord::to(&topic)
                .payload(letter.payload)
                .headers(headers);
            if let Some(key) = letter.key {
                record = record.key(key);
            }
            match self.producer.send(record, Duration::from_secs(5)).await {
                Ok(_) => {
                    self.metrics
                        .dead_lettered
                        .with_label_values(&[letter.reason])
                        .inc();
                    tracing::warn!(reason = letter.reason, error = %letter.error, dlq_topic = %topic, "message sent to the dead-letter topic");
                    return Ok(());
                }
                Err((e, _)) => {
                    self.metrics
                        .retries
                        .with_label_values(&["dlq_produce"])
                        .inc();
                    let delay = backoff.next_delay();
                    tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "dead-letter write failed; retrying");
                    tokio::select! {
                        _ = cancel.cancelled() => return Err(()),
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }
}
