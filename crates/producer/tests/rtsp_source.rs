//! The producer binary against the real RTSP server and broker of the native stack.

mod support;

use std::time::Duration;

use common::FRAMES_PER_BATCH;
use support::{Published, frame_seqs, read_topic, start_producer};
use testkit::servers::{PrivateRtspServer, free_port};
use testkit::{Stack, unique_name};

fn full_batches(n: usize) -> impl FnMut(&[Published]) -> bool {
    move |seen| seen.iter().filter(|p| !p.batch.partial).count() >= n
}

/// Every frame of every batch: strictly increasing numbers, ~100 ms apart, decodable JPEGs.
fn check_batches(published: &[Published], stream: &str, size: (u32, u32)) {
    for p in published {
        assert_eq!(p.key, stream, "key = stream id");
        assert_eq!(p.batch.stream_id.as_str(), stream);
        if !p.batch.partial {
            assert_eq!(p.batch.frames.len(), FRAMES_PER_BATCH);
        }
        for pair in p.batch.frames.windows(2) {
            assert!(pair[1].seq > pair[0].seq, "sequence numbers increase");
            let pts_gap = pair[1].pts_us - pair[0].pts_us;
            assert!(
                (60_000..=140_000).contains(&pts_gap),
                "pts gap {pts_gap} us"
            );
            let capture_gap = (pair[1].captured_at - pair[0].captured_at).num_milliseconds();
            assert!(
                (20..=250).contains(&capture_gap),
                "capture gap {capture_gap} ms"
            );
        }
        for frame in &p.batch.frames {
            assert_eq!((frame.width, frame.height), size);
            let header = turbojpeg::read_header(&frame.jpeg).expect("a JPEG");
            assert_eq!((header.width as u32, header.height as u32), size);
        }
        let first = &p.batch.frames[0];
        let image =
            turbojpeg::decompress(&first.jpeg, turbojpeg::PixelFormat::RGB).expect("decodes");
        assert_eq!((image.width as u32, image.height as u32), size);
        // Frames of a full batch cover ~2.4 s of video at 10 fps.
        if !p.batch.partial {
            let span = p.batch.frames[24].pts_us - p.batch.frames[0].pts_us;
            assert!(
                (2_200_000..=2_600_000).contains(&span),
                "25 frames span {span} us"
            );
        }
    }
    let seqs = frame_seqs(published);
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "no gaps: {seqs:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtsp_cameras_give_batches_of_25_jpegs_100ms_apart() {
    let stack = Stack::require();
    let prefix = unique_name("rtsp");
    let template = format!("{prefix}.{{stream}}");
    let mut producer = start_producer(
        &stack.kafka_brokers,
        &[
            "--source",
            &format!("bikes={}", stack.rtsp_url("bikes")),
            // High profile with CABAC, like most real cameras.
            "--source",
            &format!("bikes-high={}", stack.rtsp_url("bikes-high")),
            "--topic",
            &template,
        ],
    );
    let timeout = Duration::from_secs(60);
    let bikes = read_topic(
        &stack.kafka_brokers,
        &format!("{prefix}.bikes"),
        timeout,
        full_batches(2),
    )
    .await;
    let high = read_topic(
        &stack.kafka_brokers,
        &format!("{prefix}.bikes-high"),
        timeout,
        full_batches(1),
    )
    .await;
    assert!(
        bikes.len() >= 2 && !high.is_empty(),
        "logs:\n{}",
        producer.all_logs()
    );
    check_batches(&bikes, "bikes", (640, 272));
    check_batches(&high, "bikes-high", (640, 272));

    assert_eq!(
        producer.metric(r#"producer_stream_up{stream="bikes"}"#),
        1.0
    );
    assert!(producer.get("/ready").contains("ready"));
    assert_eq!(
        producer.metric(r#"producer_frames_dropped_total{reason="backpressure",stream="bikes"}"#),
        0.0
    );
    assert!(producer.metric(r#"producer_decode_seconds_count{stream="bikes"}"#) > 50.0);
    assert!(
        !producer.logs_with_message("progress").is_empty(),
        "progress lines are logged"
    );
    assert!(producer.terminate().success(), "clean exit on SIGTERM");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_camera_backs_off_while_a_live_one_keeps_publishing() {
    let stack = Stack::require();
    let topic = unique_name("two-sources");
    let nobody = free_port();
    let mut producer = start_producer(
        &stack.kafka_brokers,
        &[
            "--source",
            &format!("live={}", stack.rtsp_url("bikes")),
            "--source",
            &format!("dead=rtsp://127.0.0.1:{nobody}/nothing"),
            "--topic",
            &topic,
        ],
    );
    let live = read_topic(
        &stack.kafka_brokers,
        &topic,
        Duration::from_secs(60),
        full_batches(3),
    )
    .await;
    assert!(
        live.len() >= 3,
        "the live camera published; logs:\n{}",
        producer.all_logs()
    );
    assert!(live.iter().all(|p| p.key == "live"));
    check_batches(&live, "live", (640, 272));

    let attempts: Vec<(u64, u64)> = producer
        .logs_with_message("camera disconnected; reconnecting")
        .iter()
        .filter(|l| l["span"]["stream_id"] == "dead")
        .map(|l| {
            (
                l["attempt"].as_u64().unwrap(),
                l["retry_in_ms"].as_u64().unwrap(),
            )
        })
        .collect();
    assert!(
        attempts.len() >= 4,
        "reconnect attempts logged: {attempts:?}"
    );
    let numbers: Vec<u64> = attempts.iter().map(|a| a.0).collect();
    assert_eq!(numbers, (1..=attempts.len() as u64).collect::<Vec<_>>());
    // Delays double within jitter ([d/2, d]): two steps on, a delay is always longer.
    for w in attempts.windows(3) {
        assert!(w[2].1 > w[0].1, "delays grow: {attempts:?}");
    }
    assert!(
        producer.metric(r#"producer_reconnects_total{reason="connect_failed",stream="dead"}"#)
            >= 4.0
    );
    assert_eq!(producer.metric(r#"producer_stream_up{stream="dead"}"#), 0.0);
    assert_eq!(producer.metric(r#"producer_stream_up{stream="live"}"#), 1.0);
    assert!(producer.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_producer_reconnects_after_the_server_restarts_and_numbers_continue() {
    let stack = Stack::require();
    let mut server = PrivateRtspServer::start();
    let topic = unique_name("reconnect");
    let mut producer = start_producer(
        &stack.kafka_brokers,
        &[
            "--source",
            &format!("cam={}", server.url("bikes")),
            "--topic",
            &topic,
            "--idle-timeout",
            "3s",
            "--stall-flush-timeout",
            "2s",
        ],
    );
    let before = read_topic(
        &stack.kafka_brokers,
        &topic,
        Duration::from_secs(60),
        full_batches(1),
    )
    .await;
    assert!(
        !before.is_empty(),
        "published before the outage; logs:\n{}",
        producer.all_logs()
    );

    server.stop();
    tokio::time::sleep(Duration::from_secs(10)).await;
    server.restart();

    let all = read_topic(
        &stack.kafka_brokers,
        &topic,
        Duration::from_secs(90),
        |seen| {
            // Two full batches made after the restart.
            let connects = seen.iter().filter(|p| !p.batch.partial).count();
            connects >= before.iter().filter(|p| !p.batch.partial).count() + 2
                && seen.iter().any(|p| p.batch.partial)
        },
    )
    .await;
    let seqs = frame_seqs(&all);
    assert!(
        seqs.windows(2).all(|w| w[1] > w[0]),
        "never reused: {seqs:?}"
    );
    let batch_seqs: Vec<u64> = all.iter().map(|p| p.batch.batch_seq).collect();
    assert!(
        batch_seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "batches numbered in order: {batch_seqs:?}"
    );
    assert!(
        all.iter()
            .all(|p| p.batch.producer_session == all[0].batch.producer_session)
    );
    assert!(
        all.iter().any(|p| p.batch.partial),
        "the stall flushed a partial batch"
    );
    assert!(
        producer.logs_with_message("camera connected").len() >= 2,
        "reconnected by itself"
    );
    assert!(
        producer.metric(r#"producer_reconnects_total{reason="eof",stream="cam"}"#)
            + producer.metric(r#"producer_reconnects_total{reason="idle_timeout",stream="cam"}"#)
            + producer.metric(r#"producer_reconnects_total{reason="rtsp_error",stream="cam"}"#)
            >= 1.0
    );
    assert!(producer.terminate().success());
}
