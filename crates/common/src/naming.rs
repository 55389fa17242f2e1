//! Kafka topic and key names, decided in one place so producer, consumer and deployment agree.
//!
//! Topics come from a template: a plain name (default [`DEFAULT_TOPIC`]) puts every stream in one
//! topic, keyed by stream id; a template containing `{stream}` (e.g. `frames.{stream}`) gives one
//! topic per stream. Either way the message key is the stream id, so one stream's batches stay in
//! one partition, in order. Each topic has a dead-letter topic, `<topic>.dlq`, for messages the
//! consumer cannot process.

use std::fmt;

use crate::StreamId;
use crate::stream_id::RESERVED_SUFFIX;

/// Where frames go when nobody says otherwise.
pub const DEFAULT_TOPIC: &str = "video-frames";
/// The consumer group of the `consumer` service.
pub const DEFAULT_CONSUMER_GROUP: &str = "frame-consumer-group";
/// The placeholder a topic template may contain once.
pub const STREAM_PLACEHOLDER: &str = "{stream}";
/// Kafka's limit on topic name length.
pub const MAX_TOPIC_LEN: usize = 249;

/// A validated topic template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicTemplate {
    prefix: String,
    /// `Some(suffix)` when the template has `{stream}`; `None` for one fixed topic.
    per_stream_suffix: Option<String>,
}

/// Why a topic template cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicTemplateError {
    #[error("topic template is empty")]
    Empty,
    #[error("topic template {0:?} has {STREAM_PLACEHOLDER} more than once")]
    RepeatedPlaceholder(String),
    #[error(
        "topic template {template:?} contains {bad:?}; topics allow ASCII letters, digits, '.', '_', '-' and one {STREAM_PLACEHOLDER}"
    )]
    InvalidChar { template: String, bad: char },
    #[error(
        "topic template {0:?} can produce names longer than Kafka's {MAX_TOPIC_LEN} characters"
    )]
    TooLong(String),
    #[error("a topic may not be named '.' or '..'")]
    DotName,
    #[error(
        "topic template {0:?} ends with '{RESERVED_SUFFIX}', which is reserved for dead-letter topics"
    )]
    ReservedSuffix(String),
}

/// How a consumer subscribes to every topic a template can produce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subscription {
    Topic(String),
    /// A librdkafka regex subscription (it starts with `^`). It also matches dead-letter topics
    /// of per-stream templates; filter partitions with [`TopicTemplate::stream_of`].
    Pattern(String),
}

impl TopicTemplate {
    pub fn parse(template: &str) -> Result<Self, TopicTemplateError> {
        if template.is_empty() {
            return Err(TopicTemplateError::Empty);
        }
        let mut parts = template.split(STREAM_PLACEHOLDER);
        let prefix = parts.next().unwrap_or_default().to_string();
        let suffix = parts.next().map(str::to_string);
        if parts.next().is_some() {
            return Err(TopicTemplateError::RepeatedPlaceholder(template.into()));
        }
        let fixed = format!("{prefix}{}", suffix.as_deref().unwrap_or(""));
        if let Some(bad) = fixed
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(TopicTemplateError::InvalidChar {
                template: template.into(),
                bad,
            });
        }
        let longest = fixed.len()
            + suffix
                .as_ref()
                .map_or(0, |_| crate::stream_id::MAX_STREAM_ID_LEN);
        if longest + RESERVED_SUFFIX.len() > MAX_TOPIC_LEN {
            return Err(TopicTemplateError::TooLong(template.into()));
        }
        if suffix.is_none() && (fixed == "." || fixed == "..") {
            return Err(TopicTemplateError::DotName);
        }
        if suffix
            .as_deref()
            .unwrap_or(&prefix)
            .ends_with(RESERVED_SUFFIX)
        {
            return Err(TopicTemplateError::ReservedSuffix(template.into()));
        }
        Ok(Self {
            prefix,
            per_stream_suffix: suffix,
        })
    }

    pub fn is_per_stream(&self) -> bool {
        self.per_stream_suffix.is_some()
    }

    /// The topic a stream's batches go to.
    pub fn topic_for(&self, stream: &StreamId) -> String {
        match &self.per_stream_suffix {
            Some(suffix) => format!("{}{}{}", self.prefix, stream, suffix),
            None => self.prefix.clone(),
        }
    }

    /// The stream a topic of this template belongs to; `None` for topics the template does not
    /// produce, dead-letter topics included. For a single-topic template the stream is in the key.
    pub fn stream_of(&self, topic: &str) -> Option<StreamId> {
        let suffix = self.per_stream_suffix.as_deref()?;
        let middle = topic.strip_prefix(&self.prefix)?.strip_suffix(suffix)?;
        StreamId::new(middle).ok()
    }

    /// Whether `topic` is one this template produces.
    pub fn matches(&self, topic: &str) -> bool {
        match &self.per_stream_suffix {
            Some(_) => self.stream_of(topic).is_some(),
            None => topic == self.prefix,
        }
    }

    /// What a consumer subscribes to in order to see every stream.
    pub fn subscription(&self) -> Subscription {
        match &self.per_stream_suffix {
            None => Subscription::Topic(self.prefix.clone()),
            Some(suffix) => Subscription::Pattern(format!(
                "^{}[A-Za-z0-9._-]+{}$",
                regex_escape(&self.prefix),
                regex_escape(suffix)
            )),
        }
    }
}

