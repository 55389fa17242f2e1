//! The consumer process: a Kafka consumer group member that processes several batches at once
//! and commits a partition's offset only when every batch up to it is stored.
//!
//! - Fetching: the main loop keeps polling Kafka (so the member stays in the group even when
//!   work is stuck) and spawns one task per message; at most `MAX_IN_FLIGHT` run at once. When
//!   twice that many are waiting, every assigned partition is paused until the backlog halves:
//!   while inference or S3 is down, the consumer keeps its place and lag grows.
//! - Commits: asynchronous, from the [`OffsetTracker`], when a partition's position moves.
//! - Rebalances: revoked partitions' work is cancelled and goes to their new owner
//!   ([`crate::group`]); a member left owning nothing by a stuck group rejoins it
//!   ([`GroupWatch`]).
//! - Stalls: S3, inference and the dead-letter topic are retried until they work
//!   ([`common::retry`]); `consumer_stalled{cause}` and `/ready` say what is stuck
//!   ([`common::stall`]).
//! - Shutdown (SIGTERM): stop fetching, let in-flight batches finish within `SHUTDOWN_TIMEOUT`
//!   (then interrupt them: they will be redelivered), commit synchronously, leave the group.
//! - Messages from topics the template does not produce (e.g. a dead-letter topic matched by a
//!   per-stream pattern subscription) are not frames: they are skipped and committed past.

//!
//! [`run`] sets the parts up; [`Member`] is the loop, one method per thing that can happen.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use common::kafka::{KafkaContext, KafkaMetrics};
use common::naming::TopicTemplate;
use common::ops::{self, Readiness};
use common::redact::{self, KafkaPropertyError};
use common::service::OpsServer;
use common::stall::Stalls;
use rdkafka::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::error::KafkaResult;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use crate::config::ConsumerConfig;
use crate::dlq::DeadLetters;
use crate::events::{self, InFlight};
use crate::group::{self, FetchPause, GroupConsumer, GroupContext, PartitionWork, SharedOffsets};
use crate::group_watch::{GroupView, GroupWatch};
use crate::inference::InferenceClient;
use crate::lag;
use crate::metrics::ConsumerMetrics;
use crate::offsets::Ticket;
use crate::process::{Interrupted, Job, Outcome, Processor};
use crate::store::{Store, StoreError};

/// The configuration of the dead-letter writer's clients.
fn kafka_config(config: &ConsumerConfig) -> Result<ClientConfig, KafkaPropertyError> {
    config.kafka.client_config(&[(
        "statistics.interval.ms",
        KafkaContext::STATISTICS_INTERVAL_MS,
    )])
}

/// The configuration of the group consumer.
fn consumer_config(config: &ConsumerConfig) -> Result<ClientConfig, KafkaPropertyError> {
    let max = config.topics.record_limit();
    let (partition_fetch, fetch, receive) = (
        max.to_string(),
        (4 * max).to_string(),
        (4 * max + 1024 * 1024).to_string(),
    );
    // Bounds what librdkafka prefetches (batches are megabytes).
    let queued_kbytes = (2 * max / 1024).max(16 * 1024).to_string();
    // No `statistics.interval.ms` here: with statistics events on its queue the group
    // consumer stopped receiving messages (seen with rdkafka 0.39 + tansu). The end of an
    // outage is seen instead when a message or the lag poll comes through.
    config.kafka.client_config(&[
        ("group.id", &config.group),
        ("enable.auto.commit", "false"),
        ("auto.offset.reset", "earliest"),
        ("max.partition.fetch.bytes", &partition_fetch),
        ("fetch.max.bytes", &fetch),
        ("receive.message.max.bytes", &receive),
        ("queued.max.messages.kbytes", &queued_kbytes),
        // The test broker (tansu) sleeps half of this on every fetch; real brokers answer
        // early when data arrives. Override with --kafka-property for a quieter idle consumer.
        ("fetch.wait.max.ms", "50"),
        // A topic that appears after start (the producer creates it; a pattern matches a new
        // camera's topic) is only seen at the next metadata refresh, 5 minutes by default.
        ("topic.metadata.refresh.interval.ms", "5000"),
    ])
}

