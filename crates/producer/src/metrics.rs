//! The producer's Prometheus metrics, all labelled by `stream`.
//!
//! Frames are counted at each stage: `received` (access units from the source), `decoded`
//! (pictures out of the decoder), `sampled` (kept by the frame-rate sampler), then `sent` in
//! batches. Nothing disappears without a count: every access unit or frame that is lost on the
//! way is counted in `producer_frames_dropped_total` with a [`DropReason`]. Pictures the
//! sampler skips are not drops; `decoded - sampled` is the sampling.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, exponential_buckets,
};

use crate::source::Gap;

/// Why frames were lost. Each is a value of the `reason` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Access units skipped after a (re)connect or a reset until an IDR picture arrived.
    AwaitingKeyframe,
    /// Pictures inside the decoder lost when it restarted after RTP packet loss.
    PacketLoss,
    /// Access units (and pictures inside the decoder) lost to a decoder error.
    Corrupt,
    /// Pictures inside the decoder (held back for reordering) when the connection dropped.
    Reconnect,
    /// Access units dropped because the frame thread fell behind a live source.
    DecoderBehind,
    /// Sampled frames whose JPEG encoding failed.
    EncodeFailed,
    /// Frames of the oldest queued batch, dropped because Kafka was too slow for a live source.
    Backpressure,
    /// Frames of a batch Kafka did not accept after every retry.
    DeliveryFailed,
    /// Frames of a batch that did not fit the message size limit even re-encoded.
    Oversize,
    /// Frames still queued when the shutdown deadline passed.
    Shutdown,
}

/// Pictures in the decoder when a gap forces it to restart are lost for the gap's reason.
impl From<Gap> for DropReason {
    fn from(gap: Gap) -> Self {
        match gap {
            Gap::PacketLoss => Self::PacketLoss,
            Gap::DecoderBehind => Self::DecoderBehind,
        }
    }
}

impl DropReason {
    pub const ALL: [DropReason; 10] = [
        Self::AwaitingKeyframe,
        Self::PacketLoss,
        Self::Corrupt,
        Self::Reconnect,
        Self::DecoderBehind,
        Self::EncodeFailed,
        Self::Backpressure,
        Self::DeliveryFailed,
        Self::Oversize,
        Self::Shutdown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::AwaitingKeyframe => "awaiting_keyframe",
            Self::PacketLoss => "packet_loss",
            Self::Corrupt => "corrupt",
            Self::Reconnect => "reconnect",
            Self::DecoderBehind => "decoder_behind",
            Self::EncodeFailed => "encode_failed",
            Self::Backpressure => "backpressure",
            Self::DeliveryFailed => "delivery_failed",
            Self::Oversize => "oversize",
            Self::Shutdown => "shutdown",
        }
    }
}

/// Metric families, registered once per process.
#[derive(Debug, Clone)]
pub struct ProducerMetrics {
    frames_received: IntCounterVec,
    frames_decoded: IntCounterVec,
    frames_sampled: IntCounterVec,
    frames_dropped: IntCounterVec,
    frames_sent: IntCounterVec,
    batches_sent: IntCounterVec,
    bytes_sent: IntCounterVec,
    delivery_seconds: HistogramVec,
    decode_seconds: HistogramVec,
    encode_seconds: HistogramVec,
    reconnects: IntCounterVec,
    stream_up: IntGaugeVec,
    reencoded_batches: IntCounterVec,
    delivery_retries: IntCounterVec,
    queued_batches: IntGaugeVec,
    packets_lost: IntCounterVec,
}

fn counter(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<IntCounterVec> {
    let c = IntCounterVec::new(Opts::new(name, help), labels)?;
    registry.register(Box::new(c.clone()))?;
    Ok(c)
}

fn gauge(registry: &Registry, name: &str, help: &str) -> prometheus::Result<IntGaugeVec> {
    let g = IntGaugeVec::new(Opts::new(name, help), &["stream"])?;
    registry.register(Box::new(g.clone()))?;
    Ok(g)
}

fn histogram(
    registry: &Registry,
    name: &str,
    help: &str,
    buckets: Vec<f64>,
) -> prometheus::Result<HistogramVec> {
    let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), &["stream"])?;
    registry.register(Box::new(h.clone()))?;
    Ok(h)
}

