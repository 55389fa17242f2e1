//! The inference service client: the batch goes as it came from Kafka (the binary
//! `FrameBatch`, no base64), and the answer is the service's JSON.
//!
//! Failures are of two kinds:
//! - the service cannot answer now (connection refused or reset, timeout, 429, 503, other 5xx):
//!   transient, retried forever with exponential backoff and jitter, honouring `Retry-After`,
//!   until it answers or the work is cancelled. The batch keeps its place: nothing is skipped,
//!   the consumer stops fetching while its in-flight slots are full, and lag grows.
//! - the service refuses the batch for its content (its own error codes,
//!   `common::inference_api::CONTENT_ERROR_CODES`): [`Rejected`], which sends the message to
//!   the dead-letter topic.
//! - any other refusal (404, 401/403, 413, ...): the setup is wrong, not the batch; permanent
//!   (`inference_4xx`), retried like an outage while `/ready` says what is wrong.
//!
//! reqwest keeps a pool of HTTP/1.1 connections, one per concurrent request, so several
//! in-flight batches use several connections, which a Kubernetes Service spreads over replicas.

use std::fmt;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::inference_api::{
    ErrorResponse, FRAME_BATCH_CONTENT_TYPE, PredictResponse, is_content_error,
};
use common::redact;
use common::retry::{Classify, RetryPolicy, retry};
use common::stall::{ErrorClass, Stalls};
use reqwest::StatusCode;
use tokio_util::sync::CancellationToken;

use crate::metrics::ConsumerMetrics;

/// The service refused the batch's content; retrying cannot help.
#[derive(Debug, Clone, thiserror::Error)]
#[error("inference refused the batch: HTTP {status} {code}: {message}")]
pub struct Rejected {
    pub status: u16,
    pub code: String,
    pub message: String,
}

/// Why a call should be retried, as the `cause` label of the retry counter.
#[derive(Debug)]
struct Retry {
    cause: &'static str,
    detail: String,
    after: Option<Duration>,
}

impl Retry {
    /// The request could not be sent or its answer not read: a timeout, or no connection.
    fn transport(e: reqwest::Error) -> Self {
        Self {
            cause: if e.is_timeout() {
                "inference_timeout"
            } else {
                "inference_connect"
            },
            detail: redact::text(&e.to_string()).into_owned(),
            after: None,
        }
    }
}

impl fmt::Display for Retry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.detail)
    }
}

impl Classify for Retry {
    fn class(&self) -> ErrorClass {
        if self.cause == "inference_4xx" {
            ErrorClass::Permanent
        } else {
            ErrorClass::Transient
        }
    }
    fn cause(&self) -> &'static str {
        self.cause
    }
    fn retry_after(&self) -> Option<Duration> {
        self.after
    }
}

#[derive(Debug, thiserror::Error)]
pub enum InferenceError {
    #[error(transparent)]
    Rejected(#[from] Rejected),
    #[error("shut down while waiting for the inference service")]
    Cancelled,
}

#[derive(Debug, Clone)]
pub struct InferenceClient {
    http: reqwest::Client,
    predict_url: String,
    retry: RetryPolicy,
    stalls: Stalls,
    metrics: ConsumerMetrics,
}

impl InferenceClient {
    pub fn new(
        base_url: &str,
        timeout: Duration,
        retry_max_delay: Duration,
        stalls: Stalls,
        metrics: ConsumerMetrics,
    ) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(5))
            // Idle connections are closed soon, so new replicas get new connections.
            .pool_idle_timeout(Duration::from_secs(30))
            .build()?;
        Ok(Self {
            http,
            predict_url: format!("{}/predict", base_url.trim_end_matches('/')),
            retry: RetryPolicy::forever(Duration::from_millis(200), retry_max_delay),
            stalls,
            metrics,
        })
    }

    /// Detections for `batch` (an encoded `FrameBatch`), retrying until the service answers.
    pub async fn predict(
        &self,
        batch: Bytes,
        cancel: &CancellationToken,
    ) -> Result<PredictResponse, InferenceError> {
        match retry(&self.retry, &self.stalls, cancel, || {
            self.call(batch.clone())
        })
        .await
        {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(rejected)) => Err(rejected.into()),
            Err(_) => Err(InferenceError::Cancelled),
        }
    }

    async fn call(&self, batch: Bytes) -> Result<Result<PredictResponse, Rejected>, Retry> {
        let started = Instant::now();
        let sent = self
            .http
            .post(&self.predict_url)
            .header(reqwest::header::CONTENT_TYPE, FRAME_BATCH_CONTENT_TYPE)
            .body(batch)
            .send()
            .await;
        let response = sent.map_err(Retry::transport)?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = response.bytes().await.map_err(Retry::transport)?;
        self.metrics
            .inference_seconds
            .observe(started.elapsed().as_secs_f64());
        if status.is_success() {
            return serde_json::from_slice(&body).map(Ok).map_err(|e| Retry {
                // A 200 that is not the API's JSON: a proxy or a broken replica; try again.
                cause: "inference_bad_response",
                detail: e.to_string(),
                after: None,
            });
        }
        let error: Option<ErrorResponse> = serde_json::from_slice(&body).ok();
        let detail = error.as_ref().map_or_else(
            || String::from_utf8_lossy(&body).into_owned(),
            |e| e.error.clone(),
        );
        match status {
            StatusCode::TOO_MANY_REQUESTS => Err(Retry {
                cause: "inference_429",
                detail,
                after: retry_after,
            }),
            StatusCode::SERVICE_UNAVAILABLE => Err(Retry {
                cause: "inference_503",
                detail,
                after: retry_after,
            }),
            s if s.is_server_error() => Err(Retry {
                cause: "inference_5xx",
                detail,
                after: retry_after,
            }),
            s if is_content_error(s.as_u16(), error.as_ref().map(|e| e.code.as_str())) => {
                Ok(Err(Rejected {
                    status: s.as_u16(),
                    code: error.map_or_else(|| "unknown".into(), |e| e.code),
                    message: detail,
                }))
            }
            // 404, 401/403, 408, 413, 415, an unknown class or option: the setup is wrong, not
            // the batch. Dead-lettering would empty a camera's topic at full speed; stall instead.
            s => Err(Retry {
                cause: "inference_4xx",
                detail: format!(
                    "HTTP {} {}: {detail}",
                    s.as_u16(),
                    error.map_or_else(|| "(no error code)".into(), |e| e.code)
                ),
                after: retry_after,
            }),
        }
    }
}
