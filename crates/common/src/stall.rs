//! Stalls: work that cannot go on until something outside the service is fixed or comes back.
//!
//! Nothing in the pipeline skips a batch because a dependency fails; it waits and retries
//! ([`crate::retry`]). Waiting must not be silent, so every retrying operation reports here, and
//! a stall is visible three ways, keyed by its `cause` (`s3_no_such_bucket`, `inference_4xx`):
//!
//! - the gauge `<service>_stalled{cause}`: how many operations are waiting on that cause now;
//! - the log: one line when a cause starts stalling work (WARN if transient, ERROR if permanent),
//!   one reminder every `remind_every` while it lasts, one INFO line when it clears, never a
//!   line per retry (those are at debug);
//! - `/ready`: 503 naming the cause while a **permanent** cause stalls anything (a wrong bucket,
//!   a refused credential): retrying cannot fix it, someone must. A transient cause (a server
//!   that does not answer) leaves readiness alone: it clears by itself, and the gauge and the
//!   alert rules in `monitoring/` say when it lasts too long.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};

use crate::ops::Readiness;

/// Whether waiting can fix an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The other side did not answer, or asked us to come back (timeout, refused connection,
    /// 5xx, 429, 503): retrying is the fix.
    Transient,
    /// The other side answered and refused (access denied, no such bucket, wrong region, topic
    /// not authorised): the setup is wrong; retrying only keeps the place until it is fixed.
    Permanent,
}

impl ErrorClass {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Transient => "transient",
            Self::Permanent => "permanent",
        }
    }
}

/// The stall state of one service. Cheap to clone; all clones share it.
#[derive(Debug, Clone)]
pub struct Stalls {
    inner: Arc<Mutex<BTreeMap<&'static str, Stall>>>,
    stalled: IntGaugeVec,
    retries: IntCounterVec,
    readiness: Readiness,
    remind_every: Duration,
}

#[derive(Debug)]
struct Stall {
    /// Operations waiting on this cause now.
    operations: usize,
    since: Instant,
    last_logged: Instant,
    retries: u64,
}

impl Stalls {
    /// Registers `<service>_stalled{cause}` and `<service>_retries_total{cause}` in `registry`.
    pub fn register(
        registry: &Registry,
        service: &str,
        readiness: Readiness,
    ) -> prometheus::Result<Self> {
        let stalled = IntGaugeVec::new(
            Opts::new(
                format!("{service}_stalled"),
                "Operations waiting for a failing dependency, by cause (0 when none).",
            ),
            &["cause"],
        )?;
        registry.register(Box::new(stalled.clone()))?;
        let retries = IntCounterVec::new(
            Opts::new(
                format!("{service}_retries_total"),
                "Retried calls, by cause.",
            ),
            &["cause"],
        )?;
        registry.register(Box::new(retries.clone()))?;
        Ok(Self {
            inner: Arc::default(),
            stalled,
            retries,
            readiness,
            remind_every: Duration::from_secs(60),
        })
    }

    /// How often a lasting stall is logged again (60 s by default).
    pub fn remind_every(mut self, every: Duration) -> Self {
        self.remind_every = every;
        self
    }

    /// The retry counter, for retries that are not stalls of their own (counted, not gauged).
    pub fn retries(&self) -> &IntCounterVec {
        &self.retries
    }

    /// Records that an operation failed with `cause` and will be retried after `retry_in`.
    /// The returned guard keeps the operation counted as stalled until it is dropped (on
    /// success, on giving up, or on cancellation); call [`StallGuard::again`] on later failures.
    pub fn enter(
        &self,
        cause: &'static str,
        class: ErrorClass,
        error: &str,
        retry_in: Duration,
    ) -> StallGuard {
        self.retries.with_label_values(&[cause]).inc();
        let error = crate::redact::text(error);
        let mut stalls = self.lock();
        let now = Instant::now();
        let fresh = !stalls.contains_key(cause);
        let stall = stalls.entry(cause).or_insert_with(|| Stall {
            operations: 0,
            since: now,
            last_logged: now,
            retries: 0,
        });
        stall.operations += 1;
        stall.retries += 1;
        if fresh {
            let retry_in_ms = retry_in.as_millis() as u64;
            match class {
                ErrorClass::Permanent => tracing::error!(
                    cause,
                    class = class.as_str(),
                    error = %error,
                    retry_in_ms,
                    "stalled: the setup must be fixed; retrying meanwhile, nothing is skipped"
                ),
                ErrorClass::Transient => tracing::warn!(
                    cause,
                    class = class.as_str(),
                    error = %error,
                    retry_in_ms,
                    "stalled: waiting for a dependency; retrying, nothing is skipped"
                ),
            }
        } else {
            tracing::debug!(cause, error = %error, "retrying");
        }
        self.stalled
            .with_label_values(&[cause])
            .set(stall.operations as i64);
        if class == ErrorClass::Permanent {
            self.readiness
                .set_stalled(cause, format!("stalled on {cause}: {error}"));
        }
        StallGuard {
            stalls: self.clone(),
            cause,
            how: "recovered",
        }
    }

