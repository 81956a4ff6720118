//! Which backend runs a bundle. `auto` tries, in order: a TensorRT engine, ONNX Runtime on
//! the bundle's INT8 (Q/DQ) model when the manifest says its accuracy check passed, ONNX
//! Runtime on the FP32 model, then libtorch on the weights. Each candidate that cannot be
//! used adds its reason, so the choice can be logged, stored with every run and shown on the
//! status page ("onnxruntime fp32: TensorRT: no engine …; INT8: not calibrated").
//! An explicitly named backend is the only candidate: asking for it and not getting it is an
//! error, never a silent fallback.

use std::path::PathBuf;

use fracture_models::bundle::Bundle;

/// The bundle's FP32 ONNX graph.
pub const ONNX_FP32: &str = "model.onnx";
/// The bundle's INT8 explicit-quantisation (Q/DQ) graph.
pub const ONNX_INT8: &str = "model.int8.onnx";

/// What the user or the configuration asks for (`--backend`, `[model] backend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    #[default]
    Auto,
    Torch,
    Ort,
    TensorRt,
}

impl std::str::FromStr for BackendKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "torch" | "libtorch" => Ok(Self::Torch),
            "ort" | "onnxruntime" => Ok(Self::Ort),
            "tensorrt" | "trt" => Ok(Self::TensorRt),
            other => Err(format!("unknown backend `{other}`: auto|torch|ort|tensorrt")),
        }
    }
}

/// One way to run the bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    TensorRt,
    /// ONNX Runtime on this graph, at this precision (`fp32` or `int8`).
    Ort {
        onnx: PathBuf,
        precision: &'static str,
    },
    Torch,
}

