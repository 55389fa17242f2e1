//! The one retry loop of the pipeline: try, classify the failure, report the stall, wait with
//! [`Backoff`] (or the server's `Retry-After`), try again, until it works, the retries run out,
//! or the work is cancelled.
//!
//! Permanent failures are retried too: nothing is skipped because a bucket is missing or a
//! credential is refused; the batch keeps its place until someone fixes the setup. What the
//! class changes is how loudly it is reported ([`crate::stall`]).

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::stall::{ErrorClass, StallGuard, Stalls};

/// What the retry loop needs to know about a failure.
pub trait Classify: Display {
    fn class(&self) -> ErrorClass;
    /// The `cause` label of the stall gauge and the retry counter; a short snake_case name.
    fn cause(&self) -> &'static str;
    /// How long the other side asked us to wait (`Retry-After`), if it did.
    fn retry_after(&self) -> Option<Duration> {
        None
    }
}

/// How to retry: the backoff schedule and, for work that may give up, how many retries.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub initial: Duration,
    pub max_delay: Duration,
    /// `None`: retry until it works or is cancelled.
    pub max_retries: Option<u32>,
}

impl RetryPolicy {
    /// Retries forever, from `initial` up to `max_delay` between attempts.
    pub fn forever(initial: Duration, max_delay: Duration) -> Self {
        Self {
            initial,
            max_delay,
            max_retries: None,
        }
    }

    pub fn with_max_retries(mut self, retries: u32) -> Self {
        self.max_retries = Some(retries);
        self
    }
}

/// Why [`retry`] returned without a success.
#[derive(Debug, thiserror::Error)]
pub enum RetryError<E> {
    #[error("cancelled while retrying")]
    Cancelled,
    #[error("gave up after {retries} retries: {last}")]
    GaveUp { retries: u32, last: E },
}

/// Runs `op` until it succeeds. Each failure is reported to `stalls`, then waited out; `cancel`
/// interrupts both the wait and an attempt in progress (its future is dropped).
pub async fn retry<T, E, F, Fut>(
    policy: &RetryPolicy,
    stalls: &Stalls,
    cancel: &CancellationToken,
    mut op: F,
) -> Result<T, RetryError<E>>
where
    E: Classify,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut backoff = Backoff::new(policy.initial, policy.max_delay);
    let mut stall: Option<StallGuard> = None;
    let mut retries = 0u32;
    loop {
        let error = tokio::select! {
            biased;
            _ = cancel.cancelled() => return Err(end(stall, "cancelled", RetryError::Cancelled)),
            result = op() => match result {
                Ok(value) => return Ok(value),
                Err(error) => error,
            },
        };
        if policy.max_retries.is_some_and(|max| retries >= max) {
            let gave_up = RetryError::GaveUp {
                retries,
                last: error,
            };
            return Err(end(stall, "gave_up", gave_up));
        }
        retries += 1;
        let delay = error
            .retry_after()
            .unwrap_or_else(|| backoff.next_delay())
            .min(policy.max_delay);
        let message = error.to_string();
        match &stall {
            Some(guard) if guard.cause() == error.cause() => guard.again(error.class(), &message),
            _ => stall = Some(stalls.enter(error.cause(), error.class(), &message, delay)),
        }
        tokio::select! {
            _ = cancel.cancelled() => return Err(end(stall, "cancelled", RetryError::Cancelled)),
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

/// Leaves the stall saying how it ended, and returns `error`.
fn end<E>(stall: Option<StallGuard>, how: &'static str, error: RetryError<E>) -> RetryError<E> {
    if let Some(guard) = stall {
        guard.ended(how);
    }
    error
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use prometheus::Registry;

    use super::*;
    use crate::ops::Readiness;

    #[derive(Debug)]
    struct Failure(ErrorClass);

    impl Display for Failure {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "failure")
        }
    }

    impl Classify for Failure {
        fn class(&self) -> ErrorClass {
            self.0
        }
        fn cause(&self) -> &'static str {
            "test_failure"
        }
    }

    fn stalls() -> Stalls {
        let readiness = Readiness::new("x");
        readiness.set_ready();
        Stalls::register(&Registry::new(), "test", readiness).expect("metrics")
    }

    const FAST: RetryPolicy = RetryPolicy {
        initial: Duration::from_millis(1),
        max_delay: Duration::from_millis(2),
        max_retries: None,
    };

    #[tokio::test]
    async fn retries_until_the_operation_succeeds() {
        let calls = AtomicU32::new(0);
        let stalls = stalls();
        let result = retry(&FAST, &stalls, &CancellationToken::new(), || async {
            if calls.fetch_add(1, Ordering::SeqCst) < 3 {
                Err(Failure(ErrorClass::Permanent))
            } else {
                Ok(7)
            }
        })
        .await;
        assert_eq!(result.ok(), Some(7));
        assert_eq!(calls.load(Ordering::SeqCst), 4);
        assert_eq!(
            stalls.retries().with_label_values(&["test_failure"]).get(),
            3
        );
    }

    #[tokio::test]
    async fn gives_up_after_max_retries() {
        let calls = AtomicU32::new(0);
        let policy = FAST.with_max_retries(2);
        let result: Result<(), _> = retry(&policy, &stalls(), &CancellationToken::new(), || {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err(Failure(ErrorClass::Transient)) }
        })
        .await;
        assert!(matches!(result, Err(RetryError::GaveUp { retries: 2, .. })));
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn cancel_interrupts_an_attempt_in_progress() {
        let cancel = CancellationToken::new();
        let stop = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            stop.cancel();
        });
        let result: Result<(), RetryError<Failure>> =
            retry(&FAST, &stalls(), &cancel, std::future::pending).await;
        assert!(matches!(result, Err(RetryError::Cancelled)));
    }
}
