//! The workspace's service binaries as child processes of a test: started with JSON logs
//! collected, an ops port of their own, and helpers to read `/metrics`, signal and wait.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::servers::signal;

/// glibc's malloc arenas for every service this starts: without a cap, each thread that
/// allocates gets an arena of its own (up to eight per core), and the consumer's RSS rose in
/// steps for minutes (+19% in the soak); with two it stays flat.
const MALLOC_ARENA_MAX: &str = "2";

/// A binary of this workspace, from the target directory the running test was built in.
/// `cargo test --workspace` (what `scripts/test.sh` runs) builds every service binary first;
/// a narrower run may leave one missing or older than its sources, and then this fails with
/// the command to run instead of testing an old build.
pub fn workspace_bin(name: &str) -> PathBuf {
    let profile_dir = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.to_path_buf()))
        .expect("the test executable lives in <target>/<profile>/deps");
    let bin = profile_dir.join(name);
    let built = std::fs::metadata(&bin)
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| {
            panic!(
                "{} is missing: run `cargo build --bins` or scripts/test.sh",
                bin.display()
            )
        });
    let crates = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    for dir in [name, "common"] {
        if let Some(newer) = newest_file(&crates.join(dir).join("src")).filter(|t| *t > built) {
            panic!(
                "{} is older than crates/{dir}/src ({newer:?}): run `cargo build --bins` or scripts/test.sh",
                bin.display()
            );
        }
    }
    bin
}

fn newest_file(dir: &Path) -> Option<std::time::SystemTime> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let path = e.path();
            if path.is_dir() {
                newest_file(&path)
            } else {
                e.metadata().and_then(|m| m.modified()).ok()
            }
        })
        .max()
}

fn collect_lines(
    output: impl std::io::Read + Send + 'static,
    sink: Arc<Mutex<Vec<serde_json::Value>>>,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(output).lines().map_while(Result::ok) {
            let value = serde_json::from_str(&line)
                .unwrap_or_else(|_| serde_json::json!({ "unparsed": line }));
            sink.lock().expect("log lock").push(value);
        }
    });
}

/// A service process; killed when dropped.
#[derive(Debug)]
pub struct ServiceProcess {
    name: String,
    child: Child,
    logs: Arc<Mutex<Vec<serde_json::Value>>>,
    pub ops_port: u16,
}

impl ServiceProcess {
    /// Starts `bin` with `args` plus `--log-format json`; `ops_port` is where its `/metrics`
    /// answer (the caller passes it in the service's own flag).
    pub fn start(bin: &Path, args: &[&str], env: &[(&str, &str)], ops_port: u16) -> Self {
        let name = bin
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut child = Command::new(bin)
            .args(["--log-format", "json"])
            .args(args)
            .env("RUST_LOG", "info")
            // As every launcher of the services does (README, "Memory"); the caller may override.
            .env("MALLOC_ARENA_MAX", MALLOC_ARENA_MAX)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
        let logs = Arc::new(Mutex::new(Vec::new()));
        // Logs go to stderr; stdout is kept too, so a test of what a service prints sees all.
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        collect_lines(stdout, logs.clone());
        collect_lines(stderr, logs.clone());
        Self {
            name,
            child,
            logs,
            ops_port,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Log lines so far whose `message` is `message`.
    pub fn logs_with_message(&self, message: &str) -> Vec<serde_json::Value> {
        self.logs
            .lock()
            .expect("log lock")
            .iter()
            .filter(|l| l["message"] == message)
            .cloned()
            .collect()
    }

    pub fn all_logs(&self) -> String {
        self.logs
            .lock()
            .expect("log lock")
            .iter()
            .map(|l| l.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Waits until `GET path` on the ops port answers 2xx, or panics with the logs.
    pub fn wait_http_ok(&mut self, path: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !http_get_ok(self.ops_port, path) {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{} exited ({status}); logs:\n{}",
                    self.name,
                    self.all_logs()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{} not answering {path} after {timeout:?}; logs:\n{}",
                self.name,
                self.all_logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits for the process to exit by itself.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} still running after {timeout:?}; logs:\n{}",
                self.name,
                self.all_logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether the process has exited.
    pub fn try_exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// SIGTERM, then waits for a clean exit.
    pub fn terminate(&mut self) -> ExitStatus {
        signal(self.pid(), "TERM");
        self.wait(Duration::from_secs(30))
    }

    /// One sample of `/metrics` (see [`metric_value`]).
    pub fn metric(&self, sample: &str) -> f64 {
        metric_value(&http_get(self.ops_port, "/metrics"), sample)
    }

    /// Every sample of a metric summed over its labels.
    pub fn metric_sum(&self, name: &str) -> f64 {
        http_get(self.ops_port, "/metrics")
            .lines()
            .filter(|l| {
                l.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
            })
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum()
    }

    pub fn get(&self, path: &str) -> String {
        http_get(self.ops_port, path)
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The value of one sample in Prometheus text, e.g.
/// `producer_batches_sent_total{partial="false",stream="a"}` (labels sorted by name, as
/// Prometheus prints them). 0 when absent.
pub fn metric_value(text: &str, sample: &str) -> f64 {
    text.lines()
        .find_map(|line| {
            line.strip_prefix(sample)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0.0)
}

fn http_request(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    Some(response)
}

/// A blocking HTTP/1.0 GET on loopback: the response body, or "" when not reachable.
pub fn http_get(port: u16, path: &str) -> String {
    http_request(port, path)
        .and_then(|r| r.split_once("\r\n\r\n").map(|(_, body)| body.to_string()))
        .unwrap_or_default()
}

/// True when `GET path` answers with a 2xx status.
pub fn http_get_ok(port: u16, path: &str) -> bool {
    http_request(port, path).is_some_and(|r| {
        r.split_whitespace()
            .nth(1)
            .is_some_and(|code| code.starts_with('2'))
    })
}
