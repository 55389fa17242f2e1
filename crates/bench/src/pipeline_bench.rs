//! The whole pipeline on this machine against the model's limit, measured in the same run.
//!
//! 1. The limit: raw ONNX Runtime `session.run` frames per second on preprocessed frames of the
//!    same video, same model and threads (as `bench inference`).
//! 2. Saturation: inference, consumer and a producer reading one live RTSP stream at every
//!    frame it sends (`--frame-rate` above the camera's), all on this machine with the broker,
//!    S3 API and RTSP server. When the pipeline is slower than the camera, Kafka holds the rest
//!    (nothing is dropped); frames stored in S3 per second over a window after warm-up is the
//!    end-to-end rate, compared with the limit. CPU of each service over the window, peak RSS.
//! 3. Latency at a rate the machine sustains (`--live-fps`): capture-to-S3 p50/p99 per frame.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::bail;
use testkit::process::ServiceProcess;

use crate::stack::{Services, StackArgs, unique};
use crate::{consumer_bench, inference_bench, proc_stats};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(long, env = "VP_SHARED_DIR", default_value = "../shared")]
    shared_dir: PathBuf,
    /// The video: a file in the shared media and an RTSP mount of the same stem.
    #[arg(long, default_value = "bikes")]
    video: String,
    /// Seconds of warm-up before the saturation window.
    #[arg(long, default_value_t = 20)]
    warmup_seconds: u64,
    /// Seconds of the saturation window.
    #[arg(long, default_value_t = 60)]
    window_seconds: u64,
    /// Frames per second sampled for the latency run.
    #[arg(long, default_value_t = 5.0)]
    live_fps: f64,
    /// Seconds of the latency run.
    #[arg(long, default_value_t = 40)]
    live_seconds: u64,
    #[command(flatten)]
    stack: StackArgs,
    #[arg(long, default_value = "target/bench/pipeline.json")]
    out: PathBuf,
}

/// One run of the three services on a fresh topic and group.
struct Pipeline {
    services: Services,
    consumer: ServiceProcess,
    producer: ServiceProcess,
}

impl Pipeline {
    fn start(args: &Args, frame_rate: f64) -> anyhow::Result<Self> {
        let services = Services::start(&args.shared_dir)?;
        let topic = unique("bench-pipeline");
        let consumer = services.consumer(&args.stack, &topic);
        let source = format!("{}={}/{}", args.video, args.stack.rtsp_base, args.video);
        let fps = frame_rate.to_string();
        let producer = services.producer(&args.stack, &topic, &source, &["--frame-rate", &fps]);
        Ok(Self {
            services,
            consumer,
            producer,
        })
    }

    fn stored_frames(&self) -> f64 {
        self.consumer.metric_sum("consumer_frames_total")
    }

    fn cpu(&self) -> [f64; 3] {
        [&self.services.inference, &self.consumer, &self.producer]
            .map(|p| proc_stats::cpu_seconds(p.pid()).unwrap_or(f64::NAN))
    }

    fn peak_rss(&self) -> [f64; 3] {
        [&self.services.inference, &self.consumer, &self.producer]
            .map(|p| proc_stats::peak_rss_mib(p.pid()).unwrap_or(f64::NAN))
    }
}

