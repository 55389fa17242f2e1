//! Raw `session.run` (the limit) against the inference service over HTTP, same model, same
//! frames, same batch size and threads.
//!
//! The two are measured in alternating rounds (limit then service, service then limit, ...)
//! and the ratio is taken per round, so that load arriving on a shared machine in the middle of
//! a run slows both sides of a ratio instead of one; the report gives the median ratio and the
//! spread. The two never run at the same time: each idles while the other is timed.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use chrono::{SubsecRound, Utc};
use common::inference_api::FRAME_BATCH_CONTENT_TYPE;
use common::{FRAMES_PER_BATCH, Frame, FrameBatch, StreamId};
use inference::{model, preprocess};
use ort::session::Session;

use crate::proc_stats;
use testkit::process::ServiceProcess;
use testkit::servers::free_port;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Shared models and media.
    #[arg(long, env = "VP_SHARED_DIR", default_value = "../shared")]
    shared_dir: PathBuf,
    /// Video whose frames are sent (sampled at 10 fps, JPEG from ffmpeg): by default the demo
    /// camera's (640x272); `bigbuckbunny.mp4` gives 720p frames, four times the decoding.
    #[arg(long, default_value = "bikes.mp4")]
    video: String,
    /// Alternating rounds; each times the limit and the service once.
    /// Short rounds follow the machine's load more closely than long ones.
    #[arg(long, default_value_t = 20)]
    rounds: usize,
    /// 25-frame requests per round (the limit runs the same frames), after one warm-up request.
    #[arg(long, default_value_t = 2)]
    requests: usize,
    /// Requests kept in flight at once (a new one is sent as soon as one is answered, as the
    /// consumer does).
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
    if args.rounds == 0 || args.requests == 0 {
        bail!("--rounds and --requests must be at least 1");
    }
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
    let frames_per_pass = args.requests * FRAMES_PER_BATCH;

    eprintln!(
        "[2/3] loading the model in this process (batch {}, {threads} threads) and starting the service",
        args.batch_size
    );
    let mut limit = RawLimit::load(&model_path, &jpegs, args.batch_size, threads)?;
    let service_bin = match args.service_bin.clone() {
        Some(p) => p,
        None => crate::stack::service_dir()?.join("inference"),
    };
    let body = frame_batch(&jpegs, width, height)?;
    let service = ServiceUnderTest::start(&service_bin, &model_path, &args, threads, body)?;

    eprintln!(
        "[3/3] {} alternating rounds of {frames_per_pass} frames: raw session.run, and {} requests of {FRAMES_PER_BATCH} frames with {} in flight",
        args.rounds, args.requests, args.concurrency
    );
    let mut rounds = Vec::with_capacity(args.rounds);
    let mut latencies = Vec::new();
    let cpu0 = service.cpu_seconds();
    for round in 0..args.rounds {
        // alternate which goes first, so that a trend in the machine's load favours neither
        let (raw, svc) = if round % 2 == 0 {
            let raw = limit.time(args.requests)?;
            (raw, service.time(args.requests, args.concurrency)?)
        } else {
            let svc = service.time(args.requests, args.concurrency)?;
            (limit.time(args.requests)?, svc)
        };
        let r = Round {
            limit_fps: frames_per_pass as f64 / raw.as_secs_f64(),
            service_fps: frames_per_pass as f64 / svc.wall.as_secs_f64(),
            service_model_fps: frames_per_pass as f64 / svc.model.as_secs_f64(),
            worker_busy: svc.model.as_secs_f64() / svc.wall.as_secs_f64(),
        };
        eprintln!(
            "      round {}/{}: limit {:.2} fps, service {:.2} fps, ratio {:.3} (model inside the service {:.2} fps, worker busy {:.1}%)",
            round + 1,
            args.rounds,
            r.limit_fps,
            r.service_fps,
            r.ratio(),
            r.service_model_fps,
            r.worker_busy * 100.0
        );
        rounds.push(r);
        latencies.extend(svc.latencies);
    }
    let cpu_seconds = service.cpu_seconds() - cpu0;
    let peak_rss_mib = service.peak_rss_mib();
    drop(service);

    let quantile = |f: fn(&Round) -> f64, q: f64| {
        let mut v: Vec<f64> = rounds.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        inference::stats::percentile(&v, q)
    };
    let (raw_fps, service_fps, ratio) = (
        quantile(|r| r.limit_fps, 0.5),
        quantile(|r| r.service_fps, 0.5),
        quantile(Round::ratio, 0.5),
    );
    let (ratio_q1, ratio_q3) = (quantile(Round::ratio, 0.25), quantile(Round::ratio, 0.75));
    let frames_total = frames_per_pass * args.rounds;

    let mut lat: Vec<f64> = latencies.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    lat.sort_by(f64::total_cmp);
    let p50 = inference::stats::percentile(&lat, 0.50);
    let p99 = inference::stats::percentile(&lat, 0.99);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());

    println!();
    println!(
        "inference benchmark: {} ({width}x{height}), yolov8n, batch {}, {threads} intra-op threads, {cores} cores",
        args.video, args.batch_size
    );
    println!(
        "medians of {} alternating rounds of {frames_per_pass} frames each",
        args.rounds
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
        "ratio: median {ratio:.3}, middle half of the rounds {ratio_q1:.3} to {ratio_q3:.3}; limit {:.1} to {:.1} fps across rounds",
        quantile(|r| r.limit_fps, 0.0),
        quantile(|r| r.limit_fps, 1.0)
    );
    println!(
        "where the difference goes (medians): session.run inside the service {:.1} fps ({:.3} of the limit); its model worker busy {:.1}% of the time",
        quantile(|r| r.service_model_fps, 0.5),
        quantile(|r| r.service_model_fps / r.limit_fps, 0.5),
        quantile(|r| r.worker_busy, 0.5) * 100.0
    );
    let pre_ms = limit.preprocess_per_frame.as_secs_f64() * 1000.0;
    // The service must also decode and letterbox every frame; if that work could only take
    // CPU time from a model that keeps every core busy, this is the best ratio there is.
    let ceiling = 1.0 / (1.0 + limit.preprocess_per_frame.as_secs_f64() * raw_fps / cores as f64);
    println!(
        "pre-processing (decode + letterbox) {pre_ms:.1} ms per frame on one core: taken from a model that keeps all {cores} cores busy, that alone caps the ratio at {ceiling:.3}"
    );
    println!("ratio per round: {}", {
        let v: Vec<String> = rounds.iter().map(|r| format!("{:.3}", r.ratio())).collect();
        v.join(", ")
    });
    println!(
        "service: request latency p50 {p50:.0} ms, p99 {p99:.0} ms ({} requests); CPU {:.2} s per 100 frames; peak RSS {peak_rss_mib:.0} MiB",
        lat.len(),
        cpu_seconds / frames_total as f64 * 100.0,
    );
    println!(
        "goal: service >= 0.95 x limit (median ratio): {}",
        if ratio >= 0.95 { "met" } else { "NOT met" }
    );

    let report = serde_json::json!({
        "machine": { "cores": cores },
        "video": args.video, "width": width, "height": height,
        "model": "yolov8n", "batch_size": args.batch_size, "intra_threads": threads,
        "rounds": args.rounds, "frames_per_round": frames_per_pass,
        "frames": frames_total, "concurrency": args.concurrency,
        "raw_session_run_fps": raw_fps,
        "service_fps": service_fps,
        "ratio": ratio,
        "ratio_q1": ratio_q1,
        "ratio_q3": ratio_q3,
        "preprocess_ms_per_frame": pre_ms,
        "ratio_ceiling_from_preprocessing": ceiling,
        "service_model_fps": quantile(|r| r.service_model_fps, 0.5),
        "service_worker_busy": quantile(|r| r.worker_busy, 0.5),
        "per_round": rounds.iter().map(|r| serde_json::json!({
            "limit_fps": r.limit_fps, "service_fps": r.service_fps, "ratio": r.ratio(),
            "service_model_fps": r.service_model_fps, "worker_busy": r.worker_busy,
        })).collect::<Vec<_>>(),
        "latency_ms": { "p50": p50, "p99": p99, "samples": lat.len() },
        "service_cpu_seconds": cpu_seconds,
        "service_peak_rss_mib": peak_rss_mib,
    });
    crate::write_report(&args.out, &report)
}

