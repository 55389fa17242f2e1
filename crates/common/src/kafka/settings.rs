//! The Kafka flags every service shares, flattened into each one's configuration (as vector's
//! `KafkaAuthConfig` is), and the client configuration made from them.

use rdkafka::ClientConfig;

use crate::redact::{KafkaProperties, KafkaPropertyError};

/// Room above a payload limit for a record's key, headers and batch framing: what every
/// client adds to `MAX_MESSAGE_BYTES` for librdkafka's and the topics' byte limits.
pub const RECORD_OVERHEAD_BYTES: usize = 64 * 1024;

/// The byte limit of a record, or of a topic's `max.message.bytes`, for payloads of up to
/// `max_message_bytes`.
pub fn record_limit(max_message_bytes: usize) -> usize {
    max_message_bytes + RECORD_OVERHEAD_BYTES
}

/// Where the brokers are and what else the Kafka client must be told (TLS, SASL).
///
/// The flags are global, so that a command with subcommands (`dlq-replay`) takes them after
/// its subcommand too.
#[derive(Debug, Clone, clap::Args)]
pub struct KafkaArgs {
    /// Bootstrap servers.
    #[arg(
        long = "brokers",
        env = "KAFKA_BROKERS",
        default_value = "localhost:9092",
        global = true
    )]
    pub brokers: String,
    /// Extra librdkafka properties as `key=value`, comma-separated or repeated (e.g.
    /// `security.protocol=SSL` for MSK TLS); a comma inside a value is written `\,`. Values of
    /// secret properties (passwords, keys, JAAS) are never logged.
    #[arg(
        long = "kafka-property",
        env = "KAFKA_PROPERTIES",
        value_name = "KEY=VALUE",
        global = true
    )]
    pub properties: Vec<KafkaProperties>,
}

impl KafkaArgs {
    /// The extra properties of every flag, merged; the first malformed one is an error.
    pub fn properties(&self) -> Result<KafkaProperties, KafkaPropertyError> {
        KafkaProperties::merged(&self.properties)
    }

    /// A client configuration: the brokers, then the service's `defaults`, then the user's
    /// properties, last so that they win.
    pub fn client_config(
        &self,
        defaults: &[(&str, &str)],
    ) -> Result<ClientConfig, KafkaPropertyError> {
        let properties = self.properties()?;
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.brokers);
        for (key, value) in defaults {
            config.set(*key, *value);
        }
        for (key, value) in properties.iter() {
            config.set(key, value);
        }
        Ok(config)
    }
}

/// The messages on the pipeline's topics and the topics a service creates: the same on every
/// service that produces or consumes frames.
#[derive(Debug, Clone, clap::Args)]
pub struct TopicArgs {
    /// Largest message, in bytes: the producer re-encodes bigger batches smaller, consumers
    /// fetch up to it, topics created here get it as `max.message.bytes`. Set it the same on
    /// every service; brokers must accept it too.
    #[arg(long, env = "MAX_MESSAGE_BYTES", default_value_t = crate::DEFAULT_MAX_MESSAGE_BYTES)]
    pub max_message_bytes: usize,
    /// Replication factor of topics created here (3 on a production cluster whose
    /// min.insync.replicas is 2).
    #[arg(long, env = "TOPIC_REPLICATION", default_value_t = 1)]
    pub topic_replication: i32,
}

impl TopicArgs {
    /// The byte limit of a record carrying the largest message.
    pub fn record_limit(&self) -> usize {
        record_limit(self.max_message_bytes)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        kafka: KafkaArgs,
    }

    #[test]
    fn user_properties_win_over_the_services_defaults() {
        let cli = Cli::parse_from([
            "x",
            "--brokers",
            "b:9092",
            "--kafka-property",
            r"linger.ms=50,sasl.password=a\,b",
        ]);
        let config = cli
            .kafka
            .client_config(&[("linger.ms", "5"), ("acks", "all")])
            .expect("valid properties");
        assert_eq!(config.get("bootstrap.servers"), Some("b:9092"));
        assert_eq!(config.get("linger.ms"), Some("50"));
        assert_eq!(config.get("acks"), Some("all"));
        assert_eq!(config.get("sasl.password"), Some("a,b"));
    }

    #[test]
    fn a_malformed_property_is_an_error() {
        let cli = Cli::parse_from(["x", "--kafka-property", "no-equals-sign"]);
        assert!(cli.kafka.client_config(&[]).is_err());
    }
}
