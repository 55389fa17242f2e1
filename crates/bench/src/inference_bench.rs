//! Raw `session.run` (the limit) against the inference service over HTTP, same model, same
//! frames, same batch size and threads, one after the other so they never share the cores.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use chrono::{SubsecRound, Utc};
use common::inference_api::FRAME_BATCH_CONTENT_TYPE;
use common::{FRAMES_PER_BATCH, Frame, FrameBatch, StreamId};
use inference::{model, preprocess};

use crate::proc_stats;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Shared models and media.
    #[arg(long, env = "VP_SHARED_DIR", default_value = "../shared")]
    shared_dir: PathBuf,
    /// Video whose frames are sent (sampled at 10 fps, JPEG from ffmpeg).
    #[arg(long, default_value = "bigbuckbunny.mp4")]
    video: String,
    /// Timed 25-frame requests (after one warm-up request).
    #[arg(long, default_value_t = 8)]
    requests: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 2)]
    concurrency: usize,
    /// Frames per model run, for both measurements (the service's default).
    #[arg(long, default_value_t = 8)]
    batch_size: usize,
    /// ONNX Runtime intra-op threads for both (0 = available cores, the service's default).
    #[arg(long, default_value_t = 0)]
    intra_threads: usize,
    /// The service binary (default: `inference` beside this binary).
    #[arg(long)]
    service_bin: Option<PathBuf>,
    /// Where to write the figures as JSON.
    #[arg(long, default_value = "target/bench/inference.json")]
    out: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let threads = if args.intra_threads > 0 {
        args.intra_threads
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    };
    let model_path = args.shared_dir.join("models/yolov8n.onnx");
    let video = args.shared_dir.join("media").join(&args.video);
    eprintln!(
        "[1/3] extracting {FRAMES_PER_BATCH} frames of {} at 10 fps",
        video.display()
    );
    let (jpegs, width, height) = sample_jpegs(&video)?;
    let frames_total = args.requests * FRAMES_PER_BATCH;

    eprintln!(
        "[2/3] raw session.run: {frames_total} frames, batch {}, {threads} threads",
        args.batch_size
    );
    let raw = raw_session_run(&model_path, &jpegs, args.batch_size, threads, args.requests)?;
    let raw_fps = frames_total as f64 / raw.as_secs_f64();

    eprintln!(
        "[3/3] service over HTTP: {} requests of {FRAMES_PER_BATCH} frames, {} in flight",
        args.requests, args.concurrency
    );
    let service_bin = match args.service_bin.clone() {
        Some(p) => p,
        None => std::env::current_exe()?.with_file_name("inference"),
    };
    let body = frame_batch(&jpegs, width, height)?;
    let svc = service_over_http(&service_bin, &model_path, &args, threads, body)?;
    let service_fps = frames_total as f64 / svc.wall.as_secs_f64();
    let ratio = service_fps / raw_fps;

    let mut lat: Vec<f64> = svc
        .latencies
        .iter()
        .map(|d| d.as_secs_f64() * 1000.0)
        .collect();
    lat.sort_by(f64::total_cmp);
    let p50 = inference::stats::percentile(&lat, 0.50);
    let p99 = inference::stats::percentile(&lat, 0.99);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());

    println!();
    println!(
        "inference benchmark: {} ({width}x{height}), yolov8n, batch {}, {threads} intra-op threads, {cores} cores",
        args.video, args.batch_size
    );
    println!("| measurement | frames/s | ratio to limit |");
    println!("|---|---|---|");
    println!("| raw ort session.run on preprocessed tensors (the limit) | {raw_fps:.1} | 1.00 |");
    println!(
        "| service over HTTP, 25-frame binary FrameBatch, {} in flight | {service_fps:.1} | {ratio:.3} |",
        args.concurrency
    );
    println!();
    println!(
        "service: request latency p50 {p50:.0} ms, p99 {p99:.0} ms ({} requests); CPU {:.2} s per 100 frames; peak RSS {:.0} MiB",
        lat.len(),
        svc.cpu_seconds / frames_total as f64 * 100.0,
        svc.peak_rss_mib
    );
    println!(
        "goal: service >= 0.95 x limit: {}",
        if ratio >= 0.95 { "met" } else { "NOT met" }
    );

    let report = serde_json::json!({
        "machine": { "cores": cores },
        "video": args.video, "width": width, "height": height,
        "model": "yolov8n", "batch_size": args.batch_size, "intra_threads": threads,
        "frames": frames_total, "concurrency": args.concurrency,
        "raw_session_run_fps": raw_fps,
        "service_fps": service_fps,
        "ratio": ratio,
        "latency_ms": { "p50": p50, "p99": p99, "samples": lat.len() },
        "service_cpu_seconds": svc.cpu_seconds,
        "service_peak_rss_mib": svc.peak_rss_mib,
    });
    crate::write_report(&args.out, &report)
}

