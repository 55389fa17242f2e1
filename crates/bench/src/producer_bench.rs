//! The producer's cost, next to ffmpeg's single-thread decode of the same file in the same run.
//!
//! 1. The reference: `ffmpeg -threads 1 -i FILE -an -f null -` over the file looped N times
//!    (decode only, one core).
//! 2. The producer binary on the same file, looped N times, as fast as possible: decode every
//!    picture, sample to 10 fps, JPEG, batch, publish to the broker. Decoded pictures per
//!    second is the figure comparable with ffmpeg's; published frames per second and CPU
//!    seconds are the producer's own.
//! 3. A live 720p camera: the producer reading the RTSP server's 720p stream at its real pace
//!    for a while; CPU as a percentage of one core, and peak RSS, is the cost per camera.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::proc_stats;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Shared models and media.
    #[arg(long, env = "VP_SHARED_DIR", default_value = "../shared")]
    shared_dir: PathBuf,
    /// The 720p video, as a file and as an RTSP mount of the same name.
    #[arg(long, default_value = "bigbuckbunny.mp4")]
    video: String,
    /// Passes over the file for the throughput runs.
    #[arg(long, default_value_t = 20)]
    loops: u32,
    /// Seconds of live RTSP for the per-camera CPU figure.
    #[arg(long, default_value_t = 30)]
    live_seconds: u64,
    #[arg(long, env = "VP_KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    brokers: String,
    #[arg(long, env = "VP_RTSP_BASE", default_value = "rtsp://127.0.0.1:8554")]
    rtsp_base: String,
    /// The producer binary (default: `producer` beside this binary).
    #[arg(long)]
    producer_bin: Option<PathBuf>,
    /// Where to write the figures as JSON.
    #[arg(long, default_value = "target/bench/producer.json")]
    out: PathBuf,
}

/// What one child process used.
struct Usage {
    wall: Duration,
    cpu_s: f64,
    peak_rss_mib: f64,
}

