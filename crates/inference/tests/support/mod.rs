//! Shared by the service tests: the real service on a free loopback port, real frames.
#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use chrono::{SubsecRound, Utc};
use clap::Parser;
use common::inference_api::Detection;
use common::{Frame, FrameBatch, StreamId};
use inference::InferenceConfig;

pub const MAX_FRAMES: usize = 30;
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// Base URL of one service shared by the tests of this binary, started on first use.
pub async fn service() -> &'static str {
    static BASE: OnceLock<String> = OnceLock::new();
    let base = BASE.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Runtime::new().expect("runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind");
                tx.send(format!("http://{}", listener.local_addr().expect("addr")))
                    .expect("send");
                let config = InferenceConfig::parse_from(service_args());
                let stop = tokio_util::sync::CancellationToken::new();
                inference::run(config, listener, stop)
                    .await
                    .expect("service runs");
            });
        });
        rx.recv().expect("service thread starts")
    });
    wait_ready(base).await;
    base
}

fn service_args() -> Vec<String> {
    let model = testkit::model("yolov8n.onnx");
    vec![
        "inference".into(),
        "--model".into(),
        model.display().to_string(),
        "--max-frames".into(),
        MAX_FRAMES.to_string(),
        "--max-body-bytes".into(),
        MAX_BODY_BYTES.to_string(),
        "--log-format".into(),
        "pretty".into(),
    ]
}

pub async fn wait_ready(base: &str) {
    let http = reqwest::Client::new();
    for _ in 0..600 {
        if let Ok(r) = http.get(format!("{base}/ready")).send().await
            && r.status() == 200
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("service at {base} not ready within 60 s");
}

/// The service binary as a child process, killed when dropped.
pub struct ChildService {
    pub child: Child,
    pub base: String,
    /// Everything it wrote to stderr, drained by a thread: a full pipe would block its logging
    /// and so the service itself.
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl ChildService {
    pub fn spawn(extra: &[&str]) -> Self {
        let port = free_port();
        let mut args = service_args();
        args.remove(0);
        // a flag given in `extra` replaces the default's value (clap refuses a flag twice)
        for flag in extra.iter().filter(|a| a.starts_with("--")) {
            if let Some(at) = args.iter().position(|a| a == flag) {
                args.drain(at..at + 2);
            }
        }
        args.extend(["--listen".into(), format!("127.0.0.1:{port}")]);
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut child = Command::new(env!("CARGO_BIN_EXE_inference"))
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the inference binary");
        let mut err = child.stderr.take().expect("stderr is piped");
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = std::io::Read::read_to_string(&mut err, &mut text);
            text
        });
        Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            stderr: Some(stderr),
        }
    }

    /// Waits for the process to exit: whether it succeeded, and its stderr.
    pub fn wait_output(mut self) -> (bool, String) {
        let status = self.child.wait().expect("process exits");
        let err = self
            .stderr
            .take()
            .map(|t| t.join().unwrap_or_default())
            .unwrap_or_default();
        (status.success(), err)
    }
}

impl Drop for ChildService {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The service's `/metrics` text.
pub async fn metrics_text(base: &str) -> String {
    reqwest::get(format!("{base}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text")
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

pub fn image(name: &str) -> Vec<u8> {
    std::fs::read(testkit::media(name)).expect("read shared image")
}

/// The first `n` frames of `bikes.mp4` as JPEGs, decoded by ffmpeg.
pub fn bikes_jpegs(n: usize) -> Vec<Bytes> {
    testkit::video_jpegs("bikes.mp4", n, None)
        .into_iter()
        .map(Bytes::from)
        .collect()
}

/// A FrameBatch of `jpegs` numbered from `first_seq`; partial when fewer than 25.
pub fn frame_batch(jpegs: &[Bytes], first_seq: u64, width: u32, height: u32) -> Vec<u8> {
    let now = Utc::now().trunc_subsecs(6);
    let batch = FrameBatch {
        stream_id: StreamId::new("test-cam").expect("id"),
        producer_session: uuid::Uuid::new_v4(),
        batch_seq: 0,
        partial: jpegs.len() < common::FRAMES_PER_BATCH,
        frames: jpegs
            .iter()
            .enumerate()
            .map(|(i, j)| Frame {
                seq: first_seq + i as u64,
                pts_us: i as i64 * 40_000,
                captured_at: now,
                width,
                height,
                jpeg: j.clone(),
            })
            .collect(),
    };
    common::wire::encode(&batch).expect("valid batch")
}

/// A reference detection of shared/README.md: class, confidence, x1 y1 x2 y2.
pub type Ref = (&'static str, f32, [f32; 4]);
pub const BUS: &[Ref] = &[
    ("person", 0.914, [672.6, 380.0, 809.8, 879.5]),
    ("person", 0.897, [221.1, 407.6, 343.3, 857.3]),
    ("person", 0.895, [50.1, 396.9, 243.3, 904.5]),
    ("bus", 0.824, [34.2, 230.5, 798.4, 771.1]),
    ("person", 0.375, [0.0, 549.5, 57.7, 871.8]), // x1 -3.1 in the reference, clamped
];
pub const ZIDANE: &[Ref] = &[
    ("person", 0.872, [118.9, 197.8, 1114.0, 710.6]),
    ("person", 0.864, [749.7, 42.4, 1134.5, 707.4]),
    ("tie", 0.358, [433.8, 436.2, 524.1, 714.4]),
];

/// Asserts detections match `reference` within 2 px and 0.01 confidence, in order.
pub fn assert_reference(dets: &[Detection], reference: &[Ref]) {
    assert_eq!(dets.len(), reference.len(), "{dets:?}");
    for (d, (class, conf, b)) in dets.iter().zip(reference) {
        assert_eq!(d.class_name, *class);
        assert!((d.confidence - conf).abs() <= 0.01, "{d:?} vs {conf}");
        for (got, want) in [d.x1, d.y1, d.x2, d.y2].iter().zip(b) {
            assert!((got - want).abs() <= 2.0, "{d:?} vs {b:?}");
        }
    }
}
