//! The libtorch backend: runs a bundle's YOLO11 or Faster R-CNN weights with `tch` (CPU, or
//! CUDA with a CUDA libtorch) through the same predictors as `fracture predict`, so the device
//! computes exactly what the host measured. Findings at or above the bundle's `suspicious`
//! threshold are reported; those at or above `definite` are marked definite.
//!
//! YOLO's timings split into `preprocess`, `infer` (the forward pass) and `nms`; Faster
//! R-CNN's transform, RPN, RoI heads and post-processing run as one `infer` stage.

use std::time::Instant;

use fracture_models::bundle::{Bundle, OperatingPoints};
use fracture_models::detector::{Detector, Finding as Found};
use fracture_models::frcnn::{self, FrcnnPredictError, FrcnnPredictOptions, FrcnnPredictor};
use fracture_models::pixels::GrayF32;
use fracture_models::yolo::{Precision, PredictError, PredictOptions, YoloPredictor};
use tch::Device;

use crate::analyzer::{
    Analysis, AnalyzeError, Analyzer, ModelIdentity, StageTiming, findings_from, warm_up,
};

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("bundle {bundle}: architecture {arch} has no libtorch backend in this build")]
    Arch { bundle: String, arch: String },
    #[error("bundle {bundle}: warm-up inference failed: {message}")]
    WarmUp { bundle: String, message: String },
    #[error("bundle {bundle}: {source}")]
    Load {
        bundle: String,
        #[source]
        source: PredictError,
    },
    #[error("bundle {bundle}: {source}")]
    LoadFrcnn {
        bundle: String,
        #[source]
        source: FrcnnPredictError,
    },
    #[error("bundle {bundle}: {arch} runs in fp32 only (asked for {precision})")]
    Precision { bundle: String, arch: String, precision: String },
}

/// The network a bundle holds.
enum Network {
    Yolo(Box<YoloPredictor>),
    Frcnn(Box<FrcnnPredictor>),
}

/// A loaded, warmed-up model.
pub struct LibtorchAnalyzer {
    network: Network,
    identity: ModelIdentity,
    classes: Vec<String>,
    points: OperatingPoints,
}

impl LibtorchAnalyzer {
    /// Loads the bundle's weights (checked against its manifest by [`Bundle::open`]) and runs
    /// one warm-up image so the first radiograph does not pay for lazy initialisation.
    pub fn load(
        bundle: &Bundle,
        device: Device,
        precision: Precision,
    ) -> Result<Self, BackendError> {
        let m = &bundle.manifest;
        let network = if m.arch.starts_with("yolo11") {
            let opts = PredictOptions {
                imgsz: Some(m.imgsz),
                rect: true,
                nms: m.nms(),
                device,
                precision,
            };
            let load_err = |source| BackendError::Load { bundle: m.bundle_id.clone(), source };
            Network::Yolo(Box::new(
                YoloPredictor::load(&bundle.weights(), None, opts).map_err(load_err)?,
            ))
        } else if m.arch == frcnn::ARCH {
            if precision != Precision::Fp32 {
                return Err(BackendError::Precision {
                    bundle: m.bundle_id.clone(),
                    arch: m.arch.clone(),
                    precision: precision.name().to_string(),
                });
            }
            // The resize rule comes from the weights' own metadata (what it trained with).
            let opts = FrcnnPredictOptions {
                score_thresh: f64::from(m.operating_points.suspicious),
                nms_thresh: m.nms_iou,
                detections_per_img: i64::try_from(m.max_det).unwrap_or(i64::MAX),
                device,
                ..FrcnnPredictOptions::default()
            };
            let load_err = |source| BackendError::LoadFrcnn { bundle: m.bundle_id.clone(), source };
            Network::Frcnn(Box::new(
                FrcnnPredictor::load(&bundle.weights(), None, opts).map_err(load_err)?,
            ))
        } else {
            return Err(BackendError::Arch { bundle: m.bundle_id.clone(), arch: m.arch.clone() });
        };
        let backend = if device == Device::Cpu { "libtorch-cpu" } else { "libtorch-cuda" };
        let analyzer = Self {
            network,
            identity: ModelIdentity::for_bundle(bundle, backend, precision.name()),
            classes: m.classes.clone(),
            points: m.operating_points,
        };
        warm_up(&analyzer, m.imgsz).map_err(|e| BackendError::WarmUp {
            bundle: m.bundle_id.clone(),
            message: e.message,
        })?;
        Ok(analyzer)
    }
}

impl Analyzer for LibtorchAnalyzer {
    fn model(&self) -> Option<&ModelIdentity> {
        Some(&self.identity)
    }

    fn set_backend_reason(&mut self, reason: String) {
        self.identity.backend_reason = reason;
    }

    fn analyze(&self, image: &GrayF32) -> Result<Analysis, AnalyzeError> {
        let (found, timings) = match &self.network {
            Network::Yolo(p) => yolo_stages(p, image)?,
            Network::Frcnn(p) => {
                let t0 = Instant::now();
                let found = p.detect(image).map_err(fail)?;
                (found, vec![StageTiming::new("infer", t0.elapsed())])
            }
        };
        let findings = findings_from(found, &self.classes, &self.points);
        Ok(Analysis { findings, timings })
    }
}

pub(crate) fn fail<E: std::error::Error + Send + Sync + 'static>(e: E) -> AnalyzeError {
    AnalyzeError { message: format!("inference failed: {e}"), source: Some(Box::new(e)) }
}

/// YOLO in its three timed stages.
fn yolo_stages(
    p: &YoloPredictor,
    image: &GrayF32,
) -> Result<(Vec<Found>, Vec<StageTiming>), AnalyzeError> {
    let t0 = Instant::now();
    let (x, lb) = p.preprocess(image).map_err(fail)?;
    let t1 = Instant::now();
    let pred = p.forward(&x).map_err(fail)?;
    let t2 = Instant::now();
    let found = p.postprocess(&pred, &lb).map_err(fail)?;
    let t3 = Instant::now();
    let timings = vec![
        StageTiming::new("preprocess", t1 - t0),
        StageTiming::new("infer", t2 - t1),
        StageTiming::new("nms", t3 - t2),
    ];
    Ok((found, timings))
}
