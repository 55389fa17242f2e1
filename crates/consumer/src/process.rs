//! What happens to one Kafka message, from bytes to S3:
//!
//! 1. decode the `FrameBatch` (zero-copy); undecodable -> dead-letter topic (`undecodable`);
//!    one whose `stream_id` is not the stream of its Kafka key or of its per-stream topic ->
//!    dead-letter topic (`stream_mismatch`): it would write into another camera's S3 prefix;
//! 2. `POST /predict` with the message bytes as they are (retried while the service cannot
//!    answer); refused for its content (`common::inference_api::CONTENT_ERROR_CODES`) ->
//!    dead-letter topic (`inference_rejected`); any other refusal is the setup's fault and
//!    stalls the batch, retried, like an unreachable service;
//! 3. draw the frames the image policy picks (on a blocking thread) and upload them, all at
//!    once, each retried until stored;
//! 4. upload the batch's JSON last: its presence means the batch is complete.
//!
//! A frame the service could not read (a corrupt JPEG in an otherwise good batch) is kept in the
//! JSON with its `error` and no image; the rest of the batch is processed normally.

use std::time::Instant;

use bytes::Bytes;
use chrono::Utc;
use common::naming::TopicTemplate;
use common::{FrameBatch, wire};
use futures::future::try_join_all;
use tokio_util::sync::CancellationToken;

use crate::annotate;
use crate::dlq::{DeadLetter, DeadLetters};
use crate::events::{BatchStored, DeadLetterReason};
use crate::image_policy::ImagePolicy;
use crate::inference::{InferenceClient, InferenceError};
use crate::keys;
use crate::metrics::ConsumerMetrics;
use crate::results::{BatchDocument, KafkaSource};
use crate::store::Store;

/// One fetched message.
#[derive(Debug, Clone)]
pub struct Job {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Stored {
        frames: usize,
        images: usize,
        results_key: String,
    },
    DeadLettered {
        reason: DeadLetterReason,
    },
    /// Not a message of a frame topic (a pattern subscription also matches, e.g., dead-letter
    /// topics): committed without any work.
    Skipped,
}

/// The job could not finish because the consumer is shutting down; its offset stays uncommitted.
#[derive(Debug, thiserror::Error)]
#[error("interrupted by shutdown")]
pub struct Interrupted;

#[derive(Debug, Clone)]
pub struct Processor {
    /// The subscribed topics, to tell which stream a per-stream topic belongs to.
    pub topics: TopicTemplate,
    pub inference: InferenceClient,
    pub store: Store,
    pub dead_letters: DeadLetters,
    pub policy: ImagePolicy,
    pub jpeg_quality: u8,
    pub metrics: ConsumerMetrics,
}

impl Processor {
    pub async fn process(
        &self,
        job: &Job,
        cancel: &CancellationToken,
    ) -> Result<Outcome, Interrupted> {
        let batch = match wire::decode_bytes(job.payload.clone()) {
            Ok(batch) => batch,
            Err(e) => {
                return self
                    .dead_letter(job, DeadLetterReason::Undecodable, e.to_string(), cancel)
                    .await;
            }
        };
        if let Some(error) = self.stream_mismatch(job, &batch) {
            return self
                .dead_letter(job, DeadLetterReason::StreamMismatch, error, cancel)
                .await;
        }
        let span =
            tracing::info_span!("batch", stream_id = %batch.stream_id, batch_seq = batch.batch_seq);
        tracing::Instrument::instrument(self.process_batch(job, batch, cancel), span).await
    }

    /// Why the batch cannot be believed about its stream, if it cannot: its Kafka key and, for
    /// a per-stream topic, the topic's name are what the producer routed it by.
    fn stream_mismatch(&self, job: &Job, batch: &FrameBatch) -> Option<String> {
        let claimed = batch.stream_id.as_str();
        if let Some(key) = &job.key
            && key.as_slice() != claimed.as_bytes()
        {
            return Some(format!(
                "batch claims stream {claimed:?} but its key is {:?}",
                String::from_utf8_lossy(key)
            ));
        }
        if let Some(stream) = self.topics.stream_of(&job.topic)
            && stream.as_str() != claimed
        {
            return Some(format!(
                "batch claims stream {claimed:?} but topic {} is stream {:?}",
                job.topic,
                stream.as_str()
            ));
        }
        None
    }

