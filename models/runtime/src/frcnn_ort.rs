//! Faster R-CNN through ONNX Runtime. The exported graph ([`fracture_models::onnx`]'s
//! Faster R-CNN contract) takes the image already resized by torchvision's rule, RGB in
//! [0, 1], with any height and width; it normalises, pads, proposes, pools, classifies and
//! runs the per-class NMS itself, and returns `boxes` `[B, D, 4]` (x1, y1, x2, y2 in the
//! resized image's pixels), `scores` `[B, D]` and `labels` `[B, D]` (1-based, 0 is
//! background), best first, padded with score 0. This side does what the libtorch predictor
//! does around its network: the same resize before ([`Transform::resize`]) and the same
//! mapping back to original pixels after ([`Transform::postprocess_boxes`]).

use std::path::Path;

use fracture_models::bundle::Bundle;
use fracture_models::detector::{Detector, Finding};
use fracture_models::frcnn::predictor::trained_sizes;
use fracture_models::frcnn::transform::{Transform, TransformConfig};
use fracture_models::frcnn::{FrcnnError, FrcnnPredictor};
use fracture_models::pixels::GrayF32;
use fracture_models::weights_file;
use tch::{Kind, Tensor};

use crate::ort_library::OrtOptions;
use crate::ort_model::{OrtModel, OrtModelError, Output, OutputData};

/// The graph's outputs, in the order the export writes them.
pub const OUTPUT_NAMES: [&str; 3] = ["boxes", "scores", "labels"];

#[derive(Debug, thiserror::Error)]
pub enum FrcnnOrtError {
    #[error(transparent)]
    Model(#[from] OrtModelError),
    #[error(transparent)]
    Frcnn(#[from] FrcnnError),
    #[error("{path}: the weights do not say the resize rule they were trained with: {message}")]
    Sizes { path: String, message: String },
    #[error(
        "{path}: outputs {found}; expected boxes [1, D, 4] f32, scores [1, D] f32, labels [1, D] i64"
    )]
    Outputs { path: String, found: String },
}

/// The image as the graph takes it: flat `[1, 3, h, w]`, `[h, w]` being
/// [`FrcnnGeometry::resized`].
#[derive(Debug, Clone)]
pub struct FrcnnInput {
    pub data: Vec<f32>,
    pub geometry: FrcnnGeometry,
}

/// The two sizes that map boxes back to the original image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrcnnGeometry {
    /// `[h, w]` after the resize.
    pub resized: [i64; 2],
    /// `[h, w]` of the original image.
    pub original: [i64; 2],
}

/// The graph's detections for one image, padding rows included.
#[derive(Debug, Clone, PartialEq)]
pub struct FrcnnRaw {
    pub boxes: Vec<f32>,
    pub scores: Vec<f32>,
    pub labels: Vec<i64>,
}

/// A Faster R-CNN graph in an ONNX Runtime session.
#[derive(Debug)]
pub struct FrcnnOrt {
    model: OrtModel,
    classes: Vec<String>,
    transform: Transform,
    score_thresh: f32,
}

impl FrcnnOrt {
    /// Opens `onnx`; `(min_size, max_size)` is the resize rule the weights were trained with
    /// ([`fracture_models::frcnn::predictor::trained_sizes`]); detections scoring below
    /// `score_thresh` are dropped (the graph keeps torchvision's 0.05).
    pub fn open(
        onnx: &Path,
        classes: Vec<String>,
        (min_size, max_size): (i64, i64),
        score_thresh: f32,
        opts: &OrtOptions,
    ) -> Result<Self, FrcnnOrtError> {
        let model = OrtModel::open(onnx, opts)?;
        model.require_outputs(&OUTPUT_NAMES)?;
        let transform =
            Transform::new(TransformConfig { min_size, max_size, ..Default::default() })?;
        Ok(Self { model, classes, transform, score_thresh })
    }

