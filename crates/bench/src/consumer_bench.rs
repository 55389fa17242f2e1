//! The consumer's own cost (annotate + JPEG encode + upload + Kafka), and capture-to-S3 latency.
//!
//! 1. Throughput: the producer publishes bikes.mp4 (10 fps, as fast as it can) to a fresh topic;
//!    then the consumer binary processes that backlog through the real inference service into
//!    the real S3 API. Frames per consumer CPU second is its throughput per core (inference's
//!    CPU is the inference process's, reported beside it); the consumer's histograms give the
//!    time per annotated image, per S3 PUT and per inference request.
//! 2. Latency: the consumer runs first, then the producer reads the RTSP server's bikes stream
//!    live for a while at `--live-fps`; the consumer's `consumer_capture_to_s3_seconds`
//!    histogram (capture time of each frame to its batch's results in S3) is printed whole.
//!    A 25-frame batch waits for its last frame: at 5 fps the first frame is >= 4.8 s old before
//!    the batch can leave the producer, so this figure is mostly batch fill time by design.
//!
//! Runs against the native stack (`scripts/bench.sh consumer` starts it when needed).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use testkit::process::ServiceProcess;

use crate::proc_stats;
use crate::stack::{Services, StackArgs, unique};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Shared models and media.
    #[arg(long, env = "VP_SHARED_DIR", default_value = "../shared")]
    shared_dir: PathBuf,
    /// The video, as a file and as an RTSP mount of the same name.
    #[arg(long, default_value = "bikes")]
    video: String,
    /// Passes over the file for the throughput run.
    #[arg(long, default_value_t = 2)]
    loops: u32,
    /// Seconds of live camera for the latency run.
    #[arg(long, default_value_t = 60)]
    live_seconds: u64,
    /// Frames per second sampled from the live camera.
    #[arg(long, default_value_t = 5.0)]
    live_fps: f64,
    #[command(flatten)]
    stack: StackArgs,
    /// Where to write the figures as JSON.
    #[arg(long, default_value = "target/bench/consumer.json")]
    out: PathBuf,
}

/// Mean of a histogram from its `_sum` and `_count`, in milliseconds.
fn mean_ms(process: &ServiceProcess, histogram: &str) -> f64 {
    let count = process.metric_sum(&format!("{histogram}_count"));
    if count == 0.0 {
        return f64::NAN;
    }
    1000.0 * process.metric_sum(&format!("{histogram}_sum")) / count
}

/// `(upper bound, cumulative count)` of a histogram, from its `_bucket` samples.
pub(crate) fn buckets(metrics: &str, histogram: &str) -> Vec<(f64, f64)> {
    let prefix = format!("{histogram}_bucket{{le=\"");
    metrics
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(&prefix)?;
            let (le, value) = rest.split_once("\"} ")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, value.trim().parse().ok()?))
        })
        .collect()
}

