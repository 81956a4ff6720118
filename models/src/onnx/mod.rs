//! ONNX export written by the project: the ONNX protobuf messages ([`proto`], hand-written
//! `prost` types), a graph builder that can trace values with libtorch ([`graph`]) and the
//! model emitters ([`yolo`]; [`frcnn`] with [`frcnn_backbone`], [`frcnn_rpn`] and
//! [`frcnn_heads`]), with the extra operators of [`ops`] and [`ops_detect`]. Graphs use opset 17 and IR version 8,
//! with an input `images` `[batch, 3, H, W]` float32 whose batch is symbolic; YOLO's spatial
//! size is fixed at export, Faster R-CNN's is symbolic too.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let vs = tch::nn::VarStore::new(tch::Device::Cpu);
//! # let cfg = fracture_models::yolo::YoloConfig { scale: fracture_models::yolo::Scale::N, num_classes: 1 };
//! let model = fracture_models::yolo::Yolo::new(&vs.root(), &cfg)?;
//! let proto = fracture_models::onnx::yolo::export_yolo(&model, 416, 416)?;
//! fracture_models::onnx::save(&proto, std::path::Path::new("model.onnx"))?;
//! # Ok(()) }
//! ```

pub mod fp16;
pub mod frcnn;
pub mod frcnn_backbone;
pub mod frcnn_heads;
pub mod frcnn_rpn;
pub mod graph;
pub mod ops;
pub mod ops_detect;
pub mod proto;
pub mod qdq;
pub mod yolo;

use std::path::PathBuf;

pub use frcnn::{FRCNN_OUTPUTS, export_frcnn, trace_frcnn};
pub use graph::{Dim, GraphBuilder, IR_VERSION, OPSET, PRODUCER, Trace, Value, save};
pub use yolo::{export_yolo, trace_yolo};

/// Name of the exported graph's image input.
pub const INPUT: &str = "images";
/// Name of the symbolic batch dimension.
pub const BATCH: &str = "batch";

#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    #[error("cannot write {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("tensor {name} is {kind:?}; the exporter writes float32 and int64 constants")]
    Kind { name: String, kind: tch::Kind },
    #[error("reading a tensor: {0}")]
    Tensor(String),
    #[error("tracing the graph: {0}")]
    Trace(&'static str),
    #[error(
        "export size {height}×{width}: height and width must be positive multiples of {multiple}"
    )]
    Size { height: i64, width: i64, multiple: i64 },
    #[error(
        "example input must be a float32 [B, 3, {height}, {width}] batch, got {shape:?} {kind:?}"
    )]
    Example { shape: Vec<i64>, kind: tch::Kind, height: i64, width: i64 },
    #[error("the model cannot be exported: {0}")]
    Model(&'static str),
}
