//! Kafka: the producer client, topic creation, and each stream's sender task.
//!
//! - One idempotent `rdkafka` producer per process (`acks=all`, no compression: the payload is
//!   JPEG, which does not compress), shared by every stream.
//! - Key = stream id, so one stream's batches stay ordered in one partition; the sender of a
//!   stream has one batch in flight at a time, so retries cannot reorder either.
//! - librdkafka's `message.max.bytes` is set above the producer's own limit, which the frame
//!   thread's size guard has already enforced on every payload.
//! - A failed delivery (librdkafka gave up after `DELIVERY_TIMEOUT`) is retried after a backoff
//!   ([`common::retry`]): forever for a file (nothing may be lost; the file waits),
//!   `DELIVERY_RETRIES` times for a live camera, after which the batch is logged and counted as
//!   dropped (`delivery_failed`); the camera's later batches go on. A refusal (topic not
//!   authorised, message too large) is a permanent stall (`kafka_refused`: `/ready` 503), an
//!   unreachable broker a transient one (`kafka_delivery`), reported once by the client
//!   context ([`common::kafka::KafkaContext`]) rather than at every retry.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use common::StreamId;
use common::kafka::{CreateTopicError, KafkaContext, ensure_topics, error_class};
use common::retry::{Classify, RetryError, RetryPolicy, retry};
use common::stall::{ErrorClass, Stalls};
use rdkafka::ClientConfig;
use rdkafka::admin::AdminClient;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use tokio_util::sync::CancellationToken;

use crate::config::SinkArgs;
use crate::frames::Outgoing;
use crate::metrics::{DropReason, StreamMetrics};
use crate::queue::BatchQueue;

/// Content type header of every message, as in `common::inference_api`.
pub const CONTENT_TYPE: &str = common::inference_api::FRAME_BATCH_CONTENT_TYPE;

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error(transparent)]
    Property(#[from] common::redact::KafkaPropertyError),
    /// The client refused its configuration; the message is scrubbed of secret values.
    #[error("Kafka client configuration: {0}")]
    Config(String),
    #[error("Kafka client: {0}")]
    Client(#[from] KafkaError),
    #[error(transparent)]
    CreateTopic(#[from] CreateTopicError),
}

/// A client config for the brokers with `defaults`, and the user's properties applied last.
fn client_config(args: &SinkArgs, defaults: &[(&str, &str)]) -> Result<ClientConfig, SinkError> {
    let mut with_statistics = vec![(
        "statistics.interval.ms",
        KafkaContext::STATISTICS_INTERVAL_MS,
    )];
    with_statistics.extend_from_slice(defaults);
    Ok(args.client.client_config(&with_statistics)?)
}

/// Creates a client; its errors quote refused values, so they are scrubbed of secrets.
fn create<T: rdkafka::config::FromClientConfigAndContext<KafkaContext>>(
    config: &ClientConfig,
    args: &SinkArgs,
    context: &KafkaContext,
) -> Result<T, SinkError> {
    args.client
        .properties()?
        .scrubbed(config.create_with_context(context.clone()))
        .map_err(|e| SinkError::Config(e.0))
}

/// The process's Kafka producer and its settings.
#[derive(Clone)]
pub struct KafkaSink {
    /// Replaced when librdkafka reports a fatal error: an idempotent producer refuses every
    /// later message after one (e.g. fenced after a broker hang), so it must be recreated.
    producer: Arc<RwLock<(u64, FutureProducer<KafkaContext>)>>,
    config: ClientConfig,
    args: SinkArgs,
    context: KafkaContext,
    stalls: Stalls,
}

impl std::fmt::Debug for KafkaSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSink")
            .field("brokers", &self.args.client.brokers)
            .finish()
    }
}

