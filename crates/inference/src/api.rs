//! The HTTP API: `POST /predict` in three body forms, `/stats`, `/openapi.json`, `/docs`, plus
//! the shared `/health`, `/ready` and `/metrics`.
//!
//! What happens to bad input (every error is JSON [`ErrorResponse`] with a stable `code`):
//!
//! | input | status | code |
//! |---|---|---|
//! | no or unsupported `Content-Type` | 415 | `unsupported_media_type` |
//! | empty body | 400 | `empty_body` |
//! | body over `--max-body-bytes` | 413 | `payload_too_large` |
//! | malformed JSON, base64, multipart or FrameBatch | 400 | `invalid_json`, `invalid_base64`, `invalid_multipart`, `invalid_frame_batch` |
//! | zero frames | 400 | `no_frames` |
//! | more than `--max-frames` frames | 413 | `too_many_frames` |
//! | `conf`/`iou` NaN or outside 0..=1, `max_det` 0 or over 1000, unparsable query | 400 | `invalid_options` |
//! | a class name the model does not know | 400 | `unknown_class` |
//! | request bodies being read or held over `--max-body-bytes-in-flight` | 503 + `Retry-After` | `busy` |
//! | body not all arrived within `--http-body-timeout` | 408 | `body_timeout` |
//! | queue full | 503 + `Retry-After` | `queue_full` |
//! | model still loading | 503 + `Retry-After` | `not_ready` |
//!
//! A frame that is not a decodable image (corrupt, truncated, not JPEG/PNG, or over
//! `--max-image-pixels`) does not fail a batch: its result carries `error` and no detections,
//! and the other frames are answered normally. Only when *no* frame of the request is a valid
//! image is the whole request refused with 400 `invalid_image`.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use bytes::Bytes;
use common::inference_api::{
    Detection, ErrorResponse, FRAME_BATCH_CONTENT_TYPE, FrameResult, JsonFrame, JsonPredictRequest,
    ModelInfo, PredictOptions, PredictResponse, Timestamp, Timings,
};
use common::ops::Readiness;
use prometheus::Registry;
use utoipa::OpenApi;

use crate::body_budget::{BodyBudget, Reserved};
use crate::config::InferenceConfig;
use crate::engine::{Engine, EngineError, FrameOutcome, StageTimes};
use crate::metrics::InferenceMetrics;
use crate::postprocess::Filter;
use crate::stats::Stats;

/// Largest `max_det` a request may ask for.
const MAX_DET_LIMIT: usize = 1000;

/// Shared by all handlers.
#[derive(Debug, Clone)]
pub struct AppState {
    pub config: Arc<InferenceConfig>,
    /// Set once the model is loaded and warmed up; until then `/predict` answers 503.
    pub engine: Arc<OnceLock<Arc<Engine>>>,
    pub metrics: InferenceMetrics,
    pub stats: Arc<Stats>,
    /// Bytes of request bodies held at once, reserved before reading.
    pub body_budget: BodyBudget,
}

pub fn router(state: AppState, registry: Registry, readiness: Readiness) -> Router {
    Router::new()
        .route("/predict", post(predict))
        .route("/stats", get(stats))
        .route("/openapi.json", get(openapi))
        .route("/docs", get(docs))
        .with_state(state)
        .merge(common::ops::router(registry, readiness))
        // the body limit is enforced by `read_body` with a JSON 413, not by axum's plain-text one
        .layer(DefaultBodyLimit::disable())
}

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
    fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorResponse {
            error: self.message,
            code: self.code.to_string(),
        };
        let mut resp = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        resp
    }
}

/// Frames to run, in request order, with the numbers the client gave them.
struct Frames {
    stream_id: String,
    numbers: Vec<u64>,
    images: Vec<Bytes>,
    /// The body's share of the budget, held until the request is answered.
    _reserved: Option<Reserved>,
}

