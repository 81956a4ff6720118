//! Faster R-CNN ResNet50-FPN v2 (torchvision's `fasterrcnn_resnet50_fpn_v2`) in libtorch, module
//! for module as torchvision builds it, so weights move both ways: the variables carry
//! torchvision's state_dict names (`backbone.body.conv1.weight`,
//! `backbone.fpn.inner_blocks.0.0.weight`, `rpn.head.conv.0.0.weight`,
//! `roi_heads.box_head.0.0.weight`, `roi_heads.box_predictor.cls_score.weight`, ...) and a
//! safetensors file of a torchvision model loads with [`load_safetensors`].
//!
//! Modules, in the order an image flows through them: [`transform`] (normalise, resize, pad to
//! a batch; boxes back to original pixels), [`backbone`] (the ResNet50 body, C2..C5) and
//! [`fpn`] (the feature pyramid, P2..P6), [`anchors`] and [`box_coder`] (anchor grids, box
//! deltas), [`rpn`] (objectness, proposals), [`roi_align`] (multi-scale RoIAlign in tensor
//! ops), [`roi_heads`] (box head, predictor, per-class post-processing), [`model`] (the whole
//! graph). Training adds [`matcher`] (IoU matching), [`sampler`] (balanced sampling, behind a
//! trait so tests can replay torchvision's draws), [`loss`] (the loss functions and options),
//! [`rpn_loss`] and [`roi_loss`] (each stage's targets and loss), and
//! [`FasterRcnn::forward_train`]; [`predictor`] is the [`crate::detector::Detector`] for
//! weights files. The building blocks are [`norm`] (BatchNorm2d / FrozenBatchNorm2d) and
//! [`conv_norm`] (Conv2d + norm + ReLU); [`batched_nms`] is torchvision's class-aware NMS on
//! top of [`crate::nms::nms`]; [`weights`] loads files and counts parameters.
//!
//! ```no_run
//! use fracture_models::frcnn::{FasterRcnn, FrcnnConfig, load_safetensors};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let vs = tch::nn::VarStore::new(tch::Device::Cpu);
//! let model = FasterRcnn::new(&vs.root(), &FrcnnConfig::new(2))?;
//! load_safetensors(&vs, std::path::Path::new("weights.safetensors"))?;
//! let image = tch::Tensor::rand([3, 480, 640], (tch::Kind::Float, tch::Device::Cpu));
//! let dets = tch::no_grad(|| model.forward_eval(&[image]))?; // boxes in original pixels
//! # Ok(()) }
//! ```

pub mod anchors;
pub mod backbone;
pub mod batched_nms;
pub mod box_coder;
pub mod conv_norm;
pub mod fpn;
pub mod loss;
pub mod matcher;
pub mod model;
pub mod norm;
pub mod predictor;
pub mod roi_align;
pub mod roi_heads;
pub mod roi_loss;
pub mod rpn;
pub mod rpn_loss;
pub mod sampler;
pub mod transform;
pub mod weights;

pub use loss::{Focal, FrcnnLosses, LossConfig, LossWeights};
pub use model::{
    FasterRcnn, FrcnnConfig, FrcnnDetections, FrcnnTarget, FrcnnTrace, FrcnnTrainStep,
};
pub use predictor::{FrcnnPredictError, FrcnnPredictOptions, FrcnnPredictor};
pub use sampler::{BalancedSampler, RecordedSampler, Sampler};
pub use weights::{InitSummary, load_partial, load_safetensors, parameter_count};

/// The architecture name in weights metadata and on the command line.
pub const ARCH: &str = "frcnn-r50-fpn-v2";

#[derive(Debug, thiserror::Error)]
pub enum FrcnnError {
    #[error("number of classes must be at least 2 (background + one), got {0}")]
    NumClasses(i64),
    #[error("trainable backbone layers must be in 0..=5, got {0}")]
    TrainableLayers(i64),
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("no images given")]
    EmptyBatch,
    #[error("target {index}: {message}")]
    Target { index: usize, message: String },
    #[error(
        "image {index} must be a float [3, H, W] tensor with H, W >= 1, got {shape:?} {kind:?}"
    )]
    Input { index: usize, shape: Vec<i64>, kind: tch::Kind },
    #[error(transparent)]
    Tensor(#[from] tch::TchError),
}