pub(crate) fn sample_jpegs(video: &std::path::Path) -> anyhow::Result<(Vec<Bytes>, u32, u32)> {
    let dir = std::env::temp_dir().join(format!("bench-frames-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir)?;
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(video)
        .args([
            "-an",
            "-vf",
            "fps=10",
            "-frames:v",
            &FRAMES_PER_BATCH.to_string(),
            "-q:v",
            "3",
        ])
        .arg(dir.join("%03d.jpg"))
        .status()
        .context("running ffmpeg (scripts/install-deps.sh installs it)")?;
    if !status.success() {
        bail!("ffmpeg could not extract frames from {}", video.display());
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    files.sort();
    let jpegs = files
        .iter()
        .map(|p| std::fs::read(p).map(Bytes::from))
        .collect::<Result<Vec<_>, _>>()?;
    let _ = std::fs::remove_dir_all(&dir);
    if jpegs.len() != FRAMES_PER_BATCH {
        bail!(
            "{} has fewer than {FRAMES_PER_BATCH} frames at 10 fps",
            video.display()
        );
    }
    let first = preprocess::decode(&jpegs[0], u64::MAX)?;
    Ok((jpegs, first.width, first.height))
}

/// Time spent in `session.run` alone over `rounds` passes of the frames, in chunks of `batch`.
pub(crate) fn raw_session_run(
    model_path: &std::path::Path,
    jpegs: &[Bytes],
    batch: usize,
    threads: usize,
    rounds: usize,
) -> anyhow::Result<Duration> {
    let env = model::init_runtime(&model::default_library_path_or_env())?;
    let (mut session, spec) = model::load(&env, model_path, threads, None)?;
    let per_image = 3 * (spec.input_width * spec.input_height) as usize;
    let mut tensors = Vec::new();
    for group in jpegs.chunks(batch) {
        let mut input = vec![0.0f32; per_image * group.len()];
        for (slot, jpeg) in input.chunks_mut(per_image).zip(group) {
            let img = preprocess::decode(jpeg, u64::MAX)?;
            preprocess::letterbox_into(&img, spec.input_width, spec.input_height, slot)?;
        }
        tensors.push((input, group.len()));
    }
    let (warm, n) = &tensors[0];
    model::run(&mut session, &spec, warm, *n, |_| ())?;
    let mut total = Duration::ZERO;
    for _ in 0..rounds {
        for (input, n) in &tensors {
            let t = Instant::now();
            model::run(&mut session, &spec, input, *n, |out| {
                std::hint::black_box(out.len())
            })?;
            total += t.elapsed();
        }
    }
    Ok(total)
}

fn frame_batch(jpegs: &[Bytes], width: u32, height: u32) -> anyhow::Result<Vec<u8>> {
    let now = Utc::now().trunc_subsecs(6);
    let batch = FrameBatch {
        stream_id: StreamId::new("bench")?,
        producer_session: uuid::Uuid::new_v4(),
        batch_seq: 0,
        partial: false,
        frames: jpegs
            .iter()
            .enumerate()
            .map(|(i, j)| Frame {
                seq: i as u64,
                pts_us: i as i64 * 100_000,
                captured_at: now,
                width,
                height,
                jpeg: j.clone(),
            })
            .collect(),
    };
    Ok(common::wire::encode(&batch)?)
}

struct ServiceRun {
    wall: Duration,
    latencies: Vec<Duration>,
    cpu_seconds: f64,
    peak_rss_mib: f64,
}

fn service_over_http(
    bin: &std::path::Path,
    model_path: &std::path::Path,
    args: &Args,
    threads: usize,
    body: Vec<u8>,
) -> anyhow::Result<ServiceRun> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut child = Command::new(bin)
        .args(["--listen", &format!("127.0.0.1:{port}"), "--model"])
        .arg(model_path)
        .args([
            "--batch-size",
            &args.batch_size.to_string(),
            "--intra-threads",
            &threads.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| {
            format!(
                "starting {} (build it with cargo build --release -p inference)",
                bin.display()
            )
        })?;
    let pid = child.id();
    let base = format!("http://127.0.0.1:{port}");
    let runtime = tokio::runtime::Runtime::new()?;
    let result = runtime.block_on(async {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(300))
            .build()?;
        wait_ready(&http, &base).await?;
        send(&http, &base, body.clone()).await?; // warm-up
        let cpu0 = proc_stats::cpu_seconds(pid).unwrap_or(0.0);
        let start = Instant::now();
        let mut latencies = Vec::new();
        let mut remaining = args.requests;
        while remaining > 0 {
            let n = remaining.min(args.concurrency.max(1));
            let handles: Vec<_> = (0..n)
                .map(|_| {
                    let (http, base, body) = (http.clone(), base.clone(), body.clone());
                    tokio::spawn(async move {
                        let t = Instant::now();
                        send(&http, &base, body).await.map(|()| t.elapsed())
                    })
                })
                .collect();
            for h in handles {
                latencies.push(h.await??);
            }
            remaining -= n;
            eprintln!(
                "      {}/{} requests",
                args.requests - remaining,
                args.requests
            );
        }
        let wall = start.elapsed();
        let cpu_seconds = proc_stats::cpu_seconds(pid).unwrap_or(0.0) - cpu0;
        let peak_rss_mib = proc_stats::peak_rss_mib(pid).unwrap_or(0.0);
        anyhow::Ok(ServiceRun {
            wall,
            latencies,
            cpu_seconds,
            peak_rss_mib,
        })
    });
    let _ = child.kill();
    let _ = child.wait();
    result
}

async fn wait_ready(http: &reqwest::Client, base: &str) -> anyhow::Result<()> {
    for _ in 0..600 {
        if let Ok(r) = http.get(format!("{base}/ready")).send().await
            && r.status().is_success()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("the service at {base} was not ready within 60 s")
}

async fn send(http: &reqwest::Client, base: &str, body: Vec<u8>) -> anyhow::Result<()> {
    let resp = http
        .post(format!("{base}/predict"))
        .header("content-type", FRAME_BATCH_CONTENT_TYPE)
        .body(body)
        .send()
        .await?;
    if !resp.status().is_success() {
        bail!(
            "service answered {}: {}",
            resp.status(),
            resp.text().await.unwrap_or_default()
        );
    }
    Ok(())
}
