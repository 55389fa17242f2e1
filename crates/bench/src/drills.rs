//! Fault drills: the whole pipeline on servers of its own while one part fails mid-stream, and
//! what it cost: frames published, stored, lost, stored twice, and the time to recover.
//!
//! Each drill runs a fresh pipeline: a broker (tansu, its data in an S3 API of its own so that
//! it survives a restart), an S3 API for the results, the inference service, a consumer and a
//! producer reading `bikes.mp4` in real time (six loops, 5 fps: 300 frames over a minute) or,
//! for the camera drill, the same video from an RTSP server. Once the first batch is stored, the
//! fault starts and lasts `--fault-seconds`; then the drill waits until the producer is done
//! and the consumer has stored everything it will.
//!
//! - frames published: `producer_frames_sent_total`; frames stored: distinct frame sequence
//!   numbers in the results JSON in S3; lost: sampled frames not stored (for a file, the
//!   target is 0; for a camera, every frame it sampled but did not store must be one the
//!   producer counted as dropped, with its reason);
//! - stored twice (the issue's "duplicate S3 keys"): frames present under more than one results
//!   key (keys are deterministic, so a redelivered batch overwrites itself; a frame under two
//!   keys would be a real duplicate);
//! - time to recover: from the end of the fault to the next batch stored.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use testkit::process::ServiceProcess;
use testkit::servers::{PrivateBroker, PrivateRtspServer, PrivateS3, signal};

use crate::stack::{Services, StackArgs, unique};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(long, env = "VP_SHARED_DIR", default_value = "../shared")]
    shared_dir: PathBuf,
    /// Only these drills (repeatable): inference-kill, consumer-kill, s3-freeze,
    /// broker-freeze, broker-restart, camera-restart.
    #[arg(long = "drill")]
    only: Vec<String>,
    /// How long each fault lasts.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    fault: Duration,
    #[arg(long, default_value = "target/bench/drills.json")]
    out: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    InferenceKill,
    ConsumerKill,
    S3Freeze,
    BrokerFreeze,
    BrokerRestart,
    CameraRestart,
}

impl Fault {
    const ALL: [Fault; 6] = [
        Fault::InferenceKill,
        Fault::ConsumerKill,
        Fault::S3Freeze,
        Fault::BrokerFreeze,
        Fault::BrokerRestart,
        Fault::CameraRestart,
    ];

    fn name(self) -> &'static str {
        match self {
            Fault::InferenceKill => "inference-kill",
            Fault::ConsumerKill => "consumer-kill",
            Fault::S3Freeze => "s3-freeze",
            Fault::BrokerFreeze => "broker-freeze",
            Fault::BrokerRestart => "broker-restart",
            Fault::CameraRestart => "camera-restart",
        }
    }

    fn what(self) -> &'static str {
        match self {
            Fault::InferenceKill => "inference SIGKILLed, restarted after the fault",
            Fault::ConsumerKill => "consumer SIGKILLed, restarted after the fault",
            Fault::S3Freeze => "S3 API frozen (SIGSTOP), then thawed",
            Fault::BrokerFreeze => "broker frozen (SIGSTOP), then thawed",
            Fault::BrokerRestart => "broker stopped, started again on its storage",
            Fault::CameraRestart => "RTSP server stopped, started again (live camera)",
        }
    }
}

/// What one drill measured.
#[derive(Debug, serde::Serialize)]
struct Outcome {
    drill: &'static str,
    fault: &'static str,
    live: bool,
    frames_sampled: u64,
    frames_published: u64,
    frames_stored: u64,
    frames_lost: u64,
    frames_dropped_counted: u64,
    /// The producer's `reason=frames` pairs, for the camera drill's dropped frames.
    dropped_by_reason: String,
    frames_stored_twice: u64,
    recover_seconds: Option<f64>,
}

/// The servers and services of one drill.
struct Rig {
    _broker_storage: PrivateS3,
    broker: PrivateBroker,
    results: PrivateS3,
    camera: Option<PrivateRtspServer>,
    services: Services,
    stack: StackArgs,
    topic: String,
    group: String,
    stream: String,
    consumer: ServiceProcess,
    producer: ServiceProcess,
}

const FRAME_RATE: &str = "5";