impl KafkaSink {
    pub fn new(args: &SinkArgs, context: KafkaContext, stalls: Stalls) -> Result<Self, SinkError> {
        let request_max = args.topics.record_limit().to_string();
        let delivery_timeout = args.delivery_timeout.as_millis().to_string();
        let config = client_config(
            args,
            &[
                ("enable.idempotence", "true"),
                ("acks", "all"),
                ("compression.type", "none"),
                ("message.max.bytes", &request_max),
                ("delivery.timeout.ms", &delivery_timeout),
                // Batches are megabytes; waiting to fill a larger request only adds latency.
                ("linger.ms", "5"),
            ],
        )?;
        let producer: FutureProducer<KafkaContext> = create(&config, args, &context)?;
        Ok(Self {
            producer: Arc::new(RwLock::new((0, producer))),
            config,
            args: args.clone(),
            context,
            stalls,
        })
    }

    /// The producer in use and its generation (bumped at every replacement).
    fn current(&self) -> (u64, FutureProducer<KafkaContext>) {
        let guard = self.producer.read().unwrap_or_else(|p| p.into_inner());
        (guard.0, guard.1.clone())
    }

    /// Replaces the producer of generation `used` if `error` leaves it unusable: a fatal error,
    /// or a broker that keeps fencing its producer id (idempotence state the broker lost, e.g.
    /// after a hang). Only the first stream to notice replaces it.
    fn recover_if_broken(
        &self,
        used: u64,
        producer: &FutureProducer<KafkaContext>,
        error: &KafkaError,
    ) {
        let fatal = producer.client().fatal_error();
        let fenced = matches!(
            error.rdkafka_error_code(),
            Some(
                RDKafkaErrorCode::ProducerFenced
                    | RDKafkaErrorCode::InvalidProducerEpoch
                    | RDKafkaErrorCode::OutOfOrderSequenceNumber
                    | RDKafkaErrorCode::UnknownProducerId
                    | RDKafkaErrorCode::InvalidProducerIdMapping
            )
        );
        if fatal.is_none() && !fenced {
            return;
        }
        let mut current = self.producer.write().unwrap_or_else(|p| p.into_inner());
        if current.0 != used {
            return;
        }
        match create::<FutureProducer<KafkaContext>>(&self.config, &self.args, &self.context) {
            Ok(fresh) => {
                *current = (used + 1, fresh);
                tracing::error!(error = %error, fatal = ?fatal, "Kafka producer unusable; replaced it with a new one");
            }
            Err(e) => {
                tracing::error!(error = %e, "Kafka producer unusable and cannot be recreated")
            }
        }
    }

    /// Creates the topics that do not exist yet, each with its partition count (see
    /// [`common::kafka::ensure_topics`]).
    pub async fn ensure_topics(&self, topics: &BTreeMap<String, i32>) -> Result<(), SinkError> {
        let admin: AdminClient<KafkaContext> =
            create(&client_config(&self.args, &[])?, &self.args, &self.context)?;
        let wanted: Vec<(&str, i32)> = topics.iter().map(|(t, &p)| (t.as_str(), p)).collect();
        let created =
            ensure_topics(&admin, &wanted, &self.args.topics, Duration::from_secs(30)).await?;
        self.context.reached();
        for topic in created {
            let partitions = topics.get(&topic).copied().unwrap_or_default();
            tracing::info!(topic, partitions, "topic created");
        }
        Ok(())
    }

