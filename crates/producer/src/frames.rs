//! The frame thread of one stream: access units in, encoded Kafka payloads out.
//!
//! decode (OpenH264) -> sample by timestamp -> JPEG (libjpeg-turbo) -> batch of 25 ->
//! size guard -> wire encoding -> the stream's [`BatchQueue`]. All of it is CPU work, so it
//! runs on a dedicated thread per stream and never on the async executor; the Kafka sender
//! task on the other side of the queue only moves finished payloads.
//!
//! [`run_file`] drives it from an MP4 file, [`run_rtsp`] from the RTSP task's channel.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use common::{FrameBatch, StreamId, wire};
use tokio_util::sync::CancellationToken;

use crate::batch::Batcher;
use crate::decode::{DecodeError, Fed, H264Decoder, Picture};
use crate::jpeg::JpegEncoder;
use crate::metrics::{DropReason, StreamMetrics};
use crate::queue::{BatchQueue, Pushed};
use crate::sample::Sampler;
use crate::size_guard::{self, Fit};
use crate::source::AccessUnit;
use crate::source::file::{FileItem, FileReader};
use crate::source::rtsp::RtspEvent;

/// A batch encoded for Kafka, with what the sender needs to account for it.
#[derive(Debug)]
pub struct Outgoing {
    pub batch_seq: u64,
    pub frames: usize,
    pub first_seq: u64,
    pub last_seq: u64,
    pub partial: bool,
    pub payload: Vec<u8>,
}

impl Outgoing {
    fn encode(batch: &FrameBatch) -> Result<Self, common::WireError> {
        let (first_seq, last_seq) = batch.seq_range().unwrap_or_default();
        Ok(Self {
            batch_seq: batch.batch_seq,
            frames: batch.frames.len(),
            first_seq,
            last_seq,
            partial: batch.partial,
            payload: wire::encode(batch)?,
        })
    }
}

/// Everything after the decoder: sampler, encoder, batcher and the hand-off to Kafka.
#[derive(Debug)]
pub struct FrameSink {
    sampler: Sampler,
    encoder: JpegEncoder,
    batcher: Batcher,
    queue: Arc<BatchQueue<Outgoing>>,
    metrics: StreamMetrics,
    max_message_bytes: usize,
    /// JPEG time spent inside the current decode call (subtracted from the decode time).
    encode_time: Duration,
}

impl FrameSink {
    pub fn new(
        sampler: Sampler,
        encoder: JpegEncoder,
        batcher: Batcher,
        queue: Arc<BatchQueue<Outgoing>>,
        metrics: StreamMetrics,
        max_message_bytes: usize,
    ) -> Self {
        Self {
            sampler,
            encoder,
            batcher,
            queue,
            metrics,
            max_message_bytes,
            encode_time: Duration::ZERO,
        }
    }

    fn picture(&mut self, picture: Picture<'_>) {
        self.metrics.frames_decoded.inc();
        if !self.sampler.keep(picture.pts_us) {
            return;
        }
        self.metrics.frames_sampled.inc();
        let started = Instant::now();
        let encoded = self.encoder.encode(&picture);
        let spent = started.elapsed();
        self.encode_time += spent;
        self.metrics.encode_seconds.observe(spent.as_secs_f64());
        let jpeg = match encoded {
            Ok(jpeg) => jpeg,
            Err(e) => {
                self.metrics.dropped(DropReason::EncodeFailed, 1);
                tracing::error!(error = %e, pts_us = picture.pts_us, "JPEG encoding failed; frame dropped");
                return;
            }
        };
        let captured_at =
            DateTime::<Utc>::from_timestamp_micros(picture.captured_at_us).unwrap_or_else(Utc::now);
        if let Some(batch) = self.batcher.push(jpeg, picture.pts_us, captured_at) {
            self.send(batch);
        }
    }

    /// Size guard, wire encoding, queue.
    fn send(&mut self, mut batch: FrameBatch) {
        let frames = batch.frames.len() as u64;
        match size_guard::fit(&mut batch, self.max_message_bytes) {
            Ok(Fit::AsIs { .. }) => {}
            Ok(Fit::Reencoded {
                quality,
                halved,
                from_bytes,
                bytes,
            }) => {
                self.metrics.reencoded_batches.inc();
                tracing::warn!(
                    batch_seq = batch.batch_seq,
                    from_bytes,
                    bytes,
                    limit = self.max_message_bytes,
                    quality,
                    halved,
                    "batch over the message size limit; re-encoded smaller"
                );
            }
            Err(e) => {
                self.metrics.dropped(DropReason::Oversize, frames);
                tracing::error!(batch_seq = batch.batch_seq, error = %e, "batch dropped");
                return;
            }
        }
        let outgoing = match Outgoing::encode(&batch) {
            Ok(outgoing) => outgoing,
            Err(e) => {
                // The batcher and encoder only make valid batches; this is a bug, not input.
                self.metrics.dropped(DropReason::EncodeFailed, frames);
                tracing::error!(batch_seq = batch.batch_seq, error = %e, "batch cannot be encoded; dropped");
                return;
            }
        };
        match self.queue.push(outgoing) {
            Pushed::Queued => {}
            Pushed::DroppedOldest(old) => {
                self.metrics
                    .dropped(DropReason::Backpressure, old.frames as u64);
                tracing::warn!(
                    dropped_batch_seq = old.batch_seq,
                    dropped_frames = old.frames,
                    first_seq = old.first_seq,
                    last_seq = old.last_seq,
                    "Kafka is behind; dropped the oldest queued batch of this live stream"
                );
            }
            Pushed::Closed(lost) => {
                self.metrics
                    .dropped(DropReason::Shutdown, lost.frames as u64);
            }
        }
        self.metrics.queued_batches.set(self.queue.len() as i64);
    }

