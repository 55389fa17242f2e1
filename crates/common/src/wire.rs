//! The binary encoding of a [`FrameBatch`] in a Kafka message value.
//!
//! The format is specified in `crates/common/WIRE_FORMAT.md` (included below) so that services
//! in other languages can read and write it. JPEG bytes are stored raw: no base64, no JSON.
//!
//! Decoding never panics and never trusts a length before checking it against both a sanity
//! limit and the bytes actually present; every way the input can be wrong has its own
//! [`WireError`] variant. Encoding applies the same validation, so anything [`encode`] produces
//! [`decode`] accepts.
#![doc = include_str!("../WIRE_FORMAT.md")]

use bytes::{BufMut, Bytes};
use chrono::DateTime;
use uuid::Uuid;

use crate::stream_id::{StreamId, StreamIdError};
use crate::{FRAMES_PER_BATCH, Frame, FrameBatch};

/// First four bytes of every message: "VPFB" (video pipeline frame batch).
pub const MAGIC: [u8; 4] = *b"VPFB";
/// The only version this code reads and writes.
pub const VERSION: u16 = 1;
/// Flag bit 0: the batch is partial.
pub const FLAG_PARTIAL: u16 = 0x0001;
/// Largest accepted frame width or height (16K), so a corrupt header cannot ask a consumer to
/// allocate gigapixel images.
pub const MAX_DIMENSION: u32 = 16_384;
/// Largest accepted JPEG for one frame (16 MiB), checked before the bytes are looked at.
pub const MAX_JPEG_BYTES: u32 = 16 * 1024 * 1024;

const HEADER_FIXED_LEN: usize = 4 + 2 + 2 + 16 + 8 + 1;
const FRAME_FIXED_LEN: usize = 8 + 8 + 8 + 4 + 4 + 4;

/// Everything that can be wrong with an encoded or to-be-encoded batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("message truncated: {field} needs {needed} bytes, {remaining} left")]
    Truncated {
        field: &'static str,
        needed: usize,
        remaining: usize,
    },
    #[error("not a frame batch: magic bytes are {0:02x?}, expected \"VPFB\"")]
    BadMagic([u8; 4]),
    #[error("unsupported frame batch version {0}; this build reads version {VERSION}")]
    UnsupportedVersion(u16),
    #[error("unknown flag bits {0:#06x} set")]
    UnknownFlags(u16),
    #[error("stream id is not UTF-8")]
    StreamIdNotUtf8,
    #[error("invalid stream id: {0}")]
    InvalidStreamId(#[from] StreamIdError),
    #[error(
        "batch has {count} frames but is {}; a full batch has exactly {FRAMES_PER_BATCH}, a partial one 1 to {}",
        if *partial { "flagged partial" } else { "not flagged partial" },
        FRAMES_PER_BATCH - 1
    )]
    FrameCount { count: usize, partial: bool },
    #[error("frame {index}: size {width}x{height} is outside 1..={MAX_DIMENSION}")]
    Dimensions {
        index: usize,
        width: u32,
        height: u32,
    },
    #[error("frame {index}: JPEG length {len} is outside 1..={MAX_JPEG_BYTES}")]
    JpegLength { index: usize, len: u64 },
    #[error("frame {index}: sequence number {seq} does not follow {previous}")]
    FrameSeqNotIncreasing {
        index: usize,
        previous: u64,
        seq: u64,
    },
    #[error("frame {index}: capture time {micros} us is outside the representable range")]
    CaptureTime { index: usize, micros: i64 },
    #[error("{0} unexpected bytes after the last frame")]
    TrailingBytes(usize),
}

/// Exact encoded size of `batch`, to check against a message limit before encoding.
pub fn encoded_len(batch: &FrameBatch) -> usize {
    HEADER_FIXED_LEN
        + batch.stream_id.as_str().len()
        + 2
        + batch
            .frames
            .iter()
            .map(|f| FRAME_FIXED_LEN + f.jpeg.len())
            .sum::<usize>()
}

/// Encodes `batch` after checking it obeys every rule [`decode`] enforces.
pub fn encode(batch: &FrameBatch) -> Result<Vec<u8>, WireError> {
    validate(batch)?;
    let mut out = Vec::with_capacity(encoded_len(batch));
    out.put_slice(&MAGIC);
    out.put_u16(VERSION);
    out.put_u16(if batch.partial { FLAG_PARTIAL } else { 0 });
    out.put_slice(batch.producer_session.as_bytes());
    out.put_u64(batch.batch_seq);
    let id = batch.stream_id.as_str().as_bytes();
    // StreamId guarantees at most 128 bytes, so this fits the one-byte length.
    out.put_u8(id.len() as u8);
    out.put_slice(id);
    out.put_u16(batch.frames.len() as u16);
    for f in &batch.frames {
        out.put_u64(f.seq);
        out.put_i64(f.pts_us);
        out.put_i64(f.captured_at.timestamp_micros());
        out.put_u32(f.width);
        out.put_u32(f.height);
        out.put_u32(f.jpeg.len() as u32);
        out.put_slice(&f.jpeg);
    }
    debug_assert_eq!(out.len(), encoded_len(batch));
    Ok(out)
}

