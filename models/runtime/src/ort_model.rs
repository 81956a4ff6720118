//! One exported graph (`model.onnx` or `model.int8.onnx`) in an ONNX Runtime session: checks
//! that its input is the bundle contract's `images` `[B, 3, H, W]` float32 (H×W fixed for
//! YOLO11, dynamic for Faster R-CNN), and runs flat float32 batches through it. Architecture-specific decoding lives with each
//! detector ([`crate::yolo_ort`]); this module only moves tensors in and out.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ort::session::Session;
use ort::value::{TensorElementType, TensorRef, ValueType};

use crate::ort_library::{self, OrtLibraryError, OrtOptions};

/// The input every exported graph takes.
pub const INPUT_NAME: &str = "images";

#[derive(Debug, thiserror::Error)]
pub enum OrtModelError {
    #[error(transparent)]
    Library(#[from] OrtLibraryError),
    #[error("{path}: ONNX Runtime could not open the model: {message}")]
    Open { path: PathBuf, message: String },
    #[error(
        "{path}: the graph's input must be `{INPUT_NAME}` float32 [batch, 3, H, W]; it has {found}"
    )]
    Input { path: PathBuf, found: String },
    #[error("{path}: the graph has no output `{name}`")]
    MissingOutput { path: PathBuf, name: String },
    #[error("{path}: inference failed: {message}")]
    Run { path: PathBuf, message: String },
    #[error("{path}: output `{name}` is {found}, expected {expected}")]
    Output { path: PathBuf, name: String, found: String, expected: &'static str },
    #[error("input holds {got} values, the graph takes {batch}x3x{height}x{width}")]
    InputSize { got: usize, batch: usize, height: i64, width: i64 },
    #[error("{path}: the graph takes {height}x{width} inputs, not {got_height}x{got_width}")]
    InputHw { path: PathBuf, height: i64, width: i64, got_height: i64, got_width: i64 },
}

/// An output tensor copied out of the session.
#[derive(Debug, Clone, PartialEq)]
pub enum OutputData {
    F32(Vec<f32>),
    I64(Vec<i64>),
}

/// One named output.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    pub name: String,
    pub shape: Vec<i64>,
    pub data: OutputData,
}

/// A loaded graph ready to run.
pub struct OrtModel {
    path: PathBuf,
    /// `Session::run` needs `&mut`; detectors are shared (`&self`), one run at a time.
    session: Mutex<Session>,
    /// The input's height and width; -1 where the graph leaves it dynamic.
    height: i64,
    width: i64,
    outputs: Vec<String>,
    threads: usize,
}

impl std::fmt::Debug for OrtModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrtModel")
            .field("path", &self.path)
            .field("height", &self.height)
            .field("width", &self.width)
            .field("outputs", &self.outputs)
            .field("threads", &self.threads)
            .finish()
    }
}

impl OrtModel {
    /// Loads ONNX Runtime (once per process) and opens `path` with `opts`. A Q/DQ model with
    /// int8 activations (a bundle's `model.int8.onnx`, in TensorRT's symmetric form) runs with
    /// uint8 activations around 128 — the same grid, the form ONNX Runtime's integer
    /// kernels take (see [`fracture_models::onnx::qdq::to_u8_activations`]) — and, where
    /// `opts.int8_weights` says so, 7-bit weights ([`Int8Weights`]).
    ///
    /// [`Int8Weights`]: crate::ort_library::Int8Weights
    pub fn open(path: &Path, opts: &OrtOptions) -> Result<Self, OrtModelError> {
        use fracture_models::onnx::proto::ModelProto;
        use fracture_models::onnx::qdq;
        use prost::Message;
        let open_err = |message: String| OrtModelError::Open { path: path.to_path_buf(), message };
        let bytes = std::fs::read(path).map_err(|e| open_err(e.to_string()))?;
        let proto = ModelProto::decode(bytes.as_slice())
            .map_err(|e| open_err(format!("not an ONNX model: {e}")))?;
        if qdq::has_int8_activations(&proto) {
            let bytes = for_integer_kernels(&proto, opts).encode_to_vec();
            return Self::open_with(path, opts, |b| b.commit_from_memory(&bytes));
        }
        Self::open_with(path, opts, |b| b.commit_from_memory(&bytes))
    }

    /// Opens a graph held in memory (as [`OrtModel::open`] would the file holding it);
    /// `label` names it in errors. For the many short-lived variants of one model that
    /// `fracture calibrate`'s sensitivity analysis runs, without writing each to disk.
    pub fn from_proto(
        model: &fracture_models::onnx::proto::ModelProto,
        label: &Path,
        opts: &OrtOptions,
    ) -> Result<Self, OrtModelError> {
        use fracture_models::onnx::qdq;
        use prost::Message;
        let bytes = if qdq::has_int8_activations(model) {
            for_integer_kernels(model, opts).encode_to_vec()
        } else {
            model.encode_to_vec()
        };
        Self::open_with(label, opts, |b| b.commit_from_memory(&bytes))
    }

