//! Which files of a verified bundle a TensorRT engine is built from, shared by
//! `fracture engine build` (host) and the device's build on first start: FP16 from
//! `model.onnx`; INT8 only when the bundle's INT8 accuracy check passed, from the Q/DQ
//! `model.int8.onnx` when present, else from `model.onnx` with `calibration.cache`.

use std::path::PathBuf;

use fracture_models::bundle::Bundle;
use fracture_tensorrt::Precision;

use crate::backend::{ONNX_FP32, ONNX_INT8};

/// The bundle's TensorRT calibration cache (`fracture calibrate`).
pub const CALIBRATION_CACHE: &str = "calibration.cache";

/// What an engine build reads from a bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineSource {
    pub onnx: PathBuf,
    /// INT8 from a non-Q/DQ model: the cache the calibrator serves.
    pub calibration_cache: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum EngineSourceError {
    #[error(
        "{bundle}: the bundle has no {ONNX_FP32} (its manifest lists: {listed}); export one first"
    )]
    NoOnnx { bundle: PathBuf, listed: String },
    #[error(
        "{bundle}: the bundle has no INT8 accuracy check; run `fracture calibrate` first (an INT8 \
         engine is only built from a calibration that kept mAP50)"
    )]
    Int8Unchecked { bundle: PathBuf },
    #[error(
        "{bundle}: the bundle's INT8 accuracy check failed ({method} calibration: mAP50 \
         {map50_int8:.4} INT8 vs {map50_fp32:.4} FP32, more than the {max_drop:.4} drop allowed); \
         build fp16 instead"
    )]
    Int8Failed { bundle: PathBuf, method: String, map50_int8: f64, map50_fp32: f64, max_drop: f64 },
    #[error(
        "{bundle}: an INT8 engine needs {ONNX_INT8}, or {ONNX_FP32} with {CALIBRATION_CACHE}; the \
         manifest lists: {listed}"
    )]
    NoInt8Model { bundle: PathBuf, listed: String },
}

/// Picks the ONNX model (and calibration cache) for `precision` from a verified bundle.
pub fn engine_source(
    bundle: &Bundle,
    precision: Precision,
) -> Result<EngineSource, EngineSourceError> {
    let m = &bundle.manifest;
    let has = |f: &str| m.files.contains_key(f);
    let listed = || m.files.keys().cloned().collect::<Vec<_>>().join(", ");
    let dir = || bundle.dir.clone();
    match precision {
        Precision::Fp16 if has(ONNX_FP32) => {
            Ok(EngineSource { onnx: bundle.dir.join(ONNX_FP32), calibration_cache: None })
        }
        Precision::Fp16 => Err(EngineSourceError::NoOnnx { bundle: dir(), listed: listed() }),
        Precision::Int8 => {
            match &m.int8 {
                None => return Err(EngineSourceError::Int8Unchecked { bundle: dir() }),
                Some(c) if !c.passed => {
                    return Err(EngineSourceError::Int8Failed {
                        bundle: dir(),
                        method: c.method.clone(),
                        map50_int8: c.map50_int8,
                        map50_fp32: c.map50_fp32,
                        max_drop: c.max_drop,
                    });
                }
                Some(_) => {}
            }
            if has(ONNX_INT8) {
                Ok(EngineSource { onnx: bundle.dir.join(ONNX_INT8), calibration_cache: None })
            } else if has(ONNX_FP32) && has(CALIBRATION_CACHE) {
                Ok(EngineSource {
                    onnx: bundle.dir.join(ONNX_FP32),
                    calibration_cache: Some(bundle.dir.join(CALIBRATION_CACHE)),
                })
            } else {
                Err(EngineSourceError::NoInt8Model { bundle: dir(), listed: listed() })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use fracture_models::bundle::{Int8Check, Manifest, OperatingPoints};
    use fracture_models::weights_file::WeightsMeta;

    fn bundle(files: &[&str], int8: Option<bool>) -> Bundle {
        let meta = WeightsMeta {
            arch: "yolo11n".into(),
            classes: vec!["fracture".into()],
            imgsz: 64,
            extra: Default::default(),
        };
        let mut manifest =
            Manifest::for_weights("b", &meta, OperatingPoints { suspicious: 0.1, definite: 0.5 });
        manifest.files = files.iter().map(|f| (f.to_string(), "00".into())).collect();
        manifest.int8 = int8.map(|passed| Int8Check {
            method: "entropy".into(),
            map50_fp32: 0.5,
            map50_int8: 0.3,
            max_drop: 0.02,
            passed,
        });
        Bundle { dir: PathBuf::from("/b"), manifest, sha256: "x".into() }
    }

    #[test]
    fn picks_the_model_for_each_precision_or_says_why_not() {
        let fp = engine_source(&bundle(&["model.onnx"], None), Precision::Fp16).unwrap();
        assert_eq!(fp, EngineSource { onnx: "/b/model.onnx".into(), calibration_cache: None });
        let e = engine_source(&bundle(&["weights.safetensors"], None), Precision::Fp16);
        assert!(e.unwrap_err().to_string().contains("lists: weights.safetensors"));

        let all = ["model.onnx", "model.int8.onnx", "calibration.cache"];
        let q = engine_source(&bundle(&all, Some(true)), Precision::Int8).unwrap();
        assert_eq!(q.onnx, PathBuf::from("/b/model.int8.onnx"));
        let c = engine_source(&bundle(&all[..1], Some(true)), Precision::Int8);
        assert!(matches!(c, Err(EngineSourceError::NoInt8Model { .. })));
        let c = engine_source(
            &bundle(&["model.onnx", "calibration.cache"], Some(true)),
            Precision::Int8,
        )
        .unwrap();
        assert_eq!(c.calibration_cache, Some(PathBuf::from("/b/calibration.cache")));
        let e = engine_source(&bundle(&all, Some(false)), Precision::Int8).unwrap_err();
        assert!(e.to_string().contains("mAP50 0.3000 INT8 vs 0.5000 FP32"), "{e}");
        let e = engine_source(&bundle(&all, None), Precision::Int8).unwrap_err();
        assert!(matches!(e, EngineSourceError::Int8Unchecked { .. }), "{e}");
    }
}
