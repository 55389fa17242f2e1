//! The `producer` service: RTSP cameras and MP4 files in, Kafka `FrameBatch` messages out.
//!
//! Read it in the order the frames flow:
//! 1. [`config`]: flags, environment and `cameras.yaml` resolved into one config per stream.
//! 2. [`source`]: [`source::rtsp`] (retina, reconnecting forever) and [`source::file`] (MP4
//!    demux) produce H.264 access units; [`h264`] has the bitstream helpers.
//! 3. [`frames`]: the per-stream frame thread: [`decode`] (OpenH264) -> [`sample`] (by
//!    timestamp) -> [`jpeg`] (libjpeg-turbo) -> [`batch`] (25 frames) -> [`size_guard`] ->
//!    [`queue`].
//! 4. [`kafka`]: topics, and each stream's sender task delivering from its queue.
//! 5. [`stream`] wires one stream together; [`app`] runs them all with the ops endpoints
//!    ([`metrics`]) and shutdown.

mod app;
mod batch;
mod config;
pub mod decode;
mod frames;
pub mod h264;
mod jpeg;
mod kafka;
mod metrics;
mod queue;
mod sample;
mod size_guard;
pub mod source;
mod stream;

// What the binary, the tests and other crates use; everything else is private to the service.
pub use app::run;
pub use config::ProducerConfig;
