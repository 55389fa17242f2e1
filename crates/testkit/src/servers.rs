//! Private instances of the stack's servers, for tests that stop, freeze or restart a server
//! (the shared stack must stay up for the tests running beside them).
//!
//! - [`PrivateBroker`]: a tansu broker on its own port, in memory or (for restart drills) on
//!   an S3 API; `freeze` and `thaw` it (SIGSTOP/SIGCONT) to make Kafka hang like an overloaded
//!   or partitioned broker, `stop` and `restart` it.
//! - [`PrivateRtspServer`]: the stack's GStreamer RTSP server script on its own port, serving
//!   the media the stack prepared; `stop` and `start` it again for reconnect drills.
//! - [`PrivateS3`]: a moto S3 server on its own port; `stop` and `restart` it (its objects live
//!   in memory and are gone after a restart), or `freeze` and `thaw` it.
//!
//! The programs are found through the variables `scripts/test.sh` exports (`VP_TANSU_BIN`,
//! `VP_MOTO_BIN`, `VP_GST_PYTHON`, `VP_RTSP_MEDIA_DIR`), with the install locations as defaults.

use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn env_path(name: &str, default: PathBuf) -> PathBuf {
    std::env::var_os(name).map(PathBuf::from).unwrap_or(default)
}

/// `<rest>` in the newest install of `name` by `scripts/install-deps.sh`, or `name` itself (on
/// the PATH) when there is none.
fn installed(name: &str, rest: &str) -> PathBuf {
    common::installed::newest(name, |i| Some(i.dir.join(rest))).unwrap_or_else(|| name.into())
}

/// A TCP port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port")
}

/// Sends `signal` (e.g. "TERM", "STOP", "CONT") to a process.
pub fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} {pid} failed");
}

fn wait_for_port(port: u16, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

fn stop_child(child: &mut Child) {
    if let Ok(None) = child.try_wait() {
        signal(child.id(), "CONT");
        signal(child.id(), "TERM");
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Starts a server program, its output discarded, or appended to `log` (stdout and stderr).
fn spawn_server(command: &mut Command, bin: &Path, log: Option<OsString>) -> Child {
    let (stdout, stderr) = match log {
        None => (Stdio::null(), Stdio::null()),
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .unwrap_or_else(|e| panic!("cannot open the log {path:?}: {e}"));
            let copy = file.try_clone().expect("duplicate the log's descriptor");
            (Stdio::from(file), Stdio::from(copy))
        }
    };
    command
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start {}: {e} (run scripts/install-deps.sh)",
                bin.display()
            )
        })
}

/// A tansu broker of a test's own.
#[derive(Debug)]
pub struct PrivateBroker {
    child: Option<Child>,
    pub port: u16,
    /// The S3 API holding its data, for a broker that survives a restart; else in memory.
    storage: Option<String>,
}

impl PrivateBroker {
    pub fn start() -> Self {
        Self::start_on(free_port())
    }

    /// A broker on `port`, e.g. one that clients were already pointed at while it was down.
    pub fn start_on(port: u16) -> Self {
        let mut broker = Self {
            child: None,
            port,
            storage: None,
        };
        broker.restart();
        broker
    }

