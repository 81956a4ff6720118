//! What calibration traces and scores, per architecture: YOLO11 letterboxed into its square
//! input and traced with [`trace_yolo`]; Faster R-CNN resized by the rule its weights were
//! trained with (the one [`FrcnnOrt`] applies before scoring) and traced with [`trace_frcnn`].
//! Either way every activation comes back under its ONNX tensor name, and a graph file (FP32,
//! FP16 or INT8) is scored through ONNX Runtime with the detector the device would run.

use std::path::Path;

use fracture_models::bundle::Bundle;
use fracture_models::frcnn::predictor::{FrcnnPredictOptions, FrcnnPredictor};
use fracture_models::letterbox::Letterbox;
use fracture_models::nms::NmsConfig;
use fracture_models::onnx::{Trace, trace_frcnn, trace_yolo};
use fracture_models::pixels::{GrayF32, read_gray};
use fracture_models::tensor::batch_from_gray;
use fracture_models::yolo::{PredictOptions, YoloPredictor};
use fracture_runtime::{FrcnnOrt, OrtOptions, YoloOrt};

use super::{CalibrateError, model_err};
use crate::dataset::Dataset;
use crate::eval::split::SplitImages;
use crate::eval::{SplitScore, score};

/// Scores below this are dropped before mAP (as ultralytics' validation does).
const SCORE_FLOOR: f32 = 0.001;

/// The model of a bundle, ready to trace calibration images.
pub enum Subject {
    Yolo { predictor: Box<YoloPredictor>, imgsz: u32 },
    Frcnn { predictor: Box<FrcnnPredictor>, names: Vec<String> },
}

impl Subject {
    /// Loads the bundle's weights (Faster R-CNN's with the resize rule they were trained with,
    /// as [`FrcnnOrt::open_bundle`] reads it).
    pub fn open(bundle: &Bundle) -> Result<Self, CalibrateError> {
        let m = &bundle.manifest;
        let weights = bundle.weights();
        let load_err = || model_err(weights.display().to_string());
        if m.arch.starts_with("yolo11") {
            let opts =
                PredictOptions { imgsz: Some(m.imgsz), rect: false, ..PredictOptions::default() };
            let predictor =
                YoloPredictor::load(&weights, None, opts).map_err(|e| load_err()(e.to_string()))?;
            Ok(Subject::Yolo { predictor: Box::new(predictor), imgsz: m.imgsz })
        } else if m.arch == fracture_models::frcnn::ARCH {
            let predictor = FrcnnPredictor::load(&weights, None, FrcnnPredictOptions::default())
                .map_err(|e| load_err()(e.to_string()))?;
            Ok(Subject::Frcnn { predictor: Box::new(predictor), names: m.classes.clone() })
        } else {
            Err(CalibrateError::Arch(m.bundle_id.clone(), m.arch.clone()))
        }
    }

    pub fn is_yolo(&self) -> bool {
        matches!(self, Subject::Yolo { .. })
    }

    /// The traced graph on the calibration image at `path`.
    pub fn trace(&self, path: &Path) -> Result<Trace, CalibrateError> {
        let img_err = |message: String| CalibrateError::Image { path: path.to_path_buf(), message };
        match self {
            Subject::Yolo { predictor, imgsz } => {
                let x = batch_from_gray(&[letterboxed(path, *imgsz)?])
                    .map_err(|e| img_err(e.to_string()))?;
                tch::no_grad(|| trace_yolo(predictor.model(), &x))
                    .map_err(|e| img_err(e.to_string()))
            }
            Subject::Frcnn { predictor, names } => {
                let img = read_gray(path).map_err(|e| img_err(e.to_string()))?;
                let model = predictor.model();
                // [1, 3, h, w]: the resized image the graph takes.
                let x = model
                    .transform
                    .resize(&FrcnnPredictor::image_tensor(&img))
                    .unsqueeze(0)
                    .contiguous();
                tch::no_grad(|| trace_frcnn(model, names, &x)).map_err(|e| img_err(e.to_string()))
            }
        }
    }

    /// Scores the graph `file` on `split` through ONNX Runtime; COCO files go to `out_dir`.
    pub fn score(
        &self,
        bundle: &Bundle,
        file: &Path,
        ds: &Dataset,
        split: &SplitImages,
        out_dir: &Path,
        ort: &OrtOptions,
    ) -> Result<SplitScore, CalibrateError> {
        let open_err = || model_err(file.display().to_string());
        match self {
            Subject::Yolo { .. } => {
                let nms =
                    NmsConfig { conf: SCORE_FLOOR, iou: 0.7, max_det: 300, ..NmsConfig::default() };
                let det = YoloOrt::open(file, bundle.manifest.classes.clone(), nms, ort)
                    .map_err(|e| open_err()(e.to_string()))?;
                Ok(score(&det, ds, split, out_dir, "")?)
            }
            Subject::Frcnn { .. } => {
                let det = FrcnnOrt::open_bundle(bundle, file, SCORE_FLOOR, ort)
                    .map_err(|e| open_err()(e.to_string()))?;
                Ok(score(&det, ds, split, out_dir, "")?)
            }
        }
    }
}

/// A calibration image letterboxed into the `imgsz` square the YOLO export takes.
pub fn letterboxed(path: &Path, imgsz: u32) -> Result<GrayF32, CalibrateError> {
    let img = read_gray(path)
        .map_err(|e| CalibrateError::Image { path: path.to_path_buf(), message: e.to_string() })?;
    Ok(Letterbox::square(img.width, img.height, imgsz).apply(&img))
}
