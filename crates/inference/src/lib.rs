//! The inference service: YOLOv8/YOLO11 object detection over HTTP.
//!
//! A request flows: [`api`] (reserve its body's bytes from the [`body_budget`], parse one of
//! three body forms, validate options) -> [`engine`]
//! (admission, parallel [`preprocess`], batched [`model`] runs on worker threads,
//! [`postprocess`]) -> response. [`metrics`] and [`stats`] record what happened; [`service`]
//! starts and stops it all; [`config`] is every setting.

mod api;
mod body_budget;
mod config;
mod engine;
mod labels;
mod metrics;
pub mod model;
pub mod postprocess;
pub mod preprocess;
mod service;
pub mod stats;

// What the binary, the tests and other crates use; everything else is private to the service.
pub use config::InferenceConfig;
pub use service::run;