/// Detect objects in one or more frames.
#[utoipa::path(
    post,
    path = "/predict",
    params(PredictOptions),
    request_body(
        description = "JSON with base64 JPEGs (the Python service's format), a binary FrameBatch (`application/vnd.video-pipeline.frame-batch`, see WIRE_FORMAT.md), or multipart/form-data with image files (optional text field `stream_id`).",
        content(
            (JsonPredictRequest = "application/json"),
            (Vec<u8> = "application/vnd.video-pipeline.frame-batch"),
            (Vec<u8> = "multipart/form-data"),
        )
    ),
    responses(
        (status = 200, description = "Detections per frame, in request order; boxes in original pixels, clamped to the image", body = PredictResponse),
        (status = 400, description = "Malformed request, options or images", body = ErrorResponse),
        (status = 413, description = "Body or frame count over the limit", body = ErrorResponse),
        (status = 415, description = "Unsupported content type", body = ErrorResponse),
        (status = 503, description = "Queue full or model loading; retry after the Retry-After header", body = ErrorResponse),
    )
)]
async fn predict(State(state): State<AppState>, req: Request) -> Response {
    let started = Instant::now();
    let result = predict_inner(&state, req, started).await;
    let status = match &result {
        Ok(_) => StatusCode::OK,
        Err(e) => e.status,
    };
    state
        .metrics
        .requests
        .with_label_values(&[status.as_str()])
        .inc();
    state
        .metrics
        .request_seconds
        .observe(started.elapsed().as_secs_f64());
    match result {
        Ok(resp) => axum::Json(resp).into_response(),
        Err(e) => {
            state.stats.record_failure();
            tracing::info!(status = %status, code = e.code, error = %e.message, "predict refused");
            e.into_response()
        }
    }
}

/// One request: engine ready, options valid, frames read within the budgets, detections run,
/// the answer assembled.
async fn predict_inner(
    state: &AppState,
    req: Request,
    started: Instant,
) -> Result<PredictResponse, ApiError> {
    let engine = state.engine.get().ok_or_else(not_ready)?.clone();
    let filter = request_filter(&req, state, &engine)?;
    let frames = read_frames(req, state.config.max_body_bytes, &state.body_budget).await?;
    let n = frames.images.len();
    check_frame_count(n, state.config.max_frames)?;
    state.metrics.frames.inc_by(n as u64);
    state.metrics.batch_frames.observe(n as f64);

    let (outcomes, times) = engine.detect(frames.images, filter).await?;
    if let Some(refusal) = no_valid_image(&outcomes) {
        state.metrics.frame_errors.inc_by(n as u64);
        return Err(refusal);
    }
    let results = frame_results(frames.numbers, outcomes, &state.metrics);
    observe_stages(&state.metrics, &times);
    let total = started.elapsed();
    let total_detections = results.iter().map(|r| r.detections.len()).sum();
    state.stats.record_success(n, total_detections, total);
    let spec = &engine.spec;
    Ok(PredictResponse {
        stream_id: frames.stream_id,
        total_frames: results.len(),
        total_detections,
        total_inference_time_ms: ms(times.inference),
        results,
        model: Some(ModelInfo {
            name: spec.name.clone(),
            input_width: spec.input_width,
            input_height: spec.input_height,
            classes: spec.class_names.len(),
        }),
        timings: Some(Timings {
            queue_ms: ms(times.queue),
            preprocess_ms: ms(times.preprocess),
            inference_ms: ms(times.inference),
            postprocess_ms: ms(times.postprocess),
            total_ms: ms(total),
        }),
    })
}

fn not_ready() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "not_ready",
        "the model is still loading",
    )
}

/// The query's options, checked against the service's defaults and the model's classes.
fn request_filter(req: &Request, state: &AppState, engine: &Engine) -> Result<Filter, ApiError> {
    let options = Query::<PredictOptions>::try_from_uri(req.uri())
        .map_err(|e| {
            ApiError::bad_request(
                "invalid_options",
                format!("invalid query: {}", e.body_text()),
            )
        })?
        .0;
    filter_of(&options, &state.config, &engine.spec.class_names)
}

