//! The per-batch JSON document in S3.
//!
//! The document holds every frame's detections (drawn or not), the model, the inference
//! timings, where the batch came from in Kafka, and the keys of the images written. It is
//! uploaded after the images, so its presence means the batch is complete.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use common::FrameBatch;
use common::inference_api::{Detection, ModelInfo, PredictResponse, Timings};
use serde::Serialize;

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
