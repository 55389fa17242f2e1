//! The consumer's Prometheus metrics.

use prometheus::{
    Histogram, HistogramOpts, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    exponential_buckets,
};

#[derive(Debug, Clone)]
pub struct ConsumerMetrics {
    /// Batches by outcome: `stored`, `dead_lettered`.
    pub batches: IntCounterVec,
    /// Frames of stored batches by outcome: `stored`, `frame_error` (the service could not
    /// read it). Counted by [`crate::events`], like `batches` and `dead_lettered`.
    pub frames: IntCounterVec,
    pub images_uploaded: prometheus::IntCounter,
    pub json_uploaded: prometheus::IntCounter,
    /// Messages sent to the dead-letter topic, by reason.
    pub dead_lettered: IntCounterVec,
    pub in_flight: IntGauge,
    pub lag: IntGaugeVec,
    /// Rejoins of a group that looked stuck ([`crate::group_watch`]).
    pub group_rejoins: prometheus::IntCounter,
    pub inference_seconds: Histogram,
    pub s3_put_seconds: Histogram,
    pub annotate_seconds: Histogram,
    /// From the frame's capture time to its batch's JSON in S3.
    pub capture_to_s3_seconds: Histogram,
}

impl ConsumerMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let counter =
            |name: &str, help: &str, labels: &[&str]| -> prometheus::Result<IntCounterVec> {
                let c = IntCounterVec::new(Opts::new(name, help), labels)?;
                registry.register(Box::new(c.clone()))?;
                Ok(c)
            };
        let histogram =
            |name: &str, help: &str, buckets: Vec<f64>| -> prometheus::Result<Histogram> {
                let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))?;
                registry.register(Box::new(h.clone()))?;
                Ok(h)
            };
        let images = prometheus::IntCounter::new(
            "consumer_images_uploaded_total",
            "Annotated JPEGs written to S3.",
        )?;
        registry.register(Box::new(images.clone()))?;
        let json = prometheus::IntCounter::new(
            "consumer_results_uploaded_total",
            "Batch JSON documents written to S3.",
        )?;
        registry.register(Box::new(json.clone()))?;
        let in_flight = IntGauge::new("consumer_in_flight_batches", "Batches being processed.")?;
        registry.register(Box::new(in_flight.clone()))?;
        let lag = IntGaugeVec::new(
            Opts::new(
                "consumer_lag_messages",
                "Messages behind the end of each assigned partition.",
            ),
            &["topic", "partition"],
        )?;
        registry.register(Box::new(lag.clone()))?;
        let group_rejoins = prometheus::IntCounter::new(
            "consumer_group_rejoins_total",
            "Times this member, owning no partition while work waited and nobody committed, rejoined its group.",
        )?;
        registry.register(Box::new(group_rejoins.clone()))?;
        Ok(Self {
            batches: counter(
                "consumer_batches_total",
                "Batches finished, by outcome.",
                &["outcome"],
            )?,
            frames: counter(
                "consumer_frames_total",
                "Frames finished, by outcome.",
                &["outcome"],
            )?,
            images_uploaded: images,
            json_uploaded: json,
            dead_lettered: counter(
                "consumer_dead_lettered_total",
                "Messages sent to the dead-letter topic, by reason.",
                &["reason"],
            )?,
            in_flight,
            lag,
            group_rejoins,
            inference_seconds: histogram(
                "consumer_inference_request_seconds",
                "One inference request, retries excluded.",
                exponential_buckets(0.01, 2.0, 14)?,
            )?,
            s3_put_seconds: histogram(
                "consumer_s3_put_seconds",
                "One S3 PUT.",
                exponential_buckets(0.001, 2.0, 14)?,
            )?,
            annotate_seconds: histogram(
                "consumer_annotate_seconds",
                "Drawing and encoding one image.",
                exponential_buckets(0.0005, 2.0, 14)?,
            )?,
            capture_to_s3_seconds: histogram(
                "consumer_capture_to_s3_seconds",
                "From a frame's capture to its batch's results in S3.",
                exponential_buckets(0.05, 1.5, 20)?,
            )?,
        })
    }
}
