//! What every service's Kafka clients share: the flags and the client configuration made of
//! them ([`KafkaArgs`], [`TopicArgs`]), topic creation ([`ensure_topics`]), how a Kafka error is
//! classified for retrying, and a client context that reports broker connectivity as state
//! changes instead of a flood.
//!
//! With its brokers unreachable, librdkafka reports the same outage several times a second
//! (`FAIL` log lines, `BrokerTransportFailure`, `AllBrokersDown`, per broker and per client).
//! [`KafkaContext`] turns that into one WARN when the brokers become unreachable, one reminder
//! every [`REMIND_EVERY`] while they stay so, and one INFO when a broker is up again (seen in
//! the client's statistics, which [`KafkaContext::STATISTICS_INTERVAL_MS`] turns on, or at the
//! first call that a broker answered: [`KafkaContext::reached`]); the raw
//! lines stay at debug. The state is the gauge `kafka_brokers_reachable{client}` and the
//! counter `kafka_outages_total{client}`. Other librdkafka logs and errors keep their level.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};
use rdkafka::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use crate::stall::ErrorClass;

mod settings;
mod topics;

pub use settings::{KafkaArgs, RECORD_OVERHEAD_BYTES, TopicArgs, record_limit};
pub use topics::{CreateTopicError, ensure_topics};

/// How often a lasting outage is logged again.
pub const REMIND_EVERY: Duration = Duration::from_secs(30);

/// Whether retrying can fix a Kafka error: refusals of authorisation, size, topic name or
/// policy are permanent (the setup must change); everything else (timeouts, unreachable or
/// restarting brokers, leader changes, a topic not yet created) is transient.
pub fn error_class(error: &KafkaError) -> ErrorClass {
    use RDKafkaErrorCode as C;
    match error.rdkafka_error_code() {
        Some(
            C::TopicAuthorizationFailed
            | C::ClusterAuthorizationFailed
            | C::GroupAuthorizationFailed
            | C::TransactionalIdAuthorizationFailed
            | C::DelegationTokenAuthorizationFailed
            | C::SaslAuthenticationFailed
            | C::Authentication
            | C::MessageSizeTooLarge
            | C::MessageBatchTooLarge
            | C::InvalidTopic
            | C::InvalidRecord
            | C::PolicyViolation
            | C::InvalidConfig
            | C::InvalidReplicationFactor
            | C::InvalidPartitions,
        ) => ErrorClass::Permanent,
        _ => ErrorClass::Transient,
    }
}

/// True for the errors that only say the brokers cannot be reached.
pub fn is_connectivity(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::BrokerTransportFailure
                | RDKafkaErrorCode::AllBrokersDown
                | RDKafkaErrorCode::Resolve
        )
    )
}

/// The gauges and counters of every Kafka client of a process.
#[derive(Debug, Clone)]
pub struct KafkaMetrics {
    reachable: IntGaugeVec,
    outages: IntCounterVec,
}

impl KafkaMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let reachable = IntGaugeVec::new(
            Opts::new(
                "kafka_brokers_reachable",
                "1 while the client reaches its brokers, 0 during an outage, by client.",
            ),
            &["client"],
        )?;
        registry.register(Box::new(reachable.clone()))?;
        let outages = IntCounterVec::new(
            Opts::new(
                "kafka_outages_total",
                "Times a client lost every broker, by client.",
            ),
            &["client"],
        )?;
        registry.register(Box::new(outages.clone()))?;
        Ok(Self { reachable, outages })
    }
}

/// The client context of every Kafka client the services create.
#[derive(Debug, Clone)]
pub struct KafkaContext {
    client: &'static str,
    metrics: KafkaMetrics,
    state: Arc<Mutex<Connectivity>>,
}

#[derive(Debug, Default)]
struct Connectivity {
    /// `Some` during an outage: when it started and when it was last logged.
    down: Option<(Instant, Instant)>,
    /// librdkafka reports suppressed during the current outage.
    suppressed: u64,
}

impl KafkaContext {
    /// The statistics interval the context needs to see brokers come back: set it on the
    /// client's config (`statistics.interval.ms`).
    pub const STATISTICS_INTERVAL_MS: &'static str = "5000";

    /// A context for the client named `client` (`producer`, `consumer`, `dlq`: the label).
    pub fn new(client: &'static str, metrics: &KafkaMetrics) -> Self {
        // Unknown until the first statistics or failure; counted reachable, as at start-up no
        // outage has been seen.
        metrics.reachable.with_label_values(&[client]).set(1);
        Self {
            client,
            metrics: metrics.clone(),
            state: Arc::default(),
        }
    }

    /// Whether the client reaches its brokers, as far as it has seen.
    pub fn reachable(&self) -> bool {
        self.lock().down.is_none()
    }