fn check_frame_count(n: usize, max: usize) -> Result<(), ApiError> {
    if n == 0 {
        return Err(ApiError::bad_request(
            "no_frames",
            "the request has no frames",
        ));
    }
    if n > max {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_frames",
            format!("{n} frames in one request; the limit is {max}"),
        ));
    }
    Ok(())
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        let (status, code) = match e {
            EngineError::Busy { .. } => (StatusCode::SERVICE_UNAVAILABLE, "queue_full"),
            EngineError::TooManyForQueue { .. } => {
                (StatusCode::PAYLOAD_TOO_LARGE, "too_many_frames")
            }
            EngineError::Stopped => (StatusCode::SERVICE_UNAVAILABLE, "shutting_down"),
            EngineError::Model(_) => (StatusCode::INTERNAL_SERVER_ERROR, "model_error"),
        };
        ApiError::new(status, code, e.to_string())
    }
}

/// The refusal of a request none of whose frames is a readable image.
fn no_valid_image(outcomes: &[FrameOutcome]) -> Option<ApiError> {
    let Some(FrameOutcome::Failed(first)) = outcomes.first() else {
        return None;
    };
    if !outcomes
        .iter()
        .all(|o| matches!(o, FrameOutcome::Failed(_)))
    {
        return None;
    }
    let what = match outcomes.len() {
        1 => "the image".to_string(),
        n => format!("none of the {n} frames"),
    };
    Some(ApiError::bad_request(
        "invalid_image",
        format!("{what} could be decoded: {first}"),
    ))
}

/// Each frame's answer under the number the client gave it; detections and unreadable frames
/// counted.
fn frame_results(
    numbers: Vec<u64>,
    outcomes: Vec<FrameOutcome>,
    metrics: &InferenceMetrics,
) -> Vec<FrameResult> {
    numbers
        .into_iter()
        .zip(outcomes)
        .map(|(frame_number, outcome)| match outcome {
            FrameOutcome::Detected {
                width,
                height,
                detections,
                inference,
            } => {
                for d in &detections {
                    metrics
                        .detections
                        .with_label_values(&[d.class_name.as_str()])
                        .inc();
                }
                FrameResult {
                    frame_number,
                    width,
                    height,
                    detections,
                    inference_time_ms: ms(inference),
                    error: None,
                }
            }
            FrameOutcome::Failed(e) => {
                metrics.frame_errors.inc();
                FrameResult {
                    frame_number,
                    width: 0,
                    height: 0,
                    detections: Vec::new(),
                    inference_time_ms: 0.0,
                    error: Some(e.to_string()),
                }
            }
        })
        .collect()
}

fn observe_stages(metrics: &InferenceMetrics, times: &StageTimes) {
    for (stage, d) in [
        ("preprocess", times.preprocess),
        ("queue", times.queue),
        ("inference", times.inference),
        ("postprocess", times.postprocess),
    ] {
        metrics
            .stage_seconds
            .with_label_values(&[stage])
            .observe(d.as_secs_f64());
    }
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Validates the query options against the service defaults and the model's classes.
fn filter_of(
    options: &PredictOptions,
    config: &InferenceConfig,
    classes: &[String],
) -> Result<Filter, ApiError> {
    let unit = |name: &str, v: f32| {
        if v.is_finite() && (0.0..=1.0).contains(&v) {
            Ok(v)
        } else {
            Err(ApiError::bad_request(
                "invalid_options",
                format!("{name} must be a number from 0 to 1, got {v}"),
            ))
        }
    };
    let conf = unit("conf", options.conf.unwrap_or(config.conf))?;
    let iou = unit("iou", options.iou.unwrap_or(config.iou))?;
    let max_det = options.max_det.unwrap_or(config.max_det);
    if !(1..=MAX_DET_LIMIT).contains(&max_det) {
        return Err(ApiError::bad_request(
            "invalid_options",
            format!("max_det must be from 1 to {MAX_DET_LIMIT}, got {max_det}"),
        ));
    }
    let allowed = match options
        .classes
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        None => None,
        Some(list) => {
            let mut allowed = vec![false; classes.len()];
            for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                let i = classes.iter().position(|c| c == name).ok_or_else(|| {
                    ApiError::bad_request(
                        "unknown_class",
                        format!(
                            "unknown class {name:?}; the model knows {}",
                            classes.join(", ")
                        ),
                    )
                })?;
                allowed[i] = true;
            }
            Some(allowed)
        }
    };
    Ok(Filter {
        conf,
        iou,
        max_det,
        allowed,
    })
}