    fn open_with(
        path: &Path,
        opts: &OrtOptions,
        commit: impl FnOnce(&mut ort::session::builder::SessionBuilder) -> ort::Result<Session>,
    ) -> Result<Self, OrtModelError> {
        let loaded = ort_library::ensure_loaded(opts.library.as_deref())?;
        let open_err = |message: String| OrtModelError::Open { path: path.to_path_buf(), message };
        let threads = opts.intra_threads();
        let mut session = Session::builder(&loaded.env)
            .map_err(|e| open_err(e.to_string()))?
            .with_intra_threads(threads)
            .map_err(|e| open_err(e.to_string()))?
            .with_optimization_level(opts.graph_optimization.into())
            .map_err(|e| open_err(e.to_string()))?;
        let session = commit(&mut session).map_err(|e| open_err(e.to_string()))?;
        let input_err = |found: String| OrtModelError::Input { path: path.to_path_buf(), found };
        let [input] = session.inputs() else {
            return Err(input_err(format!("{} inputs", session.inputs().len())));
        };
        let (height, width) = match input.dtype() {
            ValueType::Tensor { ty: TensorElementType::Float32, shape, .. }
                if input.name() == INPUT_NAME && shape.len() == 4 && shape[1] == 3 =>
            {
                (shape[2].max(-1), shape[3].max(-1))
            }
            other => return Err(input_err(format!("`{}` {other:?}", input.name()))),
        };
        let outputs = session.outputs().iter().map(|o| o.name().to_string()).collect();
        Ok(Self {
            path: path.to_path_buf(),
            session: Mutex::new(session),
            height,
            width,
            outputs,
            threads,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The graph's input size `(height, width)`; -1 for a dynamic dimension.
    pub fn input_hw(&self) -> (i64, i64) {
        (self.height, self.width)
    }

    /// The graph's fixed input size, or an error naming the file when it is dynamic.
    pub fn fixed_hw(&self) -> Result<(i64, i64), OrtModelError> {
        match (self.height, self.width) {
            (h, w) if h > 0 && w > 0 => Ok((h, w)),
            (h, w) => Err(OrtModelError::Input {
                path: self.path.clone(),
                found: format!("a dynamic size {h}x{w} (this detector needs a fixed one)"),
            }),
        }
    }

    /// The intra-op thread count the session was opened with.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Fails unless the graph has every output in `names`.
    pub fn require_outputs(&self, names: &[&str]) -> Result<(), OrtModelError> {
        match names.iter().find(|n| !self.outputs.iter().any(|o| o == *n)) {
            Some(name) => Err(OrtModelError::MissingOutput {
                path: self.path.clone(),
                name: (*name).to_string(),
            }),
            None => Ok(()),
        }
    }

    /// Runs `input` (`[batch, 3, H, W]` float32, flat, at the graph's fixed size) and copies
    /// out the named outputs.
    pub fn run(
        &self,
        input: &[f32],
        batch: usize,
        names: &[&str],
    ) -> Result<Vec<Output>, OrtModelError> {
        self.run_hw(input, batch, (self.height, self.width), names)
    }

    /// [`OrtModel::run`] with the input's height and width given (they must equal the
    /// graph's where it fixes them).
    pub fn run_hw(
        &self,
        input: &[f32],
        batch: usize,
        (h, w): (i64, i64),
        names: &[&str],
    ) -> Result<Vec<Output>, OrtModelError> {
        let fixed_differs = |fixed: i64, got: i64| fixed > 0 && fixed != got;
        if h <= 0 || w <= 0 || fixed_differs(self.height, h) || fixed_differs(self.width, w) {
            return Err(OrtModelError::InputHw {
                path: self.path.clone(),
                height: self.height,
                width: self.width,
                got_height: h,
                got_width: w,
            });
        }
        if input.len() != batch * 3 * (h * w) as usize {
            return Err(OrtModelError::InputSize { got: input.len(), batch, height: h, width: w });
        }
        let run_err = |message: String| OrtModelError::Run { path: self.path.clone(), message };
        let tensor = TensorRef::from_array_view(([batch as i64, 3, h, w], input))
            .map_err(|e| run_err(e.to_string()))?;
        // A poisoned lock only means another thread panicked mid-run; the session itself holds
        // no half-written state between runs, so keep serving.
        let mut session = self.session.lock().unwrap_or_else(|p| p.into_inner());
        let outputs =
            session.run(ort::inputs![INPUT_NAME => tensor]).map_err(|e| run_err(e.to_string()))?;
        names
            .iter()
            .map(|&name| {
                let value = outputs.get(name).ok_or_else(|| OrtModelError::MissingOutput {
                    path: self.path.clone(),
                    name: name.to_string(),
                })?;
                let output_err = |found: String, expected| OrtModelError::Output {
                    path: self.path.clone(),
                    name: name.to_string(),
                    found,
                    expected,
                };
                let (shape, data) = match value.dtype().tensor_type() {
                    Some(TensorElementType::Float32) => {
                        let (shape, data) = value
                            .try_extract_tensor::<f32>()
                            .map_err(|e| output_err(e.to_string(), "a float32 tensor"))?;
                        (shape.to_vec(), OutputData::F32(data.to_vec()))
                    }
                    Some(TensorElementType::Int64) => {
                        let (shape, data) = value
                            .try_extract_tensor::<i64>()
                            .map_err(|e| output_err(e.to_string(), "an int64 tensor"))?;
                        (shape.to_vec(), OutputData::I64(data.to_vec()))
                    }
                    other => {
                        return Err(output_err(format!("{other:?}"), "float32 or int64"));
                    }
                };
                Ok(Output { name: name.to_string(), shape, data })
            })
            .collect()
    }
}

/// A Q/DQ model in the form ONNX Runtime's CPU integer kernels take: uint8 activations, and
/// 7-bit weights where `opts.int8_weights` asks for them (by default, on CPUs whose kernels
/// would saturate on 8-bit ones).
fn for_integer_kernels(
    model: &fracture_models::onnx::proto::ModelProto,
    opts: &OrtOptions,
) -> fracture_models::onnx::proto::ModelProto {
    use fracture_models::onnx::qdq;
    let u8_acts = qdq::to_u8_activations(model);
    if opts.int8_weights.reduced() { qdq::to_reduced_range_weights(&u8_acts) } else { u8_acts }
}
