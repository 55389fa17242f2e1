//! RTSP camera sources, with `retina`.
//!
//! [`run`] connects, reads H.264 access units and hands them to the stream's frame thread, and
//! when anything goes wrong (connection refused, RTSP error, end of stream, or no data for the
//! idle timeout: a dead server just goes silent) it reconnects, forever, after a backoff delay
//! with jitter that grows up to the configured cap and starts over once frames flow again.
//! Every reconnect is logged with its reason and counted.
//!
//! - Transport: TCP-interleaved by default; UDP on request (retina's UDP has no reorder buffer).
//! - Frames come as Annex B with the parameter sets from the SDP and the stream in band
//!   (`FrameFormat::SIMPLE`; retina's default MP4-style framing is refused by OpenH264).
//! - Capture time: from the camera's RTCP sender reports (NTP time for an RTP timestamp) once
//!   one has arrived on the connection, otherwise the arrival time.
//! - The frame thread must never make the camera wait: when its channel is full the access unit
//!   is dropped and counted, and the next one that gets through is marked as a discontinuity so
//!   that decoding restarts cleanly at an IDR picture.

use std::sync::Arc;
use std::sync::mpsc::{SyncSender, TrySendError};
use std::time::Duration;

use futures::StreamExt;
use retina::client::{
    PlayOptions, Session, SessionGroup, SessionOptions, SetupOptions, TcpTransportOptions,
    UdpTransportOptions,
};
use retina::codec::{CodecItem, FrameFormat};
use tokio_util::sync::CancellationToken;

use super::{AccessUnit, Gap, now_us};
use crate::config::Transport;
use crate::metrics::{DropReason, StreamMetrics};

/// What the RTSP task tells the frame thread.
#[derive(Debug)]
pub enum RtspEvent {
    /// A new connection: a new timeline, and decoding starts at an IDR picture.
    Connected,
    Unit(AccessUnit),
}

/// Settings of one RTSP source.
#[derive(Debug, Clone)]
pub struct RtspSettings {
    pub url: url::Url,
    pub transport: Transport,
    pub idle_timeout: Duration,
    pub reconnect_max_delay: Duration,
}

/// Why a connection ended, as logged and as the `reason` label of the reconnect counter.
#[derive(Debug, thiserror::Error)]
pub enum Disconnect {
    #[error("connect failed: {0}")]
    Connect(String),
    #[error("no H.264 video stream in the presentation")]
    NoVideo,
    #[error("RTSP error: {0}")]
    Rtsp(String),
    #[error("no data for {0:?}")]
    Idle(Duration),
    #[error("the server ended the stream")]
    Eof,
}

impl Disconnect {
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Connect(_) => "connect_failed",
            Self::NoVideo => "no_video",
            Self::Rtsp(_) => "rtsp_error",
            Self::Idle(_) => "idle_timeout",
            Self::Eof => "eof",
        }
    }
}

/// Reads the camera until `shutdown`, reconnecting forever. Returns when shut down or when the
/// frame thread is gone.
pub async fn run(
    settings: RtspSettings,
    to_frames: SyncSender<RtspEvent>,
    metrics: StreamMetrics,
    shutdown: CancellationToken,
) {
    let group = Arc::new(SessionGroup::default());
    let mut backoff =
        common::backoff::Backoff::new(Duration::from_millis(200), settings.reconnect_max_delay);
    let mut link = Link {
        to_frames,
        metrics,
        lost_since_last: false,
    };
    loop {
        let outcome = tokio::select! {
            _ = shutdown.cancelled() => break,
            outcome = read_session(&settings, &group, &mut link, &mut backoff) => outcome,
        };
        link.metrics.stream_up.set(0);
        let disconnect = match outcome {
            Ok(()) => break, // the frame thread is gone
            Err(d) => d,
        };
        link.metrics.reconnect(disconnect.reason());
        let delay = backoff.next_delay();
        tracing::warn!(
            reason = disconnect.reason(),
            error = %disconnect,
            attempt = backoff.attempt(),
            retry_in_ms = delay.as_millis() as u64,
            "camera disconnected; reconnecting"
        );
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(delay) => {}
        }
    }
    link.metrics.stream_up.set(0);
}

/// The hand-off to the frame thread.
struct Link {
    to_frames: SyncSender<RtspEvent>,
    metrics: StreamMetrics,
    /// An access unit was dropped since the last one that got through.
    lost_since_last: bool,
}