/// Reserves the body's bytes, reads the body within the size limit and turns it into frames
/// according to its type.
async fn read_frames(
    req: Request,
    max_body: usize,
    budget: &BodyBudget,
) -> Result<Frames, ApiError> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let kind = match essence.as_str() {
        "application/json" => BodyKind::Json,
        FRAME_BATCH_CONTENT_TYPE => BodyKind::FrameBatch,
        "multipart/form-data" => BodyKind::Multipart,
        other => {
            let got = if other.is_empty() {
                "no Content-Type".to_string()
            } else {
                format!("Content-Type {other:?}")
            };
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                format!(
                    "{got}; send application/json, {FRAME_BATCH_CONTENT_TYPE} or multipart/form-data"
                ),
            ));
        }
    };
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("request body is over the {max_body} byte limit"),
        )
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > max_body as u64) {
        return Err(too_large());
    }
    // JSON's base64 and multipart's fields are copied out of the body, so they hold it twice.
    let body_bytes = declared.map_or(max_body, |len| len as usize);
    let cost = match kind {
        BodyKind::FrameBatch => body_bytes,
        BodyKind::Json | BodyKind::Multipart => body_bytes.saturating_mul(2),
    };
    let reserved = budget.try_reserve(cost).ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            format!(
                "{} bytes of request bodies are being read or held (limit {}); retry shortly",
                budget.in_use(),
                budget.limit()
            ),
        )
    })?;
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, max_body).await.map_err(|e| {
        if is_length_limit(&e) {
            too_large()
        } else if is_body_timeout(&e) {
            // answered 408 by the HTTP server, which saw the timeout too
            ApiError::new(StatusCode::REQUEST_TIMEOUT, "body_timeout", e.to_string())
        } else {
            ApiError::bad_request("invalid_body", format!("cannot read the request body: {e}"))
        }
    })?;
    if bytes.is_empty() {
        return Err(ApiError::bad_request(
            "empty_body",
            "the request body is empty",
        ));
    }
    let mut frames = match kind {
        BodyKind::Json => json_frames(&bytes),
        BodyKind::FrameBatch => {
            let batch = common::wire::decode_bytes(bytes).map_err(|e| {
                ApiError::bad_request("invalid_frame_batch", format!("invalid FrameBatch: {e}"))
            })?;
            Ok(Frames {
                stream_id: batch.stream_id.to_string(),
                numbers: batch.frames.iter().map(|f| f.seq).collect(),
                images: batch.frames.into_iter().map(|f| f.jpeg).collect(),
                _reserved: None,
            })
        }
        BodyKind::Multipart => {
            multipart_frames(Request::from_parts(parts, Body::from(bytes))).await
        }
    }?;
    frames._reserved = Some(reserved);
    Ok(frames)
}

enum BodyKind {
    Json,
    FrameBatch,
    Multipart,
}

fn is_body_timeout(e: &axum::Error) -> bool {
    caused_by(e, |s| s.is::<common::http::BodyTimeout>())
}

fn is_length_limit(e: &axum::Error) -> bool {
    caused_by(e, |s| s.to_string().contains("length limit exceeded"))
}

