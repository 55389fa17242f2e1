//! Running the real `producer` binary and reading what it published.

#![allow(dead_code)] // each test file uses part of this

use std::process::Command;

use testkit::process::ServiceProcess;
use testkit::servers::free_port;

/// The producer binary as a child process with JSON logs collected.
pub type ProducerProcess = ServiceProcess;

/// Starts `producer` with `args` plus the brokers, an ops port and JSON logs.
pub fn start_producer(brokers: &str, args: &[&str]) -> ProducerProcess {
    start_producer_with_env(brokers, args, &[])
}

/// [`start_producer`] with extra environment variables.
pub fn start_producer_with_env(
    brokers: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> ProducerProcess {
    let ops_port = free_port();
    let listen = format!("127.0.0.1:{ops_port}");
    let mut all = vec![
        "--brokers",
        brokers,
        "--progress-interval",
        "2s",
        "--listen",
        &listen,
    ];
    all.extend_from_slice(args);
    ServiceProcess::start(
        std::path::Path::new(env!("CARGO_BIN_EXE_producer")),
        &all,
        env,
        ops_port,
    )
}

pub use testkit::kafka::{Published, read_topic};

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
