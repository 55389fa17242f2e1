//! The message size guard: no batch leaves the producer larger than the configured limit.
//!
//! Real Kafka and MSK reject records above the topic's `max.message.bytes` (and librdkafka
//! above its own `message.max.bytes`); the native test broker accepts anything, so the limit is
//! enforced here, before sending. An oversized batch is re-encoded from its JPEGs down a fixed
//! ladder (lower quality first, then half size) until it fits; every rung starts from the
//! original JPEGs, so quality is lost once, not once per rung. A batch that does not fit even
//! at the last rung is refused with [`TooLarge`], which the stream counts as dropped frames.

use common::{FrameBatch, wire};
use turbojpeg::{Decompressor, PixelFormat, ScalingFactor, Subsamp};

/// Re-encoding steps tried in order: (JPEG quality, halve width and height).
pub const LADDER: [(u8, bool); 6] = [
    (70, false),
    (50, false),
    (30, false),
    (70, true),
    (50, true),
    (30, true),
];

/// How a batch was made to fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fit {
    /// Small enough as it was.
    AsIs { bytes: usize },
    /// Re-encoded at `quality` (and half size if `halved`) from `from_bytes` to `bytes`.
    Reencoded {
        quality: u8,
        halved: bool,
        from_bytes: usize,
        bytes: usize,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum SizeError {
    #[error("batch of {bytes} bytes does not fit the {limit}-byte message limit even re-encoded")]
    TooLarge { bytes: usize, limit: usize },
    #[error("re-encoding an oversized batch: libjpeg-turbo: {0}")]
    Reencode(#[from] turbojpeg::Error),
}

/// Makes `batch` at most `limit` bytes on the wire, re-encoding its frames if needed.
pub fn fit(batch: &mut FrameBatch, limit: usize) -> Result<Fit, SizeError> {
    let from_bytes = wire::encoded_len(batch);
    if from_bytes <= limit {
        return Ok(Fit::AsIs { bytes: from_bytes });
    }
    let mut smallest = from_bytes;
    for (quality, halved) in LADDER {
        let mut candidate = batch.clone();
        for frame in &mut candidate.frames {
            let smaller = reencode(&frame.jpeg, quality, halved)?;
            frame.width = smaller.width;
            frame.height = smaller.height;
            frame.jpeg = smaller.bytes.into();
        }
        let bytes = wire::encoded_len(&candidate);
        if bytes <= limit {
            *batch = candidate;
            return Ok(Fit::Reencoded {
                quality,
                halved,
                from_bytes,
                bytes,
            });
        }
        smallest = smallest.min(bytes);
    }
    Err(SizeError::TooLarge {
        bytes: smallest,
        limit,
    })
}

/// A frame's JPEG made again, smaller.
#[derive(Debug)]
struct Smaller {
    bytes: Vec<u8>,
    width: u32,
    height: u32,
}

/// Re-encodes a JPEG at `quality`, at half its size when `halve` is set (a second generation
/// of loss, only for batches that need it).
fn reencode(jpeg: &[u8], quality: u8, halve: bool) -> Result<Smaller, turbojpeg::Error> {
    let mut decompressor = Decompressor::new()?;
    let factor = if halve {
        ScalingFactor::ONE_HALF
    } else {
        ScalingFactor::ONE
    };
    decompressor.set_scaling_factor(factor)?;
    let header = decompressor.read_header(jpeg)?.scaled(factor);
    let pitch = header.width * PixelFormat::RGB.size();
    let mut image = turbojpeg::Image {
        pixels: vec![0u8; pitch * header.height],
        width: header.width,
        pitch,
        height: header.height,
        format: PixelFormat::RGB,
    };
    decompressor.decompress(jpeg, image.as_deref_mut())?;
    let bytes = turbojpeg::compress(image.as_deref(), i32::from(quality), Subsamp::Sub2x2)?;
    Ok(Smaller {
        bytes: bytes.to_vec(),
        width: header.width as u32,
        height: header.height as u32,
    })
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use common::{Frame, StreamId};
    use turbojpeg::{Image, PixelFormat, Subsamp};
    use uuid::Uuid;

    use super::*;

    #[test]
    fn reencode_lowers_size_and_can_halve() {
        let (width, height) = (320, 240);
        let pixels: Vec<u8> = (0..width * height * 3)
            .map(|i| ((i / 3 % width) * 255 / width) as u8 ^ (i / 3 / width) as u8)
            .collect();
        let image = Image {
            pixels: &pixels[..],
            width,
            pitch: width * 3,
            height,
            format: PixelFormat::RGB,
        };
        let original = turbojpeg::compress(image, 95, Subsamp::Sub2x2)
            .unwrap()
            .to_vec();
        let lower = reencode(&original, 30, false).unwrap();
        assert!(lower.bytes.len() < original.len());
        let half = reencode(&original, 30, true).unwrap();
        assert_eq!((half.width, half.height), (160, 120));
        assert!(half.bytes.len() < lower.bytes.len());
    }

    /// Noise compresses badly, so a few frames at quality 100 are large.
    fn noisy_batch(frames: usize, side: usize) -> FrameBatch {
        let pixels: Vec<u8> = (0..side * side * 3).map(|_| fastrand::u8(..)).collect();
        let image = Image {
            pixels: &pixels[..],
            width: side,
            pitch: side * 3,
            height: side,
            format: PixelFormat::RGB,
        };
        let jpeg = turbojpeg::compress(image, 100, Subsamp::Sub2x2)
            .unwrap()
            .to_vec();
        FrameBatch {
            stream_id: StreamId::new("cam").unwrap(),
            producer_session: Uuid::new_v4(),
            batch_seq: 0,
            partial: true,
            frames: (0..frames as u64)
                .map(|seq| Frame {
                    seq,
                    pts_us: seq as i64 * 100_000,
                    captured_at: Utc::now(),
                    width: side as u32,
                    height: side as u32,
                    jpeg: jpeg.clone().into(),
                })
                .collect(),
        }
    }

    #[test]
    fn a_batch_under_the_limit_is_left_alone() {
        let mut batch = noisy_batch(3, 64);
        let before = batch.clone();
        let fit = fit(&mut batch, 10 * 1024 * 1024).unwrap();
        assert!(matches!(fit, Fit::AsIs { .. }));
        assert_eq!(batch, before);
    }

    #[test]
    fn an_oversized_batch_is_reencoded_until_it_fits() {
        let mut batch = noisy_batch(4, 256);
        let original = wire::encoded_len(&batch);
        let limit = original * 6 / 10;
        let fit = fit(&mut batch, limit).unwrap();
        let Fit::Reencoded {
            bytes, from_bytes, ..
        } = fit
        else {
            panic!("expected a re-encode, got {fit:?}");
        };
        assert_eq!(from_bytes, original);
        assert!(bytes <= limit);
        assert_eq!(wire::encoded_len(&batch), bytes);
        // Still a valid batch of decodable JPEGs with the sizes they claim.
        wire::validate(&batch).unwrap();
        for frame in &batch.frames {
            let header = turbojpeg::read_header(&frame.jpeg).unwrap();
            assert_eq!(
                (header.width as u32, header.height as u32),
                (frame.width, frame.height)
            );
        }
    }

    #[test]
    fn halving_is_the_last_resort() {
        let mut batch = noisy_batch(4, 256);
        // Below what quality 30 at full size gives, so only half size can fit.
        let full_q30 = reencode(&batch.frames[0].jpeg, 30, false)
            .unwrap()
            .bytes
            .len();
        let limit = full_q30 * 4 - 1;
        match fit(&mut batch, limit).unwrap() {
            Fit::Reencoded { halved: true, .. } => {}
            other => panic!("expected half size, got {other:?}"),
        }
        assert_eq!(batch.frames[0].width, 128);
    }

    #[test]
    fn an_impossible_limit_is_an_error() {
        let mut batch = noisy_batch(2, 64);
        let err = fit(&mut batch, 100).unwrap_err();
        assert!(
            matches!(err, SizeError::TooLarge { limit: 100, .. }),
            "{err}"
        );
    }
}