/// Whether `e` or any error in its source chain satisfies `test`.
fn caused_by(e: &axum::Error, test: impl Fn(&(dyn std::error::Error + 'static)) -> bool) -> bool {
    std::iter::successors(Some(e as &(dyn std::error::Error + 'static)), |s| {
        s.source()
    })
    .any(test)
}

fn json_frames(bytes: &[u8]) -> Result<Frames, ApiError> {
    let req: JsonPredictRequest = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request("invalid_json", format!("invalid JSON request: {e}")))?;
    let mut numbers = Vec::with_capacity(req.frames.len());
    let mut images = Vec::with_capacity(req.frames.len());
    for f in req.frames {
        let data = base64::engine::general_purpose::STANDARD
            .decode(f.frame_data.trim())
            .map_err(|e| {
                ApiError::bad_request(
                    "invalid_base64",
                    format!(
                        "frame {}: frame_data is not valid base64: {e}",
                        f.frame_number
                    ),
                )
            })?;
        numbers.push(f.frame_number);
        images.push(Bytes::from(data));
    }
    Ok(Frames {
        stream_id: req.stream_id,
        numbers,
        images,
        _reserved: None,
    })
}

async fn multipart_frames(req: Request) -> Result<Frames, ApiError> {
    let invalid = |e: String| {
        ApiError::bad_request("invalid_multipart", format!("invalid multipart body: {e}"))
    };
    let mut multipart = Multipart::from_request(req, &())
        .await
        .map_err(|e| invalid(e.body_text()))?;
    let mut frames = Frames {
        stream_id: "upload".into(),
        numbers: Vec::new(),
        images: Vec::new(),
        _reserved: None,
    };
    while let Some(field) = multipart
        .next_field()
        .await
        .map_err(|e| invalid(e.body_text()))?
    {
        let is_file = field.file_name().is_some();
        let name = field.name().unwrap_or("").to_string();
        let data = field.bytes().await.map_err(|e| invalid(e.body_text()))?;
        if is_file {
            frames.numbers.push(frames.images.len() as u64);
            frames.images.push(data);
        } else if name == "stream_id" {
            frames.stream_id = String::from_utf8_lossy(&data).trim().to_string();
        }
    }
    Ok(frames)
}

/// Service summary for people: uptime, model, traffic, latency percentiles, queue depth.
#[utoipa::path(get, path = "/stats", responses((status = 200, description = "JSON summary")))]
async fn stats(State(state): State<AppState>) -> Response {
    let snapshot = state.stats.snapshot();
    let model = state.engine.get().map(|e| {
        serde_json::json!({
            "name": e.spec.name,
            "input_width": e.spec.input_width,
            "input_height": e.spec.input_height,
            "classes": e.spec.class_names.len(),
            "fixed_batch": e.spec.fixed_batch,
            "batch_size": e.settings().chunk_size,
            "queue_capacity": e.settings().queue_capacity,
        })
    });
    let queue_depth = state.engine.get().map_or(0, |e| e.queue_depth());
    axum::Json(serde_json::json!({
        "uptime_seconds": snapshot.uptime_seconds,
        "model": model,
        "requests": snapshot.requests,
        "failed_requests": snapshot.failed_requests,
        "frames": snapshot.frames,
        "detections": snapshot.detections,
        "latency_ms": snapshot.latency,
        "queue_depth": queue_depth,
    }))
    .into_response()
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "video-pipeline inference",
        description = "YOLOv8/YOLO11 object detection over HTTP. Also: GET /health (alive), GET /ready (model loaded; 503 before), GET /metrics (Prometheus)."
    ),
    paths(predict, stats),
    components(schemas(
        JsonPredictRequest,
        JsonFrame,
        Timestamp,
        PredictResponse,
        FrameResult,
        Detection,
        ModelInfo,
        Timings,
        ErrorResponse
    ))
)]
struct ApiDoc;

/// The OpenAPI 3 document, generated from the handlers and types above.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

async fn openapi() -> Response {
    axum::Json(openapi_document()).into_response()
}

/// A self-contained page rendering `/openapi.json` (no CDN: it must work offline).
async fn docs() -> Html<&'static str> {
    Html(include_str!("docs.html"))
}
