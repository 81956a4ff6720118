//! `fracture calibrate`: INT8 calibration of a YOLO11 or Faster R-CNN bundle, and what it
//! costs in accuracy.
//!
//! 1. Calibration images (from the training split by default) are recorded as a manifest
//!    (paths + SHA-256, so the calibration can be reproduced), with warnings when the set is
//!    small (< 300) or has no fractured image.
//! 2. Each image is preprocessed exactly as on the device and run through the *traced* export
//!    ([`subject`]: YOLO letterboxed, Faster R-CNN resized): every activation is observed under its ONNX
//!    tensor name, so the ranges found are the ranges of the graph that gets quantised.
//!    Entropy and percentile need a second pass over the same images (max: one).
//! 3. Per method, the bundle's `model.onnx` is rewritten with Q/DQ ([`qdq`]) and scored with
//!    ONNX Runtime on the evaluation split (val by default), next to FP32 and an FP16 copy
//!    ([`fp16`]): mAP50 and mAP50-95 as pycocotools computes them.
//! 4. The best INT8 model (by mAP50) is written into the bundle as `model.int8.onnx` with
//!    `calibration.cache` (TensorRT's format, every activation's scale) and `calibration.json`
//!    (the image manifest); the manifest records the check (`int8`), which the device's
//!    `auto` backend reads: INT8 runs only when the mAP50 drop is within `--max-drop`.
//!
//! Convolutions named in `--keep-float` (and the DFL projection) stay float; with
//! `--auto-keep-float N`, a [`sensitivity`] analysis between steps 2 and 3 ranks the others by
//! how much quantising each alone moves the FP32 output on a few calibration images, and the
//! N most damaging stay float too (in every method's model, recorded in the report).
//!
//! [`qdq`]: fracture_models::onnx::qdq
//! [`fp16`]: fracture_models::onnx::fp16

pub mod report;
pub mod sensitivity;
pub mod subject;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};

use fracture_calibration::manifest::{CalibrationManifest, ManifestError};
use fracture_calibration::{CalibrationCache, CalibrationError, Calibrator, Method, TrtVersion};
use fracture_models::bundle::{Bundle, BundleError, Int8Check, MODEL_ONNX};
use fracture_models::onnx::proto::ModelProto;
use fracture_models::onnx::qdq::{QdqOptions, quantize};
use fracture_models::onnx::{Trace, fp16};
use fracture_models::tensor::nchw_from_gray;
use fracture_runtime::OrtOptions;
use fracture_runtime::backend::ONNX_INT8;
use indicatif::{ProgressBar, ProgressStyle};
use tch::Kind;

use crate::dataset::Dataset;
use crate::eval::split::{self, SplitName};
use crate::eval::{EvalError, SplitScore};

pub use report::{CalibrationReport, MethodScore, SensitivityReport};
pub use sensitivity::SensitivityError;
use subject::Subject;

/// The bundle's TensorRT calibration cache.
pub const CACHE: &str = "calibration.cache";
/// The bundle's calibration-image manifest.
pub const IMAGES_MANIFEST: &str = "calibration.json";

