//! S3: where annotated images and batch results are written.
//!
//! Every call is retried with backoff until it succeeds or the work is cancelled: an S3 outage
//! or a wrong setting holds the batch (and so its offset) instead of losing it. Failures are
//! classified ([`S3Failure`]): no answer, 5xx, 429 and `SlowDown` are transient (`s3_put`,
//! `s3_head`); `NoSuchBucket`, `AccessDenied` (and other refused credentials), a wrong region
//! and any other 4xx are permanent (`s3_no_such_bucket`, `s3_access_denied`,
//! `s3_wrong_region`, `s3_rejected`) and make `/ready` say so until they clear. Keys are
//! deterministic ([`crate::keys`]), so writing a batch again after a crash overwrites the same
//! objects.

use std::fmt;
use std::time::{Duration, Instant};

use aws_sdk_s3::Client;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;
use common::retry::{Classify, RetryError, RetryPolicy, retry};
use common::stall::{ErrorClass, Stalls};
use tokio_util::sync::CancellationToken;

use crate::metrics::ConsumerMetrics;

#[derive(Debug, Clone)]
pub struct Store {
    client: Client,
    bucket: String,
    retry: RetryPolicy,
    stalls: Stalls,
    metrics: ConsumerMetrics,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("shut down before {0} was written")]
    Cancelled(String),
}

/// A failed S3 call: what S3 (or the network) said, and what it means for retrying.
#[derive(Debug)]
pub struct S3Failure {
    cause: &'static str,
    class: ErrorClass,
    message: String,
}

impl fmt::Display for S3Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl Classify for S3Failure {
    fn class(&self) -> ErrorClass {
        self.class
    }
    fn cause(&self) -> &'static str {
        self.cause
    }
}

impl S3Failure {
    /// Classifies `error` of a call whose transient failures count as `transient_cause`.
    fn of<E>(transient_cause: &'static str, error: &SdkError<E>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let message = format!("{}", DisplayErrorContext(error));
        let status = error.raw_response().map(|r| r.status().as_u16());
        let (cause, class) = classify(transient_cause, error.code(), status);
        Self {
            cause,
            class,
            message,
        }
    }
}