struct Round {
    limit_fps: f64,
    service_fps: f64,
    /// Frames per second of `session.run` inside the service (its worker's own timing).
    service_model_fps: f64,
    /// Share of the service's wall time its model worker was running the model (its only
    /// work: post-processing runs elsewhere).
    worker_busy: f64,
}

impl Round {
    fn ratio(&self) -> f64 {
        self.service_fps / self.limit_fps
    }
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

/// Raw `session.run` on tensors preprocessed once, in this process: the limit.
pub(crate) struct RawLimit {
    // the session before the environment, so that it is dropped first
    session: Session,
    spec: model::ModelSpec,
    /// One tensor per model run of a 25-frame request: (input, frames).
    tensors: Vec<(Vec<f32>, usize)>,
    /// Decode + letterbox of one frame on one thread (the best of three passes): the work the
    /// service does on top of the limit.
    pub(crate) preprocess_per_frame: Duration,
    _env: ort::environment::Environment,
}

impl RawLimit {
    /// Loads the model, preprocesses `jpegs` into chunks of `batch` and runs one warm-up.
    pub(crate) fn load(
        model_path: &std::path::Path,
        jpegs: &[Bytes],
        batch: usize,
        threads: usize,
    ) -> anyhow::Result<Self> {
        let env = model::init_runtime(&model::default_library_path_or_env())?;
        let (mut session, spec) = model::load(&env, model_path, threads, None)?;
        let per_image = 3 * (spec.input_width * spec.input_height) as usize;
        let mut tensors: Vec<(Vec<f32>, usize)> = jpegs
            .chunks(batch.max(1))
            .map(|group| (vec![0.0f32; per_image * group.len()], group.len()))
            .collect();
        let mut best = Duration::MAX;
        for _ in 0..3 {
            let t = Instant::now();
            for ((input, _), group) in tensors.iter_mut().zip(jpegs.chunks(batch.max(1))) {
                for (slot, jpeg) in input.chunks_mut(per_image).zip(group) {
                    let img = preprocess::decode(jpeg, u64::MAX)?;
                    preprocess::letterbox_into(&img, spec.input_width, spec.input_height, slot)?;
                }
            }
            best = best.min(t.elapsed());
        }
        let Some((warm, n)) = tensors.first() else {
            bail!("no frames to run");
        };
        model::run(&mut session, &spec, warm, *n)?;
        Ok(Self {
            session,
            spec,
            tensors,
            preprocess_per_frame: best / jpegs.len().max(1) as u32,
            _env: env,
        })
    }

