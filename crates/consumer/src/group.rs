//! The member's side of the group protocol: the state the main loop shares with librdkafka's
//! rebalance callbacks, and what those callbacks do with it.
//!
//! - Before partitions are revoked, what is done is committed synchronously and their
//!   in-flight batches are cancelled: their slots are freed at once, nothing of theirs is
//!   committed, and the partition's new owner processes them again (keys are deterministic, so
//!   what they had already written is overwritten with the same bytes).
//! - After partitions are assigned, their fetch pause is set to the member's (see
//!   [`FetchPause`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use common::kafka::KafkaContext;
use common::naming::{Subscription, TopicTemplate};
use rdkafka::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::KafkaError;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::offsets::OffsetTracker;

pub(crate) type GroupConsumer = StreamConsumer<GroupContext>;

/// Offsets shared between the main loop and librdkafka's rebalance callback.
#[derive(Debug, Clone, Default)]
pub(crate) struct SharedOffsets(Arc<Mutex<OffsetTracker>>);

impl SharedOffsets {
    pub(crate) fn lock(&self) -> MutexGuard<'_, OffsetTracker> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The cancellation of each owned partition's work, children of the shutdown's.
#[derive(Debug, Clone, Default)]
pub(crate) struct PartitionWork(Arc<Mutex<HashMap<(String, i32), CancellationToken>>>);

impl PartitionWork {
    fn lock(&self) -> MutexGuard<'_, HashMap<(String, i32), CancellationToken>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The token that cancels work of `topic`/`partition`.
    pub(crate) fn token(
        &self,
        all: &CancellationToken,
        topic: &str,
        partition: i32,
    ) -> CancellationToken {
        self.lock()
            .entry((topic.to_string(), partition))
            .or_insert_with(|| all.child_token())
            .clone()
    }

    /// Cancels the partition's work; a later assignment of it starts with a fresh token.
    fn revoke(&self, topic: &str, partition: i32) {
        if let Some(token) = self.lock().remove(&(topic.to_string(), partition)) {
            token.cancel();
        }
    }
}

/// Whether fetching is paused because work is backing up. Shared with the rebalance callback:
/// librdkafka keeps an application pause on a partition through its revocation and a later
/// assignment, so a partition assigned while fetching is paused must be paused too, and one
/// assigned while it is not must be resumed (it may carry a pause from before its revocation,
/// and nothing would ever lift it).
#[derive(Debug, Clone, Default)]
pub(crate) struct FetchPause(Arc<AtomicBool>);

impl FetchPause {
    pub(crate) fn is_paused(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    pub(crate) fn set(&self, paused: bool) {
        self.0.store(paused, Ordering::SeqCst);
    }
}

/// The consumer's client context: Kafka's logs and connectivity, and the rebalance callbacks.
pub(crate) struct GroupContext {
    pub(crate) offsets: SharedOffsets,
    pub(crate) work: PartitionWork,
    pub(crate) pause: FetchPause,
    pub(crate) kafka: KafkaContext,
}

impl ClientContext for GroupContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        self.kafka.log(level, fac, message);
    }
    fn error(&self, error: KafkaError, reason: &str) {
        self.kafka.error(error, reason);
    }
    fn stats_raw(&self, statistics: &[u8]) {
        self.kafka.stats_raw(statistics);
    }
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(revoked) = rebalance {
            let mut commit = TopicPartitionList::new();
            let cancelled = {
                let mut offsets = self.offsets.lock();
                let before = offsets.in_flight();
                for e in revoked.elements() {
                    self.work.revoke(e.topic(), e.partition());
                    if let Some(position) = offsets.revoke(e.topic(), e.partition()) {
                        let _ = commit.add_partition_offset(
                            e.topic(),
                            e.partition(),
                            Offset::Offset(position),
                        );
                    }
                }
                before - offsets.in_flight()
            };
            if commit.count() > 0
                && let Err(e) = consumer.commit(&commit, CommitMode::Sync)
            {
                tracing::warn!(error = %e, "commit before revocation failed; those batches will be redelivered");
            }
            tracing::info!(
                partitions = revoked.count(),
                cancelled,
                "partitions revoked; their unfinished batches are cancelled and go to the new owner"
            );
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(assigned) = rebalance {
            let list: Vec<String> = assigned
                .elements()
                .iter()
                .map(|e| format!("{}/{}", e.topic(), e.partition()))
                .collect();
            let paused = self.pause.is_paused();
            let applied = if paused {
                consumer.pause(assigned)
            } else {
                consumer.resume(assigned)
            };
            if let Err(e) = applied {
                tracing::warn!(error = %e, paused, "could not set the new partitions' fetch pause");
            }
            tracing::info!(partitions = ?list, paused, "partitions assigned");
        }
    }
}

/// Joins the group on the template's topic or pattern.
pub(crate) fn subscribe(
    consumer: &GroupConsumer,
    template: &TopicTemplate,
) -> Result<(), KafkaError> {
    match template.subscription() {
        Subscription::Topic(topic) => consumer.subscribe(&[&topic]),
        Subscription::Pattern(pattern) => consumer.subscribe(&[&pattern]),
    }
}
