//! The consumer process: a Kafka consumer group member that processes several batches at once
//! and commits a partition's offset only when every batch up to it is stored.
//!
//! - Fetching: the main loop keeps polling Kafka (so the member stays in the group even when
//!   work is stuck) and spawns one task per message; at most `MAX_IN_FLIGHT` run at once. When
//!   twice that many are waiting, every assigned partition is paused until the backlog halves:
//!   while inference or S3 is down, the consumer keeps its place and lag grows.
//! - Commits: asynchronous, from the [`OffsetTracker`], when a partition's position moves.
//! - Rebalances: before partitions are revoked, what is done is committed synchronously and
//!   their in-flight batches are cancelled: their slots are freed at once, nothing of theirs is
//!   committed, and the partition's new owner processes them again (keys are deterministic,
//!   so what they had already written is overwritten with the same bytes).
//! - Stalls: S3, inference and the dead-letter topic are retried until they work
//!   ([`common::retry`]); `consumer_stalled{cause}` and `/ready` say what is stuck
//!   ([`common::stall`]).
//! - Shutdown (SIGTERM): stop fetching, let in-flight batches finish within `SHUTDOWN_TIMEOUT`
//!   (then interrupt them: they will be redelivered), commit synchronously, leave the group.
//! - Messages from topics the template does not produce (e.g. a dead-letter topic matched by a
//!   per-stream pattern subscription) are not frames: they are skipped and committed past.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use common::http::{self, HttpMetrics};
use common::kafka::{KafkaContext, KafkaMetrics};
use common::naming::{Subscription, TopicTemplate};
use common::ops::{self, Readiness};
use common::redact::{self, KafkaProperties};
use common::stall::Stalls;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::{ClientConfig, ClientContext};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use crate::config::ConsumerConfig;
use crate::dlq::DeadLetters;
use crate::group_watch::{GroupView, GroupWatch};
use crate::inference::InferenceClient;
use crate::lag;
use crate::metrics::ConsumerMetrics;
use crate::offsets::{OffsetTracker, Ticket};
use crate::process::{Interrupted, Job, Outcome, Processor};
use crate::store::{Store, StoreError};

/// Offsets shared between the main loop and librdkafka's rebalance callback.
#[derive(Debug, Clone, Default)]
struct SharedOffsets(Arc<Mutex<OffsetTracker>>);

impl SharedOffsets {
    fn lock(&self) -> MutexGuard<'_, OffsetTracker> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The cancellation of each owned partition's work, children of the shutdown's.
#[derive(Debug, Clone, Default)]
struct PartitionWork(Arc<Mutex<HashMap<(String, i32), CancellationToken>>>);

impl PartitionWork {
    fn lock(&self) -> MutexGuard<'_, HashMap<(String, i32), CancellationToken>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The token that cancels work of `topic`/`partition`.
    fn token(&self, all: &CancellationToken, topic: &str, partition: i32) -> CancellationToken {
        self.lock()
            .entry((topic.to_string(), partition))
            .or_insert_with(|| all.child_token())
            .clone()
    }

    /// Cancels the partition's work; a later assignment of it starts with a fresh token.
    fn revoke(&self, topic: &str, partition: i32) {
        if let Some(token) = self.lock().remove(&(topic.to_string(), partition)) {
            token.cancel();
        }
    }
}

/// Whether fetching is paused because work is backing up. Shared with the rebalance callback:
/// librdkafka keeps an application pause on a partition through its revocation and a later
/// assignment, so a partition assigned while fetching is paused must be paused too, and one
/// assigned while it is not must be resumed (it may carry a pause from before its revocation,
/// and nothing would ever lift it).
#[derive(Debug, Clone, Default)]
struct FetchPause(Arc<AtomicBool>);

impl FetchPause {
    fn is_paused(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    fn set(&self, paused: bool) {
        self.0.store(paused, Ordering::SeqCst);
    }
}

struct GroupContext {
    offsets: SharedOffsets,
    work: PartitionWork,
    pause: FetchPause,
    kafka: KafkaContext,
}

impl ClientContext for GroupContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        self.kafka.log(level, fac, message);
    }
    fn error(&self, error: KafkaError, reason: &str) {
        self.kafka.error(error, reason);
    }
    fn stats_raw(&self, statistics: &[u8]) {
        self.kafka.stats_raw(statistics);
    }
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(revoked) = rebalance {
            let mut commit = TopicPartitionList::new();
            let cancelled = {
                let mut offsets = self.offsets.lock();
                let before = offsets.in_flight();
                for e in revoked.elements() {
                    self.work.revoke(e.topic(), e.partition());
                    if let Some(position) = offsets.revoke(e.topic(), e.partition()) {
                        let _ = commit.add_partition_offset(
                            e.topic(),
                            e.partition(),
                            Offset::Offset(position),
                        );
                    }
                }
                before - offsets.in_flight()
            };
            if commit.count() > 0
                && let Err(e) = consumer.commit(&commit, CommitMode::Sync)
            {
                tracing::warn!(error = %e, "commit before revocation failed; those batches will be redelivered");
            }
            tracing::info!(
                partitions = revoked.count(),
                cancelled,
                "partitions revoked; their unfinished batches are cancelled and go to the new owner"
            );
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(assigned) = rebalance {
            let list: Vec<String> = assigned
                .elements()
                .iter()
                .map(|e| format!("{}/{}", e.topic(), e.partition()))
                .collect();
            let paused = self.pause.is_paused();
            let applied = if paused {
                consumer.pause(assigned)
            } else {
                consumer.resume(assigned)
            };
            if let Err(e) = applied {
                tracing::warn!(error = %e, paused, "could not set the new partitions' fetch pause");
            }
            tracing::info!(partitions = ?list, paused, "partitions assigned");
        }
    }
}

