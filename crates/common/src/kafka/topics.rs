//! Creating the topics a service writes to, once, in one way.

use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use super::settings::TopicArgs;
use crate::stall::ErrorClass;

/// A topic that could not be created (or the request that failed, naming all its topics).
#[derive(Debug, thiserror::Error)]
#[error("creating topic {topic}: {error}")]
pub struct CreateTopicError {
    pub topic: String,
    pub error: KafkaError,
}

impl CreateTopicError {
    pub fn class(&self) -> ErrorClass {
        super::error_class(&self.error)
    }
}

/// Creates those of `topics` (name, partitions) that do not exist yet, with `settings`'
/// replication and a `max.message.bytes` that fits the largest message. Existing topics are
/// left as they are (an operator may have tuned them). Returns the topics it created.
pub async fn ensure_topics<C: ClientContext + 'static>(
    admin: &AdminClient<C>,
    topics: &[(&str, i32)],
    settings: &TopicArgs,
    timeout: Duration,
) -> Result<Vec<String>, CreateTopicError> {
    let max_bytes = settings.record_limit().to_string();
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|&(topic, partitions)| {
            NewTopic::new(
                topic,
                partitions,
                TopicReplication::Fixed(settings.topic_replication),
            )
            .set("max.message.bytes", &max_bytes)
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(timeout));
    let results = admin
        .create_topics(new.iter(), &options)
        .await
        .map_err(|error| CreateTopicError {
            topic: topics.iter().map(|t| t.0).collect::<Vec<_>>().join(", "),
            error,
        })?;
    let mut created = Vec::new();
    for result in results {
        match result {
            Ok(topic) => created.push(topic),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(CreateTopicError {
                    topic,
                    error: KafkaError::AdminOp(code),
                });
            }
        }
    }
    Ok(created)
}