impl Rig {
    async fn start(args: &Args, fault: Fault) -> anyhow::Result<Self> {
        let broker_storage = PrivateS3::start();
        let broker = PrivateBroker::start_persistent(&broker_storage.endpoint());
        let results = PrivateS3::start();
        let stack = StackArgs {
            brokers: broker.address(),
            s3_endpoint: results.endpoint(),
            bucket: unique("drill"),
            rtsp_base: String::new(),
        };
        let s3 = testkit::s3::client(&stack.s3_endpoint);
        testkit::s3::create_bucket(&s3, &stack.bucket)
            .await
            .map_err(anyhow::Error::msg)?;
        let services = Services::start(&args.shared_dir)?;
        let topic = unique("drill");
        let group = unique("drill-group");
        let stream = unique(fault.name());
        let consumer = services.consumer_in_group(&stack, &topic, &group);
        let live = fault == Fault::CameraRestart;
        let camera = live.then(PrivateRtspServer::start);
        let source = match &camera {
            Some(camera) => format!("{stream}={}", camera.url("bikes")),
            None => format!(
                "{stream}={}",
                args.shared_dir.join("media/bikes.mp4").display()
            ),
        };
        let mut extra = vec!["--frame-rate", FRAME_RATE];
        if !live {
            extra.extend(["--file-loops", "6"]);
        }
        let producer = services.producer(&stack, &topic, &source, &extra);
        Ok(Self {
            _broker_storage: broker_storage,
            broker,
            results,
            camera,
            services,
            stack,
            topic,
            group,
            stream,
            consumer,
            producer,
        })
    }