impl Plan {
    /// A short name for logs and the status page.
    pub fn describe(&self) -> String {
        match self {
            Plan::TensorRt => "tensorrt".into(),
            Plan::Ort { precision, .. } => format!("onnxruntime {precision}"),
            Plan::Torch => "libtorch".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectError {
    #[error(
        "bundle {bundle}: --backend ort needs {ONNX_FP32} in the bundle (re-export it with `fracture export`)"
    )]
    NoOnnx { bundle: String },
    #[error("no backend could run bundle {bundle}: {reasons}")]
    Exhausted { bundle: String, reasons: String },
}

/// The candidates for `wanted`, in the order to try them.
pub fn candidates(bundle: &Bundle, wanted: BackendKind) -> Result<Vec<Plan>, SelectError> {
    let m = &bundle.manifest;
    let has = |f: &str| m.files.contains_key(f);
    let int8_ok = has(ONNX_INT8) && m.int8.as_ref().is_some_and(|c| c.passed);
    let onnx = |f: &str, precision| Plan::Ort { onnx: bundle.dir.join(f), precision };
    Ok(match wanted {
        BackendKind::Torch => vec![Plan::Torch],
        BackendKind::TensorRt => vec![Plan::TensorRt],
        BackendKind::Ort if int8_ok => vec![onnx(ONNX_INT8, "int8")],
        BackendKind::Ort if has(ONNX_FP32) => vec![onnx(ONNX_FP32, "fp32")],
        BackendKind::Ort => return Err(SelectError::NoOnnx { bundle: m.bundle_id.clone() }),
        BackendKind::Auto => {
            let mut out = vec![Plan::TensorRt];
            if int8_ok {
                out.push(onnx(ONNX_INT8, "int8"));
            }
            if has(ONNX_FP32) {
                out.push(onnx(ONNX_FP32, "fp32"));
            }
            out.push(Plan::Torch);
            out
        }
    })
}

/// Why the INT8 graph was not a candidate, for the reason string.
fn int8_note(bundle: &Bundle) -> Option<String> {
    let m = &bundle.manifest;
    if !m.files.contains_key(ONNX_INT8) {
        return Some("no INT8 model in the bundle".into());
    }
    match &m.int8 {
        None => Some("the INT8 model has no accuracy check in the manifest".into()),
        Some(c) if !c.passed => Some(format!(
            "the INT8 model failed its accuracy check (mAP50 {:.3} vs {:.3} fp32, allowed drop {:.3})",
            c.map50_int8, c.map50_fp32, c.max_drop
        )),
        Some(_) => None,
    }
}

/// What was chosen and why.
#[derive(Debug)]
pub struct Chosen<T> {
    pub value: T,
    pub plan: Plan,
    /// One line: the chosen backend and why the ones before it were not used.
    pub reason: String,
}

/// Tries `plans` in order with `open`; the first that opens wins. `open`'s error text becomes
/// part of the reason (or of the error when nothing opens).
pub fn open_first<T>(
    bundle: &Bundle,
    wanted: BackendKind,
    mut open: impl FnMut(&Plan) -> Result<T, String>,
) -> Result<Chosen<T>, SelectError> {
    let plans = candidates(bundle, wanted)?;
    let mut skipped: Vec<String> = Vec::new();
    if wanted == BackendKind::Auto
        && let Some(note) = int8_note(bundle)
    {
        skipped.push(format!("onnxruntime int8: {note}"));
    }
    for plan in plans {
        match open(&plan) {
            Ok(value) => {
                let how = if wanted == BackendKind::Auto { "auto" } else { "as asked" };
                let mut reason = format!("{} ({how})", plan.describe());
                if !skipped.is_empty() {
                    reason.push_str("; not used: ");
                    reason.push_str(&skipped.join("; "));
                }
                return Ok(Chosen { value, plan, reason });
            }
            Err(e) => skipped.push(format!("{}: {e}", plan.describe())),
        }
    }
    Err(SelectError::Exhausted {
        bundle: bundle.manifest.bundle_id.clone(),
        reasons: skipped.join("; "),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::collections::BTreeMap;
    use std::path::Path;

    use fracture_models::bundle::{Int8Check, Manifest, OperatingPoints, Preprocessing};

    use super::*;

    fn bundle(files: &[&str], int8_passed: Option<bool>) -> Bundle {
        let manifest = Manifest {
            format_version: 1,
            bundle_id: "b".into(),
            arch: "yolo11n".into(),
            classes: vec!["fracture".into()],
            imgsz: 416,
            preprocessing: Preprocessing {
                resize: "letterbox".into(),
                pad_value: 0.5,
                scale: "unit".into(),
            },
            nms_iou: 0.45,
            max_det: 300,
            operating_points: OperatingPoints { suspicious: 0.2, definite: 0.5 },
            training_data_sha256: None,
            metrics: BTreeMap::new(),
            notice: None,
            int8: int8_passed.map(|passed| Int8Check {
                method: "entropy".into(),
                map50_fp32: 0.5,
                map50_int8: if passed { 0.49 } else { 0.3 },
                max_drop: 0.03,
                passed,
            }),
            files: files.iter().map(|f| (f.to_string(), "00".into())).collect(),
        };
        Bundle { dir: Path::new("/b").into(), manifest, sha256: "00".into() }
    }

    fn ort(f: &str, precision: &'static str) -> Plan {
        Plan::Ort { onnx: Path::new("/b").join(f), precision }
    }

    #[test]
    fn auto_orders_tensorrt_int8_fp32_torch() {
        let all = bundle(&["weights.safetensors", ONNX_FP32, ONNX_INT8], Some(true));
        assert_eq!(
            candidates(&all, BackendKind::Auto).unwrap(),
            vec![Plan::TensorRt, ort(ONNX_INT8, "int8"), ort(ONNX_FP32, "fp32"), Plan::Torch]
        );
        // An INT8 model that failed (or never had) its accuracy check is not a candidate.
        for check in [Some(false), None] {
            let b = bundle(&["weights.safetensors", ONNX_FP32, ONNX_INT8], check);
            assert_eq!(
                candidates(&b, BackendKind::Auto).unwrap(),
                vec![Plan::TensorRt, ort(ONNX_FP32, "fp32"), Plan::Torch]
            );
        }
        let weights_only = bundle(&["weights.safetensors"], None);
        assert_eq!(
            candidates(&weights_only, BackendKind::Auto).unwrap(),
            vec![Plan::TensorRt, Plan::Torch]
        );
    }

    #[test]
    fn named_backend_is_the_only_candidate() {
        let b = bundle(&["weights.safetensors", ONNX_FP32], None);
        assert_eq!(candidates(&b, BackendKind::Torch).unwrap(), vec![Plan::Torch]);
        assert_eq!(candidates(&b, BackendKind::Ort).unwrap(), vec![ort(ONNX_FP32, "fp32")]);
        let none = bundle(&["weights.safetensors"], None);
        assert_eq!(
            candidates(&none, BackendKind::Ort),
            Err(SelectError::NoOnnx { bundle: "b".into() })
        );
        // Asked-for backends do not fall back.
        let err = open_first(&b, BackendKind::TensorRt, |_| Err::<(), _>("no engine".into()));
        assert!(
            matches!(err, Err(SelectError::Exhausted { ref reasons, .. }) if reasons == "tensorrt: no engine")
        );
    }

    #[test]
    fn auto_falls_back_and_says_why() {
        let b = bundle(&["weights.safetensors", ONNX_FP32, ONNX_INT8], Some(false));
        let chosen = open_first(&b, BackendKind::Auto, |p| match p {
            Plan::TensorRt => Err("no engine for this GPU".into()),
            Plan::Ort { .. } => Err("libonnxruntime.so not found".into()),
            Plan::Torch => Ok(7),
        })
        .unwrap();
        assert_eq!(chosen.value, 7);
        assert_eq!(chosen.plan, Plan::Torch);
        assert!(chosen.reason.starts_with("libtorch (auto); not used: "), "{}", chosen.reason);
        for part in [
            "onnxruntime int8: the INT8 model failed its accuracy check (mAP50 0.300 vs 0.500",
            "tensorrt: no engine for this GPU",
            "onnxruntime fp32: libonnxruntime.so not found",
        ] {
            assert!(chosen.reason.contains(part), "{part} missing in {}", chosen.reason);
        }
        let first = open_first(&b, BackendKind::Auto, |p| match p {
            Plan::TensorRt => Err("no engine".into()),
            _ => Ok(()),
        })
        .unwrap();
        assert_eq!(first.plan, ort(ONNX_FP32, "fp32"));
    }

    #[test]
    fn backend_names_parse() {
        assert_eq!("ORT".parse::<BackendKind>(), Ok(BackendKind::Ort));
        assert_eq!("tensorrt".parse::<BackendKind>(), Ok(BackendKind::TensorRt));
        assert!("cuda".parse::<BackendKind>().is_err());
    }
}