impl ProducerMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let s = &["stream"];
        // 0.1 ms .. ~3 s, for per-frame CPU work.
        let cpu = exponential_buckets(0.0001, 2.0, 16)?;
        // 1 ms .. ~65 s, for deliveries that may wait on retries.
        let delivery = exponential_buckets(0.001, 2.0, 17)?;
        Ok(Self {
            frames_received: counter(
                registry,
                "producer_frames_received_total",
                "Access units received from the source.",
                s,
            )?,
            frames_decoded: counter(
                registry,
                "producer_frames_decoded_total",
                "Pictures out of the H.264 decoder.",
                s,
            )?,
            frames_sampled: counter(
                registry,
                "producer_frames_sampled_total",
                "Pictures kept by the frame-rate sampler.",
                s,
            )?,
            frames_dropped: counter(
                registry,
                "producer_frames_dropped_total",
                "Access units or frames lost, by reason.",
                &["stream", "reason"],
            )?,
            frames_sent: counter(
                registry,
                "producer_frames_sent_total",
                "Frames in batches Kafka acknowledged.",
                s,
            )?,
            batches_sent: counter(
                registry,
                "producer_batches_sent_total",
                "Batches Kafka acknowledged, by whether they were partial.",
                &["stream", "partial"],
            )?,
            bytes_sent: counter(
                registry,
                "producer_bytes_sent_total",
                "Message bytes Kafka acknowledged.",
                s,
            )?,
            delivery_seconds: histogram(
                registry,
                "producer_delivery_seconds",
                "From handing a batch to Kafka to its acknowledgement, retries included.",
                delivery,
            )?,
            decode_seconds: histogram(
                registry,
                "producer_decode_seconds",
                "H.264 decode time per access unit.",
                cpu.clone(),
            )?,
            encode_seconds: histogram(
                registry,
                "producer_encode_seconds",
                "JPEG encode time per sampled frame.",
                cpu,
            )?,
            reconnects: counter(
                registry,
                "producer_reconnects_total",
                "Source reconnects, by reason.",
                &["stream", "reason"],
            )?,
            stream_up: gauge(
                registry,
                "producer_stream_up",
                "1 while the source is connected and delivering, else 0.",
            )?,
            reencoded_batches: counter(
                registry,
                "producer_reencoded_batches_total",
                "Batches re-encoded smaller to fit the message size limit.",
                s,
            )?,
            delivery_retries: counter(
                registry,
                "producer_delivery_retries_total",
                "Failed batch delivery attempts (each retried, unless a live stream ran out of retries).",
                s,
            )?,
            queued_batches: gauge(
                registry,
                "producer_queued_batches",
                "Batches waiting for Kafka.",
            )?,
            packets_lost: counter(
                registry,
                "producer_rtp_packets_lost_total",
                "RTP packets the camera sent that never arrived.",
                s,
            )?,
        })
    }

    /// Handles for one stream, so the hot path never looks labels up.
    pub fn stream(&self, stream: &str) -> StreamMetrics {
        StreamMetrics {
            frames_received: self.frames_received.with_label_values(&[stream]),
            frames_decoded: self.frames_decoded.with_label_values(&[stream]),
            frames_sampled: self.frames_sampled.with_label_values(&[stream]),
            frames_sent: self.frames_sent.with_label_values(&[stream]),
            batches_sent_full: self.batches_sent.with_label_values(&[stream, "false"]),
            batches_sent_partial: self.batches_sent.with_label_values(&[stream, "true"]),
            bytes_sent: self.bytes_sent.with_label_values(&[stream]),
            delivery_seconds: self.delivery_seconds.with_label_values(&[stream]),
            decode_seconds: self.decode_seconds.with_label_values(&[stream]),
            encode_seconds: self.encode_seconds.with_label_values(&[stream]),
            stream_up: self.stream_up.with_label_values(&[stream]),
            reencoded_batches: self.reencoded_batches.with_label_values(&[stream]),
            delivery_retries: self.delivery_retries.with_label_values(&[stream]),
            queued_batches: self.queued_batches.with_label_values(&[stream]),
            packets_lost: self.packets_lost.with_label_values(&[stream]),
            frames_dropped: self.frames_dropped.clone(),
            reconnects: self.reconnects.clone(),
            dropped_total: Arc::default(),
            stream: stream.to_string(),
        }
    }
}

/// One stream's metrics.
#[derive(Debug, Clone)]
pub struct StreamMetrics {
    pub frames_received: IntCounter,
    pub frames_decoded: IntCounter,
    pub frames_sampled: IntCounter,
    pub frames_sent: IntCounter,
    pub batches_sent_full: IntCounter,
    pub batches_sent_partial: IntCounter,
    pub bytes_sent: IntCounter,
    pub delivery_seconds: Histogram,
    pub decode_seconds: Histogram,
    pub encode_seconds: Histogram,
    pub stream_up: IntGauge,
    pub reencoded_batches: IntCounter,
    pub delivery_retries: IntCounter,
    pub queued_batches: IntGauge,
    pub packets_lost: IntCounter,
    frames_dropped: IntCounterVec,
    reconnects: IntCounterVec,
    dropped_total: Arc<AtomicU64>,
    stream: String,
}

impl StreamMetrics {
    pub fn dropped(&self, reason: DropReason, frames: u64) {
        if frames > 0 {
            self.frames_dropped
                .with_label_values(&[&self.stream, reason.as_str()])
                .inc_by(frames);
            self.dropped_total.fetch_add(frames, Ordering::Relaxed);
        }
    }

    /// Frames dropped for any reason, for progress logs.
    pub fn dropped_total(&self) -> u64 {
        self.dropped_total.load(Ordering::Relaxed)
    }

    /// The reasons frames were dropped for, as `reason=frames` pairs (`backpressure=25,
    /// reconnect=3`), for the summary logged when a stream ends.
    pub fn dropped_by_reason(&self) -> String {
        DropReason::ALL
            .iter()
            .filter_map(|reason| {
                let frames = self
                    .frames_dropped
                    .with_label_values(&[&self.stream, reason.as_str()])
                    .get();
                (frames > 0).then(|| format!("{}={frames}", reason.as_str()))
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn reconnect(&self, reason: &str) {
        self.reconnects
            .with_label_values(&[&self.stream, reason])
            .inc();
    }

    pub fn batches_sent(&self) -> u64 {
        self.batches_sent_full.get() + self.batches_sent_partial.get()
    }
}
