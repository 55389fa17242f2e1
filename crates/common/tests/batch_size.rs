//! Does a full batch of real 720p frames fit in one Kafka message?
//!
//! Frames come from `shared/media/bigbuckbunny.mp4` (1280x720), decoded by ffmpeg and sampled at
//! the producer's default 10 fps, then JPEG-encoded at the producer's default quality 85. The
//! `image` crate's encoder is used here; it makes files slightly larger than libjpeg-turbo's
//! 4:2:0 output, so the real producer's batches are smaller than what this test measures.
//!
//! When a batch does not fit (much larger frames, or noisy content), the producer re-encodes it
//! at a lower quality or size before sending (issue: producer size guard); the broker would
//! otherwise reject it.

use std::process::Command;

use bytes::Bytes;
use chrono::{SubsecRound, Utc};
use common::wire;
use common::{DEFAULT_MAX_MESSAGE_BYTES, FRAMES_PER_BATCH, Frame, FrameBatch, StreamId};
use image::ExtendedColorType;
use image::codecs::jpeg::JpegEncoder;

const WIDTH: u32 = 1280;
const HEIGHT: u32 = 720;

fn sampled_frames_rgb(fps: u32, count: usize) -> Vec<Vec<u8>> {
    let video = testkit::media("bigbuckbunny.mp4");
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(&video)
        .args([
            "-an",
            "-vf",
            &format!("fps={fps}"),
            "-frames:v",
            &count.to_string(),
        ])
        .args(["-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .output()
        .expect("ffmpeg runs (scripts/install-deps.sh installs it)");
    assert!(
        out.status.success(),
        "ffmpeg failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let frame_len = (WIDTH * HEIGHT * 3) as usize;
    assert_eq!(
        out.stdout.len(),
        frame_len * count,
        "ffmpeg returned a different frame count"
    );
    out.stdout
        .chunks_exact(frame_len)
        .map(<[u8]>::to_vec)
        .collect()
}

fn jpeg(rgb: &[u8], quality: u8) -> Bytes {
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(&mut out, quality)
        .encode(rgb, WIDTH, HEIGHT, ExtendedColorType::Rgb8)
        .expect("encodes");
    Bytes::from(out)
}

fn batch_at_quality(frames: &[Vec<u8>], quality: u8) -> FrameBatch {
    FrameBatch {
        stream_id: StreamId::new("bigbuckbunny").expect("valid id"),
        producer_session: uuid::Uuid::new_v4(),
        batch_seq: 0,
        partial: false,
        frames: frames
            .iter()
            .enumerate()
            .map(|(i, rgb)| Frame {
                seq: i as u64,
                pts_us: i as i64 * 100_000,
                captured_at: Utc::now().trunc_subsecs(6),
                width: WIDTH,
                height: HEIGHT,
                jpeg: jpeg(rgb, quality),
            })
            .collect(),
    }
}

#[test]
fn a_full_720p_batch_fits_the_default_message_limit() {
    let frames = sampled_frames_rgb(10, FRAMES_PER_BATCH);
    for quality in [85, 95] {
        let batch = batch_at_quality(&frames, quality);
        let encoded = wire::encode(&batch).expect("valid batch");
        let per_frame = batch.jpeg_bytes() / FRAMES_PER_BATCH;
        println!(
            "quality {quality}: {} bytes per batch ({:.1}% of the {} byte limit), {per_frame} bytes per frame",
            encoded.len(),
            100.0 * encoded.len() as f64 / DEFAULT_MAX_MESSAGE_BYTES as f64,
            DEFAULT_MAX_MESSAGE_BYTES
        );
        assert!(
            encoded.len() <= DEFAULT_MAX_MESSAGE_BYTES,
            "a 25-frame 720p batch at quality {quality} is {} bytes, over the limit",
            encoded.len()
        );
        // compared without assert_eq!, whose message would print megabytes of JPEG
        assert!(
            wire::decode(&encoded).expect("decodes") == batch,
            "round trip changed the batch"
        );
    }
}
