//! No code: this crate holds the end-to-end test (`tests/rtsp_to_s3.rs`), which starts the
//! workspace's three service binaries against the native stack's real servers and checks what
//! reaches S3 against what the camera stream yielded.
