//! Property tests: whatever the encoder accepts the decoder returns unchanged, and no input at
//! all makes the decoder panic.

use bytes::Bytes;
use chrono::DateTime;
use common::wire::{self, MAX_DIMENSION, WireError};
use common::{FRAMES_PER_BATCH, Frame, FrameBatch, StreamId};
use proptest::prelude::*;
use uuid::Uuid;

fn stream_id() -> impl Strategy<Value = StreamId> {
    "[A-Za-z0-9_-][A-Za-z0-9._-]{0,40}".prop_filter_map("reserved", |s| StreamId::new(s).ok())
}

fn frame_fields() -> impl Strategy<Value = (u64, i64, i64, u32, u32, Vec<u8>)> {
    (
        1u64..1_000,
        any::<i64>(),
        // chrono represents roughly +-262000 years; keep to a few millennia around the epoch
        -60_000_000_000_000_000i64..60_000_000_000_000_000,
        1..=MAX_DIMENSION,
        1..=MAX_DIMENSION,
        proptest::collection::vec(any::<u8>(), 1..64),
    )
}

fn batch() -> impl Strategy<Value = FrameBatch> {
    (any::<bool>(), 1usize..FRAMES_PER_BATCH)
        .prop_flat_map(|(partial, partial_len)| {
            let n = if partial {
                partial_len
            } else {
                FRAMES_PER_BATCH
            };
            (
                Just(partial),
                stream_id(),
                any::<[u8; 16]>(),
                any::<u64>(),
                0u64..u64::MAX / 2,
                proptest::collection::vec(frame_fields(), n),
            )
        })
        .prop_map(
            |(partial, stream_id, session, batch_seq, first_seq, fields)| {
                let mut seq = first_seq;
                let frames = fields
                    .into_iter()
                    .map(|(step, pts_us, micros, width, height, jpeg)| {
                        seq += step;
                        Frame {
                            seq,
                            pts_us,
                            captured_at: DateTime::from_timestamp_micros(micros)
                                .expect("in range by construction"),
                            width,
                            height,
                            jpeg: Bytes::from(jpeg),
                        }
                    })
                    .collect();
                FrameBatch {
                    stream_id,
                    producer_session: Uuid::from_bytes(session),
                    batch_seq,
                    partial,
                    frames,
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn decode_returns_what_encode_was_given(b in batch()) {
        let bytes = wire::encode(&b).expect("valid batch encodes");
        prop_assert_eq!(bytes.len(), wire::encoded_len(&b));
        prop_assert_eq!(wire::decode(&bytes).expect("decodes"), b.clone());
        prop_assert_eq!(wire::decode_bytes(Bytes::from(bytes)).expect("decodes"), b);
    }

    #[test]
    fn every_strict_prefix_is_reported_truncated(b in batch(), cut in any::<prop::sample::Index>()) {
        let bytes = wire::encode(&b).expect("valid batch encodes");
        let len = cut.index(bytes.len());
        let err = wire::decode(&bytes[..len]).expect_err("a prefix is never a whole batch");
        prop_assert!(matches!(err, WireError::Truncated { .. }), "{err:?}");
    }

    #[test]
    fn corrupting_any_byte_never_panics(b in batch(), at in any::<prop::sample::Index>(), v in any::<u8>()) {
        let mut bytes = wire::encode(&b).expect("valid batch encodes");
        let i = at.index(bytes.len());
        bytes[i] = v;
        let _ = wire::decode(&bytes);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = wire::decode(&bytes);
        // also with a valid magic and version, so the fuzzing reaches the frame parser
        let mut framed = b"VPFB\x00\x01".to_vec();
        framed.extend_from_slice(&bytes);
        let _ = wire::decode(&framed);
    }
}