/// The `q` quantile by linear interpolation inside the bucket that holds it.
pub(crate) fn quantile(buckets: &[(f64, f64)], q: f64) -> f64 {
    let total = buckets.last().map_or(0.0, |b| b.1);
    if total == 0.0 {
        return f64::NAN;
    }
    let target = q * total;
    let mut previous = (0.0, 0.0);
    for &(le, cumulative) in buckets {
        if cumulative >= target {
            if le.is_infinite() {
                return previous.0;
            }
            let inside = cumulative - previous.1;
            let fraction = if inside > 0.0 {
                (target - previous.1) / inside
            } else {
                1.0
            };
            return previous.0 + (le - previous.0) * fraction;
        }
        previous = (le, cumulative);
    }
    previous.0
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while !done() {
        if Instant::now() > deadline {
            bail!("{what} did not happen within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

fn video_path(args: &Args) -> PathBuf {
    Path::new(&args.shared_dir)
        .join("media")
        .join(format!("{}.mp4", args.video))
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let services = Services::start(&args.shared_dir)?;

    // 1. Throughput over a backlog.
    let topic = unique("bench-consumer");
    eprintln!(
        "[1/2] publishing {} x{} at 10 fps to {topic}",
        args.video, args.loops
    );
    let source = format!("{}={}", args.video, video_path(&args).display());
    let loops = args.loops.to_string();
    let mut producer = services.producer(
        &args.stack,
        &topic,
        &source,
        &["--file-pace", "fast", "--file-loops", &loops],
    );
    let status = producer.wait(Duration::from_secs(600));
    if !status.success() {
        bail!("producer failed: {status}\n{}", producer.all_logs());
    }
    let finished = producer.logs_with_message("stream finished");
    let batches = finished
        .first()
        .and_then(|l| l["batches_sent"].as_u64())
        .context("producer summary")? as f64;
    let frames = finished
        .first()
        .and_then(|l| l["frames_sent"].as_u64())
        .context("producer summary")? as f64;
    eprintln!("[1/2] consuming {batches} batches ({frames} frames)");
    let inference_cpu_before = proc_stats::cpu_seconds(services.inference.pid()).unwrap_or(0.0);
    let started = Instant::now();
    let consumer = services.consumer(&args.stack, &topic);
    let mut consumer_cpu = 0.0;
    wait_until(
        "the consumer storing the backlog",
        Duration::from_secs(900),
        || {
            consumer_cpu = proc_stats::cpu_seconds(consumer.pid()).unwrap_or(consumer_cpu);
            consumer.metric_sum("consumer_results_uploaded_total") >= batches
        },
    )?;
    let wall = started.elapsed().as_secs_f64();
    let inference_cpu =
        proc_stats::cpu_seconds(services.inference.pid()).unwrap_or(0.0) - inference_cpu_before;
    let peak_rss = proc_stats::peak_rss_mib(consumer.pid()).unwrap_or(f64::NAN);
    let images = consumer.metric_sum("consumer_images_uploaded_total");
    let annotate_ms = mean_ms(&consumer, "consumer_annotate_seconds");
    let put_ms = mean_ms(&consumer, "consumer_s3_put_seconds");
    let request_ms = mean_ms(&consumer, "consumer_inference_request_seconds");
    drop(consumer);

    // 2. Latency with a live camera.
    let topic = unique("bench-consumer-live");
    eprintln!(
        "[2/2] live camera {}/{} at {} fps for {} s",
        args.stack.rtsp_base, args.video, args.live_fps, args.live_seconds
    );
    let consumer = services.consumer(&args.stack, &topic);
    let source = format!("{}={}/{}", args.video, args.stack.rtsp_base, args.video);
    let fps = args.live_fps.to_string();
    let mut producer = services.producer(&args.stack, &topic, &source, &["--frame-rate", &fps]);
    std::thread::sleep(Duration::from_secs(args.live_seconds));
    producer.terminate();
    let live_batches = producer
        .logs_with_message("stream finished")
        .first()
        .and_then(|l| l["batches_sent"].as_u64())
        .unwrap_or(0) as f64;
    wait_until("the consumer catching up", Duration::from_secs(300), || {
        consumer.metric_sum("consumer_results_uploaded_total") >= live_batches
    })?;
    let histogram = buckets(&consumer.get("/metrics"), "consumer_capture_to_s3_seconds");
    let live_frames = histogram.last().map_or(0.0, |b| b.1);

    let per_core = frames / consumer_cpu;
    println!();
    println!(
        "consumer: {} x{} ({frames} frames in {batches} batches), this machine",
        args.video, args.loops
    );
    println!("| measurement | value |");
    println!("|---|---|");
    println!(
        "| end-to-end frames/s through the backlog (inference-bound) | {:.1} |",
        frames / wall
    );
    println!(
        "| consumer CPU seconds per 100 frames | {:.2} |",
        100.0 * consumer_cpu / frames
    );
    println!("| consumer frames/s per core (annotate + encode + upload + Kafka) | {per_core:.0} |");
    println!(
        "| inference CPU seconds per 100 frames | {:.2} |",
        100.0 * inference_cpu / frames
    );
    println!("| annotate + JPEG encode per image (mean) | {annotate_ms:.1} ms |");
    println!("| S3 PUT (mean; {images} images + {batches} JSON) | {put_ms:.1} ms |");
    println!("| inference request, 25 frames (mean) | {request_ms:.0} ms |");
    println!("| consumer peak RSS | {peak_rss:.0} MiB |");
    println!();
    println!(
        "capture-to-S3 latency, live camera at {} fps, {live_frames} frames: p50 {:.2} s, p90 {:.2} s, p99 {:.2} s",
        args.live_fps,
        quantile(&histogram, 0.5),
        quantile(&histogram, 0.9),
        quantile(&histogram, 0.99)
    );
    println!("| <= seconds | frames | cumulative |");
    println!("|---|---|---|");
    let mut previous = 0.0;
    for &(le, cumulative) in &histogram {
        if cumulative > previous {
            let bound = if le.is_infinite() {
                "+Inf".to_string()
            } else {
                format!("{le:.2}")
            };
            println!(
                "| {bound} | {} | {:.0}% |",
                cumulative - previous,
                100.0 * cumulative / live_frames
            );
        }
        previous = cumulative;
    }

    let report = serde_json::json!({
        "video": args.video,
        "throughput": {
            "frames": frames, "batches": batches, "wall_s": wall,
            "end_to_end_fps": frames / wall,
            "consumer_cpu_s": consumer_cpu, "consumer_frames_per_core_s": per_core,
            "inference_cpu_s": inference_cpu,
            "annotate_ms_mean": annotate_ms, "s3_put_ms_mean": put_ms,
            "inference_request_ms_mean": request_ms, "images": images,
            "consumer_peak_rss_mib": peak_rss,
        },
        "latency": {
            "live_fps": args.live_fps, "frames": live_frames,
            "p50_s": quantile(&histogram, 0.5), "p90_s": quantile(&histogram, 0.9),
            "p99_s": quantile(&histogram, 0.99),
            "buckets": histogram.iter().map(|(le, c)| serde_json::json!([if le.is_infinite() { None } else { Some(*le) }, c])).collect::<Vec<_>>(),
        },
    });
    crate::write_report(&args.out, &report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_inside_the_bucket() {
        let text = "h_bucket{le=\"1\"} 0\nh_bucket{le=\"2\"} 10\nh_bucket{le=\"4\"} 20\nh_bucket{le=\"+Inf\"} 20\n";
        let b = buckets(text, "h");
        assert_eq!(b.len(), 4);
        assert!((quantile(&b, 0.5) - 2.0).abs() < 1e-9);
        assert!((quantile(&b, 0.75) - 3.0).abs() < 1e-9);
        assert!((quantile(&b, 0.25) - 1.5).abs() < 1e-9);
    }
}
