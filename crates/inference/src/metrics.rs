//! Prometheus metrics of the service, registered once in the service's registry.

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};

#[derive(Debug, Clone)]
pub struct InferenceMetrics {
    /// `POST /predict` answers by HTTP status.
    pub requests: IntCounterVec,
    pub frames: IntCounter,
    /// Frames that were not valid images, answered with a per-frame error.
    pub frame_errors: IntCounter,
    pub detections: IntCounterVec,
    /// preprocess / queue / inference / postprocess, per request.
    pub stage_seconds: HistogramVec,
    pub request_seconds: Histogram,
    /// Frames per request.
    pub batch_frames: Histogram,
    pub queue_depth: IntGauge,
    /// Frames whose model run was skipped because their client had gone.
    pub abandoned_frames: IntCounter,
    /// Bytes reserved for request bodies being read or held; see `--max-body-bytes-in-flight`.
    pub body_bytes_in_flight: IntGauge,
}

impl InferenceMetrics {
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let latency = vec![
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
        ];
        let m = Self {
            requests: IntCounterVec::new(
                Opts::new(
                    "inference_requests_total",
                    "POST /predict requests by HTTP status",
                ),
                &["status"],
            )?,
            frames: IntCounter::new("inference_frames_total", "frames received")?,
            frame_errors: IntCounter::new(
                "inference_frame_errors_total",
                "frames that were not valid images",
            )?,
            detections: IntCounterVec::new(
                Opts::new(
                    "inference_detections_total",
                    "detections returned, by class",
                ),
                &["class"],
            )?,
            stage_seconds: HistogramVec::new(
                HistogramOpts::new("inference_stage_seconds", "time per request stage")
                    .buckets(latency.clone()),
                &["stage"],
            )?,
            request_seconds: Histogram::with_opts(
                HistogramOpts::new("inference_request_seconds", "POST /predict latency")
                    .buckets(latency),
            )?,
            batch_frames: Histogram::with_opts(
                HistogramOpts::new("inference_request_frames", "frames per request")
                    .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 25.0, 50.0, 100.0]),
            )?,
            queue_depth: IntGauge::new(
                "inference_queue_depth",
                "frames admitted and not yet answered",
            )?,
            abandoned_frames: IntCounter::new(
                "inference_abandoned_frames_total",
                "frames not run because their client had gone",
            )?,
            body_bytes_in_flight: IntGauge::new(
                "inference_body_bytes_in_flight",
                "bytes reserved for request bodies being read or held",
            )?,
        };
        registry.register(Box::new(m.requests.clone()))?;
        registry.register(Box::new(m.frames.clone()))?;
        registry.register(Box::new(m.frame_errors.clone()))?;
        registry.register(Box::new(m.detections.clone()))?;
        registry.register(Box::new(m.stage_seconds.clone()))?;
        registry.register(Box::new(m.request_seconds.clone()))?;
        registry.register(Box::new(m.batch_frames.clone()))?;
        registry.register(Box::new(m.queue_depth.clone()))?;
        registry.register(Box::new(m.abandoned_frames.clone()))?;
        registry.register(Box::new(m.body_bytes_in_flight.clone()))?;
        Ok(m)
    }
}