/// Runs the consumer until `shutdown`.
pub async fn run(
    config: ConsumerConfig,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let template = TopicTemplate::parse(&config.topic)?;
    let properties = config.kafka.properties()?;
    let registry = ops::new_registry();
    let metrics = ConsumerMetrics::register(&registry).context("registering metrics")?;
    let kafka_metrics = KafkaMetrics::register(&registry).context("registering metrics")?;
    let readiness = Readiness::new("starting");
    let stalls = Stalls::register(&registry, "consumer", readiness.clone())
        .context("registering metrics")?;
    let ops_server = OpsServer::start(listener, &registry, &readiness, &config.http)
        .context("registering metrics")?;

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
        ops_server.stop().await;
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
            kafka_config(&config)?,
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

    let context = GroupContext {
        offsets: SharedOffsets::default(),
        work: PartitionWork::default(),
        pause: FetchPause::default(),
        kafka: KafkaContext::new("consumer", &kafka_metrics),
    };
    let consumer: GroupConsumer = properties
        .scrubbed(consumer_config(&config)?.create_with_context(context))
        .context("creating the Kafka consumer")?;
    group::subscribe(&consumer, &template)?;
    readiness.set_ready();
    tracing::info!(topic = %config.topic, group = %config.group, inference = %redact::text(&config.inference_url), bucket = %config.bucket, "consumer started");

    let mut member = Member::new(Arc::new(consumer), template, processor, &config, metrics);
    member.run(&config, &shutdown).await;
    readiness.set_not_ready("shutting down");
    member.shut_down(config.shutdown_timeout).await;
    let stored = member.stored;
    // Closes the client, which leaves the group, before the ops endpoints go.
    drop(member);
    ops_server.stop().await;
    tracing::info!(stored, "consumer stopped");
    Ok(())
}

/// What a finished batch task reports back to the loop.
type Finished = (Ticket, Result<Outcome, Interrupted>);

/// The group member's loop and what it owns: one task per fetched message, at most
/// `MAX_IN_FLIGHT` running, fetching paused while twice that many wait.
struct Member {
    consumer: Arc<GroupConsumer>,
    template: TopicTemplate,
    processor: Processor,
    metrics: ConsumerMetrics,
    /// Running batches' slots.
    permits: Arc<Semaphore>,
    /// Outstanding batches at which fetching pauses; it resumes at half.
    pause_at: usize,
    /// Cancels every batch (the shutdown deadline); each partition's work is a child of it.
    all_work: CancellationToken,
    done_tx: mpsc::UnboundedSender<Finished>,
    done_rx: mpsc::UnboundedReceiver<Finished>,
    watch: GroupWatch,
    stored: u64,
}

impl Member {
    fn new(
        consumer: Arc<GroupConsumer>,
        template: TopicTemplate,
        processor: Processor,
        config: &ConsumerConfig,
        metrics: ConsumerMetrics,
    ) -> Self {
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        Self {
            consumer,
            template,
            processor,
            metrics,
            permits: Arc::new(Semaphore::new(config.max_in_flight.max(1))),
            pause_at: 2 * config.max_in_flight.max(1),
            all_work: CancellationToken::new(),
            done_tx,
            done_rx,
            watch: GroupWatch::new(config.group_stuck_timeout),
            stored: 0,
        }
    }

    fn context(&self) -> &GroupContext {
        self.consumer.context()
    }

