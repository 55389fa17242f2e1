//! The dead-letter topic: where a message goes when it can never be processed (it does not
//! decode as a `FrameBatch`, or the inference service refuses it as invalid). The original key
//! and bytes are kept, with headers saying why and where it came from:
//! `dlq-reason`, `dlq-error`, `dlq-source-topic`, `dlq-source-partition`, `dlq-source-offset`,
//! `dlq-failed-at`. Only after the dead-letter write is acknowledged is the offset committed;
//! until then it is retried, so nothing is skipped silently: an unreachable broker is
//! transient (`dlq_produce`), a refusal (topic not authorised, message too large, policy) is
//! permanent (`dlq_refused`) and makes `/ready` say so. The topic is created on first use
//! when missing (1 partition, `max.message.bytes` for the largest batch).

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use common::kafka::{KafkaContext, KafkaMetrics, TopicArgs, ensure_topics, error_class};
use common::redact::KafkaProperties;
use common::retry::{Classify, RetryPolicy, retry};
use common::stall::{ErrorClass, Stalls};
use rdkafka::ClientConfig;
use rdkafka::admin::AdminClient;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio_util::sync::CancellationToken;

use crate::config::ConsumerConfig;
use crate::events::{DeadLetterReason, DeadLettered};
use crate::metrics::ConsumerMetrics;

#[derive(Clone)]
pub struct DeadLetters {
    producer: FutureProducer<KafkaContext>,
    /// For creating dead-letter topics on first use (brokers may not auto-create topics).
    admin: Arc<AdminClient<KafkaContext>>,
    /// Topics known to exist. Held across the creation: concurrent letters must not each send
    /// a CreateTopics (the test broker answers a second one by recreating the topic empty).
    created: Arc<tokio::sync::Mutex<HashSet<String>>>,
    settings: TopicArgs,
    /// Fixed topic, or `None` for `<source topic>.dlq`.
    topic: Option<String>,
    retry: RetryPolicy,
    stalls: Stalls,
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
    pub reason: DeadLetterReason,
    pub error: String,
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<&'a [u8]>,
    pub payload: &'a [u8],
}

impl DeadLetters {
    /// A writer with `settings`' topic, limits and retry delay, over a client made of `config`.
    pub fn new(
        mut config: ClientConfig,
        properties: &KafkaProperties,
        settings: &ConsumerConfig,
        stalls: Stalls,
        kafka_metrics: &KafkaMetrics,
        metrics: ConsumerMetrics,
    ) -> anyhow::Result<Self> {
        let context = KafkaContext::new("dlq", kafka_metrics);
        let admin = properties.scrubbed(config.create_with_context(context.clone()))?;
        let record_max = settings.topics.record_limit().to_string();
        config
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("message.max.bytes", &record_max);
        Ok(Self {
            producer: properties.scrubbed(config.create_with_context(context))?,
            admin: Arc::new(admin),
            created: Arc::default(),
            settings: settings.topics.clone(),
            topic: settings.dlq_topic.clone(),
            retry: RetryPolicy::forever(Duration::from_millis(200), settings.retry_max_delay),
            stalls,
            metrics,
        })
    }

    /// Creates `topic` (1 partition, TOPIC_REPLICATION replicas, room for the largest message)
    /// unless it exists.
    async fn ensure_topic(&self, topic: &str) -> Result<(), DlqFailure> {
        let mut created = self.created.lock().await;
        if created.contains(topic) {
            return Ok(());
        }
        let created_now = ensure_topics(
            &*self.admin,
            &[(topic, 1)],
            &self.settings,
            Duration::from_secs(10),
        )
        .await
        .map_err(|e| DlqFailure {
            class: e.class(),
            message: e.to_string(),
        })?;
        if !created_now.is_empty() {
            tracing::info!(topic, "dead-letter topic created");
        }
        created.insert(topic.to_string());
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
        let (partition, offset, at) = (
            letter.partition.to_string(),
            letter.offset.to_string(),
            chrono::Utc::now().to_rfc3339(),
        );
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "dlq-reason",
                value: Some(letter.reason.as_str()),
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
        let write = || async {
            self.ensure_topic(&topic).await?;
            let mut record = FutureRecord::to(&topic)
                .payload(letter.payload)
                .headers(headers.clone());
            if let Some(key) = letter.key {
                record = record.key(key);
            }
            self.producer
                .send(record, Duration::from_secs(5))
                .await
                .map_err(|(e, _)| DlqFailure::of(format!("writing to {topic}"), &e))
        };
        retry(&self.retry, &self.stalls, cancel, write)
            .await
            .map_err(|_| ())?;
        DeadLettered {
            reason: letter.reason,
            error: &letter.error,
            dlq_topic: &topic,
        }
        .emit(&self.metrics);
        Ok(())
    }
}

/// A failed dead-letter write or topic creation.
#[derive(Debug)]
struct DlqFailure {
    class: ErrorClass,
    message: String,
}

impl DlqFailure {
    fn of(what: String, error: &KafkaError) -> Self {
        Self {
            class: error_class(error),
            message: format!("{what}: {error}"),
        }
    }
}

impl fmt::Display for DlqFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl Classify for DlqFailure {
    fn class(&self) -> ErrorClass {
        self.class
    }
    fn cause(&self) -> &'static str {
        match self.class {
            ErrorClass::Transient => "dlq_produce",
            ErrorClass::Permanent => "dlq_refused",
        }
    }
}
