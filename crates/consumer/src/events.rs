//! What the consumer reports about its work. Each outcome is one type whose `emit` both logs it
//! and counts it (as vector's `internal_events` do), so a log line and its counter cannot drift
//! apart, and a label value exists only if some code emits it.

use crate::metrics::ConsumerMetrics;

/// Why a message went to the dead-letter topic: its `dlq-reason` header and the `reason` label
/// of `consumer_dead_lettered_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadLetterReason {
    /// Not a `FrameBatch`.
    Undecodable,
    /// The batch's `stream_id` is not the stream of its Kafka key or per-stream topic.
    StreamMismatch,
    /// The inference service refused the batch's content.
    InferenceRejected,
    /// The inference service answered with a different number of frames.
    InferenceMismatch,
}

impl DeadLetterReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Undecodable => "undecodable",
            Self::StreamMismatch => "stream_mismatch",
            Self::InferenceRejected => "inference_rejected",
            Self::InferenceMismatch => "inference_mismatch",
        }
    }
}

/// How a batch ended: the `outcome` label of `consumer_batches_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BatchOutcome {
    Stored,
    DeadLettered,
}

impl BatchOutcome {
    fn as_str(self) -> &'static str {
        match self {
            Self::Stored => "stored",
            Self::DeadLettered => "dead_lettered",
        }
    }
}

/// How a frame of a stored batch ended: the `outcome` label of `consumer_frames_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FrameOutcome {
    Stored,
    /// The inference service could not read it; kept in the JSON with its error, no image.
    FrameError,
}

impl FrameOutcome {
    fn as_str(self) -> &'static str {
        match self {
            Self::Stored => "stored",
            Self::FrameError => "frame_error",
        }
    }
}

/// Batches dead-lettered so far, for the progress line.
pub fn dead_lettered_batches(metrics: &ConsumerMetrics) -> u64 {
    metrics
        .batches
        .with_label_values(&[BatchOutcome::DeadLettered.as_str()])
        .get()
}

/// A batch whose images and JSON are in S3.
#[derive(Debug)]
pub struct BatchStored<'a> {
    pub results_key: &'a str,
    pub frames: usize,
    /// Frames the service could not read.
    pub frame_errors: usize,
    pub images: usize,
}

impl BatchStored<'_> {
    pub fn emit(&self, metrics: &ConsumerMetrics) {
        let frames = |outcome: FrameOutcome, n: usize| {
            metrics
                .frames
                .with_label_values(&[outcome.as_str()])
                .inc_by(n as u64)
        };
        frames(FrameOutcome::Stored, self.frames - self.frame_errors);
        frames(FrameOutcome::FrameError, self.frame_errors);
        metrics
            .batches
            .with_label_values(&[BatchOutcome::Stored.as_str()])
            .inc();
        tracing::debug!(
            results_key = self.results_key,
            images = self.images,
            "batch stored"
        );
    }
}

/// A message the dead-letter topic acknowledged.
#[derive(Debug)]
pub struct DeadLettered<'a> {
    pub reason: DeadLetterReason,
    pub error: &'a str,
    pub dlq_topic: &'a str,
}

impl DeadLettered<'_> {
    pub fn emit(&self, metrics: &ConsumerMetrics) {
        metrics
            .dead_lettered
            .with_label_values(&[self.reason.as_str()])
            .inc();
        metrics
            .batches
            .with_label_values(&[BatchOutcome::DeadLettered.as_str()])
            .inc();
        tracing::warn!(
            reason = self.reason.as_str(),
            error = self.error,
            dlq_topic = self.dlq_topic,
            "message sent to the dead-letter topic"
        );
    }
}

/// Holds one unit of `consumer_in_flight_batches` while it lives.
#[derive(Debug)]
pub struct InFlight(prometheus::IntGauge);

impl InFlight {
    pub fn start(metrics: &ConsumerMetrics) -> Self {
        metrics.in_flight.inc();
        Self(metrics.in_flight.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics() -> ConsumerMetrics {
        ConsumerMetrics::register(&prometheus::Registry::new()).expect("metrics register")
    }

    #[test]
    fn a_dead_letter_counts_its_reason_and_its_batch_once() {
        let metrics = metrics();
        DeadLettered {
            reason: DeadLetterReason::StreamMismatch,
            error: "batch claims stream \"a\" but its key is \"b\"",
            dlq_topic: "video-frames.dlq",
        }
        .emit(&metrics);
        let reason = metrics
            .dead_lettered
            .with_label_values(&["stream_mismatch"]);
        assert_eq!(reason.get(), 1);
        let batches = metrics.batches.with_label_values(&["dead_lettered"]);
        assert_eq!(batches.get(), 1);
        assert_eq!(dead_lettered_batches(&metrics), 1);
    }

    #[test]
    fn a_stored_batch_splits_its_frames_by_outcome() {
        let metrics = metrics();
        BatchStored {
            results_key: "k",
            frames: 25,
            frame_errors: 2,
            images: 3,
        }
        .emit(&metrics);
        let frames = |o| metrics.frames.with_label_values(&[o]).get();
        assert_eq!((frames("stored"), frames("frame_error")), (23, 2));
        let batches = metrics.batches.with_label_values(&["stored"]);
        assert_eq!(batches.get(), 1);
    }

    #[test]
    fn the_in_flight_gauge_follows_the_guards() {
        let metrics = metrics();
        let first = InFlight::start(&metrics);
        let second = InFlight::start(&metrics);
        assert_eq!(metrics.in_flight.get(), 2);
        drop(first);
        drop(second);
        assert_eq!(metrics.in_flight.get(), 0);
    }
}