    async fn process_batch(
        &self,
        job: &Job,
        batch: FrameBatch,
        cancel: &CancellationToken,
    ) -> Result<Outcome, Interrupted> {
        let response = match self.inference.predict(job.payload.clone(), cancel).await {
            Ok(response) => response,
            Err(InferenceError::Cancelled) => return Err(Interrupted),
            Err(InferenceError::Rejected(rejected)) => {
                return self
                    .dead_letter(
                        job,
                        DeadLetterReason::InferenceRejected,
                        rejected.to_string(),
                        cancel,
                    )
                    .await;
            }
        };
        if response.results.len() != batch.frames.len() {
            let error = format!(
                "{} results for {} frames",
                response.results.len(),
                batch.frames.len()
            );
            return self
                .dead_letter(job, DeadLetterReason::InferenceMismatch, error, cancel)
                .await;
        }

        let to_draw = self.policy.frames_to_draw(&response.results);
        let images = self.draw(&batch, &response.results, &to_draw).await;
        let mut image_keys: Vec<Option<String>> = vec![None; batch.frames.len()];
        let mut uploads = Vec::new();
        for (index, jpeg) in images {
            let key = keys::image_key(&batch, &batch.frames[index]);
            image_keys[index] = Some(key.clone());
            uploads.push(async move { self.store.put(&key, jpeg, "image/jpeg", cancel).await });
        }
        let uploaded = uploads.len();
        try_join_all(uploads).await.map_err(|_| Interrupted)?;
        self.metrics.images_uploaded.inc_by(uploaded as u64);

        let source = KafkaSource {
            topic: job.topic.clone(),
            partition: job.partition,
            offset: job.offset,
        };
        let document = BatchDocument::new(&batch, &response, source, &image_keys);
        let json = serde_json::to_vec_pretty(&document).map_err(|e| {
            tracing::error!(error = %e, "cannot serialise the results");
            Interrupted
        })?;
        let results_key = keys::results_key(&batch);
        self.store
            .put(&results_key, Bytes::from(json), "application/json", cancel)
            .await
            .map_err(|_| Interrupted)?;
        self.metrics.json_uploaded.inc();

        let now = Utc::now();
        for frame in &batch.frames {
            let age = (now - frame.captured_at).num_microseconds().unwrap_or(0) as f64 / 1e6;
            self.metrics.capture_to_s3_seconds.observe(age.max(0.0));
        }
        let failed = response
            .results
            .iter()
            .filter(|r| r.error.is_some())
            .count();
        BatchStored {
            results_key: &results_key,
            frames: batch.frames.len(),
            frame_errors: failed,
            images: uploaded,
        }
        .emit(&self.metrics);
        Ok(Outcome::Stored {
            frames: batch.frames.len(),
            images: uploaded,
            results_key,
        })
    }

    /// Annotated JPEGs of the frames at `indexes`; a frame that cannot be drawn is left out
    /// (logged), its detections still go to the JSON.
    async fn draw(
        &self,
        batch: &FrameBatch,
        results: &[common::inference_api::FrameResult],
        indexes: &[usize],
    ) -> Vec<(usize, Bytes)> {
        let work: Vec<(usize, Bytes, Vec<common::inference_api::Detection>)> = indexes
            .iter()
            .map(|&i| {
                (
                    i,
                    batch.frames[i].jpeg.clone(),
                    results[i].detections.clone(),
                )
            })
            .collect();
        let quality = self.jpeg_quality;
        let metrics = self.metrics.clone();
        let drawn = tokio::task::spawn_blocking(move || {
            work.into_iter()
                .filter_map(|(i, jpeg, detections)| {
                    let started = Instant::now();
                    let result = annotate::annotate_jpeg(&jpeg, &detections, quality);
                    metrics.annotate_seconds.observe(started.elapsed().as_secs_f64());
                    match result {
                        Ok(out) => Some((i, Bytes::from(out))),
                        Err(e) => {
                            tracing::warn!(frame_index = i, error = %e, "frame cannot be drawn; JSON only");
                            None
                        }
                    }
                })
                .collect()
        })
        .await;
        drawn.unwrap_or_else(|e| {
            tracing::error!(error = %e, "drawing thread failed");
            Vec::new()
        })
    }

    async fn dead_letter(
        &self,
        job: &Job,
        reason: DeadLetterReason,
        error: String,
        cancel: &CancellationToken,
    ) -> Result<Outcome, Interrupted> {
        let letter = DeadLetter {
            reason,
            error,
            topic: &job.topic,
            partition: job.partition,
            offset: job.offset,
            key: job.key.as_deref(),
            payload: &job.payload,
        };
        self.dead_letters
            .send(&letter, cancel)
            .await
            .map_err(|()| Interrupted)?;
        Ok(Outcome::DeadLettered { reason })
    }
}