type GroupConsumer = StreamConsumer<GroupContext>;

fn kafka_config(config: &ConsumerConfig, properties: &KafkaProperties) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &config.brokers).set(
        "statistics.interval.ms",
        KafkaContext::STATISTICS_INTERVAL_MS,
    );
    for (key, value) in properties.iter() {
        c.set(key, value);
    }
    c
}

fn consumer_config(config: &ConsumerConfig, properties: &KafkaProperties) -> ClientConfig {
    let max = config.max_message_bytes + common::kafka::RECORD_OVERHEAD_BYTES;
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &config.brokers)
        .set("group.id", &config.group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("max.partition.fetch.bytes", max.to_string())
        .set("fetch.max.bytes", (4 * max).to_string())
        .set(
            "receive.message.max.bytes",
            (4 * max + 1024 * 1024).to_string(),
        )
        // Bounds what librdkafka prefetches (batches are megabytes).
        .set(
            "queued.max.messages.kbytes",
            (2 * max / 1024).max(16 * 1024).to_string(),
        )
        // The test broker (tansu) sleeps half of this on every fetch; real brokers answer early
        // when data arrives. Override with --kafka-property for a quieter idle consumer.
        .set("fetch.wait.max.ms", "50")
        // A topic that appears after start (the producer creates it; a pattern matches a new
        // camera's topic) is only seen at the next metadata refresh, 5 minutes by default.
        .set("topic.metadata.refresh.interval.ms", "5000");
    // No `statistics.interval.ms` here: with statistics events on its queue the group
    // consumer stopped receiving messages (seen with rdkafka 0.39 + tansu). The end of an
    // outage is seen instead when a message or the lag poll comes through.
    for (key, value) in properties.iter() {
        c.set(key, value);
    }
    c
}

