//! H.264 decoding with OpenH264, in display order, with the presentation time of every picture.
//!
//! - The decoder reorders B-frames itself (it must not flush after every access unit, or streams
//!   with B-frames lose most pictures), so pictures come out later than their access units went
//!   in. OpenH264's Rust binding does not carry timestamps through, so the decoder keeps the
//!   timestamps (presentation and capture) of the access units it was given in a min-heap:
//!   pictures leave a decoder in presentation order, so each takes the smallest pending one.
//! - Corrupt data: when OpenH264 reports an error, or the source reports lost packets, the
//!   decoder is replaced by a fresh one and access units are skipped until the next IDR picture,
//!   the first point where decoding can restart without garbage. Callers count what was skipped.
//! - A new SPS (another resolution, mid-stream): the pictures held back are given out and a
//!   fresh decoder takes over at the IDR picture; pictures carry their own size.
//!
//! Decoding is CPU work: call it from a dedicated thread, never from the async executor.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use openh264::OpenH264API;
use openh264::decoder::{Decoder, DecoderConfig, Flush};
use openh264::formats::YUVSource;

use crate::h264;

/// One decoded picture, borrowed from the decoder until the next call.
#[derive(Debug)]
pub struct Picture<'a> {
    pub pts_us: i64,
    /// Wall-clock capture time, microseconds since the Unix epoch.
    pub captured_at_us: i64,
    pub width: usize,
    pub height: usize,
    pub y: &'a [u8],
    pub u: &'a [u8],
    pub v: &'a [u8],
    pub y_stride: usize,
    pub uv_stride: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("cannot create an H.264 decoder: {0}")]
    Create(String),
    /// The access unit (and `lost` pictures already in the decoder) could not be decoded; the
    /// decoder was reset and waits for the next IDR picture.
    #[error("corrupt H.264 data ({message}); skipping to the next IDR picture")]
    Corrupt { message: String, lost: usize },
}

/// What happened to one access unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fed {
    /// Given to the decoder (a picture may or may not have come out yet). `dropped` pictures
    /// held back from before a change of stream parameters could not be recovered.
    Decoded { dropped: usize },
    /// Skipped: the decoder waits for an IDR picture after a reset, a loss or the start.
    AwaitingKeyframe,
}

pub struct H264Decoder {
    decoder: Decoder,
    /// Timestamps of access units given to the decoder whose pictures have not come out yet.
    pending_pts: BinaryHeap<Reverse<(i64, i64)>>,
    awaiting_keyframe: bool,
    /// The sequence parameter set in use, to notice a new one.
    sps: Option<Vec<u8>>,
}

impl std::fmt::Debug for H264Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H264Decoder")
            .field("pending", &self.pending_pts.len())
            .field("awaiting_keyframe", &self.awaiting_keyframe)
            .finish()
    }
}

fn new_openh264() -> Result<Decoder, DecodeError> {
    let config = DecoderConfig::new().flush_after_decode(Flush::NoFlush);
    Decoder::with_api_config(OpenH264API::from_source(), config)
        .map_err(|e| DecodeError::Create(e.to_string()))
}

impl H264Decoder {
    /// A decoder that waits for the first IDR picture.
    pub fn new() -> Result<Self, DecodeError> {
        Ok(Self {
            decoder: new_openh264()?,
            pending_pts: BinaryHeap::new(),
            awaiting_keyframe: true,
            sps: None,
        })
    }

    /// Pictures given to the decoder and not out yet.
    pub fn pending(&self) -> usize {
        self.pending_pts.len()
    }

    /// Starts over: a fresh decoder waiting for an IDR picture. Returns how many pictures that
    /// were inside the old decoder are lost. Used after packet loss and at a new connection.
    pub fn reset(&mut self) -> Result<usize, DecodeError> {
        let lost = self.pending_pts.len();
        self.decoder = new_openh264()?;
        self.pending_pts.clear();
        self.awaiting_keyframe = true;
        Ok(lost)
    }

    /// Decodes one Annex B access unit presented at `pts_us` and captured at `captured_at_us`;
    /// `on_picture` gets every picture that comes out, in presentation order.
    pub fn decode(
        &mut self,
        access_unit: &[u8],
        pts_us: i64,
        captured_at_us: i64,
        mut on_picture: impl FnMut(Picture<'_>),
    ) -> Result<Fed, DecodeError> {
        let idr = h264::contains_idr(access_unit);
        if self.awaiting_keyframe {
            if !idr {
                return Ok(Fed::AwaitingKeyframe);
            }
            self.awaiting_keyframe = false;
        }
        let mut dropped = 0;
        if let Some(sps) = h264::sps(access_unit).filter(|_| idr) {
            if self.sps.as_deref().is_some_and(|current| current != sps) {
                // New stream parameters (e.g. another resolution). OpenH264 would silently
                // discard the pictures it holds back, and their timestamps would then label
                // later pictures; instead give them out and start a fresh decoder.
                if let Ok(pictures) = self.decoder.flush_remaining() {
                    for yuv in &pictures {
                        emit(yuv, &mut self.pending_pts, &mut on_picture);
                    }
                }
                dropped = self.pending_pts.len();
                self.decoder = new_openh264()?;
                self.pending_pts.clear();
            }
            self.sps = Some(sps.to_vec());
        }
        self.pending_pts.push(Reverse((pts_us, captured_at_us)));
        let result = match self.decoder.decode(access_unit) {
            Ok(Some(yuv)) => {
                emit(&yuv, &mut self.pending_pts, on_picture);
                Ok(Fed::Decoded { dropped })
            }
            Ok(None) => Ok(Fed::Decoded { dropped }),
            Err(e) => Err(e.to_string()),
        };
        match result {
            Ok(fed) => Ok(fed),
            Err(message) => {
                let lost = self.reset()?;
                Err(DecodeError::Corrupt { message, lost })
            }
        }
    }

    /// End of a stream: hands out the pictures still held back for reordering, then starts over
    /// (the next access unit must be an IDR picture, as at the start of a file).
    pub fn finish(&mut self, mut on_picture: impl FnMut(Picture<'_>)) -> Result<(), DecodeError> {
        let flushed = match self.decoder.flush_remaining() {
            Ok(pictures) => {
                for yuv in &pictures {
                    emit(yuv, &mut self.pending_pts, &mut on_picture);
                }
                Ok(())
            }
            Err(e) => Err(e.to_string()),
        };
        let lost = self.reset()?;
        match flushed {
            Ok(()) => Ok(()),
            Err(message) => Err(DecodeError::Corrupt { message, lost }),
        }
    }
}

fn emit(
    yuv: &openh264::decoder::DecodedYUV<'_>,
    pending_pts: &mut BinaryHeap<Reverse<(i64, i64)>>,
    mut on_picture: impl FnMut(Picture<'_>),
) {
    // More pictures than access units cannot happen with a conforming stream; if it does, the
    // picture still goes out with the last known time rather than being dropped.
    let (pts_us, captured_at_us) = pending_pts.pop().map(|Reverse(t)| t).unwrap_or_default();
    let (width, height) = yuv.dimensions();
    let (y_stride, uv_stride, _) = yuv.strides();
    on_picture(Picture {
        pts_us,
        captured_at_us,
        width,
        height,
        y: yuv.y(),
        u: yuv.u(),
        v: yuv.v(),
        y_stride,
        uv_stride,
    });
}