    fn again(&self, cause: &'static str, class: ErrorClass, error: &str) {
        self.retries.with_label_values(&[cause]).inc();
        let error = crate::redact::text(error);
        let mut stalls = self.lock();
        let Some(stall) = stalls.get_mut(cause) else {
            return;
        };
        stall.retries += 1;
        if stall.last_logged.elapsed() >= self.remind_every {
            stall.last_logged = Instant::now();
            tracing::warn!(
                cause,
                class = class.as_str(),
                error = %error,
                stalled_for_s = stall.since.elapsed().as_secs(),
                retries = stall.retries,
                operations = stall.operations,
                "still stalled"
            );
        } else {
            tracing::debug!(cause, error = %error, "retrying");
        }
        if class == ErrorClass::Permanent {
            self.readiness
                .set_stalled(cause, format!("stalled on {cause}: {error}"));
        }
    }

    fn leave(&self, cause: &'static str, how: &'static str) {
        let mut stalls = self.lock();
        let Some(stall) = stalls.get_mut(cause) else {
            return;
        };
        stall.operations = stall.operations.saturating_sub(1);
        self.stalled
            .with_label_values(&[cause])
            .set(stall.operations as i64);
        if stall.operations == 0 {
            let stall = stalls.remove(cause);
            self.readiness.clear_stalled(cause);
            if let Some(stall) = stall {
                tracing::info!(
                    cause,
                    how,
                    stalled_for_ms = stall.since.elapsed().as_millis() as u64,
                    retries = stall.retries,
                    "stall over"
                );
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<&'static str, Stall>> {
        // The map is only ever updated by whole statements; a panic cannot leave it torn.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One operation's membership in a stall; leaving it is dropping it.
#[derive(Debug)]
pub struct StallGuard {
    stalls: Stalls,
    cause: &'static str,
    /// How the operation left the stall, for the log line that ends it: `recovered` unless
    /// [`StallGuard::ended`] says otherwise.
    how: &'static str,
}

impl StallGuard {
    pub fn cause(&self) -> &'static str {
        self.cause
    }

    /// Another failure with the same cause.
    pub fn again(&self, class: ErrorClass, error: &str) {
        self.stalls.again(self.cause, class, error);
    }

    /// Leaves the stall without a success (`gave_up`, `cancelled`).
    pub fn ended(mut self, how: &'static str) {
        self.how = how;
    }
}

impl Drop for StallGuard {
    fn drop(&mut self) {
        self.stalls.leave(self.cause, self.how);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stalls() -> (Stalls, Readiness, Registry) {
        let registry = Registry::new();
        let readiness = Readiness::new("starting");
        readiness.set_ready();
        let stalls = Stalls::register(&registry, "test", readiness.clone()).expect("metrics");
        (stalls, readiness, registry)
    }

    #[test]
    fn permanent_stalls_make_the_service_unready_until_the_last_operation_recovers() {
        let (stalls, readiness, _) = stalls();
        let a = stalls.enter(
            "s3_no_such_bucket",
            ErrorClass::Permanent,
            "NoSuchBucket",
            Duration::ZERO,
        );
        let b = stalls.enter(
            "s3_no_such_bucket",
            ErrorClass::Permanent,
            "NoSuchBucket",
            Duration::ZERO,
        );
        let reason = readiness.status().expect_err("unready");
        assert!(reason.contains("s3_no_such_bucket"), "{reason}");
        assert_eq!(
            stalls
                .stalled
                .with_label_values(&["s3_no_such_bucket"])
                .get(),
            2
        );
        drop(a);
        assert!(readiness.status().is_err());
        drop(b);
        assert_eq!(readiness.status(), Ok(()));
        assert_eq!(
            stalls
                .stalled
                .with_label_values(&["s3_no_such_bucket"])
                .get(),
            0
        );
        assert_eq!(
            stalls
                .retries
                .with_label_values(&["s3_no_such_bucket"])
                .get(),
            2
        );
    }

    #[test]
    fn transient_stalls_are_counted_but_leave_readiness_alone() {
        let (stalls, readiness, _) = stalls();
        let guard = stalls.enter("s3_put", ErrorClass::Transient, "timeout", Duration::ZERO);
        guard.again(ErrorClass::Transient, "timeout");
        assert_eq!(readiness.status(), Ok(()));
        assert_eq!(stalls.stalled.with_label_values(&["s3_put"]).get(), 1);
        assert_eq!(stalls.retries.with_label_values(&["s3_put"]).get(), 2);
        drop(guard);
        assert_eq!(stalls.stalled.with_label_values(&["s3_put"]).get(), 0);
    }

    #[test]
    fn secrets_in_errors_do_not_reach_readiness() {
        let (stalls, readiness, _) = stalls();
        let _guard = stalls.enter(
            "rtsp_unauthorized",
            ErrorClass::Permanent,
            "401 from rtsp://admin:hunter2@cam/stream",
            Duration::ZERO,
        );
        let reason = readiness.status().expect_err("unready");
        assert!(!reason.contains("hunter2"), "{reason}");
    }
}
