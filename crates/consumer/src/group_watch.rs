//! A member that owns no partition while work waits in the group's partitions, and nobody has
//! committed for a while, rejoins the group.
//!
//! Kafka rebalances by itself when a member dies: the coordinator expires it after the session
//! timeout and the survivors are told to rejoin. tansu 0.6.0, the broker of the tests and the
//! drills, can leave a group stuck instead: when the group's leader dies and a new member's
//! SyncGroup is the request that expires it, that member is made the leader of a formed group
//! with an empty assignment, and no rebalance follows (it owns nothing, nobody owns the
//! partitions, and every heartbeat is answered "fine"). Seen in the consumer-kill drill every
//! time and, depending on timing, in the kill test.
//!
//! The watch turns that into one rejoin (leave the group, join again). On a healthy group it
//! never fires: a member without partitions there either has nothing waiting for it (more
//! members than partitions, all caught up) or sees the owners commit. The worst a false alarm
//! costs is one rebalance per `timeout`.

use std::time::{Duration, Instant};

/// What the member saw of its group at one look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupView {
    /// Partitions this member owns.
    pub owned: usize,
    /// Messages waiting in the subscribed partitions, over the whole group.
    pub lag: i64,
    /// The sum of the group's committed offsets on them: it moves when any member commits.
    pub committed: i64,
}

#[derive(Debug)]
pub struct GroupWatch {
    /// How long the member may own nothing while work waits and nobody commits; zero: never
    /// rejoin.
    timeout: Duration,
    /// Since when the member has owned nothing while work waited, and the committed sum then.
    idle: Option<(Instant, i64)>,
}

impl GroupWatch {
    pub fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            idle: None,
        }
    }

    pub fn enabled(&self) -> bool {
        !self.timeout.is_zero()
    }

    /// Takes one look; returns for how long the group has looked stuck when it is time to
    /// rejoin (and starts watching afresh).
    pub fn observe(&mut self, now: Instant, view: GroupView) -> Option<Duration> {
        if !self.enabled() || view.owned > 0 || view.lag == 0 {
            self.idle = None;
            return None;
        }
        match self.idle {
            Some((since, committed)) if committed == view.committed => {
                let waited = now.saturating_duration_since(since);
                if waited < self.timeout {
                    return None;
                }
                self.idle = None;
                Some(waited)
            }
            // First look at an idle member, or somebody committed: the group moves.
            _ => {
                self.idle = Some((now, view.committed));
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STUCK: GroupView = GroupView {
        owned: 0,
        lag: 11,
        committed: 14,
    };

    #[test]
    fn an_idle_member_rejoins_once_nobody_has_committed_for_the_timeout() {
        let mut watch = GroupWatch::new(Duration::from_secs(60));
        let t0 = Instant::now();
        assert_eq!(watch.observe(t0, STUCK), None, "first look");
        assert_eq!(watch.observe(t0 + Duration::from_secs(59), STUCK), None);
        assert_eq!(
            watch.observe(t0 + Duration::from_secs(61), STUCK),
            Some(Duration::from_secs(61))
        );
        assert_eq!(
            watch.observe(t0 + Duration::from_secs(62), STUCK),
            None,
            "after a rejoin the wait starts again"
        );
    }

    #[test]
    fn commits_by_others_owning_partitions_or_no_lag_keep_it_quiet() {
        let mut watch = GroupWatch::new(Duration::from_secs(60));
        let t0 = Instant::now();
        let at = |s| t0 + Duration::from_secs(s);
        watch.observe(at(0), STUCK);
        let moving = GroupView {
            committed: 15,
            ..STUCK
        };
        assert_eq!(watch.observe(at(50), moving), None);
        assert_eq!(
            watch.observe(at(100), moving),
            None,
            "50 s since the commit"
        );
        let owner = GroupView { owned: 2, ..STUCK };
        assert_eq!(watch.observe(at(200), owner), None);
        let caught_up = GroupView { lag: 0, ..STUCK };
        assert_eq!(watch.observe(at(300), caught_up), None);
        assert_eq!(watch.observe(at(301), STUCK), None, "a fresh start");
    }

    #[test]
    fn a_zero_timeout_never_rejoins() {
        let mut watch = GroupWatch::new(Duration::ZERO);
        let t0 = Instant::now();
        watch.observe(t0, STUCK);
        assert_eq!(watch.observe(t0 + Duration::from_secs(3600), STUCK), None);
    }
}
