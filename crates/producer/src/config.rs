//! The producer's configuration: global settings from flags and environment variables, sources
//! from repeated `--source ID=URL` flags and/or a YAML file (`--config cameras.yaml`) with
//! per-source overrides. [`ProducerConfig::streams`] resolves both into one validated
//! [`StreamConfig`] per stream, so nothing downstream looks at raw settings.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, ValueEnum};
use common::StreamId;
use common::http::HttpArgs;
use common::kafka::{KafkaArgs, TopicArgs};
use common::naming::TopicTemplate;
use common::telemetry::LogArgs;
use serde::Deserialize;

/// RTSP cameras and MP4 files in, Kafka `FrameBatch` messages of 25 JPEG frames out.
#[derive(Debug, Clone, Parser)]
#[command(name = "producer", version)]
pub struct ProducerConfig {
    /// A source as `ID=URL`, repeatable (env: comma-separated). URL: `rtsp://...` or an MP4
    /// file (`file:///path.mp4` or a plain path).
    #[arg(
        long = "source",
        env = "SOURCES",
        value_delimiter = ',',
        value_name = "ID=URL"
    )]
    pub sources: Vec<String>,
    /// YAML file with a `sources:` list (see `cameras.example.yaml`), added to `--source`.
    #[arg(long = "config", env = "SOURCES_FILE", value_name = "FILE")]
    pub sources_file: Option<PathBuf>,
    #[command(flatten)]
    pub defaults: SourceDefaults,
    #[command(flatten)]
    pub kafka: SinkArgs,
    /// Address of `/health`, `/ready` and `/metrics`.
    #[arg(long, env = "PRODUCER_LISTEN", default_value = "0.0.0.0:9101")]
    pub listen: SocketAddr,
    /// A live source that sends nothing for this long is considered dead and reconnected.
    #[arg(long, env = "IDLE_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub idle_timeout: Duration,
    /// Frames waiting this long without a new one are sent as a partial batch.
    #[arg(long = "stall-flush-timeout", env = "STALL_FLUSH_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub stall_flush: Duration,
    /// Longest wait between reconnect attempts (exponential backoff with jitter up to this).
    #[arg(long, env = "RECONNECT_MAX_DELAY", default_value = "30s", value_parser = humantime::parse_duration)]
    pub reconnect_max_delay: Duration,
    /// Batches per stream waiting for Kafka before a live source drops its oldest.
    #[arg(long, env = "QUEUE_BATCHES", default_value_t = 8)]
    pub queue_batches: usize,
    /// How long shutdown waits for queued batches to be delivered.
    #[arg(long, env = "SHUTDOWN_TIMEOUT", default_value = "20s", value_parser = humantime::parse_duration)]
    pub shutdown_timeout: Duration,
    /// Interval of the one-line progress logs (0s: none).
    #[arg(long, env = "PROGRESS_INTERVAL", default_value = "10s", value_parser = humantime::parse_duration)]
    pub progress_interval: Duration,
    #[command(flatten)]
    pub http: HttpArgs,
    #[command(flatten)]
    pub log: LogArgs,
}

impl common::service::ServiceConfig for ProducerConfig {
    const NAME: &'static str = "producer";
    fn log(&self) -> &LogArgs {
        &self.log
    }
    fn listen(&self) -> SocketAddr {
        self.listen
    }
}

/// Per-source settings, overridable per source in the YAML file.
#[derive(Debug, Clone, Args)]
pub struct SourceDefaults {
    /// Frames per second kept, by presentation timestamp.
    #[arg(long, env = "FRAME_RATE", default_value_t = 10.0)]
    pub frame_rate: f64,
    /// JPEG quality, 1-100.
    #[arg(long, env = "JPEG_QUALITY", default_value_t = 85, value_parser = clap::value_parser!(u8).range(1..=100))]
    pub jpeg_quality: u8,
    /// Scale frames down to at most this width (keeping the aspect ratio).
    #[arg(long, env = "MAX_WIDTH")]
    pub max_width: Option<u32>,
    /// Scale frames down to at most this height (keeping the aspect ratio).
    #[arg(long, env = "MAX_HEIGHT")]
    pub max_height: Option<u32>,
    /// Topic, or a template with `{stream}` for one topic per stream.
    #[arg(long, env = "KAFKA_TOPIC", default_value = common::naming::DEFAULT_TOPIC)]
    pub topic: String,
    /// RTSP transport: `tcp` (interleaved, default) or `udp` (retina's UDP has no reordering).
    #[arg(long, env = "RTSP_TRANSPORT", value_enum, default_value_t = Transport::Tcp)]
    pub rtsp_transport: Transport,
    /// File pacing: `realtime` (at the file's frame rate) or `fast` (as fast as possible).
    #[arg(long, env = "FILE_PACE", value_enum, default_value_t = Pace::Realtime)]
    pub file_pace: Pace,
    /// Passes over a file source; 0 loops forever.
    #[arg(long, env = "FILE_LOOPS", default_value_t = 1)]
    pub file_loops: u32,
}

