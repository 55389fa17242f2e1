//! Batching: sampled JPEG frames in, `FrameBatch`es of exactly 25 frames out.
//!
//! Frame and batch sequence numbers live here, in the one object that outlives every
//! reconnect of a stream, so they keep increasing across reconnects. A batch with fewer frames
//! is only cut by [`Batcher::flush_partial`], which the stream calls at the end of a finite
//! source, after a stall longer than its flush timeout, and at shutdown; it is flagged partial.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use common::{FRAMES_PER_BATCH, Frame, FrameBatch, StreamId};
use uuid::Uuid;

use crate::jpeg::Jpeg;

#[derive(Debug)]
pub struct Batcher {
    stream_id: StreamId,
    producer_session: Uuid,
    next_batch_seq: u64,
    next_frame_seq: u64,
    frames: Vec<Frame>,
    last_push: Option<Instant>,
}

impl Batcher {
    pub fn new(stream_id: StreamId, producer_session: Uuid) -> Self {
        Self {
            stream_id,
            producer_session,
            next_batch_seq: 0,
            next_frame_seq: 0,
            frames: Vec::with_capacity(FRAMES_PER_BATCH),
            last_push: None,
        }
    }

    /// Adds a frame; returns the batch it completed, if any.
    pub fn push(
        &mut self,
        jpeg: Jpeg,
        pts_us: i64,
        captured_at: DateTime<Utc>,
    ) -> Option<FrameBatch> {
        self.frames.push(Frame {
            seq: self.next_frame_seq,
            pts_us,
            captured_at,
            width: jpeg.width,
            height: jpeg.height,
            jpeg: jpeg.bytes.into(),
        });
        self.next_frame_seq += 1;
        self.last_push = Some(Instant::now());
        (self.frames.len() == FRAMES_PER_BATCH).then(|| self.cut(false))
    }

    /// The frames waiting as a partial batch, if there are any.
    pub fn flush_partial(&mut self) -> Option<FrameBatch> {
        (!self.frames.is_empty()).then(|| self.cut(true))
    }

    /// How long frames have been waiting without a new one, if any are waiting.
    pub fn stalled_for(&self, now: Instant) -> Option<Duration> {
        if self.frames.is_empty() {
            return None;
        }
        self.last_push.map(|t| now.saturating_duration_since(t))
    }

    pub fn pending(&self) -> usize {
        self.frames.len()
    }

    fn cut(&mut self, partial: bool) -> FrameBatch {
        let frames = std::mem::replace(&mut self.frames, Vec::with_capacity(FRAMES_PER_BATCH));
        let batch = FrameBatch {
            stream_id: self.stream_id.clone(),
            producer_session: self.producer_session,
            batch_seq: self.next_batch_seq,
            // A partial cut that happens to hold 25 frames is a full batch.
            partial: partial && frames.len() < FRAMES_PER_BATCH,
            frames,
        };
        self.next_batch_seq += 1;
        batch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jpeg() -> Jpeg {
        Jpeg {
            bytes: vec![0xFF, 0xD8, 0xFF, 0xD9],
            width: 2,
            height: 2,
        }
    }

    fn batcher() -> Batcher {
        Batcher::new(StreamId::new("cam-1").unwrap(), Uuid::new_v4())
    }

    #[test]
    fn every_full_batch_has_25_frames_in_order() {
        let mut b = batcher();
        let mut batches = Vec::new();
        for i in 0..60 {
            if let Some(batch) = b.push(jpeg(), i * 100_000, Utc::now()) {
                batches.push(batch);
            }
        }
        assert_eq!(batches.len(), 2);
        for (n, batch) in batches.iter().enumerate() {
            assert_eq!(batch.frames.len(), FRAMES_PER_BATCH);
            assert!(!batch.partial);
            assert_eq!(batch.batch_seq, n as u64);
            let seqs: Vec<u64> = batch.frames.iter().map(|f| f.seq).collect();
            let expected: Vec<u64> = (n as u64 * 25..(n as u64 + 1) * 25).collect();
            assert_eq!(seqs, expected);
        }
        assert_eq!(b.pending(), 10);
        let rest = b.flush_partial().unwrap();
        assert!(rest.partial);
        assert_eq!(rest.batch_seq, 2);
        assert_eq!(rest.seq_range(), Some((50, 59)));
        assert!(b.flush_partial().is_none(), "nothing left to flush");
    }

    #[test]
    fn sequence_numbers_continue_after_a_partial_flush() {
        let mut b = batcher();
        b.push(jpeg(), 0, Utc::now());
        let first = b.flush_partial().unwrap();
        assert_eq!(first.seq_range(), Some((0, 0)));
        for i in 0..25 {
            if let Some(batch) = b.push(jpeg(), i, Utc::now()) {
                assert_eq!(batch.batch_seq, 1);
                assert_eq!(batch.seq_range(), Some((1, 25)));
            }
        }
    }

    #[test]
    fn stall_time_counts_only_while_frames_wait() {
        let mut b = batcher();
        let now = Instant::now();
        assert_eq!(b.stalled_for(now), None);
        b.push(jpeg(), 0, Utc::now());
        let later = Instant::now() + Duration::from_secs(3);
        assert!(b.stalled_for(later).unwrap() >= Duration::from_secs(2));
        b.flush_partial();
        assert_eq!(b.stalled_for(later), None);
    }
}
