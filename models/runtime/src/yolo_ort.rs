//! YOLO11 through ONNX Runtime: the exported graph's `output0` (`[1, 4 + nc, N]`, boxes as
//! cx, cy, w, h in input pixels, class scores after sigmoid — ultralytics' export contract)
//! goes through the same letterbox before and the same NMS and box mapping after as the
//! libtorch predictor ([`fracture_models::yolo::predictor::postprocess`]), so the two
//! backends can only differ in the forward pass itself.

use std::path::Path;

use fracture_models::detector::{Detector, Finding};
use fracture_models::letterbox::Letterbox;
use fracture_models::nms::{NmsConfig, NmsError};
use fracture_models::pixels::GrayF32;
use fracture_models::tensor::nchw_from_gray;
use fracture_models::yolo::predictor::postprocess;
use tch::Tensor;

use crate::ort_library::OrtOptions;
use crate::ort_model::{OrtModel, OrtModelError, OutputData};

/// The output ultralytics' exporter (and ours) names.
pub const OUTPUT_NAME: &str = "output0";

#[derive(Debug, thiserror::Error)]
pub enum YoloOrtError {
    #[error(transparent)]
    Model(#[from] OrtModelError),
    #[error(transparent)]
    Nms(#[from] NmsError),
    #[error(
        "{path}: `{OUTPUT_NAME}` has shape {shape:?}; expected [1, {expected_rows}, N] for {nc} class(es)"
    )]
    OutputShape { path: String, shape: Vec<i64>, expected_rows: i64, nc: usize },
}

/// A YOLO11 graph in an ONNX Runtime session.
#[derive(Debug)]
pub struct YoloOrt {
    model: OrtModel,
    classes: Vec<String>,
    nms: NmsConfig,
}

impl YoloOrt {
    pub fn open(
        onnx: &Path,
        classes: Vec<String>,
        nms: NmsConfig,
        opts: &OrtOptions,
    ) -> Result<Self, YoloOrtError> {
        let model = OrtModel::open(onnx, opts)?;
        model.require_outputs(&[OUTPUT_NAME])?;
        model.fixed_hw()?;
        Ok(Self { model, classes, nms })
    }

    pub fn model(&self) -> &OrtModel {
        &self.model
    }

    /// The letterbox into the graph's fixed input size.
    pub fn letterbox_for(&self, width: u32, height: u32) -> Letterbox {
        let (h, w) = self.model.input_hw();
        Letterbox::new(width, height, w as u32, h as u32)
    }

    /// The graph's flat input `[1, 3, H, W]` for `image`, and the letterbox used.
    pub fn preprocess(&self, image: &GrayF32) -> (Vec<f32>, Letterbox) {
        let lb = self.letterbox_for(image.width, image.height);
        (nchw_from_gray(&lb.apply(image)), lb)
    }

    /// Decoded predictions `[1, 4 + nc, N]` for a preprocessed input.
    pub fn forward(&self, input: &[f32]) -> Result<Tensor, YoloOrtError> {
        let mut outs = self.model.run(input, 1, &[OUTPUT_NAME])?;
        let out = outs.remove(0);
        let rows = 4 + self.classes.len() as i64;
        let shape_err = || YoloOrtError::OutputShape {
            path: self.model.path().display().to_string(),
            shape: out.shape.clone(),
            expected_rows: rows,
            nc: self.classes.len(),
        };
        match (&out.data, out.shape.as_slice()) {
            (OutputData::F32(data), &[1, r, n]) if r == rows => {
                Ok(Tensor::from_slice(data).view([1, r, n]))
            }
            _ => Err(shape_err()),
        }
    }

    /// NMS and boxes back to original pixels (the libtorch backend's path).
    pub fn postprocess(&self, pred: &Tensor, lb: &Letterbox) -> Result<Vec<Finding>, YoloOrtError> {
        Ok(postprocess(pred, lb, &self.nms)?)
    }
}

impl Detector for YoloOrt {
    type Error = YoloOrtError;

    fn classes(&self) -> &[String] {
        &self.classes
    }

    fn detect(&self, image: &GrayF32) -> Result<Vec<Finding>, YoloOrtError> {
        let (input, lb) = self.preprocess(image);
        let pred = self.forward(&input)?;
        self.postprocess(&pred, &lb)
    }
}
