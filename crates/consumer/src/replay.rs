//! Dead letters read back: listing them with why they failed, and re-publishing chosen ones to
//! the topic they came from once the cause is fixed (the `dlq-replay` binary).
//!
//! A run reads each partition of the dead-letter topic from its start (or `--from-offset`) and
//! takes only the letters written before the run began (by their Kafka timestamp), so a letter
//! replayed, refused again and dead-lettered again during the run is not read (and replayed) a
//! second time: every selected letter is published exactly once per run. A partition is read
//! at least to the end offset it had at the start, then until nothing new arrives for a moment
//! (the test broker, tansu 0.6, reports a multi-record batch's end offset short, so the end
//! offset alone would miss letters there). The replayed message has the letter's key and
//! payload, the frame-batch content type, and `dlq-replayed-from: <topic>/<partition>/<offset>`
//! so that a second failure can be traced back. Publishing uses an idempotent producer, and
//! the run waits for every acknowledgement: it fails (non-zero exit) naming what was not sent.

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Header, Headers, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::{ClientConfig, Message};
use serde::Serialize;

/// One message of the dead-letter topic, as the consumer wrote it ([`crate::dlq`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Letter {
    pub partition: i32,
    pub offset: i64,
    pub reason: String,
    pub error: String,
    /// The Kafka key: the stream id the producer routed the batch by.
    pub stream: Option<String>,
    pub source_topic: String,
    pub source_partition: Option<i32>,
    pub source_offset: Option<i64>,
    pub failed_at: String,
    #[serde(skip)]
    pub key: Option<Vec<u8>>,
    #[serde(skip)]
    pub payload: Vec<u8>,
    pub payload_bytes: usize,
}

impl Letter {
    fn from_message(message: &BorrowedMessage<'_>) -> Self {
        let mut headers: HashMap<&str, String> = HashMap::new();
        if let Some(h) = message.headers() {
            for header in h.iter() {
                if let Some(value) = header.value {
                    headers.insert(header.key, String::from_utf8_lossy(value).into_owned());
                }
            }
        }
        let mut take = |name: &str| headers.remove(name).unwrap_or_default();
        let payload = message.payload().unwrap_or_default().to_vec();
        Self {
            partition: message.partition(),
            offset: message.offset(),
            reason: take("dlq-reason"),
            error: take("dlq-error"),
            stream: message
                .key()
                .map(|k| String::from_utf8_lossy(k).into_owned()),
            source_topic: take("dlq-source-topic"),
            source_partition: take("dlq-source-partition").parse().ok(),
            source_offset: take("dlq-source-offset").parse().ok(),
            failed_at: take("dlq-failed-at"),
            key: message.key().map(<[u8]>::to_vec),
            payload_bytes: payload.len(),
            payload,
        }
    }
}

/// Which letters a run lists or replays; every given condition must hold.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub reasons: Vec<String>,
    pub streams: Vec<String>,
    /// First dead-letter offset, inclusive.
    pub from_offset: Option<i64>,
    /// Last dead-letter offset, exclusive.
    pub to_offset: Option<i64>,
}

impl Selection {
    pub fn matches(&self, letter: &Letter) -> bool {
        (self.reasons.is_empty() || self.reasons.contains(&letter.reason))
            && (self.streams.is_empty()
                || letter
                    .stream
                    .as_ref()
                    .is_some_and(|s| self.streams.contains(s)))
            && self.from_offset.is_none_or(|from| letter.offset >= from)
            && self.to_offset.is_none_or(|to| letter.offset < to)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("Kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("dead-letter topic {0} does not exist")]
    NoSuchTopic(String),
    #[error("letter at offset {offset} has no dlq-source-topic header; it cannot be replayed")]
    NoSource { offset: i64 },
    #[error(
        "{failed} of {selected} letters were not re-published (first: offset {offset}: {error})"
    )]
    NotSent {
        failed: usize,
        selected: usize,
        offset: i64,
        error: String,
    },
}

/// How long a partition read past its end offset must stay quiet before the read ends.
const QUIET: Duration = Duration::from_secs(2);