/// Runs `command` to completion (or for `limit`, then SIGTERM), sampling its CPU and memory.
fn measure(mut command: Command, limit: Option<Duration>) -> anyhow::Result<(Usage, String)> {
    let started = Instant::now();
    let mut child = command
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting the measured process")?;
    let pid = child.id();
    let stderr = child.stderr.take().context("stderr")?;
    let reader = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    let (mut cpu_s, mut peak) = (0.0, 0.0);
    let mut signalled = false;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        // The last sample before exit is kept: the error is at most one sampling interval.
        cpu_s = proc_stats::cpu_seconds(pid).unwrap_or(cpu_s);
        peak = proc_stats::peak_rss_mib(pid).unwrap_or(peak);
        if !signalled && limit.is_some_and(|l| started.elapsed() >= l) {
            Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()?;
            signalled = true;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let wall = started.elapsed();
    let log = reader.join().unwrap_or_default();
    if !status.success() {
        bail!("{command:?} failed ({status}):\n{log}");
    }
    Ok((
        Usage {
            wall,
            cpu_s,
            peak_rss_mib: peak,
        },
        log,
    ))
}

/// Pictures in the video track, as ffprobe counts them.
fn pictures_in(video: &std::path::Path) -> anyhow::Result<u64> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-count_packets"])
        .args(["-show_entries", "stream=nb_read_packets", "-of", "csv=p=0"])
        .arg(video)
        .output()
        .context("running ffprobe")?;
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .context("ffprobe packet count")
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let video = args.shared_dir.join("media").join(&args.video);
    let pictures = pictures_in(&video)? * u64::from(args.loops);
    let producer_bin = match args.producer_bin.clone() {
        Some(p) => p,
        None => std::env::current_exe()?.with_file_name("producer"),
    };

    eprintln!(
        "[1/3] ffmpeg -threads 1 decode of {} x{}",
        video.display(),
        args.loops
    );
    let mut ffmpeg = Command::new("ffmpeg");
    ffmpeg
        .args(["-hide_banner", "-nostats", "-threads", "1", "-stream_loop"])
        .arg((args.loops - 1).to_string())
        .arg("-i")
        .arg(&video)
        .args(["-an", "-f", "null", "-"]);
    let (ffmpeg_usage, _) = measure(ffmpeg, None)?;
    let ffmpeg_fps = pictures as f64 / ffmpeg_usage.wall.as_secs_f64();

    eprintln!(
        "[2/3] producer, file as fast as possible x{} -> Kafka {}",
        args.loops, args.brokers
    );
    let topic = format!(
        "bench-producer-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let mut producer = Command::new(&producer_bin);
    producer
        .arg("--source")
        .arg(format!("bench={}", video.display()))
        .args([
            "--file-pace",
            "fast",
            "--file-loops",
            &args.loops.to_string(),
        ])
        .args([
            "--brokers",
            &args.brokers,
            "--topic",
            &topic,
            "--listen",
            "127.0.0.1:0",
        ])
        .args(["--progress-interval", "0s"]);
    let (file_usage, log) = measure(producer, None)?;
    let sent_frames = count_sent_frames(&log);
    let decode_fps = pictures as f64 / file_usage.wall.as_secs_f64();
    let sent_fps = sent_frames as f64 / file_usage.wall.as_secs_f64();

    let stem = video
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("bigbuckbunny");
    let url = format!("{}/{stem}", args.rtsp_base);
    eprintln!(
        "[3/3] producer, live RTSP {url} at 10 fps for {} s",
        args.live_seconds
    );
    let mut live = Command::new(&producer_bin);
    live.arg("--source")
        .arg(format!("live={url}"))
        .args([
            "--brokers",
            &args.brokers,
            "--topic",
            &topic,
            "--listen",
            "127.0.0.1:0",
        ])
        .args(["--progress-interval", "0s"]);
    let (live_usage, _) = measure(live, Some(Duration::from_secs(args.live_seconds)))?;
    let live_core_pct = 100.0 * live_usage.cpu_s / live_usage.wall.as_secs_f64();

    println!();
    println!(
        "| measurement ({stem}, 1280x720) | pictures/s decoded | frames/s published | CPU s | wall s | peak RSS MiB |"
    );
    println!("|---|---|---|---|---|---|");
    println!(
        "| ffmpeg -threads 1 decode only (reference) | {ffmpeg_fps:.0} | - | {:.1} | {:.1} | {:.0} |",
        ffmpeg_usage.cpu_s,
        ffmpeg_usage.wall.as_secs_f64(),
        ffmpeg_usage.peak_rss_mib
    );
    println!(
        "| producer, file as fast as possible: decode + sample 10 fps + JPEG q85 + publish | {decode_fps:.0} | {sent_fps:.1} | {:.1} | {:.1} | {:.0} |",
        file_usage.cpu_s,
        file_usage.wall.as_secs_f64(),
        file_usage.peak_rss_mib
    );
    println!();
    println!(
        "producer decode throughput = {:.2}x ffmpeg's single-thread decode; one live 720p camera at 10 fps costs {live_core_pct:.1}% of one core and {:.0} MiB peak RSS ({:.0} s measured)",
        decode_fps / ffmpeg_fps,
        live_usage.peak_rss_mib,
        live_usage.wall.as_secs_f64()
    );
    let report = serde_json::json!({
        "video": args.video,
        "loops": args.loops,
        "pictures": pictures,
        "ffmpeg_threads1_decode_fps": ffmpeg_fps,
        "producer_file_fast": {
            "decoded_pictures_per_s": decode_fps,
            "published_frames_per_s": sent_fps,
            "published_frames": sent_frames,
            "cpu_s": file_usage.cpu_s,
            "wall_s": file_usage.wall.as_secs_f64(),
            "peak_rss_mib": file_usage.peak_rss_mib,
            "ratio_to_ffmpeg_decode": decode_fps / ffmpeg_fps,
        },
        "producer_live_720p_10fps": {
            "core_percent": live_core_pct,
            "cpu_s": live_usage.cpu_s,
            "wall_s": live_usage.wall.as_secs_f64(),
            "peak_rss_mib": live_usage.peak_rss_mib,
        },
    });
    crate::write_report(&args.out, &report)
}

/// Frames published, from the producer's `stream finished` summary line (JSON logs).
fn count_sent_frames(log: &str) -> u64 {
    log.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["message"] == "stream finished")
        .filter_map(|v| v["frames_sent"].as_u64())
        .sum()
}
