//! Running the real `producer` binary and reading what it published.

#![allow(dead_code)] // each test file uses part of this

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{FrameBatch, wire};
use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use testkit::servers::{free_port, signal};

/// The producer binary as a child process with JSON logs collected.
pub struct ProducerProcess {
    child: Child,
    logs: Arc<Mutex<Vec<serde_json::Value>>>,
    pub ops_port: u16,
}

impl ProducerProcess {
    /// Starts `producer` with `args` plus the brokers, an ops port and JSON logs.
    pub fn start(brokers: &str, args: &[&str]) -> Self {
        let ops_port = free_port();
        let mut child = Command::new(env!("CARGO_BIN_EXE_producer"))
            .args([
                "--brokers",
                brokers,
                "--log-format",
                "json",
                "--progress-interval",
                "2s",
            ])
            .args(["--listen", &format!("127.0.0.1:{ops_port}")])
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the producer binary");
        let stderr = child.stderr.take().expect("piped stderr");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let value = serde_json::from_str(&line)
                    .unwrap_or_else(|_| serde_json::json!({ "unparsed": line }));
                sink.lock().expect("log lock").push(value);
            }
        });
        Self {
            child,
            logs,
            ops_port,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Log lines so far whose `message` is `message`.
    pub fn logs_with_message(&self, message: &str) -> Vec<serde_json::Value> {
        self.logs
            .lock()
            .expect("log lock")
            .iter()
            .filter(|l| l["message"] == message)
            .cloned()
            .collect()
    }

    pub fn all_logs(&self) -> String {
        self.logs
            .lock()
            .expect("log lock")
            .iter()
            .map(|l| l.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Waits for the process to exit by itself.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "producer still running after {timeout:?}; logs:\n{}",
                self.all_logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then waits for a clean exit.
    pub fn terminate(&mut self) -> ExitStatus {
        signal(self.pid(), "TERM");
        self.wait(Duration::from_secs(30))
    }

    /// The value of one sample of `/metrics`, e.g. `producer_batches_sent_total{partial="false",stream="a"}`
    /// (labels in the order Prometheus prints them: sorted by name). 0 when absent.
    pub fn metric(&self, sample: &str) -> f64 {
        let text = http_get(self.ops_port, "/metrics");
        text.lines()
            .find_map(|line| {
                line.strip_prefix(sample)?
                    .strip_prefix(' ')?
                    .trim()
                    .parse()
                    .ok()
            })
            .unwrap_or(0.0)
    }

    pub fn get(&self, path: &str) -> String {
        http_get(self.ops_port, path)
    }
}

impl Drop for ProducerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A blocking HTTP/1.0 GET on loopback (the response body, or "" when not reachable).
fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n");
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default()
}

/// A batch as read back from Kafka.
#[derive(Debug)]
pub struct Published {
    pub batch: FrameBatch,
    pub key: String,
    pub partition: i32,
    pub offset: i64,
}

/// Reads `topic` from the beginning until `enough` says so or `timeout` passes.
pub async fn read_topic(
    brokers: &str,
    topic: &str,
    timeout: Duration,
    mut enough: impl FnMut(&[Published]) -> bool,
) -> Vec<Published> {
    let group = testkit::unique_name("producer-test");
    let consumer: StreamConsumer = testkit::kafka::consumer_config(brokers, &group)
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let deadline = tokio::time::Instant::now() + timeout;
    let mut seen = Vec::new();
    while !enough(&seen) {
        let message = match tokio::time::timeout_at(deadline, consumer.recv()).await {
            Err(_) => break,
            // The producer may not have created the topic yet.
            Ok(Err(e)) if e.to_string().contains("UnknownTopicOrPartition") => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            Ok(Err(e)) => panic!("consuming {topic}: {e}"),
            Ok(Ok(m)) => m,
        };
        let payload = message.payload().expect("a payload");
        let batch =
            wire::decode(payload).unwrap_or_else(|e| panic!("message does not decode: {e}"));
        seen.push(Published {
            batch,
            key: String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned(),
            partition: message.partition(),
            offset: message.offset(),
        });
    }
    seen
}

/// Frame sequence numbers across batches, in order.
pub fn frame_seqs(published: &[Published]) -> Vec<u64> {
    published
        .iter()
        .flat_map(|p| p.batch.frames.iter().map(|f| f.seq))
        .collect()
}

/// Presentation times (µs) of the video pictures of a file, as ffprobe sees them (not our demuxer).
pub fn ffprobe_pts_us(path: &std::path::Path) -> Vec<i64> {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "packet=pts_time",
        ])
        .args(["-of", "csv=p=0"])
        .arg(path)
        .output()
        .expect("run ffprobe");
    assert!(out.status.success(), "ffprobe failed");
    let mut pts: Vec<i64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().trim_end_matches(',').parse::<f64>().ok())
        .map(|s| (s * 1e6).round() as i64)
        .collect();
    pts.sort_unstable();
    pts
}

/// The sampling rule, stated independently of the producer's code: of pictures at `pts`
/// (played `loops` times back to back, each pass `duration_us` after the previous), keep the
/// first picture of every `1/fps` slot counted from the first picture.
pub fn sampled_pts(pts: &[i64], duration_us: i64, loops: i64, fps: i64) -> Vec<i64> {
    let first = pts[0];
    let mut kept = Vec::new();
    let mut last_slot = -1;
    for pass in 0..loops {
        for &p in pts {
            let t = p + pass * duration_us;
            let slot = (t - first) * fps / 1_000_000;
            if slot > last_slot {
                last_slot = slot;
                kept.push(t);
            }
        }
    }
    kept
}