fn video_file(args: &Args) -> PathBuf {
    Path::new(&args.shared_dir)
        .join("media")
        .join(format!("{}.mp4", args.video))
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    eprintln!("[1/3] the limit: raw session.run on {} frames", args.video);
    let (jpegs, width, height) = inference_bench::sample_jpegs(&video_file(&args))?;
    let model = args.shared_dir.join("models/yolov8n.onnx");
    let rounds = 4;
    let raw = inference_bench::RawLimit::load(&model, &jpegs, 8, threads)?.time(rounds)?;
    let limit_fps = (rounds * jpegs.len()) as f64 / raw.as_secs_f64();
    eprintln!("      {limit_fps:.1} frames/s");

    eprintln!(
        "[2/3] saturation: every frame of {}/{} through the pipeline; {} s warm-up, {} s window",
        args.stack.rtsp_base, args.video, args.warmup_seconds, args.window_seconds
    );
    let pipeline = Pipeline::start(&args, 240.0)?;
    let started = Instant::now();
    while pipeline.stored_frames() == 0.0 {
        if started.elapsed() > Duration::from_secs(180) {
            bail!(
                "no frame stored within 180 s; consumer logs:\n{}",
                pipeline.consumer.all_logs()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(args.warmup_seconds));
    let (f0, c0, t0) = (pipeline.stored_frames(), pipeline.cpu(), Instant::now());
    let published0 = pipeline.producer.metric_sum("producer_frames_sent_total");
    std::thread::sleep(Duration::from_secs(args.window_seconds));
    let (f1, c1, window) = (
        pipeline.stored_frames(),
        pipeline.cpu(),
        t0.elapsed().as_secs_f64(),
    );
    let published1 = pipeline.producer.metric_sum("producer_frames_sent_total");
    let peak = pipeline.peak_rss();
    let e2e_fps = (f1 - f0) / window;
    let camera_fps = (published1 - published0) / window;
    let cpu_pct: Vec<f64> = c0
        .iter()
        .zip(&c1)
        .map(|(a, b)| 100.0 * (b - a) / window)
        .collect();
    drop(pipeline);

    eprintln!(
        "[3/3] latency: {} fps for {} s",
        args.live_fps, args.live_seconds
    );
    let mut pipeline = Pipeline::start(&args, args.live_fps)?;
    std::thread::sleep(Duration::from_secs(args.live_seconds));
    pipeline.producer.terminate();
    let sent = pipeline
        .producer
        .logs_with_message("stream finished")
        .first()
        .and_then(|l| l["frames_sent"].as_u64())
        .unwrap_or(0) as f64;
    let deadline = Instant::now() + Duration::from_secs(300);
    while pipeline.stored_frames() < sent && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let histogram = consumer_bench::buckets(
        &pipeline.consumer.get("/metrics"),
        "consumer_capture_to_s3_seconds",
    );
    let (p50, p99) = (
        consumer_bench::quantile(&histogram, 0.5),
        consumer_bench::quantile(&histogram, 0.99),
    );
    drop(pipeline);

    let ratio = e2e_fps / limit_fps;
    println!();
    println!(
        "pipeline benchmark: one RTSP stream of {} ({width}x{height}), yolov8n, {threads} cores, everything on this machine",
        args.video
    );
    println!("| measurement | frames/s | ratio to limit |");
    println!("|---|---|---|");
    println!("| raw ort session.run (the limit) | {limit_fps:.1} | 1.00 |");
    println!(
        "| end to end, camera -> S3, saturated ({window:.0} s window; camera sent {camera_fps:.1}) | {e2e_fps:.1} | {ratio:.2} |"
    );
    println!();
    println!("| service | CPU (% of one core) | peak RSS MiB |");
    println!("|---|---|---|");
    for (i, name) in ["inference", "consumer", "producer"].iter().enumerate() {
        println!("| {name} | {:.0} | {:.0} |", cpu_pct[i], peak[i]);
    }
    println!();
    println!(
        "capture-to-S3 latency at {} fps: p50 {p50:.2} s, p99 {p99:.2} s (a 25-frame batch takes {:.1} s to fill)",
        args.live_fps,
        25.0 / args.live_fps
    );
    println!(
        "goal: end to end >= 0.85 x limit: {}",
        if ratio >= 0.85 { "met" } else { "NOT met" }
    );

    let report = serde_json::json!({
        "machine": { "cores": threads },
        "video": args.video, "width": width, "height": height,
        "limit_fps": limit_fps, "end_to_end_fps": e2e_fps, "ratio": ratio,
        "camera_fps": camera_fps, "window_s": window,
        "cpu_percent": { "inference": cpu_pct[0], "consumer": cpu_pct[1], "producer": cpu_pct[2] },
        "peak_rss_mib": { "inference": peak[0], "consumer": peak[1], "producer": peak[2] },
        "latency": { "fps": args.live_fps, "p50_s": p50, "p99_s": p99 },
    });
    crate::write_report(&args.out, &report)
}
