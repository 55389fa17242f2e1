//! The HTTP contract between the consumer and the inference service.
//!
//! `POST /predict` takes frames in one of three forms and always answers [`PredictResponse`]:
//! - JSON [`JsonPredictRequest`], the body the Python service this project replaces accepted
//!   (base64 JPEGs), kept field-for-field so existing clients keep working;
//! - a binary [`FrameBatch`](crate::FrameBatch) in the [`wire`](crate::wire) format with content
//!   type [`FRAME_BATCH_CONTENT_TYPE`]: the consumer's path, no base64, no copy of the JPEGs;
//! - `multipart/form-data` with image files, for curl and browsers.
//!
//! Tuning knobs travel as query parameters ([`PredictOptions`]) so that they work the same for
//! all three bodies. Errors are [`ErrorResponse`] with a non-2xx status.

use serde::{Deserialize, Serialize};

/// Content type of a `POST /predict` body holding an encoded `FrameBatch`.
pub const FRAME_BATCH_CONTENT_TYPE: &str = "application/vnd.video-pipeline.frame-batch";

/// Error codes of a 400 that blame the request's content (frames that are not a FrameBatch,
/// none at all, or none that is an image): retrying the same bytes cannot help, so a client may
/// set the batch aside. Every other refusal (a wrong URL, an auth proxy, a limit set below a
/// batch, a query the service does not accept) is about the setup, not the batch.
pub const CONTENT_ERROR_CODES: &[&str] = &[
    "empty_body",
    "invalid_json",
    "invalid_base64",
    "invalid_multipart",
    "invalid_frame_batch",
    "no_frames",
    "invalid_image",
];

/// Whether a refusal with `status` and the service's `code` blames the content (see
/// [`CONTENT_ERROR_CODES`]).
pub fn is_content_error(status: u16, code: Option<&str>) -> bool {
    status == 400 && code.is_some_and(|c| CONTENT_ERROR_CODES.contains(&c))
}

/// JSON request body, as the Python service accepted it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JsonPredictRequest {
    pub stream_id: String,
    pub frames: Vec<JsonFrame>,
}

/// One frame of a JSON request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JsonFrame {
    pub frame_number: u64,
    /// The JPEG (or PNG) file, standard base64.
    pub frame_data: String,
    /// Passed through untouched; clients sent seconds as a number or an ISO-8601 string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<Timestamp>,
}

/// A client-side timestamp in whichever form the client used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum Timestamp {
    Seconds(f64),
    Text(String),
}

/// Query parameters of `POST /predict`; anything left out takes the service's default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams), into_params(parameter_in = Query))]
pub struct PredictOptions {
    /// Minimum confidence, 0..=1 (service default 0.25).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conf: Option<f32>,
    /// IoU above which NMS suppresses a box of the same class, 0..=1 (default 0.45).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iou: Option<f32>,
    /// Comma-separated class names to keep, e.g. `person,bicycle`; unknown names are an error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classes: Option<String>,
    /// Most detections returned per frame, highest confidence first (default 300).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_det: Option<usize>,
}

/// The answer to every successful `POST /predict`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PredictResponse {
    pub stream_id: String,
    /// One per input frame, in input order.
    pub results: Vec<FrameResult>,
    pub total_frames: usize,
    pub total_detections: usize,
    /// Model time for the whole request (sum over the batched runs), in milliseconds.
    pub total_inference_time_ms: f64,
    /// Which model answered, so stored results say what produced them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelInfo>,
    /// Where the request's time went.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timings: Option<Timings>,
}

/// Detections for one frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FrameResult {
    pub frame_number: u64,
    /// Size of the decoded image the boxes refer to (0 when the frame could not be decoded).
    #[serde(default)]
    pub width: u32,
    #[serde(default)]
    pub height: u32,
    pub detections: Vec<Detection>,
    /// This frame's share of the batched model run, in milliseconds.
    pub inference_time_ms: f64,
    /// Set when this frame could not be processed (for example a corrupt JPEG) while the rest of
    /// the request could; `detections` is then empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One detected object. Coordinates are pixels of the original image, top-left origin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Detection {
    pub x1: f32,
    pub y1: f32,
    pub x2: f32,
    pub y2: f32,
    pub confidence: f32,
    pub class_id: u32,
    pub class_name: String,
}

/// The model behind the service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ModelInfo {
    pub name: String,
    pub input_width: u32,
    pub input_height: u32,
    pub classes: usize,
}

/// Time spent per stage of one request, in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Timings {
    /// Longest wait of any chunk of the request for a model worker.
    pub queue_ms: f64,
    /// From admission until the last chunk was decoded and letterboxed (JPEG decode, resize,
    /// letterbox, tensor layout). Chunks go to the model as they are ready, so this overlaps
    /// the model's work on the earlier chunks.
    pub preprocess_ms: f64,
    /// `session.run`, summed over the request's chunks.
    pub inference_ms: f64,
    /// Box decode, NMS, mapping back to the original image, summed over the chunks.
    pub postprocess_ms: f64,
    pub total_ms: f64,
}

/// Body of every error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorResponse {
    /// What went wrong, for a person.
    pub error: String,
    /// A stable machine-readable reason, e.g. `payload_too_large`, `invalid_image`.
    pub code: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_request_of_the_python_service_parses() {
        let body = r#"{"stream_id":"cam1","frames":[
            {"frame_number":7,"frame_data":"/9j/","timestamp":1700000000.25},
            {"frame_number":8,"frame_data":"/9j/","timestamp":"2024-01-01T00:00:00Z"},
            {"frame_number":9,"frame_data":"/9j/"}]}"#;
        let req: JsonPredictRequest = serde_json::from_str(body).expect("parses");
        assert_eq!(req.frames.len(), 3);
        assert_eq!(
            req.frames[0].timestamp,
            Some(Timestamp::Seconds(1700000000.25))
        );
        assert!(matches!(req.frames[1].timestamp, Some(Timestamp::Text(_))));
        assert_eq!(req.frames[2].timestamp, None);
    }

    #[test]
    fn response_keeps_the_python_field_names() {
        let resp = PredictResponse {
            stream_id: "cam1".into(),
            results: vec![FrameResult {
                frame_number: 1,
                width: 640,
                height: 480,
                detections: vec![Detection {
                    x1: 1.0,
                    y1: 2.0,
                    x2: 3.0,
                    y2: 4.0,
                    confidence: 0.5,
                    class_id: 0,
                    class_name: "person".into(),
                }],
                inference_time_ms: 12.5,
                error: None,
            }],
            total_frames: 1,
            total_detections: 1,
            total_inference_time_ms: 12.5,
            model: None,
            timings: None,
        };
        let v = serde_json::to_value(&resp).expect("serialises");
        for key in [
            "stream_id",
            "results",
            "total_frames",
            "total_detections",
            "total_inference_time_ms",
        ] {
            assert!(v.get(key).is_some(), "missing {key}");
        }
        let det = &v["results"][0]["detections"][0];
        for key in [
            "x1",
            "y1",
            "x2",
            "y2",
            "confidence",
            "class_id",
            "class_name",
        ] {
            assert!(det.get(key).is_some(), "missing detection field {key}");
        }
        assert_eq!(v["results"][0]["frame_number"], 1);
        assert_eq!(v["results"][0]["inference_time_ms"], 12.5);
        let back: PredictResponse = serde_json::from_value(v).expect("round trip");
        assert_eq!(back, resp);
    }
}
