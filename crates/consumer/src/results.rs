//! The per-batch JSON document in S3, and which frames become images.
//!
//! The document holds every frame's detections (drawn or not), the model, the inference
//! timings, where the batch came from in Kafka, and the keys of the images written. It is
//! uploaded after the images, so its presence means the batch is complete.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use clap::ValueEnum;
use common::FrameBatch;
use common::inference_api::{Detection, FrameResult, ModelInfo, PredictResponse, Timings};
use serde::Serialize;

/// Which frames of a batch are drawn and uploaded as images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ImagePolicy {
    /// Frames with detections, and at least one frame per batch (the first, if none has any).
    Detections,
    All,
    /// JSON only.
    None,
}

impl ImagePolicy {
    /// Indexes of the frames to draw.
    pub fn frames_to_draw(self, results: &[FrameResult]) -> Vec<usize> {
        match self {
            Self::All => (0..results.len())
                .filter(|&i| results[i].error.is_none())
                .collect(),
            Self::None => Vec::new(),
            Self::Detections => {
                let with: Vec<usize> = (0..results.len())
                    .filter(|&i| results[i].error.is_none() && !results[i].detections.is_empty())
                    .collect();
                if with.is_empty() {
                    results
                        .iter()
                        .position(|r| r.error.is_none())
                        .into_iter()
                        .collect()
                } else {
                    with
                }
            }
        }
    }
}

/// Where the batch was in Kafka.
#[derive(Debug, Clone, Serialize)]
pub struct KafkaSource {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

#[derive(Debug, Serialize)]
pub struct FrameDocument<'a> {
    pub seq: u64,
    pub pts_us: i64,
    pub captured_at: DateTime<Utc>,
    pub width: u32,
    pub height: u32,
    pub detections: &'a [Detection],
    /// The annotated image's key, when this frame was drawn.
    pub image_key: Option<String>,
    /// Why the inference service could not process this frame (e.g. a corrupt JPEG).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'a str>,
}

#[derive(Debug, Serialize)]
pub struct BatchDocument<'a> {
    pub stream_id: &'a str,
    pub producer_session: String,
    pub batch_seq: u64,
    pub partial: bool,
    pub source: KafkaSource,
    pub model: Option<&'a ModelInfo>,
    pub timings: Option<&'a Timings>,
    pub total_inference_time_ms: f64,
    pub processed_at: DateTime<Utc>,
    pub detection_counts: BTreeMap<&'a str, usize>,
    pub image_keys: Vec<String>,
    pub frames: Vec<FrameDocument<'a>>,
}

impl<'a> BatchDocument<'a> {
    /// `image_keys[i]` is frame i's image key, if it was drawn.
    pub fn new(
        batch: &'a FrameBatch,
        response: &'a PredictResponse,
        source: KafkaSource,
        image_keys: &[Option<String>],
    ) -> Self {
        let mut detection_counts = BTreeMap::new();
        for d in response.results.iter().flat_map(|r| &r.detections) {
            *detection_counts.entry(d.class_name.as_str()).or_insert(0) += 1;
        }
        let frames = batch
            .frames
            .iter()
            .zip(&response.results)
            .zip(image_keys)
            .map(|((frame, result), key)| FrameDocument {
                seq: frame.seq,
                pts_us: frame.pts_us,
                captured_at: frame.captured_at,
                width: frame.width,
                height: frame.height,
                detections: &result.detections,
                image_key: key.clone(),
                error: result.error.as_deref(),
            })
            .collect();
        Self {
            stream_id: batch.stream_id.as_str(),
            producer_session: batch.producer_session.to_string(),
            batch_seq: batch.batch_seq,
            partial: batch.partial,
            source,
            model: response.model.as_ref(),
            timings: response.timings.as_ref(),
            total_inference_time_ms: response.total_inference_time_ms,
            processed_at: Utc::now(),
            detection_counts,
            image_keys: image_keys.iter().flatten().cloned().collect(),
            frames,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(detections: usize, error: bool) -> FrameResult {
        FrameResult {
            frame_number: 0,
            width: 2,
            height: 2,
            detections: (0..detections)
                .map(|_| Detection {
                    x1: 0.0,
                    y1: 0.0,
                    x2: 1.0,
                    y2: 1.0,
                    confidence: 0.5,
                    class_id: 0,
                    class_name: "person".into(),
                })
                .collect(),
            inference_time_ms: 1.0,
            error: error.then(|| "corrupt".to_string()),
        }
    }

    #[test]
    fn default_policy_draws_frames_with_detections() {
        let results = [
            result(0, false),
            result(2, false),
            result(1, true),
            result(1, false),
        ];
        assert_eq!(ImagePolicy::Detections.frames_to_draw(&results), [1, 3]);
        assert_eq!(
            ImagePolicy::All.frames_to_draw(&results),
            [0, 1, 3],
            "never a frame that failed"
        );
        assert!(ImagePolicy::None.frames_to_draw(&results).is_empty());
    }

    #[test]
    fn default_policy_draws_at_least_one_frame_per_batch() {
        let results = [result(0, true), result(0, false), result(0, false)];
        assert_eq!(ImagePolicy::Detections.frames_to_draw(&results), [1]);
        let all_failed = [result(0, true)];
        assert!(
            ImagePolicy::Detections
                .frames_to_draw(&all_failed)
                .is_empty()
        );
    }
}
