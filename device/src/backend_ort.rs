//! The ONNX Runtime backend: runs a bundle's exported YOLO11 graph (`model.onnx`, or the
//! accepted INT8 `model.int8.onnx`) through `fracture-runtime`, with the same letterbox, NMS
//! and box mapping as the libtorch backend. Timings split into `preprocess`, `infer` and `nms`.

use std::path::Path;

use fracture_models::bundle::{Bundle, OperatingPoints};
use fracture_models::pixels::GrayF32;
use fracture_runtime::{OrtOptions, YoloOrt, YoloOrtError};

use crate::analyzer::{
    Analysis, AnalyzeError, Analyzer, ModelIdentity, findings_from, timed_stages, warm_up,
};

#[derive(Debug, thiserror::Error)]
pub enum OrtBackendError {
    #[error("bundle {bundle}: {source}")]
    Open {
        bundle: String,
        #[source]
        source: YoloOrtError,
    },
    #[error("bundle {bundle}: architecture {arch} has no ONNX Runtime runner (YOLO11 only)")]
    Arch { bundle: String, arch: String },
    #[error("bundle {bundle}: warm-up inference failed: {message}")]
    WarmUp { bundle: String, message: String },
}

/// A YOLO11 graph in ONNX Runtime, warmed up.
pub struct OrtAnalyzer {
    model: YoloOrt,
    identity: ModelIdentity,
    classes: Vec<String>,
    points: OperatingPoints,
}

impl OrtAnalyzer {
    /// Opens `onnx` (a file of `bundle`, already verified by [`Bundle::open`]) at
    /// `precision` (`fp32` or `int8`, as the file is) and runs one warm-up image.
    pub fn load(
        bundle: &Bundle,
        onnx: &Path,
        precision: &str,
        opts: &OrtOptions,
    ) -> Result<Self, OrtBackendError> {
        let m = &bundle.manifest;
        if !m.arch.starts_with("yolo11") {
            return Err(OrtBackendError::Arch {
                bundle: m.bundle_id.clone(),
                arch: m.arch.clone(),
            });
        }
        let nms = m.nms();
        let model = YoloOrt::open(onnx, m.classes.clone(), nms, opts)
            .map_err(|source| OrtBackendError::Open { bundle: m.bundle_id.clone(), source })?;
        let analyzer = Self {
            model,
            identity: ModelIdentity::for_bundle(bundle, "onnxruntime", precision),
            classes: m.classes.clone(),
            points: m.operating_points,
        };
        warm_up(&analyzer, m.imgsz).map_err(|e| OrtBackendError::WarmUp {
            bundle: m.bundle_id.clone(),
            message: e.message,
        })?;
        Ok(analyzer)
    }
}

impl Analyzer for OrtAnalyzer {
    fn model(&self) -> Option<&ModelIdentity> {
        Some(&self.identity)
    }

    fn set_backend_reason(&mut self, reason: String) {
        self.identity.backend_reason = reason;
    }

    fn analyze(&self, image: &GrayF32) -> Result<Analysis, AnalyzeError> {
        let m = &self.model;
        let (found, timings) = timed_stages(
            image,
            |i| m.preprocess(i),
            |x| m.forward(x),
            |p, lb| m.postprocess(p, lb),
        )?;
        Ok(Analysis { findings: findings_from(found, &self.classes, &self.points), timings })
    }
}
