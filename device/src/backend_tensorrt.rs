//! The TensorRT backend: the installed bundle's engine for this GPU, TensorRT version and
//! precision, found in or built into the engine cache (`STATE/engines/`, see
//! [`fracture_runtime::engine_cache`]), run through [`YoloTrt`] with one execution context
//! and one CUDA stream, and warmed up before the first image. The shim is loaded at run time
//! (exactly `[model] tensorrt_shim`, else `$FRACTURE_TRT_SHIM` and the standard places); when it or a
//! usable engine is missing, `auto` falls back to ONNX Runtime or libtorch and the reason is
//! logged with every run. `fracturectl engine build` runs the same [`prepare_engine`].

use std::path::{Path, PathBuf};

use fracture_models::bundle::{Bundle, OperatingPoints};
use fracture_models::pixels::GrayF32;
use fracture_runtime::engine_cache::{CachedEngine, EngineCacheError, find_or_build};
use fracture_runtime::{YoloTrt, YoloTrtError};
use fracture_tensorrt::{Precision, Shim, TrtError};

use crate::analyzer::{
    Analysis, AnalyzeError, Analyzer, ModelIdentity, findings_from, timed_stages, warm_up,
};

#[derive(Debug, thiserror::Error)]
pub enum TrtBackendError {
    #[error("{0}")]
    Shim(TrtError),
    #[error("bundle {bundle}: architecture {arch} has no TensorRT runner (YOLO11 only)")]
    Arch { bundle: String, arch: String },
    #[error("bundle {bundle}: {source}")]
    Engine {
        bundle: String,
        #[source]
        source: Box<EngineCacheError>,
    },
    #[error("bundle {bundle}: engine {engine}: {source}")]
    Open {
        bundle: String,
        engine: PathBuf,
        #[source]
        source: Box<YoloTrtError>,
    },
    #[error("bundle {bundle}: warm-up inference failed: {message}")]
    WarmUp { bundle: String, message: String },
}

/// Loads the shim (exactly `explicit_shim`, else `$FRACTURE_TRT_SHIM` and the standard
/// places) and finds
/// or builds the engine of `bundle` at `precision` in `engines_dir` (rebuilt in any case with
/// `force`): what the daemon does at start and `fracturectl engine build` does on demand.
pub fn prepare_engine(
    bundle: &Bundle,
    explicit_shim: Option<&Path>,
    precision: Precision,
    engines_dir: &Path,
    force: bool,
) -> Result<(Shim, CachedEngine), TrtBackendError> {
    let m = &bundle.manifest;
    if !m.arch.starts_with("yolo11") {
        return Err(TrtBackendError::Arch { bundle: m.bundle_id.clone(), arch: m.arch.clone() });
    }
    // A configured shim is used exactly (no search past it); else the standard search.
    let shim = match explicit_shim {
        Some(path) => Shim::load_exact(path),
        None => Shim::load(None),
    }
    .map_err(TrtBackendError::Shim)?;
    let cached = find_or_build(&shim, bundle, precision, engines_dir, force).map_err(|e| {
        TrtBackendError::Engine { bundle: m.bundle_id.clone(), source: Box::new(e) }
    })?;
    Ok((shim, cached))
}

/// A YOLO11 TensorRT engine, warmed up.
pub struct TrtAnalyzer {
    model: YoloTrt,
    identity: ModelIdentity,
    /// Where the engine came from (`cached engine loaded`, `engine built (why)`), appended
    /// to the backend reason.
    provenance: String,
    classes: Vec<String>,
    points: OperatingPoints,
}

impl TrtAnalyzer {
    /// [`prepare_engine`], the engine's context and stream, and one warm-up image (which
    /// also proves the engine runs before the daemon relies on it).
    pub fn load(
        bundle: &Bundle,
        explicit_shim: Option<&Path>,
        precision: Precision,
        engines_dir: &Path,
    ) -> Result<Self, TrtBackendError> {
        let m = &bundle.manifest;
        let (shim, cached) = prepare_engine(bundle, explicit_shim, precision, engines_dir, false)?;
        let provenance = format!("{}: {}", cached.provenance, cached.path.display());
        tracing::info!(engine = %cached.path.display(), "{}", cached.provenance);
        let nms = m.nms();
        let model =
            YoloTrt::new(&shim, cached.engine, m.classes.clone(), nms, m.imgsz).map_err(|e| {
                TrtBackendError::Open {
                    bundle: m.bundle_id.clone(),
                    engine: cached.path.clone(),
                    source: Box::new(e),
                }
            })?;
        let analyzer = Self {
            model,
            identity: ModelIdentity {
                backend_reason: provenance.clone(),
                ..ModelIdentity::for_bundle(bundle, "tensorrt", &precision.to_string())
            },
            provenance,
            classes: m.classes.clone(),
            points: m.operating_points,
        };
        warm_up(&analyzer, m.imgsz).map_err(|e| TrtBackendError::WarmUp {
            bundle: m.bundle_id.clone(),
            message: e.message,
        })?;
        Ok(analyzer)
    }
}

impl Analyzer for TrtAnalyzer {
    fn model(&self) -> Option<&ModelIdentity> {
        Some(&self.identity)
    }

    fn set_backend_reason(&mut self, reason: String) {
        self.identity.backend_reason = format!("{reason}; {}", self.provenance);
    }

    fn analyze(&self, image: &GrayF32) -> Result<Analysis, AnalyzeError> {
        let m = &self.model;
        let (found, timings) = timed_stages(
            image,
            |i| Ok(m.preprocess(i)),
            |x| m.forward(x),
            |p, lb| m.postprocess(p, lb),
        )?;
        Ok(Analysis { findings: findings_from(found, &self.classes, &self.points), timings })
    }
}
