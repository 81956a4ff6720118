//! YOLO11 through a TensorRT engine: one [`ExecutionContext`] and one CUDA [`Stream`] (behind
//! a mutex, so one image runs at a time on them, like the ONNX Runtime session of
//! [`crate::YoloOrt`]), the same fixed-size letterbox before and the same NMS and box mapping
//! after ([`fracture_models::yolo::predictor::postprocess`]) as every other YOLO backend. The
//! engine's `output0` must be ultralytics' decoded predictions `[1, 4 + nc, N]` (cx, cy, w, h
//! in input pixels, then class scores).
//!
//! Host buffers are ordinary (pageable) memory: the binding has no pinned-allocation entry
//! yet, so each copy is staged by the CUDA driver.

use std::sync::Mutex;

use fracture_models::detector::{Detector, Finding};
use fracture_models::letterbox::Letterbox;
use fracture_models::nms::{NmsConfig, NmsError};
use fracture_models::pixels::GrayF32;
use fracture_models::tensor::nchw_from_gray;
use fracture_models::yolo::predictor::postprocess;
use fracture_tensorrt::{DataType, Engine, ExecutionContext, Shim, Stream, TrtError};
use tch::Tensor;

/// The input ultralytics' exporter (and ours) names.
pub const INPUT_NAME: &str = "images";
/// The output ultralytics' exporter (and ours) names.
pub const OUTPUT_NAME: &str = "output0";

#[derive(Debug, thiserror::Error)]
pub enum YoloTrtError {
    #[error("TensorRT: {0}")]
    Trt(#[from] TrtError),
    #[error(transparent)]
    Nms(#[from] NmsError),
    #[error("the engine's `{name}` is {dtype} of shape {shape:?}; expected {expected}")]
    Io { name: &'static str, dtype: DataType, shape: Vec<i64>, expected: String },
    #[error(
        "the engine's `{OUTPUT_NAME}` has shape {shape:?}; expected [1, {expected_rows}, N] for {nc} class(es)"
    )]
    OutputShape { shape: Vec<i64>, expected_rows: i64, nc: usize },
    #[error("the TensorRT context was poisoned by a panic in another thread")]
    Poisoned,
}

/// The context and stream one image at a time runs on.
struct Exec {
    ctx: ExecutionContext,
    stream: Stream,
}

/// A YOLO11 engine with its execution context.
pub struct YoloTrt {
    engine: Engine,
    exec: Mutex<Exec>,
    classes: Vec<String>,
    nms: NmsConfig,
    imgsz: u32,
}

impl std::fmt::Debug for YoloTrt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("YoloTrt")
            .field("engine", &self.engine)
            .field("classes", &self.classes)
            .field("imgsz", &self.imgsz)
            .finish()
    }
}

/// A dimension that is either dynamic (`-1`) or `want`.
fn fits(dim: i64, want: i64) -> bool {
    dim == -1 || dim == want
}

impl YoloTrt {
    /// Checks the engine's IO (`images` f32 `[N, 3, H, W]`, `output0` f32 `[N, 4 + nc, A]`,
    /// dynamic dimensions allowed) and creates its context and a stream. Inputs are square
    /// `imgsz` letterboxes (the bundle's input size, the engine's optimisation profile).
    pub fn new(
        shim: &Shim,
        engine: Engine,
        classes: Vec<String>,
        nms: NmsConfig,
        imgsz: u32,
    ) -> Result<Self, YoloTrtError> {
        let s = i64::from(imgsz);
        let input = engine.tensor(INPUT_NAME)?;
        let ok = input.dtype == DataType::Float
            && matches!(input.shape.as_slice(), &[n, c, h, w]
                if fits(n, 1) && c == 3 && fits(h, s) && fits(w, s));
        if !ok {
            return Err(YoloTrtError::Io {
                name: INPUT_NAME,
                dtype: input.dtype,
                shape: input.shape.clone(),
                expected: format!("float32 [1, 3, {s}, {s}] (dynamic dimensions allowed)"),
            });
        }
        let rows = 4 + classes.len() as i64;
        let output = engine.tensor(OUTPUT_NAME)?;
        let ok = output.dtype == DataType::Float
            && matches!(output.shape.as_slice(), &[n, r, _] if fits(n, 1) && fits(r, rows));
        if !ok {
            return Err(YoloTrtError::Io {
                name: OUTPUT_NAME,
                dtype: output.dtype,
                shape: output.shape.clone(),
                expected: format!("float32 [1, {rows}, N] for {} class(es)", classes.len()),
            });
        }
        let ctx = engine.create_context()?;
        let stream = shim.create_stream()?;
        Ok(Self { engine, exec: Mutex::new(Exec { ctx, stream }), classes, nms, imgsz })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The letterbox into the engine's square input.
    pub fn letterbox_for(&self, width: u32, height: u32) -> Letterbox {
        Letterbox::new(width, height, self.imgsz, self.imgsz)
    }

    /// The engine's flat input `[1, 3, S, S]` for `image`, and the letterbox used.
    pub fn preprocess(&self, image: &GrayF32) -> (Vec<f32>, Letterbox) {
        let lb = self.letterbox_for(image.width, image.height);
        (nchw_from_gray(&lb.apply(image)), lb)
    }

    /// Decoded predictions `[1, 4 + nc, N]` for a preprocessed input: upload, `enqueueV3`,
    /// synchronise, download.
    pub fn forward(&self, input: &[f32]) -> Result<Tensor, YoloTrtError> {
        let s = i64::from(self.imgsz);
        let mut exec = self.exec.lock().map_err(|_| YoloTrtError::Poisoned)?;
        let Exec { ctx, stream } = &mut *exec;
        ctx.write_input(INPUT_NAME, &[1, 3, s, s], input)?;
        ctx.run(stream)?;
        let out = ctx.read_tensor::<f32>(OUTPUT_NAME)?;
        let rows = 4 + self.classes.len() as i64;
        match out.shape.as_slice() {
            &[1, r, n] if r == rows => Ok(Tensor::from_slice(&out.data).view([1, r, n])),
            _ => Err(YoloTrtError::OutputShape {
                shape: out.shape,
                expected_rows: rows,
                nc: self.classes.len(),
            }),
        }
    }

    /// NMS and boxes back to original pixels (every YOLO backend's path).
    pub fn postprocess(&self, pred: &Tensor, lb: &Letterbox) -> Result<Vec<Finding>, YoloTrtError> {
        Ok(postprocess(pred, lb, &self.nms)?)
    }
}

impl Detector for YoloTrt {
    type Error = YoloTrtError;

    fn classes(&self) -> &[String] {
        &self.classes
    }

    fn detect(&self, image: &GrayF32) -> Result<Vec<Finding>, YoloTrtError> {
        let (input, lb) = self.preprocess(image);
        let pred = self.forward(&input)?;
        self.postprocess(&pred, &lb)
    }
}
