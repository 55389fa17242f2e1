//! Test support shared by the workspace's integration tests.
//!
//! - Where the read-only shared data is: [`shared_dir`], [`media`], [`model`] (one setting,
//!   `VP_SHARED_DIR`, default `../shared` beside the workspace).
//! - How to reach the native stack that `scripts/local-test.sh up` starts: [`Stack`], read from
//!   the same environment variables the scripts use, with loopback defaults.
//! - The workspace's services as child processes: [`process`]; private servers to stop and
//!   freeze: [`servers`].
//! - Names that never collide between test runs against a long-lived broker: [`unique_name`].
//!
//! Tests that need the stack call [`Stack::require`], which fails fast with the command to run
//! when a server is not listening, instead of hanging on a connect.

use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

pub mod kafka;
pub mod process;
pub mod s3;
pub mod servers;

/// The shared data directory: `VP_SHARED_DIR`, else `../shared` beside the workspace root.
pub fn shared_dir() -> PathBuf {
    match std::env::var_os("VP_SHARED_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"),
    }
}

/// A file under `shared/media`, checked to exist.
pub fn media(name: &str) -> PathBuf {
    existing(shared_dir().join("media").join(name))
}

/// A file under `shared/models`, checked to exist.
pub fn model(name: &str) -> PathBuf {
    existing(shared_dir().join("models").join(name))
}

/// Every video in `shared/media`, sorted by name.
pub fn videos() -> Vec<PathBuf> {
    let dir = shared_dir().join("media");
    let entries = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e} (set VP_SHARED_DIR)", dir.display()));
    let mut videos: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "mp4"))
        .collect();
    videos.sort();
    videos
}

fn existing(path: PathBuf) -> PathBuf {
    assert!(
        path.is_file(),
        "{} is missing: tests read shared data from VP_SHARED_DIR (default ../shared beside the repo)",
        path.display()
    );
    path
}

/// The first `n` frames of a video in `shared/media` as JPEGs (ffmpeg, quality 3), at `fps`
/// frames per second of video when given.
pub fn video_jpegs(video: &str, n: usize, fps: Option<u32>) -> Vec<Vec<u8>> {
    let dir = std::env::temp_dir().join(unique_name("frames"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut command = std::process::Command::new("ffmpeg");
    command.args(["-v", "error", "-i"]).arg(media(video));
    if let Some(fps) = fps {
        command.args(["-vf", &format!("fps={fps}")]);
    }
    let status = command
        .args(["-frames:v", &n.to_string(), "-q:v", "3"])
        .arg(dir.join("%04d.jpg"))
        .status()
        .expect("ffmpeg runs");
    assert!(status.success(), "ffmpeg failed on {video}");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("list frames")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    let frames: Vec<Vec<u8>> = files
        .iter()
        .map(|p| std::fs::read(p).expect("read frame"))
        .collect();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(frames.len(), n, "{video} has fewer than {n} frames");
    frames
}

/// A name unique to this test process and call, e.g. for topics and buckets.
pub fn unique_name(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}-{}", &id[..12])
}

/// Addresses of the native stack's servers.
#[derive(Debug, Clone)]
pub struct Stack {
    /// `host:port` of the Kafka-protocol broker (`VP_KAFKA_BROKERS`).
    pub kafka_brokers: String,
    /// S3 API endpoint URL (`VP_S3_ENDPOINT`).
    pub s3_endpoint: String,
    /// Base of the RTSP URLs, without a trailing slash (`VP_RTSP_BASE`).
    pub rtsp_base: String,
}

impl Stack {
    /// The addresses `scripts/test.sh` exports; without them (a test run by hand against
    /// `scripts/local-test.sh stack`), the scripts' own ports, read from `scripts/lib/env.sh`.
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok();
        let setting = |name: &str| {
            var(name)
                .or_else(|| script_default(name))
                .unwrap_or_default()
        };
        Self {
            kafka_brokers: var("VP_KAFKA_BROKERS").unwrap_or_else(|| {
                format!("{}:{}", setting("VP_KAFKA_HOST"), setting("VP_KAFKA_PORT"))
            }),
            s3_endpoint: var("VP_S3_ENDPOINT")
                .unwrap_or_else(|| format!("http://127.0.0.1:{}", setting("VP_S3_PORT"))),
            rtsp_base: var("VP_RTSP_BASE")
                .unwrap_or_else(|| format!("rtsp://127.0.0.1:{}", setting("VP_RTSP_PORT"))),
        }
    }

    /// The stack's addresses, after checking each server accepts TCP connections.
    pub fn require() -> Self {
        let stack = Self::from_env();
        let targets = [
            ("Kafka broker", host_port(&stack.kafka_brokers)),
            ("S3 API", host_port(&stack.s3_endpoint)),
            ("RTSP server", host_port(&stack.rtsp_base)),
        ];
        for (what, addr) in targets {
            if let Err(e) = connect(&addr) {
                panic!(
                    "{what} at {addr} is not reachable ({e}); start the native stack with \
                     `scripts/local-test.sh up` (or run the tests through `scripts/test.sh`)"
                );
            }
        }
        stack
    }

    /// The RTSP URL of a video in `shared/media`, served under its file stem.
    pub fn rtsp_url(&self, stem: &str) -> String {
        format!("{}/{stem}", self.rtsp_base)
    }
}

fn host_port(url_or_addr: &str) -> String {
    let rest = url_or_addr
        .split_once("://")
        .map_or(url_or_addr, |(_, rest)| rest);
    let authority = rest.split('/').next().unwrap_or(rest);
    let first = authority.split(',').next().unwrap_or(authority);
    first.to_string()
}

fn connect(addr: &str) -> std::io::Result<()> {
    let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "address did not resolve");
    for a in addr.to_socket_addrs()? {
        match TcpStream::connect_timeout(&a, Duration::from_secs(2)) {
            Ok(_) => return Ok(()),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// The default of `name` in `scripts/lib/env.sh` (`NAME="${NAME:-default}"`), the one place the
/// scripts' ports are written.
fn script_default(name: &str) -> Option<String> {
    let env_sh = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/lib/env.sh");
    let text = std::fs::read_to_string(env_sh).ok()?;
    let prefix = format!("{name}=\"${{{name}:-");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix)?.strip_suffix("}\""))
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scripts_ports_are_read_from_env_sh() {
        for name in ["VP_KAFKA_PORT", "VP_S3_PORT", "VP_RTSP_PORT"] {
            let port = script_default(name).unwrap_or_default();
            assert!(port.parse::<u16>().is_ok(), "{name}: {port:?}");
        }
        assert_eq!(
            script_default("VP_KAFKA_HOST").as_deref(),
            Some("127.0.0.1")
        );
        assert_eq!(script_default("NO_SUCH_SETTING"), None);
    }

    #[test]
    fn host_port_takes_the_authority_of_urls_and_lists() {
        assert_eq!(host_port("http://127.0.0.1:4566"), "127.0.0.1:4566");
        assert_eq!(host_port("rtsp://h:8554/bikes"), "h:8554");
        assert_eq!(host_port("a:9092,b:9092"), "a:9092");
    }

    #[test]
    fn unique_names_differ() {
        assert_ne!(unique_name("t"), unique_name("t"));
    }
}
