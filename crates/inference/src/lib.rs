//! The inference service: YOLOv8/YOLO11 object detection over HTTP.
//!
//! A request flows: [`api`] (parse one of three body forms, validate options) ->
//! [`preprocess`] (decode + letterbox, in parallel) -> [`engine`] (bounded queue, model worker
//! threads, [`model`] run on batched tensors) -> [`postprocess`] (decode, NMS, map back) ->
//! response. [`metrics`] and [`stats`] record what happened.

pub mod labels;
pub mod model;
pub mod postprocess;
pub mod preprocess;