impl Link {
    /// `false` when the frame thread is gone.
    fn send(&mut self, event: RtspEvent) -> bool {
        let event = match event {
            RtspEvent::Unit(mut unit) => {
                if self.lost_since_last && unit.discontinuity.is_none() {
                    unit.discontinuity = Some(Gap::DecoderBehind);
                }
                RtspEvent::Unit(unit)
            }
            other => other,
        };
        match self.to_frames.try_send(event) {
            Ok(()) => {
                self.lost_since_last = false;
                true
            }
            Err(TrySendError::Full(RtspEvent::Unit(_))) => {
                self.metrics.dropped(DropReason::DecoderBehind, 1);
                self.lost_since_last = true;
                true
            }
            Err(TrySendError::Full(RtspEvent::Connected)) => {
                // The new timeline still has to reach the frame thread: mark the next unit.
                self.lost_since_last = true;
                true
            }
            Err(TrySendError::Disconnected(_)) => false,
        }
    }
}

/// Maps the camera's RTP clock to wall-clock time using its latest RTCP sender report.
#[derive(Debug, Default)]
struct SenderClock {
    /// (RTP timestamp, Unix time in microseconds) of the latest sender report.
    anchor: Option<(i64, i64)>,
}

impl SenderClock {
    fn update(&mut self, rtp_timestamp: i64, ntp: retina::NtpTimestamp) {
        let since_epoch = ntp.0.wrapping_sub(retina::UNIX_EPOCH.0);
        let secs = (since_epoch >> 32) as i64;
        let frac_us = (((since_epoch & 0xFFFF_FFFF) * 1_000_000) >> 32) as i64;
        self.anchor = Some((rtp_timestamp, secs * 1_000_000 + frac_us));
    }

    fn captured_at_us(&self, rtp_timestamp: i64, clock_rate: u32, arrival_us: i64) -> i64 {
        match self.anchor {
            Some((rtp, unix_us)) => {
                unix_us
                    + ((rtp_timestamp - rtp) as i128 * 1_000_000 / i128::from(clock_rate.max(1)))
                        as i64
            }
            None => arrival_us,
        }
    }
}

/// One connection, from DESCRIBE to the end. `Ok(())` only when the frame thread is gone.
async fn read_session(
    settings: &RtspSettings,
    group: &Arc<SessionGroup>,
    link: &mut Link,
    backoff: &mut common::backoff::Backoff,
) -> Result<(), Disconnect> {
    let (url, creds) = split_credentials(&settings.url);
    let options = SessionOptions::default()
        .creds(creds)
        .session_group(group.clone())
        .user_agent(concat!("video-pipeline-producer/", env!("CARGO_PKG_VERSION")).into());
    let mut session = tokio::time::timeout(settings.idle_timeout, Session::describe(url, options))
        .await
        .map_err(|_| {
            Disconnect::Connect(format!(
                "DESCRIBE timed out after {:?}",
                settings.idle_timeout
            ))
        })?
        .map_err(|e| Disconnect::Connect(e.to_string()))?;
    let video = session
        .streams()
        .iter()
        .position(|s| s.media() == "video" && s.encoding_name().eq_ignore_ascii_case("h264"))
        .ok_or(Disconnect::NoVideo)?;
    let transport = match settings.transport {
        Transport::Tcp => retina::client::Transport::Tcp(TcpTransportOptions::default()),
        Transport::Udp => retina::client::Transport::Udp(UdpTransportOptions::default()),
    };
    let setup = SetupOptions::default()
        .transport(transport)
        .frame_format(FrameFormat::SIMPLE);
    let start = async {
        session.setup(video, setup).await?;
        session.play(PlayOptions::default()).await?.demuxed()
    };
    let mut frames = tokio::time::timeout(settings.idle_timeout, start)
        .await
        .map_err(|_| {
            Disconnect::Connect(format!(
                "SETUP/PLAY timed out after {:?}",
                settings.idle_timeout
            ))
        })?
        .map_err(|e| Disconnect::Rtsp(e.to_string()))?;
    tracing::info!(url = %common::redact::text(settings.url.as_str()), transport = ?settings.transport, "camera connected");
    if !link.send(RtspEvent::Connected) {
        return Ok(());
    }

    let mut clock = SenderClock::default();
    let mut flowing = false;
    loop {
        let item = match tokio::time::timeout(settings.idle_timeout, frames.next()).await {
            Err(_) => return Err(Disconnect::Idle(settings.idle_timeout)),
            Ok(None) => return Err(Disconnect::Eof),
            Ok(Some(Err(e))) => return Err(Disconnect::Rtsp(e.to_string())),
            Ok(Some(Ok(item))) => item,
        };
        match item {
            CodecItem::VideoFrame(frame) => {
                if !flowing {
                    // Only a connection that delivers pictures resets the backoff, so a server
                    // that accepts and then fails at once still backs off.
                    flowing = true;
                    backoff.reset();
                    link.metrics.stream_up.set(1);
                }
                link.metrics.frames_received.inc();
                let timestamp = frame.timestamp();
                let arrival_us = now_us();
                let captured_at_us = clock.captured_at_us(
                    timestamp.timestamp(),
                    timestamp.clock_rate().get(),
                    arrival_us,
                );
                let pts_us = (i128::from(timestamp.elapsed()) * 1_000_000
                    / i128::from(timestamp.clock_rate().get())) as i64;
                let lost = frame.loss() > 0;
                if lost {
                    link.metrics.packets_lost.inc_by(u64::from(frame.loss()));
                }
                let unit = AccessUnit {
                    data: frame.into_data(),
                    pts_us,
                    captured_at_us,
                    discontinuity: lost.then_some(Gap::PacketLoss),
                };
                if !link.send(RtspEvent::Unit(unit)) {
                    return Ok(());
                }
            }
            CodecItem::Rtcp(rtcp) => {
                if let (Some(rtp), Some(Ok(Some(sr)))) = (
                    rtcp.rtp_timestamp(),
                    rtcp.pkts().next().map(|p| p.as_sender_report()),
                ) {
                    clock.update(rtp.timestamp(), sr.ntp_timestamp());
                }
            }
            _ => {}
        }
    }
}

