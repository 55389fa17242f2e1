//! A broker that is down is reported as a state change, not as a flood: one WARN when the
//! brokers become unreachable, one INFO when they are back, the raw librdkafka lines at debug,
//! and the state in `kafka_brokers_reachable` / `kafka_outages_total`. Nothing of the file is
//! lost meanwhile: it waits.

mod support;

use std::time::{Duration, Instant};

use support::{ProducerProcess, read_topic, start_producer};
use testkit::servers::{PrivateBroker, free_port};
use testkit::unique_name;

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// WARN and ERROR lines of the producer so far.
fn loud_lines(producer: &ProducerProcess) -> Vec<serde_json::Value> {
    producer
        .all_logs()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| matches!(l["level"].as_str(), Some("WARN" | "ERROR")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_broker_is_one_state_change_and_nothing_is_lost() {
    // Nothing listens on the port yet: every connection is refused.
    let port = free_port();
    let brokers = format!("127.0.0.1:{port}");
    let topic = unique_name("kafka-outage");
    let video = testkit::media("bikes.mp4");
    let source = format!("cam={}", video.display());
    let mut producer = start_producer(
        &brokers,
        &[
            "--source",
            &source,
            "--topic",
            &topic,
            "--file-pace",
            "fast",
            "--frame-rate",
            "5",
        ],
    );
    let outages = |p: &ProducerProcess| p.metric(r#"kafka_outages_total{client="producer"}"#);
    wait_for("the outage to be seen", Duration::from_secs(30), || {
        outages(&producer) >= 1.0
    });
    // Ten seconds of refused connections: librdkafka reports several a second.
    std::thread::sleep(Duration::from_secs(10));
    let loud = loud_lines(&producer);
    assert!(
        loud.len() <= 3,
        "an outage is a state change, not a flood: {} WARN/ERROR lines:\n{}",
        loud.len(),
        loud.iter()
            .map(|l| l.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(
        producer.metric(r#"kafka_brokers_reachable{client="producer"}"#),
        0.0
    );
    assert_eq!(outages(&producer), 1.0);
    assert!(
        producer.get("/ready").contains("not_ready"),
        "not ready before the topics exist"
    );

    // The broker comes up on that port: the producer says so once, creates its topic, and the
    // whole file arrives.
    let broker = PrivateBroker::start_on(port);
    let deadline = Instant::now() + Duration::from_secs(60);
    while producer
        .logs_with_message("Kafka brokers reachable again")
        .is_empty()
    {
        assert!(
            Instant::now() < deadline,
            "brokers not seen again; logs:\n{}",
            producer.all_logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        producer.metric(r#"kafka_brokers_reachable{client="producer"}"#),
        1.0
    );
    let status = producer.wait(Duration::from_secs(120));
    assert!(status.success(), "{}", producer.all_logs());
    assert_eq!(
        producer
            .logs_with_message("Kafka brokers unreachable; retrying")
            .len(),
        1
    );
    let frames: u64 = read_topic(&broker.address(), &topic, Duration::from_secs(20), |_| {
        false
    })
    .await
    .iter()
    .map(|p| p.batch.frames.len() as u64)
    .sum();
    // The process has exited: its count is in its last line.
    let sent = producer.logs_with_message("stream finished")[0]["frames_sent"].as_u64();
    assert!(
        frames > 0 && Some(frames) == sent,
        "published {frames}, counted {sent:?}"
    );
    assert_eq!(
        producer.logs_with_message("stream finished")[0]["frames_dropped"].as_u64(),
        Some(0)
    );
}
