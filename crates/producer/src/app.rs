//! The producer process: ops endpoints, Kafka, one [`stream`](crate::stream) per source,
//! progress logs, and an orderly shutdown.
//!
//! Start-up: `/health` answers at once; `/ready` answers 503 until the topics exist (creating
//! them is retried with backoff while Kafka is unreachable), then 200. Streams start once Kafka
//! is reachable, since a live camera's frames could go nowhere before.
//!
//! Shutdown (SIGTERM/SIGINT, or every finite source ended): sources stop, frame threads send
//! their last partial batches, senders deliver what is queued within `SHUTDOWN_TIMEOUT`; what
//! is still undelivered then is counted as dropped (`shutdown`) and logged.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use common::kafka::{KafkaContext, KafkaMetrics};
use common::ops::{self, Readiness};
use common::retry::{RetryPolicy, retry};
use common::service::OpsServer;
use common::stall::Stalls;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::config::ProducerConfig;
use crate::kafka::KafkaSink;
use crate::metrics::{ProducerMetrics, StreamMetrics};
use crate::stream::{self, RunningStream, StreamSettings};

/// Runs the producer until every source has ended or `shutdown` is cancelled.
pub async fn run(
    config: ProducerConfig,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let streams = config.streams()?;
    let registry = ops::new_registry();
    let metrics = ProducerMetrics::register(&registry).context("registering metrics")?;
    let readiness = Readiness::new("connecting to Kafka");
    let kafka_metrics = KafkaMetrics::register(&registry).context("registering metrics")?;
    let stalls = Stalls::register(&registry, "producer", readiness.clone())
        .context("registering metrics")?;
    let ops_server = OpsServer::start(listener, &registry, &readiness, &config.http)
        .context("registering metrics")?;

    let kafka = KafkaSink::new(
        &config.kafka,
        KafkaContext::new("producer", &kafka_metrics),
        stalls.clone(),
    )
    .context("creating the Kafka producer")?;
    // A stream's own topic needs one partition (one key); a shared topic needs room for
    // consumers to share the work.
    let topics: BTreeMap<String, i32> = streams
        .iter()
        .map(|s| {
            let default = if s.topic_per_stream { 1 } else { 6 };
            (
                s.topic.clone(),
                config.kafka.topic_partitions.unwrap_or(default),
            )
        })
        .collect();
    // Until the topics exist there is nowhere to send a live camera's frames, so streams wait.
    let policy = RetryPolicy::forever(Duration::from_millis(100), Duration::from_secs(30));
    if retry(&policy, &stalls, &shutdown, || kafka.ensure_topics(&topics))
        .await
        .is_err()
    {
        ops_server.stop().await;
        return Ok(());
    }
    readiness.set_ready();

    let settings = StreamSettings {
        producer_session: Uuid::new_v4(),
        max_message_bytes: config.kafka.topics.max_message_bytes,
        queue_batches: config.queue_batches,
        idle_timeout: config.idle_timeout,
        stall_flush: config.stall_flush,
        reconnect_max_delay: config.reconnect_max_delay,
    };
    tracing::info!(
        producer_session = %settings.producer_session,
        streams = streams.len(),
        topics = ?topics.keys().collect::<Vec<_>>(),
        "producer started"
    );
    let mut running = Vec::with_capacity(streams.len());
    for stream_config in &streams {
        let stream_metrics = metrics.stream(stream_config.id.as_str());
        let started = stream::spawn(stream_config, &settings, &kafka, stream_metrics, &shutdown)
            .with_context(|| format!("starting stream {}", stream_config.id))?;
        running.push(started);
    }

    let progress = (!config.progress_interval.is_zero()).then(|| {
        let streams: Vec<StreamMetrics> = running.iter().map(|s| s.metrics.clone()).collect();
        let ids: Vec<String> = running.iter().map(|s| s.id.to_string()).collect();
        tokio::spawn(log_progress(ids, streams, config.progress_interval))
    });

    wait_for_streams(&mut running, &shutdown, config.shutdown_timeout).await;
    for stream in &running {
        let m = &stream.metrics;
        tracing::info!(
            stream_id = %stream.id,
            frames_received = m.frames_received.get(),
            frames_decoded = m.frames_decoded.get(),
            frames_sampled = m.frames_sampled.get(),
            frames_sent = m.frames_sent.get(),
            batches_sent = m.batches_sent(),
            frames_dropped = m.dropped_total(),
            frames_dropped_by_reason = %m.dropped_by_reason(),
            "stream finished"
        );
    }
    if let Some(progress) = progress {
        progress.abort();
    }
    let flush = kafka.clone();
    let flushed = tokio::task::spawn_blocking(move || flush.flush(Duration::from_secs(5))).await;
    if let Ok(Err(e)) = flushed {
        tracing::warn!(error = %e, "Kafka flush at exit");
    }
    readiness.set_not_ready("shutting down");
    ops_server.stop().await;
    tracing::info!("producer stopped");
    Ok(())
}

/// Waits until every stream is done; after `shutdown`, at most `deadline` more.
async fn wait_for_streams(
    running: &mut [RunningStream],
    shutdown: &CancellationToken,
    deadline: Duration,
) {
    let aborts: Vec<CancellationToken> = running.iter().map(|s| s.abort.clone()).collect();
    let all_done = async {
        for stream in running.iter_mut() {
            let _ = (&mut stream.sender).await;
        }
    };
    tokio::pin!(all_done);
    tokio::select! {
        _ = &mut all_done => return,
        _ = shutdown.cancelled() => {}
    }
    let started = Instant::now();
    if tokio::time::timeout(deadline, &mut all_done).await.is_err() {
        tracing::error!(
            waited_s = started.elapsed().as_secs_f64(),
            "shutdown deadline passed with batches undelivered; dropping them"
        );
        for abort in &aborts {
            abort.cancel();
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), all_done).await;
    }
}

/// One line per stream per interval: frames in and out per second, batches, drops, queue.
async fn log_progress(ids: Vec<String>, streams: Vec<StreamMetrics>, every: Duration) {
    let mut last: Vec<(u64, u64)> = streams
        .iter()
        .map(|m| (m.frames_received.get(), m.frames_sent.get()))
        .collect();
    let mut ticker = tokio::time::interval(every);
    ticker.tick().await;
    let mut before = Instant::now();
    loop {
        ticker.tick().await;
        let dt = before.elapsed().as_secs_f64().max(1e-3);
        before = Instant::now();
        for ((id, m), last) in ids.iter().zip(&streams).zip(last.iter_mut()) {
            let now = (m.frames_received.get(), m.frames_sent.get());
            tracing::info!(
                stream_id = %id,
                up = m.stream_up.get() == 1,
                fps_in = format!("{:.1}", (now.0 - last.0) as f64 / dt),
                fps_out = format!("{:.1}", (now.1 - last.1) as f64 / dt),
                batches = m.batches_sent(),
                dropped = m.dropped_total(),
                queued = m.queued_batches.get(),
                "progress"
            );
            *last = now;
        }
    }
}
