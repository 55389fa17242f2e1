//! Loading a YOLOv8/YOLO11 detection export with ONNX Runtime, and running it on a batch.
//!
//! Accepts any Ultralytics detection export: one float32 input `[N, 3, H, W]` and one output
//! `[N, 4 + C, A]`, with the batch axis fixed or dynamic. Input size and class names come from
//! the model (input shape, `imgsz` and `names` metadata), names from a labels file otherwise.
//! Anything else is refused at start-up with a message saying what was expected.

use std::path::{Path, PathBuf};

use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::{Tensor, TensorRef, TensorValueType};

use crate::labels;

/// What the service needs to know about the model.
#[derive(Debug, Clone)]
pub struct ModelSpec {
    /// File stem of the model, reported in responses and stored with results.
    pub name: String,
    pub input_name: String,
    pub output_name: String,
    pub input_width: u32,
    pub input_height: u32,
    /// `Some(n)` when the export has a fixed batch size (usually 1): batches are run n at a time.
    pub fixed_batch: Option<usize>,
    pub anchors: usize,
    pub class_names: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(
        "cannot load the ONNX Runtime library {path}: {error}. Install it with scripts/install-deps.sh onnxruntime or set ORT_DYLIB_PATH"
    )]
    Library { path: PathBuf, error: String },
    #[error("model file {0} does not exist")]
    MissingModel(PathBuf),
    #[error("ONNX Runtime: {0}")]
    Ort(String),
    #[error("model {path} is not a YOLO detection export: {reason}")]
    Shape { path: PathBuf, reason: String },
    #[error("model {path}: {reason}")]
    Labels { path: PathBuf, reason: String },
}

fn ort_err(e: impl std::fmt::Display) -> ModelError {
    ModelError::Ort(e.to_string())
}

/// Opens the ONNX Runtime shared library. Call once per process, before [`load`].
pub fn init_runtime(library: &Path) -> Result<ort::environment::Environment, ModelError> {
    if !library.is_file() {
        return Err(ModelError::Library {
            path: library.into(),
            error: "file not found".into(),
        });
    }
    let builder = ort::init_from(library).map_err(|e| ModelError::Library {
        path: library.into(),
        error: e.to_string(),
    })?;
    builder.with_name("inference").build().map_err(ort_err)
}

/// Creates a session for `path` with `intra_threads` threads and reads its spec.
pub fn load(
    env: &ort::environment::Environment,
    path: &Path,
    intra_threads: usize,
    labels_file: Option<&Path>,
) -> Result<(Session, ModelSpec), ModelError> {
    if !path.is_file() {
        return Err(ModelError::MissingModel(path.into()));
    }
    let mut builder = Session::builder(env).map_err(ort_err)?;
    #[cfg(feature = "cuda")]
    {
        use ort::ep::CUDA;
        builder = builder
            .with_execution_providers([CUDA::default()
                .with_device_id(0)
                .build()
                .error_on_failure()])
            .map_err(ort_err)?;
    }
    builder = builder
        .with_optimization_level(GraphOptimizationLevel::All)
        .map_err(ort_err)?
        .with_intra_threads(intra_threads.max(1))
        .map_err(ort_err)?;
    let session = builder.commit_from_file(path).map_err(ort_err)?;
    let spec = spec_of(&session, path, labels_file)?;
    Ok((session, spec))
}

