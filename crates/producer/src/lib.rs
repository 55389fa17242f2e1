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

pub mod app;
pub mod batch;
pub mod config;
pub mod decode;
pub mod frames;
pub mod h264;
pub mod jpeg;
pub mod kafka;
pub mod metrics;
pub mod queue;
pub mod sample;
pub mod size_guard;
pub mod source;
pub mod stream;
