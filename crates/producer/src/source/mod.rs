//! Sources: where H.264 access units come from.
//!
//! - [`file`]: MP4 files, demuxed in pure Rust (`re_mp4`), read by the stream's frame thread
//!   itself, paced at the file's frame rate or as fast as possible, once or in a loop.
//! - [`rtsp`]: cameras over RTSP (`retina`), read by an async task that reconnects forever and
//!   hands access units to the frame thread through a bounded channel.
//!
//! Both produce [`AccessUnit`]s: one picture's NAL units in Annex B form, with its presentation
//! time and its wall-clock capture time.

pub mod file;
pub mod rtsp;

/// One coded picture.
#[derive(Debug, Clone)]
pub struct AccessUnit {
    /// NAL units with start codes; parameter sets in band before IDR pictures.
    pub data: Vec<u8>,
    /// Presentation time on the source's clock, in microseconds.
    pub pts_us: i64,
    /// Wall-clock capture time in microseconds since the Unix epoch.
    pub captured_at_us: i64,
    /// Something was lost just before this picture, and what: decoding must restart at the
    /// next IDR picture.
    pub discontinuity: Option<Gap>,
}

/// What was lost before an access unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gap {
    /// RTP packets, on the network.
    PacketLoss,
    /// Access units the frame thread was too slow for.
    DecoderBehind,
}

/// Microseconds since the Unix epoch, now.
pub fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}
