//! The inference service: YOLOv8/YOLO11 object detection over HTTP.
//!
//! A request flows: [`api`] (reserve its body's bytes from the [`body_budget`], parse one of
//! three body forms, validate options) -> [`engine`]
//! (admission, parallel [`preprocess`], batched [`model`] runs on worker threads,
//! [`postprocess`]) -> response. [`metrics`] and [`stats`] record what happened; [`service`]
//! starts and stops it all; [`config`] is every setting.

pub mod api;
pub mod body_budget;
pub mod config;
pub mod engine;
pub mod labels;
pub mod metrics;
pub mod model;
pub mod postprocess;
pub mod preprocess;
pub mod service;
pub mod stats;