fn spec_of(
    session: &Session,
    path: &Path,
    labels_file: Option<&Path>,
) -> Result<ModelSpec, ModelError> {
    let shape_err = |reason: String| ModelError::Shape {
        path: path.into(),
        reason,
    };
    let (input, output) = match (session.inputs(), session.outputs()) {
        ([i], [o]) => (i, o),
        (i, o) => {
            return Err(shape_err(format!(
                "expected 1 input and 1 output, found {} and {}",
                i.len(),
                o.len()
            )));
        }
    };
    let float = Some(ort::value::TensorElementType::Float32);
    if input.dtype().tensor_type() != float || output.dtype().tensor_type() != float {
        return Err(shape_err("input and output must be float32 tensors".into()));
    }
    let in_shape: Vec<i64> = input
        .dtype()
        .tensor_shape()
        .map(|s| s.to_vec())
        .unwrap_or_default();
    let out_shape: Vec<i64> = output
        .dtype()
        .tensor_shape()
        .map(|s| s.to_vec())
        .unwrap_or_default();
    if in_shape.len() != 4 || in_shape[1] != 3 {
        return Err(shape_err(format!(
            "input {:?} is not [N, 3, H, W]",
            in_shape
        )));
    }
    if out_shape.len() != 3 {
        return Err(shape_err(format!(
            "output {:?} is not [N, 4 + classes, anchors]",
            out_shape
        )));
    }

    let metadata = session.metadata().map_err(ort_err)?;
    let imgsz = metadata.custom("imgsz").and_then(|s| parse_imgsz(&s));
    let (input_height, input_width) = match (in_shape[2], in_shape[3], imgsz) {
        (h, w, _) if h > 0 && w > 0 => (h as u32, w as u32),
        (_, _, Some((h, w))) => (h, w),
        _ => {
            return Err(shape_err(
                "input size is dynamic and there is no imgsz metadata".into(),
            ));
        }
    };
    let class_names = match labels_file {
        Some(file) => labels::read_labels_file(file),
        None => match metadata.custom("names") {
            Some(names) => labels::parse_names_dict(&names),
            None => {
                return Err(ModelError::Labels {
                    path: path.into(),
                    reason: "no `names` metadata; pass a labels file (--labels)".into(),
                });
            }
        },
    }
    .map_err(|e| ModelError::Labels {
        path: path.into(),
        reason: e.to_string(),
    })?;
    if out_shape[1] > 0 && out_shape[1] as usize != 4 + class_names.len() {
        return Err(shape_err(format!(
            "output has {} rows but there are {} class names (expected 4 + classes)",
            out_shape[1],
            class_names.len()
        )));
    }
    let anchors = match out_shape[2] {
        a if a > 0 => a as usize,
        // dynamic anchors: YOLOv8 heads at strides 8, 16, 32
        _ => [8u32, 16, 32]
            .iter()
            .map(|s| ((input_width / s) * (input_height / s)) as usize)
            .sum(),
    };
    Ok(ModelSpec {
        name: path
            .file_stem()
            .map_or_else(|| "model".into(), |s| s.to_string_lossy().into_owned()),
        input_name: input.name().to_string(),
        output_name: output.name().to_string(),
        input_width,
        input_height,
        fixed_batch: (in_shape[0] > 0).then_some(in_shape[0] as usize),
        anchors,
        class_names,
    })
}

/// `imgsz` metadata: `[640, 640]` (height, width) or `640`.
fn parse_imgsz(s: &str) -> Option<(u32, u32)> {
    let nums: Vec<u32> = s
        .trim_matches(|c| c == '[' || c == ']' || c == '(' || c == ')')
        .split(',')
        .filter_map(|p| p.trim().parse().ok())
        .collect();
    match nums[..] {
        [n] => Some((n, n)),
        [h, w] => Some((h, w)),
        _ => None,
    }
}

/// The output of one model run, `batch x (4 + C) x A` floats, owned: it outlives the run, so
/// the worker can hand it to post-processing and start the next run at once.
#[derive(Debug)]
pub struct ModelOutput(Tensor<f32>);

impl ModelOutput {
    pub fn data(&self) -> &[f32] {
        self.0.extract_tensor().1
    }
}

/// Runs `batch` images of `input` (`batch x 3 x H x W`).
pub fn run(
    session: &mut Session,
    spec: &ModelSpec,
    input: &[f32],
    batch: usize,
) -> Result<ModelOutput, ModelError> {
    let shape = [
        batch,
        3,
        spec.input_height as usize,
        spec.input_width as usize,
    ];
    let tensor = TensorRef::from_array_view((shape, input)).map_err(ort_err)?;
    let mut outputs = session
        .run(ort::inputs![spec.input_name.as_str() => tensor])
        .map_err(ort_err)?;
    let value = outputs
        .remove(spec.output_name.as_str())
        .ok_or_else(|| ModelError::Ort(format!("no output named {}", spec.output_name)))?;
    // typed once here, so reading it later cannot fail
    let value = value.downcast::<TensorValueType<f32>>().map_err(ort_err)?;
    let (out_shape, data) = value.extract_tensor();
    let expected = batch * (4 + spec.class_names.len()) * spec.anchors;
    if data.len() != expected {
        return Err(ModelError::Ort(format!(
            "output shape {:?} does not match batch {batch} x {} x {}",
            &out_shape[..],
            4 + spec.class_names.len(),
            spec.anchors
        )));
    }
    Ok(ModelOutput(value))
}

/// `ORT_DYLIB_PATH` when set, else [`default_library_path`].
pub fn default_library_path_or_env() -> PathBuf {
    std::env::var_os("ORT_DYLIB_PATH").map_or_else(default_library_path, PathBuf::from)
}

/// Where the ONNX Runtime library is looked for when `ORT_DYLIB_PATH` is not set: the newest
/// that `scripts/install-deps.sh onnxruntime` installed, else `libonnxruntime.so` wherever the
/// system's loader finds it (as in the container image).
pub fn default_library_path() -> PathBuf {
    common::installed::newest("onnxruntime", |i| {
        Some(i.dir.join(format!("libonnxruntime.so.{}", i.version)))
    })
    .unwrap_or_else(|| PathBuf::from("libonnxruntime.so"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imgsz_forms() {
        assert_eq!(parse_imgsz("[640, 640]"), Some((640, 640)));
        assert_eq!(parse_imgsz("[480, 640]"), Some((480, 640)));
        assert_eq!(parse_imgsz("320"), Some((320, 320)));
        assert_eq!(parse_imgsz("x"), None);
    }
}
