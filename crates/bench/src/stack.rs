//! What the benchmarks that run the whole stack share: where its servers are, unique names for
//! each run's topics and groups, and where the service binaries are.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use testkit::process::ServiceProcess;
use testkit::servers::free_port;

/// The native stack's servers (scripts/bench.sh sets these from scripts/lib/env.sh).
#[derive(Debug, clap::Args)]
pub struct StackArgs {
    #[arg(long, env = "VP_KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    pub brokers: String,
    #[arg(long, env = "VP_S3_ENDPOINT", default_value = "http://127.0.0.1:4566")]
    pub s3_endpoint: String,
    /// An existing bucket to write to.
    #[arg(long, default_value = "video-pipeline-results")]
    pub bucket: String,
    #[arg(long, env = "VP_RTSP_BASE", default_value = "rtsp://127.0.0.1:8554")]
    pub rtsp_base: String,
}

/// A name no earlier run used, so runs never read each other's messages or offsets.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// The release binaries of the services, built beside this one.
pub fn service_dir() -> anyhow::Result<PathBuf> {
    Ok(std::env::current_exe()?
        .parent()
        .context("bench has a directory")?
        .to_path_buf())
}

/// The three services, release builds beside this binary.
pub struct Services {
    dir: PathBuf,
    model: PathBuf,
    port: u16,
    pub inference: ServiceProcess,
    inference_url: String,
}

fn start_inference(dir: &Path, model: &Path, port: u16) -> ServiceProcess {
    let listen = format!("127.0.0.1:{port}");
    let mut inference = ServiceProcess::start(
        &dir.join("inference"),
        &["--listen", &listen, "--model", &model.to_string_lossy()],
        &[],
        port,
    );
    inference.wait_http_ok("/ready", Duration::from_secs(120));
    inference
}

impl Services {
    pub fn start(shared_dir: &Path) -> anyhow::Result<Self> {
        let dir = service_dir()?;
        let port = free_port();
        let model = shared_dir.join("models/yolov8n.onnx");
        let inference = start_inference(&dir, &model, port);
        Ok(Self {
            dir,
            model,
            port,
            inference,
            inference_url: format!("http://127.0.0.1:{port}"),
        })
    }

    /// Kills the inference service (SIGKILL): its clients' connections are refused.
    pub fn kill_inference(&mut self) {
        testkit::servers::signal(self.inference.pid(), "KILL");
        self.inference.wait(Duration::from_secs(10));
    }

    /// Starts the inference service again on its port and waits until it is ready.
    pub fn restart_inference(&mut self) -> anyhow::Result<()> {
        self.inference = start_inference(&self.dir, &self.model, self.port);
        Ok(())
    }

    pub fn consumer(&self, stack: &StackArgs, topic: &str) -> ServiceProcess {
        self.consumer_in_group(stack, topic, &unique("bench-group"))
    }

    /// A consumer of `group`: a restarted one resumes from the group's commits.
    pub fn consumer_in_group(&self, stack: &StackArgs, topic: &str, group: &str) -> ServiceProcess {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let mut consumer = ServiceProcess::start(
            &self.dir.join("consumer"),
            &[
                "--brokers",
                &stack.brokers,
                "--topic",
                topic,
                "--group",
                group,
                "--inference-url",
                &self.inference_url,
                "--s3-endpoint",
                &stack.s3_endpoint,
                "--bucket",
                &stack.bucket,
                "--listen",
                &listen,
            ],
            &[
                ("AWS_ACCESS_KEY_ID", "test"),
                ("AWS_SECRET_ACCESS_KEY", "test"),
            ],
            port,
        );
        consumer.wait_http_ok("/ready", Duration::from_secs(60));
        consumer
    }

    pub fn producer(
        &self,
        stack: &StackArgs,
        topic: &str,
        source: &str,
        extra: &[&str],
    ) -> ServiceProcess {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let mut all = vec![
            "--brokers",
            &stack.brokers,
            "--topic",
            topic,
            "--source",
            source,
            "--listen",
            &listen,
        ];
        all.extend_from_slice(extra);
        ServiceProcess::start(&self.dir.join("producer"), &all, &[], port)
    }
}
