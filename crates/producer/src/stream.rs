//! One stream, assembled: source -> frame thread -> queue -> Kafka sender.
//!
//! ```text
//!  RTSP task (async, reconnects) --channel--> frame thread --BatchQueue--> Kafka sender task
//!  MP4 file ------------------(read by the frame thread itself)-----^
//! ```
//! Streams share nothing but the Kafka producer and the metric families, so a dead camera or
//! a slow file never holds up another stream.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use common::StreamId;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::batch::Batcher;
use crate::config::{SourceKind, StreamConfig};
use crate::decode::H264Decoder;
use crate::frames::{self, FramePipeline, FrameSink};
use crate::jpeg::JpegEncoder;
use crate::kafka::KafkaSink;
use crate::metrics::StreamMetrics;
use crate::queue::{BatchQueue, Overflow};
use crate::sample::Sampler;
use crate::source::file::{FileReader, Mp4Video};
use crate::source::rtsp::{self, RtspSettings};

/// Settings every stream shares.
#[derive(Debug, Clone)]
pub struct StreamSettings {
    pub producer_session: Uuid,
    pub max_message_bytes: usize,
    pub queue_batches: usize,
    pub idle_timeout: Duration,
    pub stall_flush: Duration,
    pub reconnect_max_delay: Duration,
}

/// Access units buffered between a live source and its frame thread (~2 s at 30 fps): enough
/// to ride out a slow JPEG, not enough to hide a thread that cannot keep up.
const SOURCE_CHANNEL_UNITS: usize = 64;

/// A running stream.
#[derive(Debug)]
pub struct RunningStream {
    pub id: StreamId,
    pub metrics: StreamMetrics,
    /// Ends when the stream is done: its source ended or stopped, and its queue is drained.
    pub sender: JoinHandle<()>,
    /// Cancelled by the shutdown deadline: the sender stops retrying and counts what is left.
    pub abort: CancellationToken,
}

/// Starts a stream's threads and tasks. Fails only for a file that cannot be opened as H.264.
pub fn spawn(
    config: &StreamConfig,
    settings: &StreamSettings,
    kafka: &KafkaSink,
    metrics: StreamMetrics,
    shutdown: &CancellationToken,
) -> anyhow::Result<RunningStream> {
    let live = config.source.is_live();
    let overflow = if live {
        Overflow::DropOldest
    } else {
        Overflow::Block
    };
    let queue = Arc::new(BatchQueue::new(settings.queue_batches, overflow));
    let sink = FrameSink::new(
        Sampler::new(config.frame_rate),
        JpegEncoder::new(config.jpeg_quality, config.max_width, config.max_height)
            .context("JPEG encoder")?,
        Batcher::new(config.id.clone(), settings.producer_session),
        queue.clone(),
        metrics.clone(),
        settings.max_message_bytes,
    );
    let pipeline = FramePipeline::new(H264Decoder::new().context("H.264 decoder")?, sink);
    let span = tracing::info_span!("stream", stream_id = %config.id);
    let thread = std::thread::Builder::new().name(format!("frames-{}", config.id));

    match &config.source {
        SourceKind::File { path, pace, loops } => {
            let video = Mp4Video::open(path)?;
            tracing::info!(
                stream_id = %config.id,
                path = %path.display(),
                width = video.width,
                height = video.height,
                pictures = video.len(),
                duration_s = video.duration_us() as f64 / 1e6,
                ?pace,
                loops,
                "file source opened"
            );
            metrics.stream_up.set(1);
            let reader = FileReader::new(video, *pace, *loops);
            let (id, shutdown, span, up) = (
                config.id.clone(),
                shutdown.clone(),
                span.clone(),
                metrics.stream_up.clone(),
            );
            thread
                .spawn(move || {
                    let _entered = span.enter();
                    frames::run_file(&id, reader, pipeline, &shutdown);
                    up.set(0);
                })
                .context("starting the frame thread")?;
        }
        SourceKind::Rtsp { url, transport } => {
            let (tx, rx) = std::sync::mpsc::sync_channel(SOURCE_CHANNEL_UNITS);
            let stall = settings.stall_flush;
            let thread_span = span.clone();
            thread
                .spawn(move || {
                    let _entered = thread_span.enter();
                    frames::run_rtsp(rx, pipeline, stall);
                })
                .context("starting the frame thread")?;
            let rtsp_settings = RtspSettings {
                url: url.clone(),
                transport: *transport,
                idle_timeout: settings.idle_timeout,
                reconnect_max_delay: settings.reconnect_max_delay,
            };
            tokio::spawn(tracing::Instrument::instrument(
                rtsp::run(rtsp_settings, tx, metrics.clone(), shutdown.clone()),
                span.clone(),
            ));
        }
    }

    let abort = CancellationToken::new();
    let sender = tokio::spawn(tracing::Instrument::instrument(
        {
            let (kafka, id, topic, queue, metrics, abort) = (
                kafka.clone(),
                config.id.clone(),
                config.topic.clone(),
                queue.clone(),
                metrics.clone(),
                abort.clone(),
            );
            async move {
                kafka
                    .run_stream(id, topic, queue, metrics, live, abort)
                    .await
            }
        },
        span,
    ));
    Ok(RunningStream {
        id: config.id.clone(),
        metrics,
        sender,
        abort,
    })
}
