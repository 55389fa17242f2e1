//! The `producer` service: turns RTSP cameras and MP4 files into Kafka FrameBatch messages.
//!
//! Only the workspace skeleton exists so far: this binary refuses to run rather than pretend
//! to work. See README.md for what is built and what is planned.

fn main() -> anyhow::Result<()> {
    anyhow::bail!(
        "the producer service is not built yet: this binary is a placeholder in the workspace"
    )
}
