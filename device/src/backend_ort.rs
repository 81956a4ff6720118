//! The ONNX Runtime backend: runs a bundle's exported graph (`model.onnx`, or the accepted
//! INT8 `model.int8.onnx`) through `fracture-runtime`, with the same pre- and post-processing
//! as the libtorch backend: YOLO11's letterbox, NMS and box mapping; Faster R-CNN's resize
//! and box mapping (its NMS is inside the graph). Timings split into `preprocess`, `infer`
//! and `nms`.

use std::path::Path;

use fracture_models::bundle::{Bundle, OperatingPoints};
use fracture_models::frcnn;
use fracture_models::pixels::GrayF32;
use fracture_runtime::{FrcnnOrt, FrcnnOrtError, OrtOptions, YoloOrt, YoloOrtError};

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
    #[error("bundle {bundle}: {source}")]
    OpenFrcnn {
        bundle: String,
        #[source]
        source: FrcnnOrtError,
    },
    #[error(
        "bundle {bundle}: architecture {arch} has no ONNX Runtime runner (YOLO11, Faster R-CNN)"
    )]
    Arch { bundle: String, arch: String },
    #[error("bundle {bundle}: warm-up inference failed: {message}")]
    WarmUp { bundle: String, message: String },
}

/// The graph, by architecture.
enum Graph {
    Yolo(YoloOrt),
    Frcnn(FrcnnOrt),
}

/// An exported graph in ONNX Runtime, warmed up.
pub struct OrtAnalyzer {
    model: Graph,
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
        let model =
            if m.arch.starts_with("yolo11") {
                let open = YoloOrt::open(onnx, m.classes.clone(), m.nms(), opts);
                Graph::Yolo(open.map_err(|source| OrtBackendError::Open {
                    bundle: m.bundle_id.clone(),
                    source,
                })?)
            } else if m.arch == frcnn::ARCH {
                let open = FrcnnOrt::open_bundle(bundle, onnx, m.operating_points.suspicious, opts);
                Graph::Frcnn(open.map_err(|source| OrtBackendError::OpenFrcnn {
                    bundle: m.bundle_id.clone(),
                    source,
                })?)
            } else {
                return Err(OrtBackendError::Arch {
                    bundle: m.bundle_id.clone(),
                    arch: m.arch.clone(),
                });
            };
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
        let (found, timings) = match &self.model {
            Graph::Yolo(m) => timed_stages(
                image,
                |i| Ok::<_, YoloOrtError>(m.preprocess(i)),
                |x| m.forward(x),
                |p, lb| m.postprocess(p, lb),
            )?,
            // The graph runs its own NMS: `nms` times the box mapping alone.
            Graph::Frcnn(m) => timed_stages(
                image,
                |i| {
                    m.preprocess(i).map(|x| {
                        let g = x.geometry;
                        (x, g)
                    })
                },
                |x| m.forward(x),
                |raw, g| m.postprocess(raw, g),
            )?,
        };
        Ok(Analysis { findings: findings_from(found, &self.classes, &self.points), timings })
    }
}