/// Decodes a batch, copying the input once; the frames' JPEGs share that copy.
pub fn decode(input: &[u8]) -> Result<FrameBatch, WireError> {
    decode_bytes(Bytes::copy_from_slice(input))
}

/// Decodes a batch without copying: every frame's JPEG is a slice of `input`.
pub fn decode_bytes(input: Bytes) -> Result<FrameBatch, WireError> {
    let mut r = Reader {
        buf: &input,
        pos: 0,
    };

    let magic: [u8; 4] = r.array("magic")?;
    if magic != MAGIC {
        return Err(WireError::BadMagic(magic));
    }
    let version = r.u16("version")?;
    if version != VERSION {
        return Err(WireError::UnsupportedVersion(version));
    }
    let flags = r.u16("flags")?;
    if flags & !FLAG_PARTIAL != 0 {
        return Err(WireError::UnknownFlags(flags & !FLAG_PARTIAL));
    }
    let partial = flags & FLAG_PARTIAL != 0;
    let producer_session = Uuid::from_bytes(r.array("producer session")?);
    let batch_seq = r.u64("batch sequence")?;
    let id_len = r.u8("stream id length")? as usize;
    let id = std::str::from_utf8(r.take("stream id", id_len)?)
        .map_err(|_| WireError::StreamIdNotUtf8)?;
    let stream_id = StreamId::new(id)?;

    let count = r.u16("frame count")? as usize;
    check_frame_count(count, partial)?;

    let mut frames = Vec::with_capacity(count);
    for index in 0..count {
        let seq = r.u64("frame sequence")?;
        let pts_us = r.i64("frame pts")?;
        let micros = r.i64("frame capture time")?;
        let width = r.u32("frame width")?;
        let height = r.u32("frame height")?;
        let len = r.u32("frame JPEG length")?;
        check_dimensions(index, width, height)?;
        check_jpeg_len(index, len as usize)?;
        let start = r.pos;
        r.take("frame JPEG", len as usize)?;
        let captured_at = DateTime::from_timestamp_micros(micros)
            .ok_or(WireError::CaptureTime { index, micros })?;
        if let Some(prev) = frames.last().map(|f: &Frame| f.seq) {
            check_seq(index, prev, seq)?;
        }
        frames.push(Frame {
            seq,
            pts_us,
            captured_at,
            width,
            height,
            jpeg: input.slice(start..start + len as usize),
        });
    }
    if r.remaining() != 0 {
        return Err(WireError::TrailingBytes(r.remaining()));
    }
    Ok(FrameBatch {
        stream_id,
        producer_session,
        batch_seq,
        partial,
        frames,
    })
}

/// The rules of the format that the types alone do not enforce.
pub fn validate(batch: &FrameBatch) -> Result<(), WireError> {
    check_frame_count(batch.frames.len(), batch.partial)?;
    let mut previous = None;
    for (index, f) in batch.frames.iter().enumerate() {
        check_dimensions(index, f.width, f.height)?;
        check_jpeg_len(index, f.jpeg.len())?;
        if let Some(prev) = previous {
            check_seq(index, prev, f.seq)?;
        }
        previous = Some(f.seq);
    }
    Ok(())
}

fn check_frame_count(count: usize, partial: bool) -> Result<(), WireError> {
    let ok = if partial {
        (1..FRAMES_PER_BATCH).contains(&count)
    } else {
        count == FRAMES_PER_BATCH
    };
    ok.then_some(())
        .ok_or(WireError::FrameCount { count, partial })
}

fn check_dimensions(index: usize, width: u32, height: u32) -> Result<(), WireError> {
    let ok = (1..=MAX_DIMENSION).contains(&width) && (1..=MAX_DIMENSION).contains(&height);
    ok.then_some(()).ok_or(WireError::Dimensions {
        index,
        width,
        height,
    })
}

fn check_jpeg_len(index: usize, len: usize) -> Result<(), WireError> {
    let ok = (1..=MAX_JPEG_BYTES as usize).contains(&len);
    ok.then_some(()).ok_or(WireError::JpegLength {
        index,
        len: len as u64,
    })
}

fn check_seq(index: usize, previous: u64, seq: u64) -> Result<(), WireError> {
    (seq > previous)
        .then_some(())
        .ok_or(WireError::FrameSeqNotIncreasing {
            index,
            previous,
            seq,
        })
}

/// A bounds-checked big-endian cursor; every read names the field it was reading.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, field: &'static str, n: usize) -> Result<&'a [u8], WireError> {
        if self.remaining() < n {
            return Err(WireError::Truncated {
                field,
                needed: n,
                remaining: self.remaining(),
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], WireError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(field, N)?);
        Ok(a)
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, WireError> {
        Ok(self.array::<1>(field)?[0])
    }
    fn u16(&mut self, field: &'static str) -> Result<u16, WireError> {
        Ok(u16::from_be_bytes(self.array(field)?))
    }
    fn u32(&mut self, field: &'static str) -> Result<u32, WireError> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }
    fn u64(&mut self, field: &'static str) -> Result<u64, WireError> {
        Ok(u64::from_be_bytes(self.array(field)?))
    }
    fn i64(&mut self, field: &'static str) -> Result<i64, WireError> {
        Ok(i64::from_be_bytes(self.array(field)?))
    }
}
