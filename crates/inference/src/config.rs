//! The service's configuration: every setting is a flag and an environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use common::http::HttpArgs;
use common::telemetry::LogArgs;

/// YOLOv8/YOLO11 object detection over HTTP.
#[derive(Debug, Clone, Parser)]
#[command(name = "inference", version)]
pub struct InferenceConfig {
    /// Address to serve the API, `/health`, `/ready`, `/metrics` and `/docs` on.
    #[arg(long, env = "INFERENCE_LISTEN", default_value = "0.0.0.0:8000")]
    pub listen: SocketAddr,
    /// The ONNX model: an Ultralytics YOLO detection export.
    #[arg(
        long,
        env = "MODEL_PATH",
        default_value = "../shared/models/yolov8n.onnx"
    )]
    pub model: PathBuf,
    /// Class names, one per line, for models without `names` metadata.
    #[arg(long, env = "LABELS_PATH")]
    pub labels: Option<PathBuf>,
    /// ONNX Runtime shared library (default: where scripts/install-deps.sh puts it).
    #[arg(long, env = "ORT_DYLIB_PATH")]
    pub ort_library: Option<PathBuf>,
    /// Default minimum confidence, overridable per request with `?conf=`.
    #[arg(long, env = "CONF_THRESHOLD", default_value_t = 0.25)]
    pub conf: f32,
    /// Default NMS IoU threshold, overridable per request with `?iou=`.
    #[arg(long, env = "IOU_THRESHOLD", default_value_t = 0.45)]
    pub iou: f32,
    /// Default cap on detections per frame, overridable with `?max_det=`.
    #[arg(long, env = "MAX_DETECTIONS", default_value_t = 300)]
    pub max_det: usize,
    /// Frames per model run. On CPU batching gives no per-frame gain; on a GPU it does.
    #[arg(long, env = "BATCH_SIZE", default_value_t = 8)]
    pub batch_size: usize,
    /// Model worker threads, each with its own session.
    #[arg(long, env = "MODEL_WORKERS", default_value_t = 1)]
    pub workers: usize,
    /// ONNX Runtime intra-op threads per worker (0 = available cores / workers).
    #[arg(long, env = "INTRA_THREADS", default_value_t = 0)]
    pub intra_threads: usize,
    /// Frames admitted at once (queued or running); more gets 503 with Retry-After.
    #[arg(long, env = "QUEUE_CAPACITY", default_value_t = 200)]
    pub queue_capacity: usize,
    /// Most frames in one request.
    #[arg(long, env = "MAX_FRAMES_PER_REQUEST", default_value_t = 100)]
    pub max_frames: usize,
    /// Largest request body in bytes (413 above).
    #[arg(long, env = "MAX_BODY_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Request-body bytes held at once, reserved before a body is read (JSON and multipart
    /// count twice); past it requests get 503 with Retry-After. At least --max-body-bytes.
    #[arg(long, env = "MAX_BODY_BYTES_IN_FLIGHT", default_value_t = 256 * 1024 * 1024)]
    pub max_body_bytes_in_flight: usize,
    /// Largest image in pixels (width x height); larger frames are refused before decoding.
    #[arg(long, env = "MAX_IMAGE_PIXELS", default_value_t = 40_000_000)]
    pub max_image_pixels: u64,
    #[command(flatten)]
    pub http: HttpArgs,
    #[command(flatten)]
    pub log: LogArgs,
}

impl common::service::ServiceConfig for InferenceConfig {
    const NAME: &'static str = "inference service";
    fn log(&self) -> &LogArgs {
        &self.log
    }
    fn listen(&self) -> SocketAddr {
        self.listen
    }
}

impl InferenceConfig {
    /// Refuses settings that could never work together.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.max_body_bytes_in_flight < self.max_body_bytes {
            anyhow::bail!(
                "MAX_BODY_BYTES_IN_FLIGHT ({}) is below MAX_BODY_BYTES ({}): a request of the largest allowed size could never be read",
                self.max_body_bytes_in_flight,
                self.max_body_bytes
            );
        }
        Ok(())
    }

    pub fn intra_threads(&self) -> usize {
        if self.intra_threads > 0 {
            return self.intra_threads;
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        (cores / self.workers.max(1)).max(1)
    }

    pub fn ort_library(&self) -> PathBuf {
        self.ort_library
            .clone()
            .unwrap_or_else(crate::model::default_library_path)
    }
}