/// The letters of `topic` that `selection` picks, written before this call.
pub fn read(
    config: &ClientConfig,
    topic: &str,
    selection: &Selection,
    timeout: Duration,
) -> Result<Vec<Letter>, ReplayError> {
    let cutoff_ms = chrono::Utc::now().timestamp_millis();
    let consumer: BaseConsumer = config.create()?;
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        return Err(ReplayError::NoSuchTopic(topic.to_string()));
    }
    // Per partition still being read: the end offset seen at the start (read at least to it).
    let mut open: HashMap<i32, i64> = HashMap::new();
    let mut assignment = TopicPartitionList::new();
    for &partition in &partitions {
        let (low, high) = consumer.fetch_watermarks(topic, partition, timeout)?;
        let start = selection.from_offset.map_or(low, |from| from.max(low));
        if selection.to_offset.is_none_or(|to| start < to) {
            open.insert(partition, high);
            assignment.add_partition_offset(topic, partition, Offset::Offset(start))?;
        }
    }
    if open.is_empty() {
        return Ok(Vec::new());
    }
    consumer.assign(&assignment)?;
    let mut letters = Vec::new();
    let mut reached: HashMap<i32, i64> = HashMap::new();
    let mut last_message = std::time::Instant::now();
    while !open.is_empty() {
        let Some(message) = consumer.poll(Duration::from_millis(200)) else {
            let behind = open
                .iter()
                .any(|(p, end)| reached.get(p).copied().unwrap_or(-1) + 1 < *end);
            if !behind && last_message.elapsed() >= QUIET {
                break;
            }
            // A large topic may take long to read; what is an error is no progress.
            if behind && last_message.elapsed() > timeout {
                return Err(rdkafka::error::KafkaError::MessageConsumption(
                    rdkafka::types::RDKafkaErrorCode::OperationTimedOut,
                )
                .into());
            }
            continue;
        };
        let message = message?;
        last_message = std::time::Instant::now();
        let partition = message.partition();
        if !open.contains_key(&partition) {
            continue;
        }
        reached.insert(partition, message.offset());
        let written_ms = message.timestamp().to_millis().unwrap_or(i64::MIN);
        let past_range = selection.to_offset.is_some_and(|to| message.offset() >= to);
        if past_range || written_ms >= cutoff_ms {
            // Letters after this one were written after the run began, or are out of range.
            open.remove(&partition);
            continue;
        }
        let letter = Letter::from_message(&message);
        if selection.matches(&letter) {
            letters.push(letter);
        }
    }
    letters.sort_by_key(|l| (l.partition, l.offset));
    Ok(letters)
}

/// Publishes each of `letters` to its source topic; returns how many were sent, or which were
/// not. `config` is the producer's (idempotent, acks=all).
pub async fn republish(
    config: &ClientConfig,
    dlq_topic: &str,
    letters: &[Letter],
) -> Result<usize, ReplayError> {
    if let Some(letter) = letters.iter().find(|l| l.source_topic.is_empty()) {
        return Err(ReplayError::NoSource {
            offset: letter.offset,
        });
    }
    let producer: FutureProducer = config.create()?;
    let sends = letters.iter().map(|letter| {
        let producer = producer.clone();
        async move {
            let from = format!("{dlq_topic}/{}/{}", letter.partition, letter.offset);
            let headers = OwnedHeaders::new()
                .insert(Header {
                    key: "content-type",
                    value: Some(common::inference_api::FRAME_BATCH_CONTENT_TYPE),
                })
                .insert(Header {
                    key: "dlq-replayed-from",
                    value: Some(from.as_str()),
                });
            let mut record = FutureRecord::to(&letter.source_topic)
                .payload(&letter.payload)
                .headers(headers);
            if let Some(key) = &letter.key {
                record = record.key(key);
            }
            let sent = producer.send(record, Duration::from_secs(30)).await;
            (letter.offset, sent.map_err(|(e, _)| e.to_string()))
        }
    });
    let results = futures::future::join_all(sends).await;
    let failed: Vec<(i64, String)> = results
        .into_iter()
        .filter_map(|(offset, r)| r.err().map(|e| (offset, e)))
        .collect();
    match failed.first() {
        None => Ok(letters.len()),
        Some((offset, error)) => Err(ReplayError::NotSent {
            failed: failed.len(),
            selected: letters.len(),
            offset: *offset,
            error: error.clone(),
        }),
    }
}

/// The table `dlq-replay list` prints.
pub fn render_table(letters: &[Letter]) -> String {
    let mut out = format!(
        "{:>9} {:>6}  {:<20} {:<16} {:<28} {:<25} error\n",
        "partition", "offset", "reason", "stream", "source", "failed at"
    );
    for l in letters {
        let source = format!(
            "{}/{}/{}",
            l.source_topic,
            l.source_partition.map_or("?".into(), |p| p.to_string()),
            l.source_offset.map_or("?".into(), |o| o.to_string())
        );
        let error: String = l.error.chars().take(80).collect();
        out.push_str(&format!(
            "{:>9} {:>6}  {:<20} {:<16} {:<28} {:<25} {}\n",
            l.partition,
            l.offset,
            l.reason,
            l.stream.as_deref().unwrap_or("-"),
            source,
            l.failed_at,
            error
        ));
    }
    out.push_str(&format!("{} letters\n", letters.len()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(offset: i64, reason: &str, stream: &str) -> Letter {
        Letter {
            partition: 0,
            offset,
            reason: reason.into(),
            error: String::new(),
            stream: Some(stream.into()),
            source_topic: "frames".into(),
            source_partition: Some(0),
            source_offset: Some(offset),
            failed_at: String::new(),
            key: Some(stream.as_bytes().to_vec()),
            payload: Vec::new(),
            payload_bytes: 0,
        }
    }

    #[test]
    fn every_condition_of_a_selection_must_hold() {
        let selection = Selection {
            reasons: vec!["inference_rejected".into()],
            streams: vec!["cam-2".into()],
            from_offset: Some(10),
            to_offset: Some(20),
        };
        assert!(selection.matches(&letter(10, "inference_rejected", "cam-2")));
        assert!(!selection.matches(&letter(20, "inference_rejected", "cam-2")));
        assert!(!selection.matches(&letter(9, "inference_rejected", "cam-2")));
        assert!(!selection.matches(&letter(12, "undecodable", "cam-2")));
        assert!(!selection.matches(&letter(12, "inference_rejected", "cam-1")));
        assert!(Selection::default().matches(&letter(0, "undecodable", "x")));
    }
}