    fn batches_stored(&self) -> f64 {
        self.consumer
            .metric(r#"consumer_batches_total{outcome="stored"}"#)
            .max(0.0)
    }

    /// Distinct frames stored, and frames present in more than one results document.
    async fn stored_frames(&self) -> anyhow::Result<(u64, u64)> {
        let s3 = testkit::s3::client(&self.stack.s3_endpoint);
        let prefix = format!("results/{}/", self.stream);
        let mut seen: HashMap<u64, u32> = HashMap::new();
        let mut token = None;
        loop {
            let listed = s3
                .list_objects_v2()
                .bucket(&self.stack.bucket)
                .prefix(&prefix)
                .set_continuation_token(token)
                .send()
                .await
                .context("listing results")?;
            for object in listed.contents() {
                let Some(key) = object.key() else { continue };
                let body = s3
                    .get_object()
                    .bucket(&self.stack.bucket)
                    .key(key)
                    .send()
                    .await
                    .context("reading a result")?
                    .body
                    .collect()
                    .await
                    .context("reading a result")?
                    .into_bytes();
                let document: serde_json::Value = serde_json::from_slice(&body)?;
                for frame in document["frames"].as_array().into_iter().flatten() {
                    if let Some(seq) = frame["seq"].as_u64() {
                        *seen.entry(seq).or_default() += 1;
                    }
                }
            }
            token = listed.next_continuation_token().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        let twice = seen.values().filter(|&&n| n > 1).count() as u64;
        Ok((seen.len() as u64, twice))
    }

    /// A figure of the producer's `stream finished` line (its metrics are gone once it exits).
    fn finished_figure(&self, field: &str) -> u64 {
        self.producer
            .logs_with_message("stream finished")
            .first()
            .and_then(|line| line[field].as_u64())
            .unwrap_or(0)
    }

    fn restart_consumer(&mut self) {
        self.consumer = self
            .services
            .consumer_in_group(&self.stack, &self.topic, &self.group);
    }

    /// Starts the fault; returns when it is over (the part is back).
    fn inflict(&mut self, fault: Fault, duration: Duration) -> anyhow::Result<()> {
        match fault {
            Fault::InferenceKill => {
                self.services.kill_inference();
                std::thread::sleep(duration);
                self.services.restart_inference()?;
            }
            Fault::ConsumerKill => {
                signal(self.consumer.pid(), "KILL");
                std::thread::sleep(duration);
                self.restart_consumer();
            }
            Fault::S3Freeze => {
                self.results.freeze();
                std::thread::sleep(duration);
                self.results.thaw();
            }
            Fault::BrokerFreeze => {
                self.broker.freeze();
                std::thread::sleep(duration);
                self.broker.thaw();
            }
            Fault::BrokerRestart => {
                self.broker.stop();
                std::thread::sleep(duration);
                self.broker.restart();
            }
            Fault::CameraRestart => {
                let camera = self
                    .camera
                    .as_mut()
                    .context("the camera drill has a camera")?;
                camera.stop();
                std::thread::sleep(duration);
                camera.restart();
            }
        }
        Ok(())
    }
}

async fn drill(args: &Args, fault: Fault) -> anyhow::Result<Outcome> {
    eprintln!("drill {}: {}", fault.name(), fault.what());
    let mut rig = Rig::start(args, fault).await?;
    let live = fault == Fault::CameraRestart;
    let deadline = Instant::now() + Duration::from_secs(120);
    while rig.batches_stored() < 1.0 {
        if Instant::now() > deadline {
            bail!("{}: no batch stored within 120 s", fault.name());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    rig.inflict(fault, args.fault)?;
    let fault_over = Instant::now();
    let stored_at_end = rig.batches_stored();
    let mut recovered = None;

    // A camera never ends: give it as long as a file takes, then stop it.
    let run_until = Instant::now() + Duration::from_secs(if live { 45 } else { 240 });
    let mut producer_done = false;
    while Instant::now() < run_until && !producer_done {
        if recovered.is_none() && rig.batches_stored() > stored_at_end {
            recovered = Some(fault_over.elapsed().as_secs_f64());
        }
        producer_done = rig.producer.try_exited();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    if !producer_done {
        rig.producer.terminate();
    }
    let sampled = rig.finished_figure("frames_sampled");
    let published = rig.finished_figure("frames_sent");
    let dropped = rig.finished_figure("frames_dropped");
    let dropped_by_reason = rig
        .producer
        .logs_with_message("stream finished")
        .first()
        .and_then(|line| {
            line["frames_dropped_by_reason"]
                .as_str()
                .map(str::to_string)
        })
        .unwrap_or_default();
    // The consumer catches up with what was published.
    let settle = Instant::now() + Duration::from_secs(180);
    let mut last = (0, 0);
    while Instant::now() < settle {
        if recovered.is_none() && rig.batches_stored() > stored_at_end {
            recovered = Some(fault_over.elapsed().as_secs_f64());
        }
        last = rig.stored_frames().await?;
        if last.0 >= published {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let (stored, twice) = last;
    if !live && stored < sampled {
        // What the consumer last said is where a drill over target starts its diagnosis.
        let logs = rig.consumer.all_logs();
        let tail: Vec<&str> = logs.lines().rev().take(40).collect();
        eprintln!(
            "{}: {} of {sampled} frames stored; the consumer's last lines:",
            fault.name(),
            stored
        );
        for line in tail.iter().rev() {
            eprintln!("  {line}");
        }
    }
    Ok(Outcome {
        drill: fault.name(),
        fault: fault.what(),
        live,
        frames_sampled: sampled,
        frames_published: published,
        frames_stored: stored,
        frames_lost: sampled.saturating_sub(stored),
        frames_dropped_counted: dropped,
        dropped_by_reason,
        frames_stored_twice: twice,
        recover_seconds: recovered,
    })
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let faults: Vec<Fault> = Fault::ALL
        .into_iter()
        .filter(|f| args.only.is_empty() || args.only.iter().any(|o| o == f.name()))
        .collect();
    if faults.is_empty() {
        bail!("no drill named {:?}", args.only);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut outcomes = Vec::new();
    for fault in faults {
        outcomes.push(runtime.block_on(drill(&args, fault))?);
    }
    print!("{}", render(&outcomes));
    crate::write_report(&args.out, &serde_json::json!({ "drills": outcomes }))?;
    let failed: Vec<&str> = outcomes
        .iter()
        .filter(|o| {
            o.frames_stored_twice > 0
                || if o.live {
                    // A camera's frames sent while its server was down were never received,
                    // so never sampled: what was sampled and not stored must all be counted.
                    o.frames_lost > o.frames_dropped_counted
                } else {
                    o.frames_lost > 0
                }
        })
        .map(|o| o.drill)
        .collect();
    if !failed.is_empty() {
        bail!("drills over target: {failed:?}");
    }
    Ok(())
}

fn render(outcomes: &[Outcome]) -> String {
    let mut out = format!(
        "\n{:<16} {:>8} {:>9} {:>7} {:>5} {:>14} {:>12} {:>11}\n",
        "drill",
        "sampled",
        "published",
        "stored",
        "lost",
        "dropped(count)",
        "stored twice",
        "recover (s)"
    );
    for o in outcomes {
        let recover = o
            .recover_seconds
            .map_or_else(|| "-".to_string(), |s| format!("{s:.1}"));
        out.push_str(&format!(
            "{:<16} {:>8} {:>9} {:>7} {:>5} {:>14} {:>12} {:>11}\n",
            o.drill,
            o.frames_sampled,
            o.frames_published,
            o.frames_stored,
            o.frames_lost,
            o.frames_dropped_counted,
            o.frames_stored_twice,
            recover
        ));
        if !o.dropped_by_reason.is_empty() {
            out.push_str(&format!("{:<16} dropped: {}\n", "", o.dropped_by_reason));
        }
    }
    out
}