/// Kafka: the shared connection and topic flags, and how this producer creates and delivers.
#[derive(Debug, Clone, Args)]
pub struct SinkArgs {
    #[command(flatten)]
    pub client: KafkaArgs,
    #[command(flatten)]
    pub topics: TopicArgs,
    /// Partitions of topics created here (default: 6 for one shared topic, 1 per-stream).
    #[arg(long, env = "TOPIC_PARTITIONS")]
    pub topic_partitions: Option<i32>,
    /// How long librdkafka keeps trying one delivery before reporting it failed.
    #[arg(long, env = "DELIVERY_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub delivery_timeout: Duration,
    /// Failed deliveries retried this many times for a live source (files retry forever).
    #[arg(long, env = "DELIVERY_RETRIES", default_value_t = 3)]
    pub delivery_retries: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Tcp,
    Udp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pace {
    Realtime,
    Fast,
}

/// One source as written in the YAML file; unset fields take the command-line defaults.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceEntry {
    pub id: String,
    pub url: String,
    pub frame_rate: Option<f64>,
    pub jpeg_quality: Option<u8>,
    pub max_width: Option<u32>,
    pub max_height: Option<u32>,
    pub topic: Option<String>,
    pub transport: Option<Transport>,
    pub pace: Option<Pace>,
    pub loops: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SourcesFile {
    sources: Vec<SourceEntry>,
}

/// Where a stream's video comes from. Its Debug output masks a camera password.
#[derive(Clone, PartialEq)]
pub enum SourceKind {
    Rtsp {
        url: url::Url,
        transport: Transport,
    },
    File {
        path: PathBuf,
        pace: Pace,
        loops: u32,
    },
}

impl std::fmt::Debug for SourceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Rtsp { url, transport } => f
                .debug_struct("Rtsp")
                .field("url", &common::redact::text(url.as_str()))
                .field("transport", transport)
                .finish(),
            Self::File { path, pace, loops } => f
                .debug_struct("File")
                .field("path", path)
                .field("pace", pace)
                .field("loops", loops)
                .finish(),
        }
    }
}

impl SourceKind {
    /// A live source drops its oldest frames under backpressure; a file waits.
    pub fn is_live(&self) -> bool {
        matches!(self, Self::Rtsp { .. })
    }
}

/// Everything one stream needs, validated.
#[derive(Debug, Clone)]
pub struct StreamConfig {
    pub id: StreamId,
    pub source: SourceKind,
    pub frame_rate: f64,
    pub jpeg_quality: u8,
    pub max_width: Option<u32>,
    pub max_height: Option<u32>,
    pub topic: String,
    /// The topic comes from a `{stream}` template: this stream's alone.
    pub topic_per_stream: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("--source {0:?} is not ID=URL")]
    SourceSyntax(String),
    #[error("no sources: give --source ID=URL or --config FILE")]
    NoSources,
    #[error("cannot read {path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("source {id:?}: {message}")]
    Source { id: String, message: String },
    #[error("two sources are named {0:?}")]
    Duplicate(String),
}