/// The cause and class of an S3 answer with error `code` (absent for HEAD) and HTTP `status`
/// (absent when nothing answered).
fn classify(
    transient_cause: &'static str,
    code: Option<&str>,
    status: Option<u16>,
) -> (&'static str, ErrorClass) {
    use ErrorClass::{Permanent, Transient};
    match code {
        Some("NoSuchBucket") => return ("s3_no_such_bucket", Permanent),
        Some(
            "AccessDenied"
            | "InvalidAccessKeyId"
            | "SignatureDoesNotMatch"
            | "InvalidToken"
            | "ExpiredToken"
            | "AccountProblem"
            | "AllAccessDisabled"
            | "InvalidSecurity",
        ) => return ("s3_access_denied", Permanent),
        Some(
            "PermanentRedirect"
            | "AuthorizationHeaderMalformed"
            | "IllegalLocationConstraintException",
        ) => return ("s3_wrong_region", Permanent),
        Some("SlowDown" | "InternalError" | "ServiceUnavailable" | "RequestTimeout") => {
            return (transient_cause, Transient);
        }
        _ => {}
    }
    match status {
        None => (transient_cause, Transient),
        Some(301) => ("s3_wrong_region", Permanent),
        Some(401 | 403) => ("s3_access_denied", Permanent),
        Some(404) => ("s3_no_such_bucket", Permanent),
        Some(408 | 429) => (transient_cause, Transient),
        Some(s) if s >= 500 => (transient_cause, Transient),
        Some(s) if s >= 400 => ("s3_rejected", Permanent),
        // A 3xx other than 301, or a 2xx the SDK could not read: a proxy in the way.
        Some(_) => (transient_cause, Transient),
    }
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
        stalls: Stalls,
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
            // This module is the retry loop: the SDK's own retries would hide failures from it.
            .retry_config(aws_config::retry::RetryConfig::disabled())
            .load()
            .await;
        let mut builder = aws_sdk_s3::config::Builder::from(&shared);
        if !endpoint.is_empty() {
            builder = builder.endpoint_url(endpoint).force_path_style(true);
        }
        Self {
            client: Client::from_conf(builder.build()),
            bucket: bucket.to_string(),
            retry: RetryPolicy::forever(Duration::from_millis(200), retry_max_delay),
            stalls,
            metrics,
        }
    }

    /// Waits until the bucket exists, creating it when `create` allows. A consumer started
    /// before its S3 endpoint, or before its bucket, waits (stalled, `/ready` 503 while the
    /// bucket is missing or forbidden) instead of exiting.
    pub async fn check_bucket(
        &self,
        create: bool,
        cancel: &CancellationToken,
    ) -> Result<(), StoreError> {
        retry(&self.retry, &self.stalls, cancel, || async {
            let error = match self.client.head_bucket().bucket(&self.bucket).send().await {
                Ok(_) => return Ok(()),
                Err(e) => S3Failure::of("s3_head", &e),
            };
            if !(create && error.cause == "s3_no_such_bucket") {
                return Err(error);
            }
            self.client
                .create_bucket()
                .bucket(&self.bucket)
                .send()
                .await
                .map_err(|e| S3Failure::of("s3_create_bucket", &e))?;
            tracing::info!(bucket = %self.bucket, "bucket created");
            Ok(())
        })
        .await
        .map_err(|_| StoreError::Cancelled(format!("bucket {}", self.bucket)))
    }

    /// Writes `body` at `key`, retrying until it is stored or `cancel`.
    pub async fn put(
        &self,
        key: &str,
        body: Bytes,
        content_type: &str,
        cancel: &CancellationToken,
    ) -> Result<(), StoreError> {
        let put = || async {
            let started = Instant::now();
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(key)
                .content_type(content_type)
                .body(ByteStream::from(body.clone()))
                .send()
                .await
                .map_err(|e| S3Failure::of("s3_put", &e))?;
            self.metrics
                .s3_put_seconds
                .observe(started.elapsed().as_secs_f64());
            Ok(())
        };
        retry(&self.retry, &self.stalls, cancel, put)
            .await
            .map_err(|e: RetryError<S3Failure>| {
                tracing::debug!(key, error = %e, "put not finished");
                StoreError::Cancelled(key.to_string())
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_classified_by_what_they_mean_for_a_retry() {
        let t = "s3_put";
        let cases = [
            (None, None, ("s3_put", ErrorClass::Transient)),
            (None, Some(503), ("s3_put", ErrorClass::Transient)),
            (
                Some("SlowDown"),
                Some(503),
                ("s3_put", ErrorClass::Transient),
            ),
            (
                Some("NoSuchBucket"),
                Some(404),
                ("s3_no_such_bucket", ErrorClass::Permanent),
            ),
            (
                None,
                Some(404),
                ("s3_no_such_bucket", ErrorClass::Permanent),
            ),
            (
                Some("AccessDenied"),
                Some(403),
                ("s3_access_denied", ErrorClass::Permanent),
            ),
            (
                Some("InvalidAccessKeyId"),
                Some(403),
                ("s3_access_denied", ErrorClass::Permanent),
            ),
            (None, Some(301), ("s3_wrong_region", ErrorClass::Permanent)),
            (
                Some("AuthorizationHeaderMalformed"),
                Some(400),
                ("s3_wrong_region", ErrorClass::Permanent),
            ),
            (
                Some("InvalidArgument"),
                Some(400),
                ("s3_rejected", ErrorClass::Permanent),
            ),
        ];
        for (code, status, expected) in cases {
            assert_eq!(classify(t, code, status), expected, "{code:?} {status:?}");
        }
    }
}
