//! The `consumer` service: Kafka `FrameBatch`es in, detections from the inference service,
//! annotated JPEGs and one JSON document per batch in S3 out, offsets committed only after.
//!
//! Read it in the order a message flows:
//! 1. [`app`]: the consumer group loop, in-flight limit, pause/resume, commits, shutdown;
//!    [`group`] the rebalance callbacks; [`offsets`] decides what may be committed;
//!    [`group_watch`] rejoins a group that looks stuck.
//! 2. [`process`]: one message: decode -> [`inference`] -> [`image_policy`] picks frames ->
//!    [`annotate`] -> [`store`] (S3 at [`keys`]) -> the [`results`] JSON; or the dead-letter
//!    topic ([`dlq`]).
//! 3. [`config`], [`metrics`] and [`events`] (each outcome logged and counted in one place);
//!    [`lag`] (also printed by the `kafka-stats` binary);
//!    [`replay`], dead letters listed and re-published by the `dlq-replay` binary.

mod annotate;
mod app;
mod config;
mod dlq;
mod events;
mod group;
mod group_watch;
mod image_policy;
mod inference;
mod keys;
pub mod lag;
mod metrics;
mod offsets;
mod process;
pub mod replay;
mod results;
mod store;

// What the binaries and other crates use; everything else is private to the service.
pub use app::run;
pub use config::ConsumerConfig;
