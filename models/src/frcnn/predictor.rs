//! Faster R-CNN inference on one radiograph from a weights file: rebuild the model the file
//! describes (`__metadata__` arch `frcnn-r50-fpn-v2`, classes without the background, and the
//! resize rule it was trained with: `min_size` / `max_size` in the provenance, else the input
//! size for both; also the number of proposals it was validated with), load it, and turn the eval forward's detections into [`Finding`]s in
//! original pixels. The same path serves `fracture predict` and evaluation.
//!
//! Classes: the model's label `k >= 1` is [`Finding::class`] `k - 1`, an index into the file's
//! class names, as YOLO's classes are (background has no name).

use std::path::{Path, PathBuf};

use tch::{Device, Kind, Tensor, nn::VarStore};

use super::weights::{WeightsError, load_named};
use super::{ARCH, FasterRcnn, FrcnnConfig, FrcnnError};
use crate::detector::{Detector, Finding};
use crate::pixels::GrayF32;
use crate::weights_file::{self, WeightsFileError};

#[derive(Debug, thiserror::Error)]
pub enum FrcnnPredictError {
    #[error(transparent)]
    File(#[from] WeightsFileError),
    #[error(transparent)]
    Weights(#[from] WeightsError),
    #[error(transparent)]
    Model(#[from] FrcnnError),
    #[error("{path}: architecture `{arch}` is not {ARCH}")]
    NotFrcnn { path: PathBuf, arch: String },
    #[error("{path}: bad {key} `{value}` in the metadata")]
    Metadata { path: PathBuf, key: String, value: String },
}

/// Inference settings.
#[derive(Debug, Clone, PartialEq)]
pub struct FrcnnPredictOptions {
    /// Keep detections scoring above this (torchvision's `box_score_thresh`, default 0.05).
    pub score_thresh: f64,
    /// Per-class NMS IoU (`box_nms_thresh`, 0.5).
    pub nms_thresh: f64,
    /// At most this many detections per image (`box_detections_per_img`, 100).
    pub detections_per_img: i64,
    /// Resize rule; `None` takes the file's (or its input size).
    pub min_size: Option<i64>,
    pub max_size: Option<i64>,
    /// Proposals kept after the RPN's NMS (`rpn_post_nms_top_n_test`, 1000): the RoI head's
    /// cost is proportional to it.
    pub proposals: Option<i64>,
    pub device: Device,
}

impl Default for FrcnnPredictOptions {
    fn default() -> Self {
        Self {
            score_thresh: 0.05,
            nms_thresh: 0.5,
            detections_per_img: 100,
            min_size: None,
            max_size: None,
            proposals: None,
            device: Device::Cpu,
        }
    }
}

/// Metadata key of the proposals the box head scored during training's validation
/// (`rpn_post_nms_top_n_test`); prediction uses the same unless told otherwise.
pub const PROPOSALS_KEY: &str = "rpn_post_nms_top_n_test";

/// Metadata key of the anchor sizes per FPN level the weights were trained with
/// (comma-separated; absent: torchvision's `32,64,128,256,512`).
pub const ANCHOR_SIZES_KEY: &str = "anchor_sizes";

/// `sizes` as [`ANCHOR_SIZES_KEY`] stores them.
pub fn anchor_sizes_text(sizes: &[f64]) -> String {
    sizes.iter().map(f64::to_string).collect::<Vec<_>>().join(",")
}

/// The anchor sizes [`ANCHOR_SIZES_KEY`] holds, `None` when absent.
pub fn trained_anchor_sizes(meta: &weights_file::WeightsMeta) -> Result<Option<Vec<f64>>, String> {
    let Some(text) = meta.extra.get(ANCHOR_SIZES_KEY) else { return Ok(None) };
    let sizes: Result<Vec<f64>, _> = text.split(',').map(|v| v.trim().parse::<f64>()).collect();
    sizes.map(Some).map_err(|_| format!("{ANCHOR_SIZES_KEY}={text}"))
}

/// A loaded Faster R-CNN ready to predict.
#[derive(Debug)]
pub struct FrcnnPredictor {
    _vs: VarStore,
    model: FasterRcnn,
    classes: Vec<String>,
}

/// The `(min_size, max_size)` a weights file's metadata says it was trained with.
pub fn trained_sizes(meta: &weights_file::WeightsMeta) -> Result<(i64, i64), String> {
    let get = |key: &str| -> Result<i64, String> {
        match meta.extra.get(key) {
            Some(v) => v.parse().map_err(|_| format!("{key}={v}")),
            None => Ok(i64::from(meta.imgsz)),
        }
    };
    Ok((get("min_size")?, get("max_size")?))
}

impl FrcnnPredictor {
    /// Loads `path`. Our files say what they hold; a plain torchvision state_dict needs
    /// `classes` (object class names, background excluded; a COCO model has 90).
    pub fn load(
        path: &Path,
        classes: Option<Vec<String>>,
        opts: FrcnnPredictOptions,
    ) -> Result<Self, FrcnnPredictError> {
        let meta = weights_file::read_meta(path)?;
        let (classes, trained) = match (meta, classes) {
            (Some(m), _) => {
                if m.arch != ARCH {
                    return Err(FrcnnPredictError::NotFrcnn {
                        path: path.to_path_buf(),
                        arch: m.arch,
                    });
                }
                let bad = |kv: String| FrcnnPredictError::Metadata {
                    path: path.to_path_buf(),
                    key: "setting".into(),
                    value: kv,
                };
                let sizes = trained_sizes(&m).map_err(bad)?;
                let proposals = match m.extra.get(PROPOSALS_KEY) {
                    Some(v) => {
                        Some(v.parse::<i64>().map_err(|_| bad(format!("{PROPOSALS_KEY}={v}")))?)
                    }
                    None => None,
                };
                let anchors = trained_anchor_sizes(&m).map_err(bad)?;
                (m.classes, Some((sizes, proposals, anchors)))
            }
            (None, Some(c)) => (c, None),
            (None, None) => {
                return Err(WeightsFileError::NoMetadata { path: path.to_path_buf() }.into());
            }
        };
        let (min_t, max_t) = trained.as_ref().map_or((800, 1333), |(s, _, _)| *s);
        let trained_proposals = trained.as_ref().and_then(|(_, p, _)| *p);
        let mut cfg = FrcnnConfig::new(classes.len() as i64 + 1)
            .with_sizes(opts.min_size.unwrap_or(min_t), opts.max_size.unwrap_or(max_t));
        cfg.roi_heads.score_thresh = opts.score_thresh;
        cfg.roi_heads.nms_thresh = opts.nms_thresh;
        cfg.roi_heads.detections_per_img = opts.detections_per_img;
        if let Some(n) = opts.proposals.or(trained_proposals) {
            cfg.rpn.post_nms_top_n_test = n;
        }
        if let Some(anchors) = trained.and_then(|(_, _, a)| a) {
            cfg.rpn.anchor_sizes = anchors;
        }
        let vs = VarStore::new(opts.device);
        let mut model = FasterRcnn::new(&vs.root(), &cfg)?;
        load_named(&vs, weights_file::load_tensors(path)?, path)?;
        model.fuse();
        Ok(Self { _vs: vs, model, classes })
    }

    pub fn model(&self) -> &FasterRcnn {
        &self.model
    }

    /// Backbone embedding `[1, 2048]` (float32) of `image`, transformed exactly as for
    /// detection (see [`FasterRcnn::embed`]).
    pub fn embed(&self, image: &GrayF32) -> Result<Tensor, FrcnnPredictError> {
        let x = Self::image_tensor(image);
        Ok(tch::no_grad(|| self.model.embed(&[x]))?)
    }

    /// `[3, H, W]` float input of a gray image (the value in all three channels).
    pub fn image_tensor(image: &GrayF32) -> Tensor {
        let (h, w) = (i64::from(image.height), i64::from(image.width));
        Tensor::from_slice(&image.data)
            .view([1, h, w])
            .expand([3, h, w], false)
            .to_kind(Kind::Float)
    }
}

impl Detector for FrcnnPredictor {
    type Error = FrcnnPredictError;

    fn classes(&self) -> &[String] {
        &self.classes
    }

    fn detect(&self, image: &GrayF32) -> Result<Vec<Finding>, FrcnnPredictError> {
        let x = Self::image_tensor(image);
        let dets = tch::no_grad(|| self.model.forward_eval(&[x]))?;
        let Some(d) = dets.first() else { return Ok(Vec::new()) };
        let boxes: Vec<f32> =
            Vec::try_from(d.boxes.to_kind(Kind::Float).reshape([-1])).map_err(FrcnnError::from)?;
        let scores: Vec<f32> =
            Vec::try_from(d.scores.to_kind(Kind::Float)).map_err(FrcnnError::from)?;
        let labels: Vec<i64> = Vec::try_from(&d.labels).map_err(FrcnnError::from)?;
        Ok(boxes
            .chunks_exact(4)
            .zip(scores)
            .zip(labels)
            .map(|((b, s), l)| Finding::new([b[0], b[1], b[2], b[3]], s, l - 1))
            .collect())
    }
}