impl fmt::Display for TopicTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.per_stream_suffix {
            Some(s) => write!(f, "{}{STREAM_PLACEHOLDER}{s}", self.prefix),
            None => f.write_str(&self.prefix),
        }
    }
}

impl std::str::FromStr for TopicTemplate {
    type Err = TopicTemplateError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// The Kafka message key of a stream's batches.
pub fn message_key(stream: &StreamId) -> &[u8] {
    stream.as_str().as_bytes()
}

/// Where messages of `topic` that cannot be processed are parked.
pub fn dead_letter_topic(topic: &str) -> String {
    format!("{topic}{RESERVED_SUFFIX}")
}

/// Whether `topic` is a dead-letter topic by name.
pub fn is_dead_letter_topic(topic: &str) -> bool {
    topic.ends_with(RESERVED_SUFFIX)
}

fn regex_escape(s: &str) -> String {
    // Topic names can only contain '.' among regex metacharacters.
    s.replace('.', "\\.")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> StreamId {
        StreamId::new(s).expect("valid stream id")
    }

    #[test]
    fn plain_template_sends_every_stream_to_one_topic() {
        let t = TopicTemplate::parse(DEFAULT_TOPIC).expect("valid");
        assert!(!t.is_per_stream());
        assert_eq!(t.topic_for(&id("a")), "video-frames");
        assert_eq!(t.topic_for(&id("b")), "video-frames");
        assert_eq!(t.subscription(), Subscription::Topic("video-frames".into()));
        assert!(t.matches("video-frames"));
        assert!(!t.matches("video-frames.dlq"));
    }

    #[test]
    fn per_stream_template_gives_one_topic_per_stream() {
        let t = TopicTemplate::parse("frames.{stream}.v1").expect("valid");
        assert!(t.is_per_stream());
        assert_eq!(t.topic_for(&id("cam-1")), "frames.cam-1.v1");
        assert_eq!(t.stream_of("frames.cam-1.v1"), Some(id("cam-1")));
        assert_eq!(t.stream_of("frames.cam-1.v1.dlq"), None);
        assert_eq!(t.stream_of("other.cam-1.v1"), None);
        assert_eq!(
            t.subscription(),
            Subscription::Pattern("^frames\\.[A-Za-z0-9._-]+\\.v1$".into())
        );
        assert_eq!(t.to_string(), "frames.{stream}.v1");
    }

    #[test]
    fn dead_letter_topics_of_per_stream_topics_are_not_streams() {
        let t = TopicTemplate::parse("frames.{stream}").expect("valid");
        let dlq = dead_letter_topic(&t.topic_for(&id("cam")));
        assert_eq!(dlq, "frames.cam.dlq");
        assert!(is_dead_letter_topic(&dlq));
        // "cam.dlq" is not a valid stream id, so the DLQ never looks like a stream topic.
        assert!(!t.matches(&dlq));
    }

    #[test]
    fn bad_templates_are_rejected_with_the_reason() {
        assert_eq!(TopicTemplate::parse(""), Err(TopicTemplateError::Empty));
        assert!(matches!(
            TopicTemplate::parse("a{stream}b{stream}"),
            Err(TopicTemplateError::RepeatedPlaceholder(_))
        ));
        assert!(matches!(
            TopicTemplate::parse("frames/{stream}"),
            Err(TopicTemplateError::InvalidChar { bad: '/', .. })
        ));
        assert!(matches!(
            TopicTemplate::parse(&format!("{}{{stream}}", "x".repeat(120))),
            Err(TopicTemplateError::TooLong(_))
        ));
        assert!(matches!(
            TopicTemplate::parse("frames.dlq"),
            Err(TopicTemplateError::ReservedSuffix(_))
        ));
    }

    #[test]
    fn key_is_the_stream_id() {
        assert_eq!(message_key(&id("cam-7")), b"cam-7");
    }
}