/// retina takes credentials separately; a URL with `user:password@` is split. The URL holds
/// them percent-encoded (`p%40ss` for `p@ss`, the only way to write '@', ':' or '/' there);
/// the camera is sent them decoded.
fn split_credentials(url: &url::Url) -> (url::Url, Option<retina::client::Credentials>) {
    if url.username().is_empty() {
        return (url.clone(), None);
    }
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    let creds = retina::client::Credentials {
        username: decode(url.username()),
        password: decode(url.password().unwrap_or_default()),
    };
    let mut bare = url.clone();
    // Both setters only fail for URLs that cannot have credentials, which an rtsp:// URL can.
    let _ = bare.set_username("");
    let _ = bare.set_password(None);
    (bare, Some(creds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sender_reports_map_rtp_time_to_wall_clock() {
        let mut clock = SenderClock::default();
        assert_eq!(
            clock.captured_at_us(1000, 90_000, 42),
            42,
            "arrival time before any report"
        );
        // NTP for 2026-01-01T00:00:00.5Z: Unix 1767225600 s, fraction 0.5.
        let ntp = retina::NtpTimestamp(((1_767_225_600u64 + 2_208_988_800) << 32) | (1 << 31));
        clock.update(90_000, ntp);
        let unix_us = 1_767_225_600_500_000i64;
        assert_eq!(clock.captured_at_us(90_000, 90_000, 0), unix_us);
        assert_eq!(clock.captured_at_us(99_000, 90_000, 0), unix_us + 100_000);
        assert_eq!(clock.captured_at_us(81_000, 90_000, 0), unix_us - 100_000);
    }

    #[test]
    fn credentials_are_taken_out_of_the_url() {
        let url = url::Url::parse("rtsp://admin:s3cret@cam.local:554/stream1").unwrap();
        let (bare, creds) = split_credentials(&url);
        assert_eq!(bare.as_str(), "rtsp://cam.local:554/stream1");
        let creds = creds.unwrap();
        assert_eq!(
            (creds.username.as_str(), creds.password.as_str()),
            ("admin", "s3cret")
        );
        let encoded = url::Url::parse("rtsp://us%3Aer:p%40ss%2Cw%2Fd@cam.local/s").unwrap();
        let creds = split_credentials(&encoded).1.unwrap();
        assert_eq!(
            (creds.username.as_str(), creds.password.as_str()),
            ("us:er", "p@ss,w/d")
        );
        let plain = url::Url::parse("rtsp://cam.local/s").unwrap();
        assert!(split_credentials(&plain).1.is_none());
    }
}