#[derive(Debug, thiserror::Error)]
pub enum CalibrateError {
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error(
        "bundle {0}: INT8 calibration runs on YOLO11 and Faster R-CNN bundles (this one is {1})"
    )]
    Arch(String, String),
    #[error(
        "bundle {0}: --auto-keep-float measures damage on YOLO11's output0; for Faster R-CNN \
         name the layers to keep with --keep-float"
    )]
    SensitivityArch(String),
    #[error("bundle {0} has no {MODEL_ONNX}: re-export it with `fracture export`")]
    NoOnnx(String),
    #[error(transparent)]
    Eval(#[from] EvalError),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Calibration(#[from] CalibrationError),
    #[error("INT8 sensitivity analysis: {0}")]
    Sensitivity(#[from] SensitivityError),
    #[error("the calibration split has no images")]
    NoImages,
    #[error("{path}: {message}")]
    Image { path: PathBuf, message: String },
    #[error("{what}: {message}")]
    Model { what: String, message: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

fn model_err(what: impl Into<String>) -> impl FnOnce(String) -> CalibrateError {
    let what = what.into();
    move |message| CalibrateError::Model { what, message }
}

/// What to calibrate and how.
#[derive(Debug, Clone)]
pub struct CalibrateRequest<'a> {
    pub bundle: &'a Path,
    pub data: &'a Path,
    pub split_file: Option<&'a Path>,
    /// Where the calibration images come from (train by default: never the evaluation split).
    pub calib_split: SplitName,
    pub eval_split: SplitName,
    /// At most this many calibration images (evenly spaced over the split).
    pub max_images: usize,
    pub methods: Vec<Method>,
    /// Conv node or output names kept in float.
    pub keep_float: BTreeSet<String>,
    /// Also keep float this many convolutions the sensitivity analysis ranks most
    /// damaging (0: no analysis).
    pub auto_keep_float: usize,
    /// Calibration images the sensitivity analysis runs (fractured ones first).
    pub sensitivity_images: usize,
    /// The largest mAP50 drop (FP32 − INT8) accepted for the device to run INT8.
    pub max_drop: f64,
    pub trt_version: TrtVersion,
    /// Report, intermediate models and COCO files.
    pub out_dir: &'a Path,
    pub ort: OrtOptions,
    /// Write the chosen INT8 model, cache and manifest into the bundle.
    pub write: bool,
}

/// `count` evenly spaced picks out of `indices` (all of them when there are fewer).
fn spaced(indices: &[usize], count: usize) -> Vec<usize> {
    if indices.len() <= count {
        return indices.to_vec();
    }
    (0..count).map(|k| indices[k * indices.len() / count]).collect()
}

/// `count` picks out of a list of images flagged fractured or not: fractured ones first
/// (evenly spaced), the rest filled in evenly from the others; in list order.
fn fractured_first(fractured: &[bool], count: usize) -> Vec<usize> {
    let (yes, no): (Vec<usize>, Vec<usize>) = (0..fractured.len()).partition(|&i| fractured[i]);
    let mut out = spaced(&yes, count);
    out.extend(spaced(&no, count - out.len()));
    out.sort_unstable();
    out
}

/// Runs the calibration (see the module doc).
pub fn calibrate(req: &CalibrateRequest) -> Result<CalibrationReport, CalibrateError> {
    let bundle = Bundle::open(req.bundle)?;
    let m = &bundle.manifest;
    let is_frcnn = m.arch == fracture_models::frcnn::ARCH;
    if !(m.arch.starts_with("yolo11") || is_frcnn) {
        return Err(CalibrateError::Arch(m.bundle_id.clone(), m.arch.clone()));
    }
    if !m.files.contains_key(MODEL_ONNX) {
        return Err(CalibrateError::NoOnnx(m.bundle_id.clone()));
    }
    if is_frcnn && req.auto_keep_float > 0 {
        return Err(CalibrateError::SensitivityArch(m.bundle_id.clone()));
    }
    let onnx_path = bundle.dir.join(MODEL_ONNX);
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CalibrateError::Io { path, source }
    };
    std::fs::create_dir_all(req.out_dir).map_err(io(req.out_dir))?;

    let ds = Dataset::load(req.data)
        .map_err(|source| EvalError::Dataset { path: req.data.to_path_buf(), source })?;
    let calib = split::select(&ds, req.calib_split, req.split_file)?;
    let eval_split = split::select(&ds, req.eval_split, req.split_file)?;
    let picks = spaced(&calib.indices, req.max_images);
    if picks.is_empty() {
        return Err(CalibrateError::NoImages);
    }
    let listed: Vec<(PathBuf, bool)> = picks
        .iter()
        .map(|&i| {
            let r = &ds.images[i];
            let rel = r.path.strip_prefix(&ds.root).unwrap_or(&r.path).to_path_buf();
            (rel, r.meta.fractured == 1)
        })
        .collect();
    let images_manifest = CalibrationManifest::build(&ds.root, &listed)?;
    let mut warnings: Vec<String> =
        images_manifest.warnings().iter().map(ToString::to_string).collect();
    if req.ort.int8_weights.reduced() {
        warnings.push(
            "INT8 models are scored with 7-bit weights: ONNX Runtime's integer kernels on this \
             CPU (x86 without VNNI) saturate on the bundle's 8-bit ones. TensorRT and VNNI CPUs \
             run the 8-bit weights, whose accuracy can differ slightly."
                .to_string(),
        );
    }
    for w in &warnings {
        eprintln!("warning: {w}");
    }

    // Observation: every float activation of the traced graph, by ONNX name.
    let subject = Subject::open(&bundle)?;
    let mut calibrators =
        req.methods.iter().map(|&method| Calibrator::new(method)).collect::<Result<Vec<_>, _>>()?;
    let passes = calibrators.iter().map(Calibrator::passes).max().unwrap_or(1);
    let paths: Vec<PathBuf> = picks.iter().map(|&i| ds.images[i].path.clone()).collect();
    for pass in 1..=passes {
        let bar = ProgressBar::new(paths.len() as u64);
        bar.set_style(
            ProgressStyle::with_template(&format!(
                "{{spinner}} calibration pass {pass}/{passes} [{{elapsed_precise}}] \
                 {{wide_bar}} {{pos}}/{{len}} (ETA {{eta}})"
            ))
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        for path in &paths {
            observe_image(&subject, path, &mut calibrators, pass)?;
            bar.inc(1);
        }
        bar.finish_and_clear();
        for c in calibrators.iter_mut().filter(|c| !c.is_complete()) {
            c.end_pass()?;
        }
    }

    let calibrated = calibrators
        .into_iter()
        .map(|c| Ok((c.method(), c.finish()?)))
        .collect::<Result<Vec<_>, CalibrationError>>()?;

    let proto = read_model(&onnx_path)?;
    let mut keep = req.keep_float.clone();
    // The DFL projection (a fixed 0..15 expectation) gains nothing from INT8 and loses box
    // precision: it stays float unless named otherwise.
    keep.extend(dfl_convs(&proto));
    // Sensitivity: the layers INT8 hurts most, by the first method's ranges.
    let sensitivity = match calibrated.first() {
        Some((method, amax)) if req.auto_keep_float > 0 => {
            let chosen = fractured_first(
                &listed.iter().map(|(_, f)| *f).collect::<Vec<_>>(),
                req.sensitivity_images.max(1),
            );
            let mut data = Vec::new();
            for &i in &chosen {
                data.extend(nchw_from_gray(&subject::letterboxed(&paths[i], m.imgsz)?));
            }
            let batch = sensitivity::Batch { data, batch: chosen.len() };
            let s = sensitivity::analyse(&proto, amax, &batch, &keep, &req.ort, true)?;
            let auto = s.top(req.auto_keep_float);
            eprintln!(
                "INT8 sensitivity: {} layer(s) on {} image(s) in {:.1} s; kept float: {}",
                s.ranking.len(),
                s.images,
                s.seconds,
                auto.join(", ")
            );
            keep.extend(auto.iter().cloned());
            Some(SensitivityReport {
                method: method.to_string(),
                images: chosen.iter().map(|&i| listed[i].0.clone()).collect(),
                seconds: s.seconds,
                auto_keep_float: req.auto_keep_float,
                auto_kept_float: auto,
                ranking: s.ranking,
            })
        }
        _ => None,
    };

    // Scoring: FP32, FP16 and each INT8 model through ONNX Runtime on the evaluation split.
    let score_file = |file: &Path, tag: &str| -> Result<SplitScore, CalibrateError> {
        eprintln!(
            "scoring {tag} on {} ({} images) ...",
            req.eval_split.name(),
            eval_split.indices.len()
        );
        subject.score(&bundle, file, &ds, &eval_split, &req.out_dir.join(tag), &req.ort)
    };
    let fp32 = score_file(&onnx_path, "fp32")?;
    // FP16 (see `CalibrationReport::fp16` for why not Faster R-CNN).
    let fp16 = if subject.is_yolo() {
        let half =
            fp16::to_fp16(&proto).map_err(|e| model_err("fp16 conversion")(e.to_string()))?;
        let fp16_path = req.out_dir.join("model.fp16.onnx");
        save(&half, &fp16_path)?;
        Some(score_file(&fp16_path, "fp16")?)
    } else {
        None
    };

    let opts = QdqOptions { keep_float: keep, only: None };
    let mut int8 = Vec::new();
    let mut amaxes = Vec::new();
    for (method, amax) in calibrated {
        let (qmodel, summary) =
            quantize(&proto, &amax, &opts).map_err(|e| model_err("Q/DQ")(e.to_string()))?;
        let tag = method_tag(method);
        let path = req.out_dir.join(format!("model.int8.{tag}.onnx"));
        save(&qmodel, &path)?;
        let s = score_file(&path, &format!("int8-{tag}"))?;
        let drop = fp32.map50 - s.map50;
        int8.push(MethodScore {
            method: method.to_string(),
            score: s,
            map50_drop: drop,
            passed: drop <= req.max_drop,
            quantized_convs: summary.quantized.len(),
            kept_float: summary.kept_float,
            model: path,
        });
        amaxes.push(amax);
    }
    // The best INT8 model by mAP50 (the first listed method on ties).
    let best = (0..int8.len()).fold(None, |b: Option<usize>, i| match b {
        Some(j) if int8[j].score.map50 >= int8[i].score.map50 => Some(j),
        _ => Some(i),
    });

    let mut report = CalibrationReport {
        bundle: bundle.dir.clone(),
        bundle_sha256_before: bundle.sha256.clone(),
        bundle_sha256: None,
        eval_split: req.eval_split.name().to_string(),
        calibration_images: images_manifest.images.len(),
        calibration_fractured: images_manifest.fractured_count(),
        calibration_manifest_sha256: images_manifest.digest(),
        warnings,
        max_drop: req.max_drop,
        fp32,
        fp16,
        int8,
        chosen: best,
        sensitivity,
        written: Vec::new(),
    };
    if let (true, Some(i)) = (req.write, best) {
        let chosen = &report.int8[i];
        let cache = CalibrationCache::from_amax(req.trt_version, &amaxes[i]);
        let cache_path = req.out_dir.join(CACHE);
        cache.write(&cache_path).map_err(|e| model_err(CACHE)(e.to_string()))?;
        let manifest_path = req.out_dir.join(IMAGES_MANIFEST);
        images_manifest.write(&manifest_path)?;
        let check = Int8Check {
            method: chosen.method.clone(),
            map50_fp32: report.fp32.map50,
            map50_int8: chosen.score.map50,
            max_drop: req.max_drop,
            passed: chosen.passed,
        };
        let mut metrics = BTreeMap::new();
        metrics.insert(format!("{}.fp32.mAP50", report.eval_split), report.fp32.map50);
        if let Some(fp16) = &report.fp16 {
            metrics.insert(format!("{}.fp16.mAP50", report.eval_split), fp16.map50);
        }
        metrics.insert(format!("{}.int8.mAP50", report.eval_split), chosen.score.map50);
        metrics.insert(format!("{}.int8.mAP50-95", report.eval_split), chosen.score.map50_95);
        let files: Vec<(&str, &Path)> = vec![
            (ONNX_INT8, chosen.model.as_path()),
            (CACHE, cache_path.as_path()),
            (IMAGES_MANIFEST, manifest_path.as_path()),
        ];
        let updated = bundle.add_files(&files, |m| {
            m.int8 = Some(check);
            m.metrics.extend(metrics);
        })?;
        report.bundle_sha256 = Some(updated.sha256.clone());
        report.written = files.iter().map(|(n, _)| n.to_string()).collect();
    }
    Ok(report)
}

/// Traces one calibration image and feeds its activations to the calibrators still on `pass`.
fn observe_image(
    subject: &Subject,
    path: &Path,
    calibrators: &mut [Calibrator],
    pass: usize,
) -> Result<(), CalibrateError> {
    let trace = subject.trace(path)?;
    for_each_activation(&trace, |name, values| {
        for c in calibrators.iter_mut().filter(|c| c.pass() == pass && !c.is_complete()) {
            c.observe(name, values)?;
        }
        Ok(())
    })
    .map_err(|e| match e {
        ActivationError::Calibration(e) => e.into(),
        ActivationError::Tensor(message) => {
            CalibrateError::Image { path: path.to_path_buf(), message }
        }
    })
}

/// Why [`for_each_activation`] stopped.
#[derive(Debug, thiserror::Error)]
pub enum ActivationError {
    #[error(transparent)]
    Calibration(#[from] CalibrationError),
    #[error("{0}")]
    Tensor(String),
}

/// Calls `observe` with every float activation of a traced graph (weights excluded), by its
/// ONNX tensor name: what calibration sees of one image.
pub fn for_each_activation(
    trace: &Trace,
    mut observe: impl FnMut(&str, &[f32]) -> Result<(), CalibrationError>,
) -> Result<(), ActivationError> {
    let weights: HashSet<&str> = trace
        .model
        .graph
        .iter()
        .flat_map(|g| &g.initializer)
        .filter_map(|t| t.name.as_deref())
        .collect();
    for (name, t) in &trace.values {
        if weights.contains(name.as_str()) || t.kind() != Kind::Float {
            continue;
        }
        let values: Vec<f32> = Vec::try_from(t.contiguous().view(-1))
            .map_err(|e| ActivationError::Tensor(format!("tensor {name}: {e}")))?;
        observe(name, &values)?;
    }
    Ok(())
}

fn read_model(path: &Path) -> Result<ModelProto, CalibrateError> {
    use prost::Message;
    let bytes = std::fs::read(path)
        .map_err(|source| CalibrateError::Io { path: path.to_path_buf(), source })?;
    ModelProto::decode(bytes.as_slice())
        .map_err(|e| model_err(path.display().to_string())(format!("not an ONNX model: {e}")))
}

fn save(model: &ModelProto, path: &Path) -> Result<(), CalibrateError> {
    fracture_models::onnx::save(model, path)
        .map_err(|e| model_err(path.display().to_string())(e.to_string()))
}

/// The output names of the DFL projection convolutions (`*.dfl.conv`).
pub fn dfl_convs(model: &ModelProto) -> Vec<String> {
    model
        .graph
        .iter()
        .flat_map(|g| &g.node)
        .filter(|n| n.op_type.as_deref() == Some("Conv"))
        .filter(|n| n.name.as_deref().is_some_and(|s| s.contains(".dfl.")))
        .filter_map(|n| n.name.clone())
        .collect()
}

/// A file-name tag for a method: `entropy`, `percentile-99.99`, `max`.
fn method_tag(m: Method) -> String {
    match m {
        Method::Entropy => "entropy".into(),
        Method::Percentile(p) => format!("percentile-{p}"),
        Method::Max => "max".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::{fractured_first, spaced};

    #[test]
    fn calibration_images_are_spread_over_the_split() {
        let all: Vec<usize> = (0..10).collect();
        assert_eq!(spaced(&all, 4), vec![0, 2, 5, 7]);
        assert_eq!(spaced(&all, 20), all);
        assert!(spaced(&[], 3).is_empty());
    }

    #[test]
    fn sensitivity_images_prefer_fractures() {
        let f = [false, true, false, false, true, false, true, false];
        assert_eq!(fractured_first(&f, 2), vec![1, 4]);
        // All three fractured, then two of the others, evenly spaced; in list order.
        assert_eq!(fractured_first(&f, 5), vec![0, 1, 3, 4, 6]);
        assert_eq!(fractured_first(&f, 20), (0..8).collect::<Vec<_>>());
        assert_eq!(fractured_first(&[false, false], 1), vec![0]);
    }
}
