//! One test per way an encoded batch can be wrong: each gets its own typed error, never a panic.

use bytes::Bytes;
use chrono::{TimeZone, Utc};
use common::wire::{self, MAX_DIMENSION, MAX_JPEG_BYTES, WireError};
use common::{FRAMES_PER_BATCH, Frame, FrameBatch, StreamId};
use uuid::Uuid;

const ID: &str = "cam-1";
/// Offset of the frame count, right after the stream id.
const COUNT_AT: usize = 33 + ID.len();
/// Offset of the first frame.
const FRAME0: usize = COUNT_AT + 2;
const F_SEQ: usize = 0;
const F_CAPTURE: usize = 16;
const F_WIDTH: usize = 24;
const F_HEIGHT: usize = 28;
const F_JPEG_LEN: usize = 32;
const JPEG_LEN: usize = 10;
const FRAME_LEN: usize = 36 + JPEG_LEN;

fn frames(n: usize) -> Vec<Frame> {
    (0..n as u64)
        .map(|i| Frame {
            seq: 100 + i,
            pts_us: i as i64 * 100_000,
            captured_at: Utc
                .timestamp_opt(1_700_000_000 + i as i64, 0)
                .single()
                .expect("valid time"),
            width: 640,
            height: 272,
            jpeg: Bytes::from(vec![0xAB; JPEG_LEN]),
        })
        .collect()
}

fn batch(n: usize, partial: bool) -> FrameBatch {
    FrameBatch {
        stream_id: StreamId::new(ID).expect("valid id"),
        producer_session: Uuid::from_u128(0x1234),
        batch_seq: 7,
        partial,
        frames: frames(n),
    }
}

fn encoded() -> Vec<u8> {
    wire::encode(&batch(FRAMES_PER_BATCH, false)).expect("valid batch encodes")
}

fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

#[test]
fn layout_matches_the_spec() {
    let b = encoded();
    assert_eq!(&b[..4], b"VPFB");
    assert_eq!(&b[4..6], &[0, 1]);
    assert_eq!(b[32] as usize, ID.len());
    assert_eq!(&b[33..COUNT_AT], ID.as_bytes());
    assert_eq!(u16::from_be_bytes([b[COUNT_AT], b[COUNT_AT + 1]]), 25);
    assert_eq!(b.len(), 35 + ID.len() + FRAMES_PER_BATCH * FRAME_LEN);
}

#[test]
fn empty_input_is_truncated_at_the_magic() {
    assert_eq!(
        wire::decode(&[]),
        Err(WireError::Truncated {
            field: "magic",
            needed: 4,
            remaining: 0
        })
    );
}

#[test]
fn missing_jpeg_bytes_are_truncated_not_trusted() {
    let b = encoded();
    let err = wire::decode(&b[..b.len() - 1]).unwrap_err();
    assert_eq!(
        err,
        WireError::Truncated {
            field: "frame JPEG",
            needed: JPEG_LEN,
            remaining: JPEG_LEN - 1
        }
    );
}

#[test]
fn wrong_magic_is_not_a_frame_batch() {
    let mut b = encoded();
    b[..4].copy_from_slice(b"{\"st");
    assert_eq!(wire::decode(&b), Err(WireError::BadMagic(*b"{\"st")));
}

#[test]
fn unknown_version_is_refused() {
    let mut b = encoded();
    b[5] = 2;
    assert_eq!(wire::decode(&b), Err(WireError::UnsupportedVersion(2)));
}

#[test]
fn unknown_flags_are_refused() {
    let mut b = encoded();
    b[7] |= 0x04;
    assert_eq!(wire::decode(&b), Err(WireError::UnknownFlags(0x04)));
}

#[test]
fn stream_id_must_be_utf8() {
    let mut b = encoded();
    b[33] = 0xFF;
    assert_eq!(wire::decode(&b), Err(WireError::StreamIdNotUtf8));
}

#[test]
fn stream_id_must_be_valid() {
    let mut b = encoded();
    b[33] = b'/';
    assert!(matches!(
        wire::decode(&b),
        Err(WireError::InvalidStreamId(_))
    ));
    let mut empty = encoded();
    empty[32] = 0;
    assert!(matches!(
        wire::decode(&empty),
        Err(WireError::InvalidStreamId(_))
    ));
}

#[test]
fn full_batch_must_have_exactly_25_frames() {
    let mut b = encoded();
    b[COUNT_AT + 1] = 24;
    assert_eq!(
        wire::decode(&b),
        Err(WireError::FrameCount {
            count: 24,
            partial: false
        })
    );
    b[COUNT_AT..COUNT_AT + 2].copy_from_slice(&u16::MAX.to_be_bytes());
    assert_eq!(
        wire::decode(&b),
        Err(WireError::FrameCount {
            count: 65535,
            partial: false
        })
    );
}