    /// Waits until everything handed to librdkafka is delivered or `timeout` passes.
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.current().1.flush(timeout)
    }

    /// One stream's sender: takes payloads from `queue` in order and delivers each before the
    /// next. Returns when the queue is closed and empty, or at `abort` (shutdown deadline).
    pub async fn run_stream(
        &self,
        stream: StreamId,
        topic: String,
        queue: Arc<BatchQueue<Outgoing>>,
        metrics: StreamMetrics,
        live: bool,
        abort: CancellationToken,
    ) {
        while let Some(batch) = tokio::select! {
            batch = queue.pop() => batch,
            _ = abort.cancelled() => None,
        } {
            metrics.queued_batches.set(queue.len() as i64);
            let started = Instant::now();
            let delivered = tokio::select! {
                delivered = self.deliver(&stream, &topic, &batch, &metrics, live) => delivered,
                _ = abort.cancelled() => false,
            };
            if delivered {
                metrics
                    .delivery_seconds
                    .observe(started.elapsed().as_secs_f64());
                metrics.frames_sent.inc_by(batch.frames as u64);
                metrics.bytes_sent.inc_by(batch.payload.len() as u64);
                if batch.partial {
                    metrics.batches_sent_partial.inc();
                } else {
                    metrics.batches_sent_full.inc();
                }
            } else if abort.is_cancelled() {
                metrics.dropped(DropReason::Shutdown, batch.frames as u64);
                tracing::error!(
                    batch_seq = batch.batch_seq,
                    frames = batch.frames,
                    "shutdown deadline passed before delivery; batch lost"
                );
                break;
            } else {
                metrics.dropped(DropReason::DeliveryFailed, batch.frames as u64);
                tracing::error!(
                    batch_seq = batch.batch_seq,
                    frames = batch.frames,
                    first_seq = batch.first_seq,
                    last_seq = batch.last_seq,
                    "delivery failed after every retry; batch dropped"
                );
            }
        }
        // What is left (only after an abort) is lost; count it.
        for batch in queue.close_and_take() {
            metrics.dropped(DropReason::Shutdown, batch.frames as u64);
        }
        metrics.queued_batches.set(0);
    }

    /// Delivers one batch, retrying failures; `false` when a live stream's retries ran out.
    async fn deliver(
        &self,
        stream: &StreamId,
        topic: &str,
        batch: &Outgoing,
        metrics: &StreamMetrics,
        live: bool,
    ) -> bool {
        let mut policy = RetryPolicy::forever(Duration::from_millis(500), Duration::from_secs(30));
        if live {
            policy = policy.with_max_retries(self.args.delivery_retries);
        }
        let batch_seq = batch.batch_seq.to_string();
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "content-type",
                value: Some(CONTENT_TYPE),
            })
            .insert(Header {
                key: "batch-seq",
                value: Some(&batch_seq),
            });
        let send = || async {
            let record = FutureRecord::to(topic)
                .key(stream.as_str())
                .payload(&batch.payload)
                .headers(headers.clone());
            let (generation, producer) = self.current();
            match producer.send(record, Duration::from_secs(5)).await {
                Ok(delivery) => {
                    self.context.reached();
                    tracing::debug!(
                        batch_seq = batch.batch_seq,
                        partition = delivery.partition,
                        offset = delivery.offset,
                        "batch delivered"
                    );
                    Ok(())
                }
                Err((error, _)) => {
                    self.recover_if_broken(generation, &producer, &error);
                    metrics.delivery_retries.inc();
                    Err(DeliveryFailure(error))
                }
            }
        };
        // Only the caller's abort interrupts a delivery; it races this future.
        match retry(&policy, &self.stalls, &CancellationToken::new(), send).await {
            Ok(()) => true,
            Err(RetryError::GaveUp { retries, last }) => {
                tracing::error!(batch_seq = batch.batch_seq, retries, error = %last, "delivery failed");
                false
            }
            Err(RetryError::Cancelled) => false,
        }
    }
}

/// A failed delivery, classified for the retry loop.
#[derive(Debug)]
struct DeliveryFailure(KafkaError);

impl fmt::Display for DeliveryFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Classify for DeliveryFailure {
    fn class(&self) -> ErrorClass {
        error_class(&self.0)
    }
    fn cause(&self) -> &'static str {
        match self.class() {
            ErrorClass::Transient => "kafka_delivery",
            ErrorClass::Permanent => "kafka_refused",
        }
    }
}

impl Classify for SinkError {
    fn class(&self) -> ErrorClass {
        match self {
            Self::Client(e) => error_class(e),
            Self::CreateTopic(e) => e.class(),
            Self::Property(_) | Self::Config(_) => ErrorClass::Permanent,
        }
    }
    fn cause(&self) -> &'static str {
        match self.class() {
            ErrorClass::Transient => "kafka_topics",
            ErrorClass::Permanent => "kafka_topics_refused",
        }
    }
}