    /// Fetches and dispatches until `shutdown`.
    async fn run(&mut self, config: &ConsumerConfig, shutdown: &CancellationToken) {
        let mut progress =
            tokio::time::interval(config.progress_interval.max(Duration::from_secs(1)));
        let mut lag = tokio::time::interval(Duration::from_secs(5));
        // A clone, so that a fetched message borrows it and not `self`.
        let consumer = self.consumer.clone();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                Some((ticket, result)) = self.done_rx.recv() => self.finished(&ticket, result),
                message = consumer.recv() => self.fetched(message),
                _ = lag.tick() => self.look_at_the_group().await,
                _ = progress.tick(), if !config.progress_interval.is_zero() => self.log_progress(),
            }
            self.apply_backpressure();
        }
    }

    /// Records a finished batch and commits its partition's new position, if it moved.
    fn finished(&mut self, ticket: &Ticket, result: Result<Outcome, Interrupted>) {
        match result {
            Ok(Outcome::Stored { .. }) => self.stored += 1,
            Ok(_) => {}
            Err(Interrupted) => return, // not done: its offset must stay uncommitted
        }
        let Some(position) = self.context().offsets.lock().finished(ticket) else {
            return;
        };
        let mut list = TopicPartitionList::new();
        if list
            .add_partition_offset(&ticket.topic, ticket.partition, Offset::Offset(position))
            .is_ok()
            && let Err(e) = self.consumer.commit(&list, CommitMode::Async)
        {
            tracing::warn!(error = %e, topic = %ticket.topic, partition = ticket.partition, position, "commit failed; will be retried with the next one");
        }
    }

    /// Starts a task for a fetched message, or commits past a message that is not a frame.
    fn fetched(&mut self, message: KafkaResult<BorrowedMessage<'_>>) {
        let message = match message {
            Ok(m) => {
                self.context().kafka.reached();
                m
            }
            // An outage is reported once by the client context, not at every poll.
            Err(e) if common::kafka::is_connectivity(&e) => return,
            Err(e) => {
                tracing::warn!(error = %e, "Kafka consumer error");
                return;
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
        let ticket = self
            .context()
            .offsets
            .lock()
            .started(&job.topic, job.partition, job.offset);
        if !self.template.matches(&job.topic) {
            tracing::info!(topic = %job.topic, offset = job.offset, "not a frame topic (e.g. a dead-letter topic); skipped");
            self.finished(&ticket, Ok(Outcome::Skipped));
            return;
        }
        let cancel = self
            .context()
            .work
            .token(&self.all_work, &job.topic, job.partition);
        let (processor, permits, done_tx, metrics) = (
            self.processor.clone(),
            self.permits.clone(),
            self.done_tx.clone(),
            self.metrics.clone(),
        );
        tokio::spawn(async move {
            let permit = tokio::select! {
                permit = permits.acquire_owned() => permit,
                _ = cancel.cancelled() => return,
            };
            let Ok(_permit) = permit else { return };
            let _in_flight = InFlight::start(&metrics);
            let span = tracing::info_span!("message", topic = %job.topic, partition = job.partition, offset = job.offset);
            let result =
                tracing::Instrument::instrument(processor.process(&job, &cancel), span).await;
            let _ = done_tx.send((ticket, result));
        });
    }

    /// Updates the lag gauges and, when the group looks stuck, rejoins it.
    async fn look_at_the_group(&mut self) {
        let watched = self.watch.enabled().then_some(&self.template);
        let Some(view) = update_lag(&self.consumer, &self.metrics, watched).await else {
            return;
        };
        let Some(waited) = self.watch.observe(Instant::now(), view) else {
            return;
        };
        tracing::warn!(
            waited_s = waited.as_secs(),
            lag = view.lag,
            "this member owns no partition while messages wait and no member commits; rejoining the group"
        );
        self.metrics.group_rejoins.inc();
        self.consumer.unsubscribe();
        if let Err(e) = group::subscribe(&self.consumer, &self.template) {
            tracing::error!(error = %e, "could not subscribe again");
        }
    }

    fn log_progress(&self) {
        tracing::info!(
            stored = self.stored,
            in_flight = self.metrics.in_flight.get(),
            waiting = self.context().offsets.lock().in_flight(),
            dead_lettered = events::dead_lettered_batches(&self.metrics),
            paused = self.context().pause.is_paused(),
            "progress"
        );
    }

    /// Pauses every assigned partition when work backs up, resumes when it has halved.
    fn apply_backpressure(&self) {
        let outstanding = self.context().offsets.lock().in_flight();
        let pause = &self.context().pause;
        // The flag changes first: a rebalance between it and the call applies it to the new
        // assignment (see `FetchPause`).
        if !pause.is_paused() && outstanding >= self.pause_at {
            pause.set(true);
            if let Ok(assignment) = self.consumer.assignment()
                && let Err(e) = self.consumer.pause(&assignment)
            {
                tracing::warn!(error = %e, "could not pause fetching");
            }
            tracing::info!(outstanding, "work is backing up; paused fetching");
        } else if pause.is_paused() && outstanding <= self.pause_at / 2 {
            pause.set(false);
            if let Ok(assignment) = self.consumer.assignment()
                && let Err(e) = self.consumer.resume(&assignment)
            {
                tracing::warn!(error = %e, "could not resume fetching");
            }
            tracing::info!(outstanding, "resumed fetching");
        }
    }

    /// Lets in-flight batches finish within `timeout` (then interrupts them: they will be
    /// redelivered), commits synchronously and leaves the group.
    async fn shut_down(&mut self, timeout: Duration) {
        let outstanding = self.context().offsets.lock().in_flight();
        tracing::info!(outstanding, "shutdown: finishing in-flight batches");
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        while self.context().offsets.lock().in_flight() > 0 {
            tokio::select! {
                Some((ticket, result)) = self.done_rx.recv() => self.finished(&ticket, result),
                _ = &mut deadline => {
                    tracing::warn!(left = self.context().offsets.lock().in_flight(), "shutdown deadline passed; unfinished batches will be redelivered");
                    self.all_work.cancel();
                    break;
                }
            }
        }
        let mut commit = TopicPartitionList::new();
        for (topic, partition, position) in self.context().offsets.lock().all_positions() {
            let _ = commit.add_partition_offset(&topic, partition, Offset::Offset(position));
        }
        if commit.count() > 0
            && let Err(e) = self.consumer.commit(&commit, CommitMode::Sync)
        {
            tracing::warn!(error = %e, "final commit failed");
        }
        self.consumer.unsubscribe();
    }
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
