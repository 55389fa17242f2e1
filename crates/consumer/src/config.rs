//! The consumer's configuration: every setting is a flag and an environment variable.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use common::http::HttpArgs;
use common::kafka::{KafkaArgs, TopicArgs};
use common::telemetry::LogArgs;

use crate::image_policy::ImagePolicy;

/// Kafka FrameBatches in; detections drawn and stored in S3; offsets committed after.
#[derive(Debug, Clone, Parser)]
#[command(name = "consumer", version)]
pub struct ConsumerConfig {
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub topics: TopicArgs,
    /// Topic, or a template with `{stream}` (then every matching topic is consumed).
    #[arg(long, env = "KAFKA_TOPIC", default_value = common::naming::DEFAULT_TOPIC)]
    pub topic: String,
    #[arg(long, env = "CONSUMER_GROUP", default_value = common::naming::DEFAULT_CONSUMER_GROUP)]
    pub group: String,
    /// Dead-letter topic (default: `<source topic>.dlq`).
    #[arg(long, env = "DLQ_TOPIC")]
    pub dlq_topic: Option<String>,
    /// Batches processed at once.
    #[arg(long, env = "MAX_IN_FLIGHT", default_value_t = 4)]
    pub max_in_flight: usize,
    /// A member that owns no partition this long while messages wait and no member commits
    /// rejoins its group (0s: never). Guards against a coordinator that leaves a group stuck
    /// after a member died (tansu 0.6 does); Kafka rebalances without it.
    #[arg(long, env = "GROUP_STUCK_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub group_stuck_timeout: Duration,

    /// Base URL of the inference service.
    #[arg(long, env = "INFERENCE_URL", default_value = "http://localhost:8000")]
    pub inference_url: String,
    /// Timeout of one inference request.
    #[arg(long, env = "INFERENCE_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub inference_timeout: Duration,

    #[arg(long, env = "S3_BUCKET", default_value = "video-pipeline-results")]
    pub bucket: String,
    /// S3 endpoint override (LocalStack, moto); empty for AWS.
    #[arg(long, env = "S3_ENDPOINT", default_value = "")]
    pub s3_endpoint: String,
    #[arg(long, env = "AWS_REGION", default_value = "us-east-1")]
    pub region: String,
    /// Timeout of one S3 request attempt (a hung S3 endpoint is retried, never waited on forever).
    #[arg(long, env = "S3_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub s3_timeout: Duration,
    /// Create the bucket at start-up when it is missing.
    #[arg(long, env = "CREATE_BUCKET", default_value_t = false)]
    pub create_bucket: bool,
    /// Which frames are drawn and uploaded as images.
    #[arg(long, env = "IMAGE_POLICY", value_enum, default_value_t = ImagePolicy::Detections)]
    pub image_policy: ImagePolicy,
    /// JPEG quality of annotated images.
    #[arg(long, env = "ANNOTATED_JPEG_QUALITY", default_value_t = 85)]
    pub jpeg_quality: u8,

    /// Longest wait between retries of inference, S3 and DLQ calls.
    #[arg(long, env = "RETRY_MAX_DELAY", default_value = "10s", value_parser = humantime::parse_duration)]
    pub retry_max_delay: Duration,
    /// How long shutdown waits for in-flight batches.
    #[arg(long, env = "SHUTDOWN_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub shutdown_timeout: Duration,
    /// Interval of the one-line progress logs (0s: none).
    #[arg(long, env = "PROGRESS_INTERVAL", default_value = "10s", value_parser = humantime::parse_duration)]
    pub progress_interval: Duration,
    /// Address of `/health`, `/ready` and `/metrics`.
    #[arg(long, env = "CONSUMER_LISTEN", default_value = "0.0.0.0:9102")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub http: HttpArgs,
    #[command(flatten)]
    pub log: LogArgs,
}

impl common::service::ServiceConfig for ConsumerConfig {
    const NAME: &'static str = "consumer";
    fn log(&self) -> &LogArgs {
        &self.log
    }
    fn listen(&self) -> SocketAddr {
        self.listen
    }
}
