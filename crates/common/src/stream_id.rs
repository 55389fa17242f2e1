//! Stream identifiers: the name of one camera or file across Kafka, HTTP and S3.
//!
//! A stream id becomes part of a Kafka topic name (with a `{stream}` topic template), the Kafka
//! message key and S3 object keys, so it is restricted to characters that are legal and
//! unambiguous in all three: ASCII letters, digits, `.`, `_` and `-`.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest accepted stream id. Leaves room in Kafka's 249-character topic limit for a prefix.
pub const MAX_STREAM_ID_LEN: usize = 128;

/// Suffix reserved for dead-letter topics; a stream id may not end with it, so that a topic made
/// from a `{stream}` template can never be mistaken for a dead-letter topic.
pub const RESERVED_SUFFIX: &str = ".dlq";

/// A validated stream id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct StreamId(String);

/// Why a string is not a valid stream id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamIdError {
    #[error("stream id is empty")]
    Empty,
    #[error("stream id is {0} bytes long; the limit is {MAX_STREAM_ID_LEN}")]
    TooLong(usize),
    #[error("stream id contains {0:?}; only ASCII letters, digits, '.', '_' and '-' are allowed")]
    InvalidChar(char),
    #[error("stream id may not be '.' or '..'")]
    DotName,
    #[error("stream id may not end with '{RESERVED_SUFFIX}' (reserved for dead-letter topics)")]
    ReservedSuffix,
}

impl StreamId {
    pub fn new(id: impl Into<String>) -> Result<Self, StreamIdError> {
        let id = id.into();
        Self::check(&id)?;
        Ok(Self(id))
    }

    /// Validates without allocating; the wire decoder uses it on borrowed bytes.
    pub fn check(id: &str) -> Result<(), StreamIdError> {
        if id.is_empty() {
            return Err(StreamIdError::Empty);
        }
        if id.len() > MAX_STREAM_ID_LEN {
            return Err(StreamIdError::TooLong(id.len()));
        }
        if let Some(c) = id
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(StreamIdError::InvalidChar(c));
        }
        if id == "." || id == ".." {
            return Err(StreamIdError::DotName);
        }
        if id.ends_with(RESERVED_SUFFIX) {
            return Err(StreamIdError::ReservedSuffix);
        }
        Ok(())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for StreamId {
    type Err = StreamIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl TryFrom<String> for StreamId {
    type Error = StreamIdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::new(s)
    }
}

impl From<StreamId> for String {
    fn from(id: StreamId) -> Self {
        id.0
    }
}

impl AsRef<str> for StreamId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_camera_like_names() {
        for ok in ["bikes", "cam-01", "site_a.gate.3", "A9"] {
            assert_eq!(StreamId::new(ok).map(|s| s.to_string()), Ok(ok.to_string()));
        }
    }

    #[test]
    fn rejects_names_unsafe_in_topics_or_keys() {
        assert_eq!(StreamId::new(""), Err(StreamIdError::Empty));
        assert_eq!(StreamId::new("a/b"), Err(StreamIdError::InvalidChar('/')));
        assert_eq!(
            StreamId::new("caméra"),
            Err(StreamIdError::InvalidChar('é'))
        );
        assert_eq!(StreamId::new(".."), Err(StreamIdError::DotName));
        assert_eq!(StreamId::new("cam.dlq"), Err(StreamIdError::ReservedSuffix));
        assert_eq!(
            StreamId::new("x".repeat(MAX_STREAM_ID_LEN + 1)),
            Err(StreamIdError::TooLong(MAX_STREAM_ID_LEN + 1))
        );
    }

    #[test]
    fn deserialising_validates() {
        let bad: Result<StreamId, _> = serde_json::from_str("\"a b\"");
        assert!(bad.is_err());
        let good: StreamId = serde_json::from_str("\"cam-1\"").expect("valid id");
        assert_eq!(good.as_str(), "cam-1");
    }
}
