//! S3: where annotated images and batch results are written.
//!
//! Every PUT is retried with backoff until it succeeds or the consumer shuts down: an S3 outage
//! holds the batch (and so its offset) instead of losing it. Keys are deterministic
//! ([`crate::keys`]), so writing a batch again after a crash overwrites the same objects.

use std::time::{Duration, Instant};

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;
use common::backoff::Backoff;
use tokio_util::sync::CancellationToken;

use crate::metrics::ConsumerMetrics;

#[derive(Debug, Clone)]
pub struct Store {
    client: Client,
    bucket: String,
    retry_max_delay: Duration,
    metrics: ConsumerMetrics,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("shut down before {0} was written")]
    Cancelled(String),
    #[error("bucket {bucket}: {message}")]
    Bucket { bucket: String, message: String },
}

impl Store {
    /// A client for `endpoint` (empty: AWS) with path-style addressing when an endpoint is given
    /// (LocalStack and moto serve buckets under the path). Credentials come from the usual chain
    /// (environment, profile, IRSA web identity, instance role).
    pub async fn connect(
        endpoint: &str,
        region: &str,
        bucket: &str,
        timeout: Duration,
        retry_max_delay: Duration,
        metrics: ConsumerMetrics,
    ) -> Self {
        // Without an attempt timeout a frozen endpoint holds a PUT (and its batch) forever.
        let timeouts = aws_config::timeout::TimeoutConfig::builder()
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .operation_attempt_timeout(timeout)
            .build();
        let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(region.to_string()))
            .timeout_config(timeouts)
            .load()
            .await;
        let mut builder = aws_sdk_s3::config::Builder::from(&shared);
        if !endpoint.is_empty() {
            builder = builder.endpoint_url(endpoint).force_path_style(true);
        }
        Self {
            client: Client::from_conf(builder.build()),
            bucket: bucket.to_string(),
            retry_max_delay,
            metrics,
        }
    }

    /// Checks the bucket exists; creates it when `create` allows. While S3 does not answer at
    /// all (connection refused, timeout) it keeps trying, so that a consumer started before its
    /// S3 endpoint waits for it; an answer saying the bucket is missing or forbidden is an error.
    pub async fn check_bucket(
        &self,
        create: bool,
        cancel: &CancellationToken,
    ) -> Result<(), StoreError> {
        let err = |message: String| StoreError::Bucket {
            bucket: self.bucket.clone(),
            message,
        };
        let mut backoff = Backoff::new(Duration::from_millis(200), self.retry_max_delay);
        let head = loop {
            match self.client.head_bucket().bucket(&self.bucket).send().await {
                Err(e) if is_unreachable(&e) => {
                    self.metrics.retries.with_label_values(&["s3_head"]).inc();
                    let delay = backoff.next_delay();
                    tracing::warn!(bucket = %self.bucket, error = %aws_sdk_s3::error::DisplayErrorContext(&e), retry_in_ms = delay.as_millis() as u64, "S3 does not answer; waiting for it");
                    tokio::select! {
                        _ = cancel.cancelled() => return Err(StoreError::Cancelled(format!("bucket {}", self.bucket))),
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
                other => break other,
            }
        };
        match head {
            Ok(_) => Ok(()),
            Err(e) if create && e.as_service_error().is_some_and(|s| s.is_not_found()) => {
                self.client
                    .create_bucket()
                    .bucket(&self.bucket)
                    .send()
                    .await
                    .map_err(|e| err(format!("{}", aws_sdk_s3::error::DisplayErrorContext(e))))?;
                tracing::info!(bucket = %self.bucket, "bucket created");
                Ok(())
            }
            Err(e) => Err(err(format!(
                "{} (create it, or pass --create-bucket)",
                aws_sdk_s3::error::DisplayErrorContext(e)
            ))),
        }
    }

    /// Writes `body` at `key`, retrying until it is stored or `cancel`.
    pub async fn put(
        &self,
        key: &str,
        body: Bytes,
        content_type: &str,
        cancel: &CancellationToken,
    ) -> Result<(), StoreError> {
        let mut backoff = Backoff::new(Duration::from_millis(200), self.retry_max_delay);
        loop {
            let started = Instant::now();
            let result = self
                .client
                .put_object()
                .bucket(&self.bucket)
                .key(key)
                .content_type(content_type)
                .body(ByteStream::from(body.clone()))
                .send()
                .await;
            match result {
                Ok(_) => {
                    self.metrics
                        .s3_put_seconds
                        .observe(started.elapsed().as_secs_f64());
                    return Ok(());
                }
                Err(e) => {
                    self.metrics.retries.with_label_values(&["s3_put"]).inc();
                    let delay = backoff.next_delay();
                    tracing::warn!(key, error = %aws_sdk_s3::error::DisplayErrorContext(&e), retry_in_ms = delay.as_millis() as u64, "S3 put failed; retrying");
                    tokio::select! {
                        _ = cancel.cancelled() => return Err(StoreError::Cancelled(key.to_string())),
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }
}

/// True when the request never got an HTTP answer (nothing listening, connection reset, timeout).
fn is_unreachable<E, R>(e: &aws_sdk_s3::error::SdkError<E, R>) -> bool {
    matches!(
        e,
        aws_sdk_s3::error::SdkError::DispatchFailure(_)
            | aws_sdk_s3::error::SdkError::TimeoutError(_)
    )
}