    /// Time spent in `session.run` alone over `passes` passes of the frames.
    pub(crate) fn time(&mut self, passes: usize) -> anyhow::Result<Duration> {
        let mut total = Duration::ZERO;
        for _ in 0..passes {
            for (input, n) in &self.tensors {
                let t = Instant::now();
                let out = model::run(&mut self.session, &self.spec, input, *n)?;
                std::hint::black_box(out.data().len());
                total += t.elapsed();
            }
        }
        Ok(total)
    }
}

fn frame_batch(jpegs: &[Bytes], width: u32, height: u32) -> anyhow::Result<Bytes> {
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
    Ok(Bytes::from(common::wire::encode(&batch)?))
}

/// The real service binary on a free loopback port, ready and warmed up; killed on drop (by
/// its `ServiceProcess`).
struct ServiceUnderTest {
    process: ServiceProcess,
    base: String,
    body: Bytes,
    http: reqwest::Client,
    runtime: tokio::runtime::Runtime,
}

struct ServicePass {
    wall: Duration,
    latencies: Vec<Duration>,
    /// The service's own account of its model worker's `session.run` time, summed over the
    /// requests (one worker, so this is the time it was busy).
    model: Duration,
}

impl ServiceUnderTest {
    fn start(
        bin: &std::path::Path,
        model_path: &std::path::Path,
        args: &Args,
        threads: usize,
        body: Bytes,
    ) -> anyhow::Result<Self> {
        if !bin.is_file() {
            bail!(
                "{} not found (build it with cargo build --release -p inference)",
                bin.display()
            );
        }
        let port = free_port();
        let (batch, threads) = (args.batch_size.to_string(), threads.to_string());
        let mut process = ServiceProcess::start(
            bin,
            &[
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--model",
                &model_path.to_string_lossy(),
                "--batch-size",
                &batch,
                "--intra-threads",
                &threads,
            ],
            &[],
            port,
        );
        process.wait_http_ok("/ready", Duration::from_secs(60));
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(300))
            .build()?;
        let service = Self {
            process,
            base: format!("http://127.0.0.1:{port}"),
            body,
            http,
            runtime: tokio::runtime::Runtime::new()?,
        };
        service
            .runtime
            .block_on(send(&service.http, &service.base, service.body.clone()))?; // warm-up
        Ok(service)
    }

    /// Sends `requests` requests, keeping `concurrency` in flight, and times them.
    fn time(&self, requests: usize, concurrency: usize) -> anyhow::Result<ServicePass> {
        self.runtime.block_on(async {
            let mut in_flight = tokio::task::JoinSet::new();
            let spawn = |set: &mut tokio::task::JoinSet<_>| {
                let (http, base, body) = (self.http.clone(), self.base.clone(), self.body.clone());
                set.spawn(async move {
                    let t = Instant::now();
                    send(&http, &base, body).await.map(|w| (t.elapsed(), w))
                });
            };
            let start = Instant::now();
            let mut sent = 0;
            while sent < requests.min(concurrency.max(1)) {
                spawn(&mut in_flight);
                sent += 1;
            }
            let mut latencies = Vec::with_capacity(requests);
            let mut model = Duration::ZERO;
            while let Some(done) = in_flight.join_next().await {
                let (latency, w) = done??;
                latencies.push(latency);
                model += w;
                if sent < requests {
                    spawn(&mut in_flight);
                    sent += 1;
                }
            }
            Ok(ServicePass {
                wall: start.elapsed(),
                latencies,
                model,
            })
        })
    }

    fn cpu_seconds(&self) -> f64 {
        proc_stats::cpu_seconds(self.process.pid()).unwrap_or(0.0)
    }

    fn peak_rss_mib(&self) -> f64 {
        proc_stats::peak_rss_mib(self.process.pid()).unwrap_or(0.0)
    }
}

/// Sends one request; returns the `session.run` time the service reports for it.
async fn send(http: &reqwest::Client, base: &str, body: Bytes) -> anyhow::Result<Duration> {
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
    let answer: common::inference_api::PredictResponse = resp.json().await?;
    let timings = answer.timings.context("the service sent no timings")?;
    Ok(Duration::from_secs_f64(timings.inference_ms / 1000.0))
}