    /// A broker whose topics, messages and offsets live in bucket `tansu` of the S3 API at
    /// `s3_endpoint` (created here), so that [`PrivateBroker::restart`] keeps them.
    pub fn start_persistent(s3_endpoint: &str) -> Self {
        let status = Command::new("curl")
            .args(["-sf", "-o", "/dev/null", "-X", "PUT"])
            .arg(format!("{s3_endpoint}/tansu"))
            .status()
            .expect("run curl");
        assert!(
            status.success(),
            "cannot create the broker's bucket at {s3_endpoint}"
        );
        let mut broker = Self {
            child: None,
            port: free_port(),
            storage: Some(s3_endpoint.to_string()),
        };
        broker.restart();
        broker
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Stops the broker (SIGTERM); clients see their connections drop.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop_child(&mut child);
        }
    }

    /// Starts the broker (again) on the same port, on the same storage, and waits until it
    /// listens. In memory, a restart starts empty.
    pub fn restart(&mut self) {
        self.stop();
        let bin = env_path("VP_TANSU_BIN", installed("tansu", "bin/tansu"));
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let mut command = Command::new(&bin);
        command.args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
        ]);
        match &self.storage {
            None => {
                command.args(["--storage-engine", "memory://tansu/"]);
            }
            Some(endpoint) => {
                command
                    .args(["--storage-engine", "s3://tansu/"])
                    .env("AWS_ENDPOINT", endpoint)
                    .env("AWS_ALLOW_HTTP", "true")
                    .env("AWS_ACCESS_KEY_ID", "test")
                    .env("AWS_SECRET_ACCESS_KEY", "test")
                    .env("AWS_DEFAULT_REGION", "us-east-1");
            }
        }
        // VP_BROKER_LOG=FILE keeps the broker's log (it writes to stdout; RUST_LOG sets its
        // level), for the diagnosis of a drill.
        let child = spawn_server(&mut command, &bin, std::env::var_os("VP_BROKER_LOG"));
        self.child = Some(child);
        assert!(
            wait_for_port(self.port, Duration::from_secs(20)),
            "private broker did not listen on {}",
            self.port
        );
    }

    /// The running broker's pid. Never 0 for a stopped one: `kill -STOP 0` would stop the
    /// whole process group, the test runner included.
    fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .map(Child::id)
            .expect("the private broker is stopped; restart it before freezing or thawing it")
    }

    /// Freezes the broker: connections stay open and nothing is answered.
    pub fn freeze(&self) {
        signal(self.pid(), "STOP");
    }

    pub fn thaw(&self) {
        signal(self.pid(), "CONT");
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The stack's RTSP server script on a port of a test's own.
#[derive(Debug)]
pub struct PrivateRtspServer {
    child: Option<Child>,
    pub port: u16,
    /// User and password every mount requires, if any.
    credentials: Option<(String, String)>,
}

impl PrivateRtspServer {
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// A server whose mounts require Basic authentication as `user`/`password`.
    pub fn start_with_credentials(user: &str, password: &str) -> Self {
        Self::start_with(Some((user.to_string(), password.to_string())))
    }

    fn start_with(credentials: Option<(String, String)>) -> Self {
        let mut server = Self {
            child: None,
            port: free_port(),
            credentials,
        };
        server.restart();
        server
    }

    /// `rtsp://127.0.0.1:PORT/<mount>`.
    pub fn url(&self, mount: &str) -> String {
        format!("rtsp://127.0.0.1:{}/{mount}", self.port)
    }

    /// Kills the server (clients see their connection drop).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop_child(&mut child);
        }
    }

    /// Starts the server (again) on the same port and waits until it serves.
    pub fn restart(&mut self) {
        self.stop();
        let python = env_path("VP_GST_PYTHON", PathBuf::from("/usr/bin/python3"));
        let media = env_path("VP_RTSP_MEDIA_DIR", repo_root().join(".local/media"));
        let script = repo_root().join("scripts/rtsp-server.py");
        let mut command = Command::new(&python);
        command
            .arg(&script)
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .arg("--media-dir")
            .arg(&media);
        if let Some((user, password)) = &self.credentials {
            command
                .args(["--user", user])
                .env("RTSP_PASSWORD", password);
        }
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", script.display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout);
        let mut first = String::new();
        let _ = lines.read_line(&mut first);
        // Keep reading so a later line never meets a closed pipe.
        std::thread::spawn(move || std::io::copy(&mut lines, &mut std::io::sink()));
        assert!(
            first.starts_with("ready"),
            "RTSP server did not start (media in {}; run scripts/local-test.sh up once): {first:?}",
            media.display()
        );
        self.child = Some(child);
    }
}

impl Drop for PrivateRtspServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A moto S3 server of a test's own.
#[derive(Debug)]
pub struct PrivateS3 {
    child: Option<Child>,
    pub port: u16,
    enforce_auth: bool,
}

impl PrivateS3 {
    pub fn start() -> Self {
        let mut server = Self {
            child: None,
            port: free_port(),
            enforce_auth: false,
        };
        server.restart();
        server
    }

    /// A server that checks credentials like AWS does (moto's IAM): the keys `test`/`test`
    /// the services use elsewhere are unknown to it, so every request is refused with 403.
    pub fn start_enforcing_auth() -> Self {
        let mut server = Self {
            child: None,
            port: free_port(),
            enforce_auth: true,
        };
        server.restart();
        server
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Kills the server: connections are refused until [`PrivateS3::restart`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop_child(&mut child);
        }
    }

    /// Starts the server (again, empty) on the same port and waits until it listens.
    pub fn restart(&mut self) {
        self.stop();
        let bin = env_path("VP_MOTO_BIN", installed("moto", "bin/moto_server"));
        let mut command = Command::new(&bin);
        command.args(["-H", "127.0.0.1", "-p", &self.port.to_string()]);
        if self.enforce_auth {
            command.env("INITIAL_NO_AUTH_ACTION_COUNT", "0");
        }
        let child = spawn_server(&mut command, &bin, None);
        self.child = Some(child);
        assert!(
            wait_for_port(self.port, Duration::from_secs(30)),
            "private S3 did not listen on {}",
            self.port
        );
    }

    /// Freezes the server: connections are accepted and nothing is answered.
    pub fn freeze(&self) {
        if let Some(child) = &self.child {
            signal(child.id(), "STOP");
        }
    }

    pub fn thaw(&self) {
        if let Some(child) = &self.child {
            signal(child.id(), "CONT");
        }
    }
}

impl Drop for PrivateS3 {
    fn drop(&mut self) {
        self.stop();
    }
}