/// Runs the consumer until `shutdown`.
pub async fn run(
    config: ConsumerConfig,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let template = TopicTemplate::parse(&config.topic)?;
    let properties = KafkaProperties::merged(&config.kafka_properties)?;
    let registry = ops::new_registry();
    let metrics = ConsumerMetrics::register(&registry).context("registering metrics")?;
    let kafka_metrics = KafkaMetrics::register(&registry).context("registering metrics")?;
    let readiness = Readiness::new("starting");
    let stalls = Stalls::register(&registry, "consumer", readiness.clone())
        .context("registering metrics")?;
    let ops_stop = CancellationToken::new();
    let http_metrics = HttpMetrics::register(&registry).context("registering metrics")?;
    let ops_server = tokio::spawn(http::serve(
        listener,
        ops::router(registry, readiness.clone()),
        config.http.clone(),
        http_metrics,
        ops_stop.clone(),
    ));

    let store = Store::connect(
        &config.s3_endpoint,
        &config.region,
        &config.bucket,
        config.s3_timeout,
        config.retry_max_delay,
        stalls.clone(),
        metrics.clone(),
    )
    .await;
    readiness.set_not_ready("waiting for S3");
    if let Err(StoreError::Cancelled(_)) = store.check_bucket(config.create_bucket, &shutdown).await
    {
        tracing::info!("shut down while waiting for S3; nothing was consumed");
        ops_stop.cancel();
        let _ = ops_server.await;
        return Ok(());
    }
    let processor = Processor {
        topics: template.clone(),
        inference: InferenceClient::new(
            &config.inference_url,
            config.inference_timeout,
            config.retry_max_delay,
            stalls.clone(),
            metrics.clone(),
        )?,
        store,
        dead_letters: DeadLetters::new(
            kafka_config(&config, &properties),
            &properties,
            &config,
            stalls.clone(),
            &kafka_metrics,
            metrics.clone(),
        )?,
        policy: config.image_policy,
        jpeg_quality: config.jpeg_quality,
        metrics: metrics.clone(),
    };

    let offsets = SharedOffsets::default();
    let work = PartitionWork::default();
    let pause = FetchPause::default();
    let consumer: Arc<GroupConsumer> = Arc::new(
        properties
            .scrubbed(
                consumer_config(&config, &properties).create_with_context(GroupContext {
                    offsets: offsets.clone(),
                    work: work.clone(),
                    pause: pause.clone(),
                    kafka: KafkaContext::new("consumer", &kafka_metrics),
                }),
            )
            .context("creating the Kafka consumer")?,
    );
    subscribe(&consumer, &template)?;
    readiness.set_ready();
    tracing::info!(topic = %config.topic, group = %config.group, inference = %redact::text(&config.inference_url), bucket = %config.bucket, "consumer started");

    let work_cancel = CancellationToken::new();
    let (done_tx, mut done_rx) =
        mpsc::unbounded_channel::<(Ticket, Result<Outcome, Interrupted>)>();
    let permits = Arc::new(Semaphore::new(config.max_in_flight.max(1)));
    let pause_at = 2 * config.max_in_flight.max(1);
    let mut ticker = tokio::time::interval(config.progress_interval.max(Duration::from_secs(1)));
    let mut lag_ticker = tokio::time::interval(Duration::from_secs(5));
    let mut watch = GroupWatch::new(config.group_stuck_timeout);
    let mut stored = 0u64;

    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            Some((ticket, result)) = done_rx.recv() => {
                if matches!(result, Ok(Outcome::Stored { .. })) { stored += 1; }
                finish(&consumer, &offsets, &ticket, result);
            }
            message = consumer.recv() => {
                let message = match message {
                    Ok(m) => {
                        consumer.context().kafka.reached();
                        m
                    }
                    // An outage is reported once by the client context, not at every poll.
                    Err(e) if common::kafka::is_connectivity(&e) => continue,
                    Err(e) => {
                        tracing::warn!(error = %e, "Kafka consumer error");
                        continue;
                    }
                };
                let job = Job {
                    topic: message.topic().to_string(),
                    partition: message.partition(),
                    offset: message.offset(),
                    key: message.key().map(<[u8]>::to_vec),
                    payload: Bytes::copy_from_slice(message.payload().unwrap_or_default()),
                };
                drop(message);
                let ticket = offsets.lock().started(&job.topic, job.partition, job.offset);
                if !template.matches(&job.topic) {
                    tracing::info!(topic = %job.topic, offset = job.offset, "not a frame topic (e.g. a dead-letter topic); skipped");
                    finish(&consumer, &offsets, &ticket, Ok(Outcome::DeadLettered { reason: "not_a_frame_topic" }));
                    continue;
                }
                let cancel = work.token(&work_cancel, &job.topic, job.partition);
                let (processor, permits, done_tx, metrics) =
                    (processor.clone(), permits.clone(), done_tx.clone(), metrics.clone());
                tokio::spawn(async move {
                    let permit = tokio::select! {
                        permit = permits.acquire_owned() => permit,
                        _ = cancel.cancelled() => return,
                    };
                    let Ok(_permit) = permit else { return };
                    metrics.in_flight.inc();
                    let span = tracing::info_span!("message", topic = %job.topic, partition = job.partition, offset = job.offset);
                    let result = tracing::Instrument::instrument(processor.process(&job, &cancel), span).await;
                    metrics.in_flight.dec();
                    let _ = done_tx.send((ticket, result));
                });
            }
            _ = lag_ticker.tick() => {
                let view = update_lag(&consumer, &metrics, watch.enabled().then_some(&template)).await;
                if let Some(view) = view
                    && let Some(waited) = watch.observe(std::time::Instant::now(), view)
                {
                    tracing::warn!(
                        waited_s = waited.as_secs(),
                        lag = view.lag,
                        "this member owns no partition while messages wait and no member commits; rejoining the group"
                    );
                    metrics.group_rejoins.inc();
                    consumer.unsubscribe();
                    if let Err(e) = subscribe(&consumer, &template) {
                        tracing::error!(error = %e, "could not subscribe again");
                    }
                }
            }
            _ = ticker.tick(), if !config.progress_interval.is_zero() => {
                tracing::info!(
                    stored,
                    in_flight = metrics.in_flight.get(),
                    waiting = offsets.lock().in_flight(),
                    dead_lettered = metrics.batches.with_label_values(&["dead_lettered"]).get(),
                    paused = pause.is_paused(),
                    "progress"
                );
            }
        }
        let outstanding = offsets.lock().in_flight();
        // The flag changes first: a rebalance between it and the call applies it to the new
        // assignment (see `FetchPause`).
        if !pause.is_paused() && outstanding >= pause_at {
            pause.set(true);
            if let Ok(assignment) = consumer.assignment()
                && let Err(e) = consumer.pause(&assignment)
            {
                tracing::warn!(error = %e, "could not pause fetching");
            }
            tracing::info!(outstanding, "work is backing up; paused fetching");
        } else if pause.is_paused() && outstanding <= pause_at / 2 {
            pause.set(false);
            if let Ok(assignment) = consumer.assignment()
                && let Err(e) = consumer.resume(&assignment)
            {
                tracing::warn!(error = %e, "could not resume fetching");
            }
            tracing::info!(outstanding, "resumed fetching");
        }
    }

    readiness.set_not_ready("shutting down");
    let outstanding = offsets.lock().in_flight();
    tracing::info!(outstanding, "shutdown: finishing in-flight batches");
    let deadline = tokio::time::sleep(config.shutdown_timeout);
    tokio::pin!(deadline);
    while offsets.lock().in_flight() > 0 {
        tokio::select! {
            Some((ticket, result)) = done_rx.recv() => finish(&consumer, &offsets, &ticket, result),
            _ = &mut deadline => {
                tracing::warn!(left = offsets.lock().in_flight(), "shutdown deadline passed; unfinished batches will be redelivered");
                work_cancel.cancel();
                break;
            }
        }
    }
    let mut commit = TopicPartitionList::new();
    for (topic, partition, position) in offsets.lock().all_positions() {
        let _ = commit.add_partition_offset(&topic, partition, Offset::Offset(position));
    }
    if commit.count() > 0
        && let Err(e) = consumer.commit(&commit, CommitMode::Sync)
    {
        tracing::warn!(error = %e, "final commit failed");
    }
    consumer.unsubscribe();
    drop(consumer);
    ops_stop.cancel();
    let _ = ops_server.await;
    tracing::info!(stored, "consumer stopped");
    Ok(())
}

