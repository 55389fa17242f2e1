//! No secret in what the producer prints or serves: its real output, captured, against the
//! real RTSP server (with an account) and broker.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use support::{read_topic, start_producer_with_env};
use testkit::servers::PrivateRtspServer;
use testkit::{Stack, unique_name};

const CAMERA_PASSWORD: &str = "p@ss,w0rd:x";
/// The same, percent-encoded as a URL must carry it.
const CAMERA_PASSWORD_IN_URL: &str = "p%40ss%2Cw0rd%3Ax";
const WRONG_PASSWORD: &str = "wr0ng-Pw";
/// A Kafka password with a comma, escaped as KAFKA_PROPERTIES documents.
const KAFKA_PASSWORD: &str = "kafka,s3cret9";

fn assert_no_secret(what: &str, text: &str) {
    for secret in [
        CAMERA_PASSWORD,
        CAMERA_PASSWORD_IN_URL,
        "p@ss",
        WRONG_PASSWORD,
        KAFKA_PASSWORD,
        "s3cret9",
    ] {
        assert!(
            !text.contains(secret),
            "{what} shows the secret {secret:?}:\n{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn camera_and_kafka_passwords_never_appear_in_logs_metrics_or_ready() {
    let stack = Stack::require();
    let server = PrivateRtspServer::start_with_credentials("viewer", CAMERA_PASSWORD);
    let topic = unique_name("secrets");
    let good = format!(
        "cam=rtsp://viewer:{CAMERA_PASSWORD_IN_URL}@127.0.0.1:{}/bikes",
        server.port
    );
    let bad = format!(
        "locked=rtsp://viewer:{WRONG_PASSWORD}@127.0.0.1:{}/bikes",
        server.port
    );
    let properties = r"client.id=secrets-test,sasl.password=kafka\,s3cret9";
    let mut producer = start_producer_with_env(
        &stack.kafka_brokers,
        &["--source", &good, "--source", &bad, "--topic", &topic],
        &[("KAFKA_PROPERTIES", properties), ("RUST_LOG", "debug")],
    );

    // The decoded password opens the camera: batches arrive.
    let published = read_topic(
        &stack.kafka_brokers,
        &topic,
        Duration::from_secs(60),
        |seen| seen.iter().any(|p| p.key == "cam" && !p.batch.partial),
    )
    .await;
    assert!(
        published.iter().any(|p| p.key == "cam"),
        "the camera with the percent-encoded password did not publish; logs:\n{}",
        producer.all_logs()
    );
    assert!(
        published.iter().all(|p| p.key != "locked"),
        "the wrong password was let in"
    );
    // The wrong password is refused, and the refusal logged.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !producer.all_logs().contains("locked") || !producer.all_logs().contains("401") {
        assert!(
            Instant::now() < deadline,
            "no refusal of the wrong password logged:\n{}",
            producer.all_logs()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    assert_no_secret("/ready", &producer.get("/ready"));
    assert_no_secret("/metrics", &producer.get("/metrics"));
    assert!(producer.terminate().success());
    let logs = producer.all_logs();
    assert!(
        logs.contains("viewer:***@"),
        "the user stays visible:\n{logs}"
    );
    assert_no_secret("the logs (debug level)", &logs);
}

/// Settings that fail to parse are printed by the error: without their secrets.
#[test]
fn malformed_settings_are_refused_without_their_secrets() {
    let video = format!("cam={}", testkit::media("bikes.mp4").display());
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)]);
    let cases: [Case; 3] = [
        // No ID=: the whole value is quoted back.
        (&["--source", "rtsp://admin:s3cret9@cam.local/live"], &[]),
        // Not a URL the parser accepts.
        (&["--source", "cam=rtsp://admin:s3cret9@[cam/live"], &[]),
        // An unescaped comma splits the password; clap must not echo the value either.
        (
            &["--source", &video, "--brokers", "127.0.0.1:1"],
            &[("KAFKA_PROPERTIES", "acks=all,sasl.password=kafka,s3cret9")],
        ),
    ];
    for (args, env) in cases {
        let out = Command::new(env!("CARGO_BIN_EXE_producer"))
            .args(args)
            .envs(env.iter().copied())
            .output()
            .expect("run producer");
        assert!(!out.status.success(), "{args:?} was accepted");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!text.trim().is_empty(), "{args:?}: no error printed");
        assert_no_secret(&format!("the error for {args:?}"), &text);
    }
}