impl ProducerConfig {
    /// Every source from flags and file, resolved against the defaults.
    pub fn streams(&self) -> Result<Vec<StreamConfig>, ConfigError> {
        let mut entries = Vec::new();
        for source in &self.sources {
            let (id, url) = source
                .split_once('=')
                .ok_or_else(|| ConfigError::SourceSyntax(common::redact::text(source).into()))?;
            entries.push(SourceEntry::new(id.trim(), url.trim()));
        }
        if let Some(path) = &self.sources_file {
            entries.extend(read_sources_file(path)?);
        }
        if entries.is_empty() {
            return Err(ConfigError::NoSources);
        }
        let mut seen = HashSet::new();
        let mut streams = Vec::with_capacity(entries.len());
        for entry in entries {
            if !seen.insert(entry.id.clone()) {
                return Err(ConfigError::Duplicate(entry.id));
            }
            streams.push(resolve(entry, &self.defaults)?);
        }
        Ok(streams)
    }
}

impl SourceEntry {
    pub fn new(id: &str, url: &str) -> Self {
        Self {
            id: id.to_string(),
            url: url.to_string(),
            frame_rate: None,
            jpeg_quality: None,
            max_width: None,
            max_height: None,
            topic: None,
            transport: None,
            pace: None,
            loops: None,
        }
    }
}

pub fn read_sources_file(path: &Path) -> Result<Vec<SourceEntry>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
        path: path.into(),
        message: e.to_string(),
    })?;
    let file: SourcesFile = serde_yaml_ng::from_str(&text).map_err(|e| ConfigError::File {
        path: path.into(),
        message: e.to_string(),
    })?;
    Ok(file.sources)
}

fn resolve(entry: SourceEntry, defaults: &SourceDefaults) -> Result<StreamConfig, ConfigError> {
    let bad = |message: String| ConfigError::Source {
        id: entry.id.clone(),
        message,
    };
    let id = StreamId::new(entry.id.clone()).map_err(|e| bad(e.to_string()))?;
    let frame_rate = entry.frame_rate.unwrap_or(defaults.frame_rate);
    if !(frame_rate > 0.0 && frame_rate <= 240.0) {
        return Err(bad(format!("frame_rate {frame_rate} is not in (0, 240]")));
    }
    let jpeg_quality = entry.jpeg_quality.unwrap_or(defaults.jpeg_quality);
    if !(1..=100).contains(&jpeg_quality) {
        return Err(bad(format!(
            "jpeg_quality {jpeg_quality} is not in 1..=100"
        )));
    }
    let max_width = entry.max_width.or(defaults.max_width);
    let max_height = entry.max_height.or(defaults.max_height);
    if max_width.is_some_and(|w| w < 2) || max_height.is_some_and(|h| h < 2) {
        return Err(bad("max_width and max_height must be at least 2".into()));
    }
    let template = entry.topic.as_deref().unwrap_or(&defaults.topic);
    let template = TopicTemplate::parse(template).map_err(|e| bad(e.to_string()))?;
    let topic = template.topic_for(&id);
    let source = source_kind(&entry, defaults).map_err(bad)?;
    Ok(StreamConfig {
        id,
        source,
        frame_rate,
        jpeg_quality,
        max_width,
        max_height,
        topic,
        topic_per_stream: template.is_per_stream(),
    })
}