    /// Opens a bundle's graph `onnx` with the resize rule of the bundle's weights.
    pub fn open_bundle(
        bundle: &Bundle,
        onnx: &Path,
        score_thresh: f32,
        opts: &OrtOptions,
    ) -> Result<Self, FrcnnOrtError> {
        let weights = bundle.weights();
        let sizes_err =
            |message: String| FrcnnOrtError::Sizes { path: weights.display().to_string(), message };
        let meta = weights_file::read_meta(&weights)
            .map_err(|e| sizes_err(e.to_string()))?
            .ok_or_else(|| sizes_err("the file has no metadata".into()))?;
        let sizes = trained_sizes(&meta).map_err(sizes_err)?;
        Self::open(onnx, bundle.manifest.classes.clone(), sizes, score_thresh, opts)
    }

    pub fn model(&self) -> &OrtModel {
        &self.model
    }

    /// The resized image, RGB in [0, 1] (the grey value in all three channels).
    pub fn preprocess(&self, image: &GrayF32) -> Result<FrcnnInput, FrcnnOrtError> {
        let x = FrcnnPredictor::image_tensor(image);
        let original = [i64::from(image.height), i64::from(image.width)];
        let resized = self.transform.resize(&x).contiguous();
        let s = resized.size();
        let data = Vec::<f32>::try_from(resized.to_kind(Kind::Float).reshape([-1]))
            .map_err(FrcnnError::from)?;
        Ok(FrcnnInput { data, geometry: FrcnnGeometry { resized: [s[1], s[2]], original } })
    }

    /// The graph's detections for a preprocessed image.
    pub fn forward(&self, input: &FrcnnInput) -> Result<FrcnnRaw, FrcnnOrtError> {
        let [h, w] = input.geometry.resized;
        let outs = self.model.run_hw(&input.data, 1, (h, w), &OUTPUT_NAMES)?;
        let bad = |outs: &[Output]| FrcnnOrtError::Outputs {
            path: self.model.path().display().to_string(),
            found: outs
                .iter()
                .map(|o| format!("{} {:?}", o.name, o.shape))
                .collect::<Vec<_>>()
                .join(", "),
        };
        match outs.as_slice() {
            [
                Output { data: OutputData::F32(boxes), shape: bs, .. },
                Output { data: OutputData::F32(scores), shape: ss, .. },
                Output { data: OutputData::I64(labels), shape: ls, .. },
            ] if bs.len() == 3
                && bs[0] == 1
                && bs[2] == 4
                && ss.as_slice() == [1, bs[1]]
                && ls.as_slice() == [1, bs[1]] =>
            {
                Ok(FrcnnRaw {
                    boxes: boxes.clone(),
                    scores: scores.clone(),
                    labels: labels.clone(),
                })
            }
            _ => Err(bad(&outs)),
        }
    }

    /// Real detections at or above the score threshold, boxes in original pixels.
    pub fn postprocess(
        &self,
        raw: &FrcnnRaw,
        geometry: &FrcnnGeometry,
    ) -> Result<Vec<Finding>, FrcnnOrtError> {
        let keep: Vec<usize> = (0..raw.scores.len())
            .filter(|&i| raw.scores[i] > 0.0 && raw.scores[i] >= self.score_thresh)
            .collect();
        if keep.is_empty() {
            return Ok(Vec::new());
        }
        let kept: Vec<f32> =
            keep.iter().flat_map(|&i| raw.boxes[4 * i..4 * i + 4].to_vec()).collect();
        let boxes = Tensor::from_slice(&kept).view([keep.len() as i64, 4]);
        let mapped = Transform::postprocess_boxes(&boxes, geometry.resized, geometry.original);
        let mapped = Vec::<f32>::try_from(mapped.reshape([-1])).map_err(FrcnnError::from)?;
        Ok(keep
            .iter()
            .zip(mapped.chunks_exact(4))
            .map(|(&i, b)| Finding::new([b[0], b[1], b[2], b[3]], raw.scores[i], raw.labels[i] - 1))
            .collect())
    }
}

impl Detector for FrcnnOrt {
    type Error = FrcnnOrtError;

    fn classes(&self) -> &[String] {
        &self.classes
    }

    fn detect(&self, image: &GrayF32) -> Result<Vec<Finding>, FrcnnOrtError> {
        let input = self.preprocess(image)?;
        let raw = self.forward(&input)?;
        self.postprocess(&raw, &input.geometry)
    }
}
