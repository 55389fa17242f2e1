//! How far a consumer group is behind: per partition, the log's start and end offsets, the
//! group's committed offset and the difference. The consumer publishes it as
//! `consumer_lag_messages`; the `kafka-stats` binary prints it for any group.

use std::time::Duration;

use rdkafka::consumer::{Consumer, ConsumerContext};
use rdkafka::error::KafkaResult;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    /// First offset still in the log.
    pub start: i64,
    /// Offset the next message will get (the "high watermark").
    pub end: i64,
    /// Where the group resumes; `None` when it never committed on this partition.
    pub committed: Option<i64>,
    /// Messages the group has not finished: `end - committed`, or `end - start` when it never
    /// committed (it would start from the beginning: `auto.offset.reset=earliest`).
    pub lag: i64,
}

/// Lag of the consumer's group on `partitions`. Blocking: call it off the async executor.
pub fn partition_lag<X: ConsumerContext, C: Consumer<X>>(
    consumer: &C,
    partitions: &TopicPartitionList,
    timeout: Duration,
) -> KafkaResult<Vec<PartitionLag>> {
    let committed = consumer.committed_offsets(partitions.clone(), timeout)?;
    let mut lags = Vec::with_capacity(committed.count());
    for e in committed.elements() {
        let (start, end) = consumer.fetch_watermarks(e.topic(), e.partition(), timeout)?;
        let committed = match e.offset() {
            Offset::Offset(o) if o >= 0 => Some(o),
            _ => None,
        };
        lags.push(PartitionLag {
            topic: e.topic().to_string(),
            partition: e.partition(),
            start,
            end,
            committed,
            lag: (end - committed.unwrap_or(start)).max(0),
        });
    }
    lags.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    Ok(lags)
}

/// Every partition of the broker's topics whose name `select` accepts; topics whose names start
/// with `__` (the broker's own) are left out.
pub fn topic_partitions<X: ConsumerContext, C: Consumer<X>>(
    consumer: &C,
    select: impl Fn(&str) -> bool,
    timeout: Duration,
) -> KafkaResult<TopicPartitionList> {
    let metadata = consumer.fetch_metadata(None, timeout)?;
    let mut list = TopicPartitionList::new();
    for topic in metadata.topics() {
        if topic.name().starts_with("__") || !select(topic.name()) {
            continue;
        }
        for partition in topic.partitions() {
            list.add_partition(topic.name(), partition.id());
        }
    }
    Ok(list)
}

/// A fixed-width table of `lags` with a total line.
pub fn render_table(group: &str, lags: &[PartitionLag]) -> String {
    let width = lags.iter().map(|l| l.topic.len()).max().unwrap_or(5).max(5);
    let mut out = format!(
        "{:<width$}  {:>9}  {:>10}  {:>10}  {:>10}  {:>8}\n",
        "TOPIC", "PARTITION", "START", "END", "COMMITTED", "LAG"
    );
    for l in lags {
        let committed = l
            .committed
            .map_or_else(|| "-".to_string(), |c| c.to_string());
        out.push_str(&format!(
            "{:<width$}  {:>9}  {:>10}  {:>10}  {:>10}  {:>8}\n",
            l.topic, l.partition, l.start, l.end, committed, l.lag
        ));
    }
    let total: i64 = lags.iter().map(|l| l.lag).sum();
    let topics = lags
        .iter()
        .map(|l| &l.topic)
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    out.push_str(&format!(
        "group {group}: {topics} topics, {} partitions, total lag {total} messages\n",
        lags.len()
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_shows_never_committed_partitions_and_the_total() {
        let lags = [
            PartitionLag {
                topic: "video-frames".into(),
                partition: 0,
                start: 0,
                end: 12,
                committed: Some(10),
                lag: 2,
            },
            PartitionLag {
                topic: "video-frames".into(),
                partition: 1,
                start: 3,
                end: 7,
                committed: None,
                lag: 4,
            },
        ];
        let table = render_table("g", &lags);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4, "{table}");
        assert!(lines[2].contains(" - ") && lines[2].trim_end().ends_with('4'));
        assert_eq!(
            lines[3],
            "group g: 1 topics, 2 partitions, total lag 6 messages"
        );
    }
}