/// Records a finished job and commits its partition's new position, if it moved.
fn finish(
    consumer: &GroupConsumer,
    offsets: &SharedOffsets,
    ticket: &Ticket,
    result: Result<Outcome, Interrupted>,
) {
    if result.is_err() {
        return; // not done: its offset must stay uncommitted
    }
    let Some(position) = offsets.lock().finished(ticket) else {
        return;
    };
    let mut list = TopicPartitionList::new();
    if list
        .add_partition_offset(&ticket.topic, ticket.partition, Offset::Offset(position))
        .is_ok()
        && let Err(e) = consumer.commit(&list, CommitMode::Async)
    {
        tracing::warn!(error = %e, topic = %ticket.topic, partition = ticket.partition, position, "commit failed; will be retried with the next one");
    }
}

fn subscribe(consumer: &GroupConsumer, template: &TopicTemplate) -> anyhow::Result<()> {
    match template.subscription() {
        Subscription::Topic(topic) => consumer.subscribe(&[&topic])?,
        Subscription::Pattern(pattern) => consumer.subscribe(&[&pattern])?,
    }
    Ok(())
}

/// Lag per assigned partition: end offset minus committed position. With `watched`, a member
/// that owns nothing also looks at the whole group's lag on the subscribed topics, for the
/// [`GroupWatch`].
async fn update_lag(
    consumer: &Arc<GroupConsumer>,
    metrics: &ConsumerMetrics,
    watched: Option<&TopicTemplate>,
) -> Option<GroupView> {
    let consumer = consumer.clone();
    let metrics = metrics.clone();
    let watched = watched.cloned();
    let timeout = Duration::from_secs(2);
    tokio::task::spawn_blocking(move || {
        let assignment = consumer.assignment().ok()?;
        let owned = assignment.count();
        let partitions = match (owned, &watched) {
            (0, Some(template)) => {
                lag::topic_partitions(&*consumer, |t| template.matches(t), timeout).ok()?
            }
            (0, None) => return None,
            _ => assignment,
        };
        let lags = lag::partition_lag(&*consumer, &partitions, timeout).ok()?;
        consumer.context().kafka.reached();
        if owned > 0 {
            for l in &lags {
                metrics
                    .lag
                    .with_label_values(&[&l.topic, &l.partition.to_string()])
                    .set(l.lag);
            }
        }
        Some(GroupView {
            owned,
            lag: lags.iter().map(|l| l.lag).sum(),
            committed: lags.iter().filter_map(|l| l.committed).sum(),
        })
    })
    .await
    .ok()
    .flatten()
}
