//! Which offsets may be committed: only below the lowest message still being worked on.
//!
//! Several batches are in flight at once, from several partitions, and they finish in any
//! order. For each partition the tracker keeps the offsets started and not finished; the
//! committable position is the lowest of them (or one past the highest seen when none is left),
//! so a commit never passes a batch whose results are not in S3 yet.
//!
//! Rebalances: when a partition is revoked its entry goes away (after the caller commits what
//! was already done), and its generation ends; a batch of the old generation that finishes later
//! is ignored, so nothing is committed for a partition this member no longer owns, even if it
//! gets the partition back in the meantime.

use std::collections::{BTreeSet, HashMap};

/// A started message, handed back to [`OffsetTracker::finished`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    generation: u64,
}

#[derive(Debug)]
struct Partition {
    generation: u64,
    in_flight: BTreeSet<i64>,
    highest_seen: i64,
    /// The last position committed (or handed out to commit).
    committed: Option<i64>,
}

impl Partition {
    fn position(&self) -> i64 {
        self.in_flight
            .first()
            .copied()
            .unwrap_or(self.highest_seen + 1)
    }

    /// The position to commit if it moved since the last commit.
    fn advance(&mut self) -> Option<i64> {
        let position = self.position();
        if self.committed.is_some_and(|c| c >= position) {
            return None;
        }
        self.committed = Some(position);
        Some(position)
    }
}

#[derive(Debug, Default)]
pub struct OffsetTracker {
    partitions: HashMap<(String, i32), Partition>,
    generations: u64,
}

impl OffsetTracker {
    /// A message fetched at `offset` starts being worked on.
    pub fn started(&mut self, topic: &str, partition: i32, offset: i64) -> Ticket {
        let generations = &mut self.generations;
        let entry = self
            .partitions
            .entry((topic.to_string(), partition))
            .or_insert_with(|| {
                *generations += 1;
                Partition {
                    generation: *generations,
                    in_flight: BTreeSet::new(),
                    highest_seen: offset - 1,
                    committed: None,
                }
            });
        entry.in_flight.insert(offset);
        entry.highest_seen = entry.highest_seen.max(offset);
        Ticket {
            topic: topic.to_string(),
            partition,
            offset,
            generation: entry.generation,
        }
    }

    /// The message of `ticket` is done (stored or dead-lettered). Returns the position to commit
    /// for its partition if it advanced; `None` if it did not, or if the partition was revoked
    /// since the message started.
    pub fn finished(&mut self, ticket: &Ticket) -> Option<i64> {
        let partition = self
            .partitions
            .get_mut(&(ticket.topic.clone(), ticket.partition))?;
        if partition.generation != ticket.generation {
            return None;
        }
        partition.in_flight.remove(&ticket.offset);
        partition.advance()
    }

    /// Releases a revoked partition; returns the position to commit for it first, if any.
    pub fn revoke(&mut self, topic: &str, partition: i32) -> Option<i64> {
        let mut entry = self.partitions.remove(&(topic.to_string(), partition))?;
        entry.advance()
    }

    /// Positions to commit for every partition (at shutdown).
    pub fn all_positions(&mut self) -> Vec<(String, i32, i64)> {
        self.partitions
            .iter_mut()
            .filter_map(|((topic, partition), p)| {
                p.advance().map(|o| (topic.clone(), *partition, o))
            })
            .collect()
    }

    /// Messages started and not finished, over all partitions.
    pub fn in_flight(&self) -> usize {
        self.partitions.values().map(|p| p.in_flight.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_never_pass_an_unfinished_batch() {
        let mut t = OffsetTracker::default();
        let a = t.started("t", 0, 10);
        let b = t.started("t", 0, 11);
        let c = t.started("t", 0, 12);
        assert_eq!(t.finished(&c), Some(10), "10 is still running");
        assert_eq!(t.finished(&b), None, "position unchanged");
        assert_eq!(t.finished(&a), Some(13), "all done: one past the last");
        assert_eq!(t.in_flight(), 0);
    }

    #[test]
    fn partitions_are_independent() {
        let mut t = OffsetTracker::default();
        let a = t.started("t", 0, 5);
        let b = t.started("t", 1, 100);
        assert_eq!(t.finished(&b), Some(101));
        assert_eq!(t.in_flight(), 1);
        assert_eq!(t.finished(&a), Some(6));
    }

    #[test]
    fn a_revoked_partition_commits_what_is_done_and_ignores_late_finishers() {
        let mut t = OffsetTracker::default();
        let a = t.started("t", 0, 1);
        let b = t.started("t", 0, 2);
        t.finished(&a);
        assert_eq!(t.revoke("t", 0), None, "position 2 was already handed out");
        // Assigned back and fetched again from the committed position.
        let again = t.started("t", 0, 2);
        assert_eq!(
            t.finished(&b),
            None,
            "the old generation's batch commits nothing"
        );
        assert_eq!(t.in_flight(), 1);
        assert_eq!(t.finished(&again), Some(3));
    }

    #[test]
    fn shutdown_collects_every_partition() {
        let mut t = OffsetTracker::default();
        let a = t.started("t", 0, 7);
        t.started("t", 1, 3);
        t.started("u", 0, 0);
        assert_eq!(t.finished(&a), Some(8));
        let mut all = t.all_positions();
        all.sort();
        assert_eq!(all, [("t".to_string(), 1, 3), ("u".to_string(), 0, 0)]);
    }
}
