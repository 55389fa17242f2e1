//! `FrameBatch`: the unit of work between the producer and the consumer.
//!
//! One Kafka message carries one batch of [`FRAMES_PER_BATCH`] decoded, sampled, JPEG-encoded
//! frames of one stream. Batches are numbered per producer session and frames per stream, so the
//! consumer (and anyone auditing S3) can tell a gap from a restart.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::StreamId;

/// Frames in every full batch. Fewer only in a batch flagged [`FrameBatch::partial`].
pub const FRAMES_PER_BATCH: usize = 25;

/// Frames from one stream, in order, with where they came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameBatch {
    /// Which camera or file the frames come from; also the Kafka key, so one stream's batches
    /// stay ordered in one partition.
    pub stream_id: StreamId,
    /// New every time a producer process starts. With `batch_seq` it tells a consumer whether a
    /// jump in batch numbers is a restart or a loss.
    pub producer_session: Uuid,
    /// Monotonic per stream within one producer session, starting at 0.
    pub batch_seq: u64,
    /// Set only when the batch has fewer than [`FRAMES_PER_BATCH`] frames: at the end of a finite
    /// source, or when a live source stalled for longer than the producer's flush timeout.
    pub partial: bool,
    /// In presentation order; frame sequence numbers strictly increase.
    pub frames: Vec<Frame>,
}

/// One sampled frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Monotonic per stream, kept increasing across reconnects of the source, so gaps mean
    /// dropped frames and duplicates mean redelivery.
    pub seq: u64,
    /// Presentation timestamp in microseconds on the source's clock (restarts with the source
    /// connection; use `seq` and `captured_at` to order across reconnects).
    pub pts_us: i64,
    /// Wall-clock capture time: from the camera's RTCP sender reports when it sends them,
    /// otherwise when the frame arrived at the producer. The wire format keeps microseconds.
    pub captured_at: DateTime<Utc>,
    pub width: u32,
    pub height: u32,
    /// A baseline JPEG of `width` x `height` pixels. Shared, not copied, when a batch is decoded
    /// from a `Bytes` buffer.
    pub jpeg: Bytes,
}

impl FrameBatch {
    /// Sequence numbers of the first and last frame, if any.
    pub fn seq_range(&self) -> Option<(u64, u64)> {
        Some((self.frames.first()?.seq, self.frames.last()?.seq))
    }

    /// Total JPEG payload, which dominates the encoded size.
    pub fn jpeg_bytes(&self) -> usize {
        self.frames.iter().map(|f| f.jpeg.len()).sum()
    }
}
