//! The vocabulary the pipeline's services share, and nothing else.
//!
//! Data flows camera -> `producer` -> Kafka -> `consumer` -> `inference` (HTTP) -> S3. The
//! producer and the consumer agree on [`FrameBatch`] and its binary [`wire`] format; the consumer
//! and the inference service agree on the [`inference_api`] types. Names of topics and keys live
//! in [`naming`]. The remaining modules are plumbing every service needs exactly once: the
//! skeleton of every binary ([`service`]), logging ([`telemetry`]), `/health` `/ready`
//! `/metrics` ([`ops`]) served by [`http`], Kafka settings and clients ([`kafka`]), signal
//! handling ([`shutdown`]),
//! retrying ([`retry`], [`backoff`]) and saying what is stalled ([`stall`]), and keeping secrets
//! out of all of it ([`redact`]); finding what the scripts installed ([`installed`]).

pub mod backoff;
mod frame_batch;
pub mod http;
pub mod inference_api;
pub mod installed;
pub mod kafka;
pub mod naming;
pub mod ops;
pub mod redact;
pub mod retry;
pub mod service;
mod shutdown;
pub mod stall;
mod stream_id;
pub mod telemetry;
pub mod wire;

pub use frame_batch::{FRAMES_PER_BATCH, Frame, FrameBatch};
pub use stream_id::StreamId;
pub use wire::WireError;

/// Largest Kafka message the pipeline produces or accepts, in bytes (10 MiB).
///
/// Real Kafka and MSK reject larger records (their broker default is ~1 MiB, so topics and
/// brokers must be configured for this value); the native test broker does not enforce any
/// limit, so the producer checks sizes itself before sending.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 10 * 1024 * 1024;