fn source_kind(entry: &SourceEntry, defaults: &SourceDefaults) -> Result<SourceKind, String> {
    let url = entry.url.as_str();
    let lower = url.to_ascii_lowercase();
    if lower.starts_with("rtsp://") || lower.starts_with("rtsps://") {
        let url = url::Url::parse(url)
            .map_err(|e| format!("invalid RTSP URL {:?}: {e}", common::redact::text(url)))?;
        return Ok(SourceKind::Rtsp {
            url,
            transport: entry.transport.unwrap_or(defaults.rtsp_transport),
        });
    }
    let path = if lower.starts_with("file://") {
        url::Url::parse(url)
            .ok()
            .and_then(|u| u.to_file_path().ok())
            .ok_or_else(|| format!("invalid file URL {:?}", common::redact::text(url)))?
    } else if url.contains("://") {
        return Err(format!(
            "unsupported URL {:?}: use rtsp://, file:// or a path",
            common::redact::text(url)
        ));
    } else {
        PathBuf::from(url)
    };
    if !path.is_file() {
        return Err(format!("{} is not a file", path.display()));
    }
    Ok(SourceKind::File {
        path,
        pace: entry.pace.unwrap_or(defaults.file_pace),
        loops: entry.loops.unwrap_or(defaults.file_loops),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> ProducerConfig {
        let mut argv = vec!["producer"];
        argv.extend_from_slice(args);
        ProducerConfig::try_parse_from(argv).unwrap()
    }

    #[test]
    fn flags_give_streams_with_the_defaults() {
        let config = parse(&[
            "--source",
            "cam-1=rtsp://10.0.0.5:554/live",
            "--frame-rate",
            "5",
        ]);
        let streams = config.streams().unwrap();
        assert_eq!(streams.len(), 1);
        let s = &streams[0];
        assert_eq!(s.id.as_str(), "cam-1");
        assert_eq!(s.frame_rate, 5.0);
        assert_eq!(s.jpeg_quality, 85);
        assert_eq!(s.topic, "video-frames");
        assert!(s.source.is_live());
    }

    #[test]
    fn a_yaml_file_overrides_per_source() {
        let dir = std::env::temp_dir().join(format!("producer-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let video = dir.join("clip.mp4");
        std::fs::write(&video, b"not really").unwrap();
        let yaml = dir.join("cameras.yaml");
        std::fs::write(
            &yaml,
            format!(
                "sources:\n  - id: door\n    url: rtsp://cam/door\n    transport: udp\n    topic: frames.{{stream}}\n  - id: archive\n    url: {}\n    pace: fast\n    loops: 0\n    jpeg_quality: 70\n    max_width: 640\n",
                video.display()
            ),
        )
        .unwrap();
        let config = parse(&[
            "--config",
            yaml.to_str().unwrap(),
            "--source",
            "gate=rtsp://cam/gate",
        ]);
        let streams = config.streams().unwrap();
        let ids: Vec<&str> = streams.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["gate", "door", "archive"]);
        assert_eq!(streams[1].topic, "frames.door");
        assert!(
            streams[1].topic_per_stream,
            "a per-source {{stream}} template"
        );
        assert!(!streams[0].topic_per_stream, "the shared default topic");
        assert!(matches!(
            streams[1].source,
            SourceKind::Rtsp {
                transport: Transport::Udp,
                ..
            }
        ));
        assert_eq!(streams[2].jpeg_quality, 70);
        assert_eq!(streams[2].max_width, Some(640));
        assert_eq!(
            streams[2].source,
            SourceKind::File {
                path: video,
                pace: Pace::Fast,
                loops: 0
            }
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn bad_sources_are_refused_with_the_reason() {
        let err = parse(&["--source", "no-equals-sign"])
            .streams()
            .unwrap_err();
        assert!(matches!(err, ConfigError::SourceSyntax(_)), "{err}");
        let err = parse(&[]).streams().unwrap_err();
        assert!(matches!(err, ConfigError::NoSources), "{err}");
        let err = parse(&["--source", "a=rtsp://x/1", "--source", "a=rtsp://x/2"])
            .streams()
            .unwrap_err();
        assert!(matches!(err, ConfigError::Duplicate(_)), "{err}");
        let err = parse(&["--source", "bad id=rtsp://x/1"])
            .streams()
            .unwrap_err();
        assert!(err.to_string().contains("bad id"), "{err}");
        let err = parse(&["--source", "a=/does/not/exist.mp4"])
            .streams()
            .unwrap_err();
        assert!(err.to_string().contains("not a file"), "{err}");
        let err = parse(&["--source", "a=http://x/1"]).streams().unwrap_err();
        assert!(err.to_string().contains("unsupported URL"), "{err}");
        let err = parse(&["--source", "a=rtsp://x/1", "--topic", "bad topic"])
            .streams()
            .unwrap_err();
        assert!(err.to_string().contains("topic"), "{err}");
    }

    #[test]
    fn unknown_yaml_keys_are_errors_not_silently_ignored() {
        let dir = std::env::temp_dir().join(format!("producer-config-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let yaml = dir.join("cameras.yaml");
        std::fs::write(
            &yaml,
            "sources:\n  - id: a\n    url: rtsp://x/1\n    fps: 5\n",
        )
        .unwrap();
        let err = read_sources_file(&yaml).unwrap_err();
        assert!(err.to_string().contains("fps"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
