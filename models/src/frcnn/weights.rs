//! Weights of the detector: loading a safetensors file whose tensor names are torchvision's
//! state_dict keys (strictly, with the offending tensor named: [`crate::yolo::weights`]'s
//! loader, which is architecture-agnostic), and PyTorch's parameter count.

use tch::nn::VarStore;

pub use crate::yolo::weights::{WeightsError, load_named, load_safetensors};

use super::FasterRcnn;

/// What `sum(p.numel() for p in model.parameters())` gives for the torchvision model: every
/// variable except batch-norm statistics and, with frozen batch norm, its affine weights
/// (buffers in `FrozenBatchNorm2d`). 43,256,153 for 2 classes, 43,712,278 for 91.
pub fn parameter_count(vs: &VarStore, model: &FasterRcnn) -> i64 {
    crate::yolo::weights::parameter_count(vs) - model.frozen_affine_elements()
}