#[test]
fn partial_batch_must_have_1_to_24_frames() {
    let mut b = encoded();
    b[7] |= 1; // partial flag, but 25 frames
    assert_eq!(
        wire::decode(&b),
        Err(WireError::FrameCount {
            count: 25,
            partial: true
        })
    );
    b[COUNT_AT + 1] = 0;
    assert_eq!(
        wire::decode(&b),
        Err(WireError::FrameCount {
            count: 0,
            partial: true
        })
    );
    let ok = wire::encode(&batch(3, true)).expect("3-frame partial batch is valid");
    assert_eq!(wire::decode(&ok).map(|b| b.frames.len()), Ok(3));
}

#[test]
fn zero_or_huge_dimensions_are_refused() {
    let mut b = encoded();
    put_u32(&mut b, FRAME0 + F_WIDTH, 0);
    assert_eq!(
        wire::decode(&b),
        Err(WireError::Dimensions {
            index: 0,
            width: 0,
            height: 272
        })
    );
    let mut b = encoded();
    put_u32(&mut b, FRAME0 + FRAME_LEN + F_HEIGHT, MAX_DIMENSION + 1);
    assert_eq!(
        wire::decode(&b),
        Err(WireError::Dimensions {
            index: 1,
            width: 640,
            height: MAX_DIMENSION + 1
        })
    );
}

#[test]
fn absurd_jpeg_length_is_refused_before_it_is_used() {
    let mut b = encoded();
    put_u32(&mut b, FRAME0 + F_JPEG_LEN, u32::MAX);
    assert_eq!(
        wire::decode(&b),
        Err(WireError::JpegLength {
            index: 0,
            len: u64::from(u32::MAX)
        })
    );
    let mut b = encoded();
    put_u32(&mut b, FRAME0 + F_JPEG_LEN, 0);
    assert_eq!(
        wire::decode(&b),
        Err(WireError::JpegLength { index: 0, len: 0 })
    );
    const { assert!(MAX_JPEG_BYTES < u32::MAX) };
}

#[test]
fn unrepresentable_capture_time_is_refused() {
    let mut b = encoded();
    let at = FRAME0 + F_CAPTURE;
    b[at..at + 8].copy_from_slice(&i64::MAX.to_be_bytes());
    assert_eq!(
        wire::decode(&b),
        Err(WireError::CaptureTime {
            index: 0,
            micros: i64::MAX
        })
    );
}

#[test]
fn frame_sequence_must_increase() {
    let mut b = encoded();
    let at = FRAME0 + FRAME_LEN + F_SEQ;
    b[at..at + 8].copy_from_slice(&100u64.to_be_bytes()); // same as frame 0
    assert_eq!(
        wire::decode(&b),
        Err(WireError::FrameSeqNotIncreasing {
            index: 1,
            previous: 100,
            seq: 100
        })
    );
}

#[test]
fn trailing_bytes_are_refused() {
    let mut b = encoded();
    b.extend_from_slice(b"xyz");
    assert_eq!(wire::decode(&b), Err(WireError::TrailingBytes(3)));
}

#[test]
fn encoder_refuses_what_the_decoder_would() {
    assert_eq!(
        wire::encode(&batch(FRAMES_PER_BATCH + 1, false)),
        Err(WireError::FrameCount {
            count: 26,
            partial: false
        })
    );
    assert_eq!(
        wire::encode(&batch(FRAMES_PER_BATCH, true)),
        Err(WireError::FrameCount {
            count: 25,
            partial: true
        })
    );
    let mut b = batch(FRAMES_PER_BATCH, false);
    b.frames.swap(3, 4);
    assert!(matches!(
        wire::encode(&b),
        Err(WireError::FrameSeqNotIncreasing { index: 4, .. })
    ));
    let mut b = batch(FRAMES_PER_BATCH, false);
    b.frames[2].jpeg = Bytes::new();
    assert_eq!(
        wire::encode(&b),
        Err(WireError::JpegLength { index: 2, len: 0 })
    );
}

#[test]
fn errors_say_what_is_wrong() {
    let e = WireError::FrameCount {
        count: 24,
        partial: false,
    };
    assert_eq!(
        e.to_string(),
        "batch has 24 frames but is not flagged partial; a full batch has exactly 25, a partial one 1 to 24"
    );
    let e = WireError::UnsupportedVersion(9);
    assert_eq!(
        e.to_string(),
        "unsupported frame batch version 9; this build reads version 1"
    );
}

#[test]
fn decoded_jpegs_share_the_input_buffer() {
    let input = Bytes::from(encoded());
    let b = wire::decode_bytes(input.clone()).expect("decodes");
    let jpeg = &b.frames[0].jpeg;
    let base = input.as_ptr() as usize;
    let at = jpeg.as_ptr() as usize;
    assert!(
        at >= base && at + jpeg.len() <= base + input.len(),
        "JPEG was copied"
    );
}
