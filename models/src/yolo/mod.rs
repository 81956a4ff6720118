//! YOLO11 (sizes n/s/m/l/x) in libtorch, block for block as ultralytics builds it from
//! `yolo11.yaml`, so weights move both ways: the variables carry ultralytics' state_dict names
//! (`model.0.conv.weight`, ..., `model.23.dfl.conv.weight`) and a safetensors file of an
//! ultralytics model loads with [`load_safetensors`].
//!
//! Modules, bottom up: [`scale`] (the one size table), [`conv`] (Conv + BN + SiLU, fusing),
//! [`blocks`] (Bottleneck, C3k, C3k2, SPPF), [`attention`] (Attention, PSABlock, C2PSA),
//! [`head`] (Detect), [`model`] (the graph), [`anchors`] and [`decode`] (raw maps to
//! `[B, 4 + nc, N]`), [`weights`] (loading, parameter counts). NMS is [`crate::nms`].
//!
//! ```no_run
//! use fracture_models::yolo::{load_safetensors, Scale, Yolo, YoloConfig};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let vs = tch::nn::VarStore::new(tch::Device::Cpu);
//! let mut model = Yolo::new(&vs.root(), &YoloConfig { scale: Scale::S, num_classes: 1 })?;
//! load_safetensors(&vs, std::path::Path::new("weights.safetensors"))?;
//! model.fuse();
//! let x = tch::Tensor::zeros([1, 3, 416, 416], (tch::Kind::Float, tch::Device::Cpu));
//! let pred = tch::no_grad(|| model.forward_inference(&x)); // [1, 5, 3549]
//! # Ok(()) }
//! ```

pub mod anchors;
pub mod assigner;
pub mod attention;
pub mod blocks;
pub mod conv;
pub mod decode;
pub mod head;
pub mod loss;
pub mod model;
pub mod predictor;
pub mod scale;
pub mod weights;

pub use model::Yolo;
pub use predictor::{ArchSpec, Precision, PredictError, PredictOptions, YoloPredictor};
pub use scale::{Scale, ScaleParams, UnknownScale};
pub use weights::{WeightsError, is_buffer, load_named, load_safetensors, parameter_count};

/// What to build: a size and a number of classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct YoloConfig {
    pub scale: Scale,
    pub num_classes: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum YoloError {
    #[error("number of classes must be at least 1, got {0}")]
    NumClasses(i64),
    #[error(
        "YOLO11 input must be a float [B, 3, H, W] batch with H and W multiples of 32, got {shape:?} {kind:?}"
    )]
    Input { shape: Vec<i64>, kind: tch::Kind },
    #[error("invalid layer graph: {0}")]
    Graph(&'static str),
}
