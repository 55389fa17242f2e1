//! The `consumer` service: turns FrameBatch messages into detections, annotated JPEGs and JSON in S3.
//!
//! Only the workspace skeleton exists so far: this binary refuses to run rather than pretend
//! to work. See README.md for what is built and what is planned.

fn main() -> anyhow::Result<()> {
    anyhow::bail!(
        "the consumer service is not built yet: this binary is a placeholder in the workspace"
    )
}
