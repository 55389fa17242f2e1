//! The long night: four live streams through the whole pipeline for `--minutes`, with the RSS
//! and CPU of every service sampled every 10 s. Memory that keeps growing is a leak (or an
//! unbounded queue); this is where it shows.
//!
//! After a warm-up (`--warmup`, 2 minutes: caches, pools and the model's arenas fill), the
//! figures are first, last and max RSS per service and CPU per service over the run. It fails
//! when any service's RSS at the end is more than 10% above its RSS at the end of the warm-up.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::bail;
use testkit::process::ServiceProcess;

use crate::proc_stats;
use crate::stack::{Services, StackArgs, unique};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(long, env = "VP_SHARED_DIR", default_value = "../shared")]
    shared_dir: PathBuf,
    #[arg(long, default_value_t = 10)]
    minutes: u64,
    #[arg(long, default_value = "2m", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// Frames per second kept per stream (four streams). The pipeline must keep up, or the
    /// backlog fills bounded buffers (librdkafka's prefetch) and looks like growth: the 2-core
    /// machine stores ~6.9 frames/s with everything on it, so 4 x 1.5.
    #[arg(long, default_value_t = 1.5)]
    frame_rate: f64,
    #[command(flatten)]
    stack: StackArgs,
    #[arg(long, default_value = "target/bench/soak.json")]
    out: PathBuf,
}

/// RSS samples of one service after the warm-up, and its CPU over the run.
#[derive(Debug, Default, serde::Serialize)]
struct Memory {
    service: &'static str,
    first_rss_mib: f64,
    last_rss_mib: f64,
    max_rss_mib: f64,
    growth_percent: f64,
    cpu_seconds: f64,
    cpu_percent_of_one_core: f64,
    /// The busiest 10 s interval after the warm-up.
    max_cpu_percent_10s: f64,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let services = Services::start(&args.shared_dir)?;
    let topic = unique("soak");
    let consumer = services.consumer(&args.stack, &topic);
    let fps = args.frame_rate.to_string();
    let sources: Vec<String> = ["bikes", "bigbuckbunny", "bikes", "bigbuckbunny"]
        .iter()
        .enumerate()
        .map(|(i, mount)| format!("soak-{i}={}/{mount}", args.stack.rtsp_base))
        .collect();
    let mut producer_args: Vec<&str> = vec!["--frame-rate", &fps];
    for source in &sources[1..] {
        producer_args.extend(["--source", source]);
    }
    let producer = services.producer(&args.stack, &topic, &sources[0], &producer_args);
    let processes: [(&'static str, &ServiceProcess); 3] = [
        ("inference", &services.inference),
        ("consumer", &consumer),
        ("producer", &producer),
    ];

    let started = Instant::now();
    let total = Duration::from_secs(args.minutes * 60);
    let cpu_at_start = processes.map(|(_, p)| proc_stats::cpu_seconds(p.pid()).unwrap_or(0.0));
    let mut cpu_before = cpu_at_start;
    let mut sampled_at = Instant::now();
    let mut samples: [Vec<f64>; 3] = Default::default();
    // CPU % of one core per 10 s interval after the warm-up, like the RSS samples.
    let mut cpu_samples: [Vec<f64>; 3] = Default::default();
    eprintln!(
        "soak: 4 streams at {} fps for {} minutes; RSS sampled every 10 s after {:?}",
        args.frame_rate, args.minutes, args.warmup
    );
    while started.elapsed() < total {
        std::thread::sleep(Duration::from_secs(10));
        let interval = sampled_at.elapsed().as_secs_f64();
        sampled_at = Instant::now();
        let mut cpu_now = [0.0; 3];
        let mut rss_now = [0.0; 3];
        for (i, (name, process)) in processes.iter().enumerate() {
            let (Some(rss), Some(cpu)) = (
                proc_stats::rss_mib(process.pid()),
                proc_stats::cpu_seconds(process.pid()),
            ) else {
                bail!(
                    "{name} exited during the soak; logs:\n{}",
                    process.all_logs()
                );
            };
            cpu_now[i] = (cpu - cpu_before[i]) / interval * 100.0;
            cpu_before[i] = cpu;
            rss_now[i] = rss;
            if started.elapsed() >= args.warmup {
                samples[i].push(rss);
                cpu_samples[i].push(cpu_now[i]);
            }
        }
        let stored = consumer.metric_sum("consumer_frames_total");
        eprintln!(
            "  {:>4} s: stored {stored} frames; RSS MiB / CPU % inference {:.0} / {:.0}, consumer {:.0} / {:.0}, producer {:.0} / {:.0}",
            started.elapsed().as_secs(),
            rss_now[0],
            cpu_now[0],
            rss_now[1],
            cpu_now[1],
            rss_now[2],
            cpu_now[2],
        );
    }
    let seconds = started.elapsed().as_secs_f64();
    let stored = consumer.metric_sum("consumer_frames_total");
    let mut report = Vec::new();
    for (i, (name, process)) in processes.iter().enumerate() {
        let rss = &samples[i];
        let (Some(&first), Some(&last)) = (rss.first(), rss.last()) else {
            bail!("no RSS samples after the warm-up: run longer than --warmup");
        };
        let cpu = proc_stats::cpu_seconds(process.pid()).unwrap_or(0.0) - cpu_at_start[i];
        report.push(Memory {
            service: name,
            first_rss_mib: first,
            last_rss_mib: last,
            max_rss_mib: rss.iter().copied().fold(f64::MIN, f64::max),
            growth_percent: (last / first - 1.0) * 100.0,
            cpu_seconds: cpu,
            cpu_percent_of_one_core: cpu / seconds * 100.0,
            max_cpu_percent_10s: cpu_samples[i].iter().copied().fold(0.0, f64::max),
        });
    }
    println!(
        "\nsoak: {} minutes, 4 streams at {} fps, {stored} frames stored ({:.1}/s)",
        args.minutes,
        args.frame_rate,
        stored / seconds
    );
    println!(
        "{:<10} {:>10} {:>10} {:>10} {:>9} {:>9} {:>13}",
        "service", "first MiB", "last MiB", "max MiB", "growth", "CPU %", "max CPU %/10s"
    );
    for m in &report {
        println!(
            "{:<10} {:>10.1} {:>10.1} {:>10.1} {:>8.1}% {:>9.1} {:>13.1}",
            m.service,
            m.first_rss_mib,
            m.last_rss_mib,
            m.max_rss_mib,
            m.growth_percent,
            m.cpu_percent_of_one_core,
            m.max_cpu_percent_10s
        );
    }
    crate::write_report(
        &args.out,
        &serde_json::json!({
            "minutes": args.minutes,
            "streams": 4,
            "frame_rate": args.frame_rate,
            "frames_stored": stored,
            "services": report,
        }),
    )?;
    let grown: Vec<&str> = report
        .iter()
        .filter(|m| m.growth_percent > 10.0)
        .map(|m| m.service)
        .collect();
    if !grown.is_empty() {
        bail!("RSS grew more than 10% after the warm-up: {grown:?}");
    }
    Ok(())
}
