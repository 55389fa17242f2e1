//! Frame-rate sampling by presentation timestamp.
//!
//! The rule: the stream's timeline, from its first picture, is cut into slots of `1 / fps`
//! seconds; the first picture whose timestamp falls into a new slot is kept, every other
//! picture is dropped. So a 25 fps source sampled at 10 fps keeps the pictures at 0, 120, 200,
//! 320, 400 ms ... (100 ms apart on average, never two in one slot), a source slower than the
//! target keeps every picture, and how fast frames arrive (a file read as fast as possible, a
//! camera's network jitter) changes nothing. For a file, the frames kept are exactly the
//! distinct values of `floor((pts - first_pts) * fps)` over its pictures.
//!
//! A timestamp that jumps back by more than [`BACKWARDS_RESTART_US`] means the source restarted
//! its clock without telling: the timeline restarts there instead of dropping everything until
//! the old time is reached again.

/// A jump back in time larger than this restarts the timeline.
pub const BACKWARDS_RESTART_US: i64 = 1_000_000;

#[derive(Debug, Clone)]
pub struct Sampler {
    /// Target rate in thousandths of a frame per second, so the slot maths stays in integers.
    millifps: i64,
    origin_us: Option<i64>,
    last_slot: i64,
    last_pts_us: i64,
}

impl Sampler {
    /// A sampler keeping at most `fps` pictures per second of presentation time (`fps > 0`).
    pub fn new(fps: f64) -> Self {
        Self {
            millifps: ((fps * 1000.0).round() as i64).max(1),
            origin_us: None,
            last_slot: -1,
            last_pts_us: 0,
        }
    }

    /// Whether the picture presented at `pts_us` is kept.
    pub fn keep(&mut self, pts_us: i64) -> bool {
        let origin = match self.origin_us {
            Some(origin) if pts_us >= self.last_pts_us - BACKWARDS_RESTART_US => origin,
            _ => {
                self.restart_at(pts_us);
                pts_us
            }
        };
        self.last_pts_us = self.last_pts_us.max(pts_us);
        let slot = slot_of(pts_us - origin, self.millifps);
        if slot > self.last_slot {
            self.last_slot = slot;
            true
        } else {
            false
        }
    }

    /// A new timeline (a new connection or a new pass over a file).
    pub fn restart(&mut self) {
        self.origin_us = None;
    }

    fn restart_at(&mut self, pts_us: i64) {
        self.origin_us = Some(pts_us);
        self.last_slot = -1;
        self.last_pts_us = pts_us;
    }
}

fn slot_of(offset_us: i64, millifps: i64) -> i64 {
    (i128::from(offset_us) * i128::from(millifps)).div_euclid(1_000_000_000) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(fps: f64, pts: impl IntoIterator<Item = i64>) -> Vec<i64> {
        let mut s = Sampler::new(fps);
        pts.into_iter().filter(|&p| s.keep(p)).collect()
    }

    #[test]
    fn twenty_five_to_ten_keeps_the_first_picture_of_every_100ms_slot() {
        let pts = (0..25).map(|i| i * 40_000);
        assert_eq!(
            kept(10.0, pts),
            [
                0, 120_000, 200_000, 320_000, 400_000, 520_000, 600_000, 720_000, 800_000, 920_000
            ]
        );
    }

    #[test]
    fn a_slower_source_keeps_every_picture() {
        let pts: Vec<i64> = (0..20).map(|i| i * 200_000).collect();
        assert_eq!(kept(10.0, pts.clone()), pts);
    }

    #[test]
    fn the_timeline_starts_at_the_first_picture_not_at_zero() {
        let pts = (0..10).map(|i| 5_000_033 + i * 40_000);
        assert_eq!(kept(10.0, pts).len(), 4); // 0, 120, 200, 320 ms after the start
    }

    #[test]
    fn arrival_order_does_not_matter_only_timestamps() {
        // Two pictures in one slot: the second is dropped even when it comes much later.
        let mut s = Sampler::new(10.0);
        assert!(s.keep(0));
        assert!(!s.keep(50_000));
        assert!(s.keep(100_000));
    }

    #[test]
    fn a_gap_keeps_the_next_picture_without_a_burst() {
        let pts = [0, 40_000, 2_000_000, 2_040_000, 2_080_000, 2_120_000];
        assert_eq!(kept(10.0, pts), [0, 2_000_000, 2_120_000]);
    }

    #[test]
    fn a_clock_restart_restarts_the_timeline() {
        let pts = [10_000_000, 10_040_000, 10_120_000, 0, 40_000, 120_000];
        assert_eq!(kept(10.0, pts), [10_000_000, 10_120_000, 0, 120_000]);
    }

    #[test]
    fn small_reorderings_do_not_restart() {
        let mut s = Sampler::new(10.0);
        assert!(s.keep(1_000_000));
        assert!(!s.keep(990_000));
        assert!(s.keep(1_100_000));
    }

    #[test]
    fn restart_anchors_at_the_next_picture() {
        let mut s = Sampler::new(10.0);
        assert!(s.keep(0));
        s.restart();
        assert!(s.keep(30_000));
        assert!(!s.keep(70_000));
        assert!(s.keep(130_000));
    }

    #[test]
    fn fractional_rates_use_integer_slots() {
        // 2.5 fps: slots of 400 ms.
        let pts = (0..30).map(|i| i * 40_000);
        assert_eq!(kept(2.5, pts), [0, 400_000, 800_000]);
    }
}
