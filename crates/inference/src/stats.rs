//! `GET /stats`: a human-readable JSON summary (the Prometheus metrics are the source for
//! dashboards; this is for a person with curl).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

/// Latencies kept for percentiles: the most recent requests only.
const WINDOW: usize = 1024;

#[derive(Debug)]
pub struct Stats {
    started: Instant,
    inner: Mutex<Counters>,
}

#[derive(Debug, Default)]
struct Counters {
    requests: u64,
    failed_requests: u64,
    frames: u64,
    detections: u64,
    /// Latencies of the last `WINDOW` successful requests, in milliseconds.
    recent_ms: VecDeque<f64>,
}

#[derive(Debug, Serialize)]
pub struct LatencySummary {
    pub samples: usize,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

#[derive(Debug, Serialize)]
pub struct StatsSnapshot {
    pub uptime_seconds: f64,
    pub requests: u64,
    pub failed_requests: u64,
    pub frames: u64,
    pub detections: u64,
    pub latency: LatencySummary,
}

impl Default for Stats {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            inner: Mutex::new(Counters::default()),
        }
    }
}

impl Stats {
    fn lock(&self) -> std::sync::MutexGuard<'_, Counters> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn record_success(&self, frames: usize, detections: usize, latency: Duration) {
        let mut c = self.lock();
        c.requests += 1;
        c.frames += frames as u64;
        c.detections += detections as u64;
        if c.recent_ms.len() == WINDOW {
            c.recent_ms.pop_front();
        }
        c.recent_ms.push_back(latency.as_secs_f64() * 1000.0);
    }

    pub fn record_failure(&self) {
        let mut c = self.lock();
        c.requests += 1;
        c.failed_requests += 1;
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        let c = self.lock();
        let mut sorted: Vec<f64> = c.recent_ms.iter().copied().collect();
        sorted.sort_by(f64::total_cmp);
        StatsSnapshot {
            uptime_seconds: self.started.elapsed().as_secs_f64(),
            requests: c.requests,
            failed_requests: c.failed_requests,
            frames: c.frames,
            detections: c.detections,
            latency: LatencySummary {
                samples: sorted.len(),
                p50_ms: percentile(&sorted, 0.50),
                p90_ms: percentile(&sorted, 0.90),
                p99_ms: percentile(&sorted, 0.99),
                max_ms: sorted.last().copied().unwrap_or(0.0),
            },
        }
    }
}

/// Nearest-rank percentile of sorted values (0 when empty).
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), 50.0);
        assert_eq!(percentile(&v, 0.99), 99.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }

    #[test]
    fn window_keeps_recent_latencies_only() {
        let s = Stats::default();
        for i in 0..(WINDOW + 10) {
            s.record_success(1, 0, Duration::from_millis(i as u64));
        }
        let snap = s.snapshot();
        assert_eq!(snap.latency.samples, WINDOW);
        assert_eq!(snap.requests as usize, WINDOW + 10);
        assert_eq!(snap.latency.max_ms, (WINDOW + 9) as f64);
    }
}
