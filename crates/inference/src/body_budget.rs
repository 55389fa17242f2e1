//! A bound on the request-body bytes the service holds at once, taken *before* a body is read.
//!
//! Without it every connection could hold `--max-body-bytes` (twice that for JSON, whose base64
//! is decoded into a second copy) before any other limit applied. A request reserves what its
//! body will cost from its `Content-Length` (or the body limit when it has none) and keeps the
//! reservation until it has been answered; when the budget is spent it is refused at once with
//! 503 `busy` and `Retry-After`, before a byte of its body is read.

use std::sync::Arc;

use prometheus::IntGauge;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Reservations are made in KiB so that a budget of many GiB fits the semaphore's `u32`.
const UNIT: usize = 1024;

#[derive(Debug, Clone)]
pub struct BodyBudget {
    units: Arc<Semaphore>,
    limit_units: u32,
    gauge: IntGauge,
}

/// Bytes reserved for one request; released when dropped.
#[derive(Debug)]
pub struct Reserved {
    permit: Option<OwnedSemaphorePermit>,
    budget: BodyBudget,
}

impl BodyBudget {
    pub fn new(limit_bytes: usize, gauge: IntGauge) -> Self {
        let limit_units = u32::try_from(limit_bytes.div_ceil(UNIT)).unwrap_or(u32::MAX >> 4);
        Self {
            units: Arc::new(Semaphore::new(limit_units as usize)),
            limit_units,
            gauge,
        }
    }

    /// Reserves `bytes` (at most the whole budget), or `None` when they are not free now.
    pub fn try_reserve(&self, bytes: usize) -> Option<Reserved> {
        let units = u32::try_from(bytes.div_ceil(UNIT).max(1))
            .unwrap_or(u32::MAX)
            .min(self.limit_units);
        let permit = Arc::clone(&self.units).try_acquire_many_owned(units).ok()?;
        let reserved = Reserved {
            permit: Some(permit),
            budget: self.clone(),
        };
        self.publish();
        Some(reserved)
    }

    /// The whole budget in bytes.
    pub fn limit(&self) -> usize {
        self.limit_units as usize * UNIT
    }

    /// Bytes reserved now.
    pub fn in_use(&self) -> usize {
        (self.limit_units as usize - self.units.available_permits()) * UNIT
    }

    fn publish(&self) {
        self.gauge.set(self.in_use() as i64);
    }
}

impl Drop for Reserved {
    fn drop(&mut self) {
        drop(self.permit.take());
        self.budget.publish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_are_refused_past_the_budget_and_come_back_when_dropped() {
        let gauge = IntGauge::new("g", "g").expect("gauge");
        let budget = BodyBudget::new(10 * UNIT, gauge.clone());
        let a = budget.try_reserve(6 * UNIT).expect("fits");
        assert!(budget.try_reserve(5 * UNIT).is_none(), "6 + 5 > 10");
        let b = budget.try_reserve(4 * UNIT).expect("6 + 4 fits");
        assert_eq!(gauge.get(), 10 * UNIT as i64);
        drop((a, b));
        assert_eq!(gauge.get(), 0);
        let whole = budget
            .try_reserve(100 * UNIT)
            .expect("capped at the whole budget");
        assert_eq!(budget.in_use(), 10 * UNIT);
        drop(whole);
    }
}