    fn flush_partial(&mut self) {
        if let Some(batch) = self.batcher.flush_partial() {
            self.send(batch);
        }
    }
}

/// Decoder and sink of one stream, for as long as the stream lives (across reconnects).
#[derive(Debug)]
pub struct FramePipeline {
    decoder: H264Decoder,
    sink: FrameSink,
}

impl FramePipeline {
    pub fn new(decoder: H264Decoder, sink: FrameSink) -> Self {
        Self { decoder, sink }
    }

    /// A new connection: the decoder and the sampler start over.
    pub fn new_timeline(&mut self) {
        self.reset_decoder(DropReason::Reconnect);
        self.sink.sampler.restart();
    }

    fn reset_decoder(&mut self, reason: DropReason) {
        match self.decoder.reset() {
            Ok(lost) => self.sink.metrics.dropped(reason, lost as u64),
            Err(e) => tracing::error!(error = %e, "cannot restart the decoder"),
        }
    }

    pub fn feed(&mut self, unit: AccessUnit) {
        if let Some(gap) = unit.discontinuity {
            self.reset_decoder(DropReason::from(gap));
        }
        let started = Instant::now();
        self.sink.encode_time = Duration::ZERO;
        let sink = &mut self.sink;
        let result = self
            .decoder
            .decode(&unit.data, unit.pts_us, unit.captured_at_us, |p| {
                sink.picture(p)
            });
        let decode_time = started.elapsed().saturating_sub(self.sink.encode_time);
        self.sink
            .metrics
            .decode_seconds
            .observe(decode_time.as_secs_f64());
        match result {
            Ok(Fed::Decoded { dropped }) => self
                .sink
                .metrics
                .dropped(DropReason::Corrupt, dropped as u64),
            Ok(Fed::AwaitingKeyframe) => self.sink.metrics.dropped(DropReason::AwaitingKeyframe, 1),
            Err(DecodeError::Corrupt { message, lost }) => {
                self.sink.metrics.dropped(DropReason::Corrupt, lost as u64);
                tracing::warn!(error = %message, lost, pts_us = unit.pts_us, "corrupt H.264; skipping to the next IDR picture");
            }
            Err(e @ DecodeError::Create(_)) => {
                self.sink.metrics.dropped(DropReason::Corrupt, 1);
                tracing::error!(error = %e, "decoder unavailable");
            }
        }
    }

    /// The end of a pass over a file: pictures held back for reordering come out.
    pub fn end_of_pass(&mut self) {
        let sink = &mut self.sink;
        if let Err(e) = self.decoder.finish(|p| sink.picture(p)) {
            tracing::warn!(error = %e, "decoder flush at the end of the file failed");
        }
    }

    /// Sends waiting frames as a partial batch if none came for `stall`.
    pub fn flush_if_stalled(&mut self, stall: Duration) {
        if self
            .sink
            .batcher
            .stalled_for(Instant::now())
            .is_some_and(|d| d >= stall)
        {
            tracing::info!(
                frames = self.sink.batcher.pending(),
                "source stalled; sending a partial batch"
            );
            self.sink.flush_partial();
        }
    }

    /// The end of the stream: remaining pictures and frames go out, the queue closes.
    pub fn finish(mut self) {
        self.end_of_pass();
        self.sink.flush_partial();
        self.sink.queue.close();
    }
}

/// Plays a file through the pipeline until it ends or `shutdown`.
pub fn run_file(
    stream: &StreamId,
    mut reader: FileReader,
    mut pipeline: FramePipeline,
    shutdown: &CancellationToken,
) {
    while !shutdown.is_cancelled() {
        match reader.next(Duration::from_millis(100)) {
            Ok(None) => {}
            Ok(Some(FileItem::Unit(unit))) => {
                pipeline.sink.metrics.frames_received.inc();
                pipeline.feed(unit);
            }
            Ok(Some(FileItem::EndOfPass)) => pipeline.end_of_pass(),
            Ok(Some(FileItem::End)) => {
                tracing::info!(stream = %stream, "end of file");
                break;
            }
            Err(e) => {
                tracing::error!(stream = %stream, error = %e, "cannot read the file; stream stopped");
                break;
            }
        }
    }
    pipeline.finish();
}

/// Runs the pipeline on what the RTSP task sends, until that task ends.
pub fn run_rtsp(events: Receiver<RtspEvent>, mut pipeline: FramePipeline, stall_flush: Duration) {
    let tick = stall_flush.clamp(Duration::from_millis(50), Duration::from_millis(250));
    loop {
        match events.recv_timeout(tick) {
            Ok(RtspEvent::Connected) => pipeline.new_timeline(),
            Ok(RtspEvent::Unit(unit)) => pipeline.feed(unit),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        pipeline.flush_if_stalled(stall_flush);
    }
    pipeline.finish();
}
