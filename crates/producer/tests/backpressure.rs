//! When Kafka hangs: a live camera drops its oldest batches (counted), a file waits (loses
//! nothing). Each test runs its own broker, frozen with SIGSTOP like an overloaded broker.

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use support::{ProducerProcess, ffprobe_pts_us, read_topic, sampled_pts, start_producer};
use testkit::servers::PrivateBroker;
use testkit::{Stack, unique_name};

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn dropped(producer: &ProducerProcess, stream: &str, reason: &str) -> f64 {
    producer.metric(&format!(
        r#"producer_frames_dropped_total{{reason="{reason}",stream="{stream}"}}"#
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_camera_drops_its_oldest_batches_while_kafka_hangs_and_counts_them() {
    let stack = Stack::require();
    let broker = PrivateBroker::start();
    let topic = unique_name("live-backpressure");
    let mut producer = start_producer(
        &broker.address(),
        &[
            "--source",
            &format!("cam={}", stack.rtsp_url("bikes")),
            "--topic",
            &topic,
            "--queue-batches",
            "2",
            "--delivery-timeout",
            "2s",
            "--delivery-retries",
            "1000",
        ],
    );
    let sent = |p: &ProducerProcess| {
        p.metric(r#"producer_batches_sent_total{partial="false",stream="cam"}"#)
    };
    wait_for("a first batch", Duration::from_secs(60), || {
        sent(&producer) >= 1.0
    });

    broker.freeze();
    // 2 queued + 1 in flight: at 10 fps a batch every 2.5 s, so drops start after ~7.5 s.
    wait_for("backpressure drops", Duration::from_secs(60), || {
        dropped(&producer, "cam", "backpressure") >= 25.0
    });
    broker.thaw();
    let after_thaw = sent(&producer);
    wait_for("deliveries after the thaw", Duration::from_secs(60), || {
        sent(&producer) >= after_thaw + 2.0
    });
    let lost =
        dropped(&producer, "cam", "backpressure") + dropped(&producer, "cam", "delivery_failed");
    assert!(producer.terminate().success());

    let published = read_topic(&broker.address(), &topic, Duration::from_secs(20), |_| {
        false
    })
    .await;
    // A batch that timed out in flight may have reached the broker before it froze and be sent
    // again: duplicates are allowed (the consumer's keys make them idempotent), gaps only as counted.
    let seqs: BTreeSet<u64> = published
        .iter()
        .flat_map(|p| p.batch.frames.iter().map(|f| f.seq))
        .collect();
    let max = *seqs.iter().next_back().unwrap();
    let missing = (0..=max).filter(|s| !seqs.contains(s)).count();
    assert!(lost >= 25.0, "whole batches dropped: {lost}");
    assert_eq!(
        missing as f64, lost,
        "every missing frame is counted, and only those"
    );
    let warned = producer
        .logs_with_message("Kafka is behind; dropped the oldest queued batch of this live stream");
    assert_eq!(warned.len() as f64 * 25.0, dropped_batches_frames(&warned));
}

fn dropped_batches_frames(lines: &[serde_json::Value]) -> f64 {
    lines
        .iter()
        .map(|l| l["dropped_frames"].as_f64().unwrap_or(0.0))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_waits_for_a_hung_kafka_and_loses_nothing() {
    let broker = PrivateBroker::start();
    let video = testkit::media("bigbuckbunny.mp4");
    let topic = unique_name("file-backpressure");
    let loops = 6;
    let mut producer = start_producer(
        &broker.address(),
        &[
            "--source",
            &format!("bbb={}", video.display()),
            "--file-pace",
            "fast",
            "--file-loops",
            &loops.to_string(),
            "--topic",
            &topic,
            "--queue-batches",
            "1",
            "--delivery-timeout",
            "2s",
        ],
    );
    let sent = |p: &ProducerProcess| {
        p.metric(r#"producer_batches_sent_total{partial="false",stream="bbb"}"#)
    };
    wait_for("a first batch", Duration::from_secs(60), || {
        sent(&producer) >= 1.0
    });
    broker.freeze();
    std::thread::sleep(Duration::from_secs(6));
    broker.thaw();
    assert!(
        producer.wait(Duration::from_secs(120)).success(),
        "logs:\n{}",
        producer.all_logs()
    );
    // The hang is one stall of cause `kafka_delivery` (common::stall): a line when it starts,
    // one when it is over, the retries in between at debug.
    let stalled: Vec<_> = producer
        .logs_with_message("stalled: waiting for a dependency; retrying, nothing is skipped")
        .into_iter()
        .filter(|l| l["cause"] == "kafka_delivery")
        .collect();
    assert!(!stalled.is_empty(), "the hang was noticed and retried");
    assert!(
        producer
            .logs_with_message("stall over")
            .iter()
            .any(|l| l["cause"] == "kafka_delivery"),
        "the stall ended once the broker answered"
    );

    let expected = sampled_pts(&ffprobe_pts_us(&video), 5_280_000, loops, 10);
    let published = read_topic(&broker.address(), &topic, Duration::from_secs(30), |seen| {
        seen.iter()
            .flat_map(|p| p.batch.frames.iter().map(|f| f.seq))
            .collect::<BTreeSet<_>>()
            .len()
            >= expected.len()
    })
    .await;
    let seqs: BTreeSet<u64> = published
        .iter()
        .flat_map(|p| p.batch.frames.iter().map(|f| f.seq))
        .collect();
    assert_eq!(
        seqs,
        (0..expected.len() as u64).collect(),
        "every frame, none dropped"
    );
}
