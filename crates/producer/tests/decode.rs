//! The decode path on the real sample files: MP4 demux (B-frames, an audio track), OpenH264
//! in display order, a resolution change mid-stream, and recovery from corrupt data.

use producer::decode::{DecodeError, Fed, H264Decoder};
use producer::h264;
use producer::source::file::Mp4Video;

/// (pts, width, height) of every picture out of the decoder.
fn decode_all(video: &mut Mp4Video, decoder: &mut H264Decoder, out: &mut Vec<(i64, usize, usize)>) {
    for i in 0..video.len() {
        let (data, pts) = video.read(i).expect("read a sample");
        decoder
            .decode(&data, pts, 0, |p| out.push((p.pts_us, p.width, p.height)))
            .expect("decode");
    }
}

#[test]
fn bikes_with_b_frames_decodes_every_picture_in_presentation_order() {
    let mut video = Mp4Video::open(&testkit::media("bikes.mp4")).unwrap();
    assert_eq!((video.width, video.height, video.len()), (640, 272, 250));
    let mut decoder = H264Decoder::new().unwrap();
    let mut pictures = Vec::new();
    decode_all(&mut video, &mut decoder, &mut pictures);
    assert!(
        decoder.pending() > 0,
        "B-frames keep pictures back until the end"
    );
    decoder
        .finish(|p| pictures.push((p.pts_us, p.width, p.height)))
        .unwrap();

    assert_eq!(pictures.len(), 250, "every picture comes out");
    assert!(pictures.iter().all(|&(_, w, h)| (w, h) == (640, 272)));
    let pts: Vec<i64> = pictures.iter().map(|p| p.0).collect();
    let expected: Vec<i64> = (0..250).map(|i| i * 40_000).collect();
    assert_eq!(pts, expected, "presentation order, 25 fps");
}

#[test]
fn bigbuckbunny_video_is_found_beside_its_audio_track() {
    let mut video = Mp4Video::open(&testkit::media("bigbuckbunny.mp4")).unwrap();
    assert_eq!((video.width, video.height, video.len()), (1280, 720, 132));
    assert_eq!(video.duration_us(), 5_280_000);
    let mut decoder = H264Decoder::new().unwrap();
    let mut pictures = Vec::new();
    decode_all(&mut video, &mut decoder, &mut pictures);
    decoder
        .finish(|p| pictures.push((p.pts_us, p.width, p.height)))
        .unwrap();
    assert_eq!(pictures.len(), 132);
}

#[test]
fn a_resolution_change_mid_stream_is_followed() {
    let mut bikes = Mp4Video::open(&testkit::media("bikes.mp4")).unwrap();
    let mut bunny = Mp4Video::open(&testkit::media("bigbuckbunny.mp4")).unwrap();
    let mut decoder = H264Decoder::new().unwrap();
    let mut pictures = Vec::new();
    // 30 pictures of 640x272, then a new SPS of 1280x720 in the same decoder, no reset.
    for i in 0..30 {
        let (data, pts) = bikes.read(i).unwrap();
        decoder
            .decode(&data, pts, 0, |p| {
                pictures.push((p.pts_us, p.width, p.height))
            })
            .unwrap();
    }
    for i in 0..bunny.len() {
        let (data, pts) = bunny.read(i).unwrap();
        let pts = 10_000_000 + pts;
        decoder
            .decode(&data, pts, 0, |p| {
                pictures.push((p.pts_us, p.width, p.height))
            })
            .unwrap();
    }
    decoder
        .finish(|p| pictures.push((p.pts_us, p.width, p.height)))
        .unwrap();
    let small = pictures.iter().filter(|p| (p.1, p.2) == (640, 272)).count();
    let large = pictures
        .iter()
        .filter(|p| (p.1, p.2) == (1280, 720))
        .count();
    assert!(small >= 25, "pictures before the change: {small}");
    assert_eq!(
        large, 132,
        "every picture after the change, at the new size"
    );
    assert!(pictures.iter().rev().take(132).all(|p| p.0 >= 10_000_000));
}

#[test]
fn corrupt_data_skips_to_the_next_idr_picture() {
    let mut video = Mp4Video::open(&testkit::media("bikes.mp4")).unwrap();
    let idr: Vec<usize> = (0..video.len())
        .filter(|&i| h264::contains_idr(&video.read(i).unwrap().0))
        .collect();
    assert!(
        idr.len() >= 3,
        "bikes.mp4 has several IDR pictures: {idr:?}"
    );
    let (corrupt_at, next_idr) = (idr[1] + 10, idr[2]);

    let mut decoder = H264Decoder::new().unwrap();
    let mut pictures = 0usize;
    let mut errors = 0usize;
    let mut skipped = Vec::new();
    for i in 0..video.len() {
        let (mut data, pts) = video.read(i).unwrap();
        if i == corrupt_at {
            // A non-IDR slice header followed by noise.
            data = [0, 0, 0, 1, 0x41].to_vec();
            data.extend((0..2000).map(|k| (k * 37 % 251) as u8));
        }
        match decoder.decode(&data, pts, 0, |_| pictures += 1) {
            Ok(Fed::Decoded { .. }) => {}
            Ok(Fed::AwaitingKeyframe) => skipped.push(i),
            Err(DecodeError::Corrupt { lost, .. }) => {
                errors += 1;
                assert!(lost >= 1, "the corrupt access unit itself is counted");
            }
            Err(e) => panic!("{e}"),
        }
    }
    decoder.finish(|_| pictures += 1).unwrap();
    assert_eq!(errors, 1, "the corrupt access unit is reported once");
    let expected_skips: Vec<usize> = (corrupt_at + 1..next_idr).collect();
    assert_eq!(
        skipped, expected_skips,
        "everything up to the next IDR is skipped, nothing after"
    );
    assert!(
        pictures > 250 - (next_idr - corrupt_at) - 20,
        "decoding resumed: {pictures} pictures"
    );
}

#[test]
fn a_decoder_starts_at_an_idr_picture() {
    let mut video = Mp4Video::open(&testkit::media("bikes.mp4")).unwrap();
    let mut decoder = H264Decoder::new().unwrap();
    // Joining mid-GOP (like a camera joined mid-stream): pictures before the IDR are skipped.
    let (data, pts) = video.read(5).unwrap();
    assert_eq!(
        decoder.decode(&data, pts, 0, |_| {}).unwrap(),
        Fed::AwaitingKeyframe
    );
    let (data, pts) = video.read(0).unwrap();
    assert_eq!(
        decoder.decode(&data, pts, 0, |_| {}).unwrap(),
        Fed::Decoded { dropped: 0 }
    );
}
