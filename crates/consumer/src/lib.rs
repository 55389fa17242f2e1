//! The `consumer` service: Kafka `FrameBatch`es in, detections from the inference service,
//! annotated JPEGs and one JSON document per batch in S3 out, offsets committed only after.
//!
//! Read it in the order a message flows:
//! 1. [`app`]: the consumer group loop, in-flight limit, pause/resume, commits, rebalances,
//!    shutdown; [`offsets`] decides what may be committed; [`group_watch`] rejoins a group
//!    that looks stuck.
//! 2. [`process`]: one message: decode -> [`inference`] -> [`annotate`] -> [`store`] (S3 at
//!    [`keys`]) -> the [`results`] JSON; or the dead-letter topic ([`dlq`]).
//! 3. [`config`] and [`metrics`]; [`lag`] (also printed by the `kafka-stats` binary);
//!    [`replay`], dead letters listed and re-published by the `dlq-replay` binary.

pub mod annotate;
pub mod app;
pub mod config;
pub mod dlq;
pub mod group_watch;
pub mod inference;
pub mod keys;
pub mod lag;
pub mod metrics;
pub mod offsets;
pub mod process;
pub mod replay;
pub mod results;
pub mod store;