    fn unreachable(&self, detail: &str) {
        let mut guard = self.lock();
        let state = &mut *guard;
        let now = Instant::now();
        match &mut state.down {
            None => {
                state.down = Some((now, now));
                state.suppressed = 0;
                self.metrics
                    .reachable
                    .with_label_values(&[self.client])
                    .set(0);
                self.metrics.outages.with_label_values(&[self.client]).inc();
                tracing::warn!(client = self.client, error = %detail, "Kafka brokers unreachable; retrying");
            }
            Some((since, logged)) => {
                state.suppressed += 1;
                if logged.elapsed() >= REMIND_EVERY {
                    *logged = now;
                    tracing::warn!(
                        client = self.client,
                        error = %detail,
                        down_for_s = since.elapsed().as_secs(),
                        "Kafka brokers still unreachable"
                    );
                }
            }
        }
        tracing::debug!(client = self.client, "librdkafka: {detail}");
    }

    /// A broker answered (a delivery, a fetch, an admin call); ends an outage if there was one.
    /// Statistics say so too, every few seconds; this says it at once.
    pub fn reached(&self) {
        let mut state = self.lock();
        if let Some((since, _)) = state.down.take() {
            self.metrics
                .reachable
                .with_label_values(&[self.client])
                .set(1);
            tracing::info!(
                client = self.client,
                down_for_ms = since.elapsed().as_millis() as u64,
                reports_suppressed = state.suppressed,
                "Kafka brokers reachable again"
            );
        }
    }

    fn lock(&self) -> MutexGuard<'_, Connectivity> {
        // Updated by whole assignments only; a panic cannot leave it torn.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl ClientContext for KafkaContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        // `FAIL`: a broker connection failed or was lost; the outage state says it once.
        if fac == "FAIL" {
            self.unreachable(message);
            return;
        }
        let client = self.client;
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => tracing::error!(client, fac, "librdkafka: {message}"),
            RDKafkaLogLevel::Warning => tracing::warn!(client, fac, "librdkafka: {message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(client, fac, "librdkafka: {message}")
            }
            RDKafkaLogLevel::Debug => tracing::debug!(client, fac, "librdkafka: {message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if is_connectivity(&error) {
            self.unreachable(reason);
        } else {
            tracing::error!(client = self.client, error = %error, reason, "Kafka client error");
        }
    }

    fn stats_raw(&self, statistics: &[u8]) {
        // Only the brokers' states are needed; rdkafka's full `Statistics` refuses documents
        // with a field it does not know, and its error would go to the `log` crate, unseen.
        #[derive(serde::Deserialize)]
        struct Stats {
            #[serde(default)]
            brokers: std::collections::HashMap<String, Broker>,
        }
        #[derive(serde::Deserialize)]
        struct Broker {
            nodeid: i32,
            state: String,
        }
        match serde_json::from_slice::<Stats>(statistics) {
            // Bootstrap entries have node id -1; a real broker in state UP means we reach it.
            Ok(stats)
                if stats
                    .brokers
                    .values()
                    .any(|b| b.nodeid >= 0 && b.state == "UP") =>
            {
                self.reached();
            }
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(client = self.client, error = %e, "unreadable librdkafka statistics")
            }
        }
    }
}

impl ConsumerContext for KafkaContext {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_permanent_and_outages_transient() {
        let refused = KafkaError::MessageProduction(RDKafkaErrorCode::TopicAuthorizationFailed);
        assert_eq!(error_class(&refused), ErrorClass::Permanent);
        let too_large = KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge);
        assert_eq!(error_class(&too_large), ErrorClass::Permanent);
        let timed_out = KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut);
        assert_eq!(error_class(&timed_out), ErrorClass::Transient);
        let down = KafkaError::MessageProduction(RDKafkaErrorCode::AllBrokersDown);
        assert_eq!(error_class(&down), ErrorClass::Transient);
    }

    #[test]
    fn an_outage_is_one_state_change_until_a_broker_is_up() {
        let metrics = KafkaMetrics::register(&Registry::new()).expect("metrics");
        let context = KafkaContext::new("test", &metrics);
        for _ in 0..10 {
            context.error(
                KafkaError::MessageProduction(RDKafkaErrorCode::AllBrokersDown),
                "1/1 brokers are down",
            );
            context.log(
                RDKafkaLogLevel::Error,
                "FAIL",
                "Connect to ipv4#127.0.0.1:1 failed",
            );
        }
        assert!(!context.reachable());
        assert_eq!(metrics.outages.with_label_values(&["test"]).get(), 1);
        assert_eq!(metrics.reachable.with_label_values(&["test"]).get(), 0);
        context.reached();
        assert!(context.reachable());
        assert_eq!(metrics.reachable.with_label_values(&["test"]).get(), 1);
    }
}
