//! Evaluation of a trained detector on one split of a dataset (`fracture eval`): run it over
//! every image of the split ([`inference`]), write the ground truth and detections as COCO json
//! ([`coco_files`]) and score those files as `fracture metrics` does — pycocotools' mAP and
//! ultralytics' P / R / F1 — overall, per body part and per box size ([`report`]); choose the
//! two operating points on the validation split ([`operating_points`]) and count box TP / FP /
//! FN and image-level sensitivity / specificity at them ([`tally`], matching at IoU 0.5 by
//! [`matching`]); draw the curves ([`curves`]); and, on request, write the points and numbers
//! into a model bundle ([`bundle`]). Which images form a split is [`split`]'s business.

pub mod bundle;
pub mod coco_files;
pub mod curves;
pub mod inference;
pub mod matching;
pub mod operating_points;
pub mod report;
pub mod split;
pub mod tally;

use std::path::{Path, PathBuf};

use fracture_models::bundle::BundleError;
use fracture_models::detector::Detector;
use fracture_models::metrics::{
    CocoError, CocoJsonError, evaluate_groups, images_from_coco, precision_recall_f1,
};
use fracture_models::weights_file::WeightsFileError;

use crate::dataset::{Dataset, DatasetError};
use crate::plot::PlotError;

use self::curves::Marker;
use self::operating_points::{PickError, pick};
use self::report::{
    EvalReport, Files, ImageLevel, OperatingPoint, OperatingPointsReport, Overall, PartMetrics,
    PerSize, Settings, body_part_groups,
};
use self::split::SplitName;
use self::tally::{ImageTally, Scored, image_counts};

/// Why an evaluation failed; names the file involved.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("loading dataset {path}")]
    Dataset { path: PathBuf, source: DatasetError },
    #[error("{path}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: invalid JSON")]
    Json { path: PathBuf, source: serde_json::Error },
    #[error("{path}")]
    Csv { path: PathBuf, source: csv::Error },
    #[error("{path}: {message}")]
    SplitFile { path: PathBuf, message: String },
    #[error("{path}{}: image {image_id} is not in the dataset", line_suffix(*.line))]
    UnknownImage { path: PathBuf, line: usize, image_id: String },
    #[error("{path}: the {split} split has no images")]
    EmptySplit { split: &'static str, path: PathBuf },
    #[error("{path}")]
    Image { path: PathBuf, source: Box<dyn std::error::Error + Send + Sync> },
    #[error(transparent)]
    CocoJson(#[from] CocoJsonError),
    #[error("evaluating {path}")]
    Coco { path: PathBuf, source: CocoError },
    #[error("{split_source}")]
    OperatingPoints { split_source: PathBuf, source: PickError },
    #[error(transparent)]
    Targets(PickError),
    #[error("drawing the curves")]
    Plot(#[from] PlotError),
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error(
        "{bundle}: its weights are not {weights} ({message}); evaluate the bundle's own \
         weights.safetensors, or leave --weights out"
    )]
    BundleWeights { bundle: PathBuf, weights: PathBuf, message: String },
    #[error(transparent)]
    Weights(#[from] WeightsFileError),
}

fn line_suffix(line: usize) -> String {
    if line > 0 { format!(":{line}") } else { String::new() }
}

/// What to evaluate and where the files go.
#[derive(Debug, Clone)]
pub struct EvalRequest<'a> {
    pub weights: &'a Path,
    pub arch: String,
    pub classes: Vec<String>,
    pub data: &'a Path,
    pub split: SplitName,
    /// A split.json; `None`: the dataset's own split lists.
    pub split_file: Option<&'a Path>,
    /// Created if missing.
    pub out_dir: &'a Path,
    /// How the detector was set up, and the operating points' targets.
    pub settings: Settings,
}

/// One split run through the detector, its files written and read back, and tallied.
struct SplitRun {
    split: split::SplitImages,
    runs: Vec<inference::ImageRun>,
    files: coco_files::CocoFiles,
    tallies: Vec<ImageTally>,
}

fn run_split<D: Detector>(
    detector: &D,
    ds: &Dataset,
    split: split::SplitImages,
    out_dir: &Path,
    prefix: &str,
) -> Result<SplitRun, EvalError> {
    let runs = inference::run_detector(detector, ds, &split.indices, split.split.name())?;
    let files = coco_files::write_and_reload(out_dir, prefix, ds, &split.indices, &runs)?;
    let tallies = tally::tally(&files.gt, &files.dets);
    Ok(SplitRun { split, runs, files, tallies })
}

/// pycocotools' mAP50 / mAP50-95 of one model run on one split, and its latency.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct SplitScore {
    pub map50: f64,
    pub map50_95: f64,
    pub images: usize,
    /// Median decode → boxes time per image, milliseconds.
    pub latency_ms: f64,
}

/// Scores `detector` on `split` of `ds` (COCO files written under `out_dir` with `prefix`):
/// the comparison of one model run different ways (`fracture calibrate`: FP32, FP16, INT8).
pub fn score<D: Detector>(
    detector: &D,
    ds: &Dataset,
    split: &split::SplitImages,
    out_dir: &Path,
    prefix: &str,
) -> Result<SplitScore, EvalError> {
    std::fs::create_dir_all(out_dir)
        .map_err(|source| EvalError::Io { path: out_dir.to_path_buf(), source })?;
    let run = run_split(detector, ds, split.clone(), out_dir, prefix)?;
    let coco = fracture_models::metrics::evaluate(&run.files.gt, &run.files.dets)
        .map_err(|source| EvalError::Coco { path: run.files.dets_path.clone(), source })?;
    let latency = inference::latency(&run.runs);
    Ok(SplitScore {
        map50: coco.stats.AP50,
        map50_95: coco.stats.AP,
        images: split.indices.len(),
        latency_ms: latency.median,
    })
}

/// Runs the whole evaluation. The report's `bundle` is left for the caller.
pub fn evaluate<D: Detector>(detector: &D, req: &EvalRequest) -> Result<EvalReport, EvalError> {
    req.settings.targets.check().map_err(EvalError::Targets)?;
    let ds = Dataset::load(req.data)
        .map_err(|source| EvalError::Dataset { path: req.data.to_path_buf(), source })?;
    let chosen = split::select(&ds, req.split, req.split_file)?;
    // The validation list is checked before any inference runs.
    let val_split = match req.split {
        SplitName::Val => None,
        _ => Some(split::select(&ds, SplitName::Val, req.split_file)?),
    };
    std::fs::create_dir_all(req.out_dir)
        .map_err(|source| EvalError::Io { path: req.out_dir.to_path_buf(), source })?;

    let eval = run_split(detector, &ds, chosen, req.out_dir, "")?;
    let val = match val_split {
        Some(v) => Some(run_split(detector, &ds, v, req.out_dir, "val_")?),
        None => None,
    };
    let val_ref = val.as_ref().unwrap_or(&eval);

    // Operating points on val.
    let val_scored: Vec<Scored> =
        val_ref.tallies.iter().flat_map(|t| t.dets.iter().copied()).collect();
    let val_boxes: usize = val_ref.tallies.iter().map(|t| t.labels.len()).sum();
    let points = pick(&val_scored, val_boxes, req.settings.targets).map_err(|source| {
        EvalError::OperatingPoints { split_source: val_ref.split.source.clone(), source }
    })?;

    // Metrics on the evaluated split, from the files as read back.
    let (gt, dets) = (&eval.files.gt, &eval.files.dets);
    let coco = fracture_models::metrics::evaluate(gt, dets)
        .map_err(|source| EvalError::Coco { path: eval.files.dets_path.clone(), source })?;
    let prf = precision_recall_f1(&images_from_coco(gt, dets));

    // Body parts: image id n + 1 is the split's n-th image.
    let parts: Vec<(i64, &'static str)> = eval
        .split
        .indices
        .iter()
        .enumerate()
        .map(|(n, &i)| (n as i64 + 1, ds.images[i].meta.primary_part_name()))
        .collect();
    let groups = body_part_groups(&parts);
    let subsets = evaluate_groups(gt, dets, &groups)
        .map_err(|source| EvalError::Coco { path: eval.files.dets_path.clone(), source })?;
    let per_body_part = subsets
        .iter()
        .map(|(part, m)| {
            let ids = &groups[part];
            let t: Vec<&ImageTally> =
                eval.tallies.iter().filter(|t| ids.contains(&t.image_id)).collect();
            (part.clone(), PartMetrics::new(m, &t, &points))
        })
        .collect();

    let op = |p: &operating_points::Point| OperatingPoint::new(p, val_boxes, &eval.tallies);
    let (suspicious, definite) = (op(&points.suspicious), op(&points.definite));
    let marker = |name, p: &OperatingPoint| Marker {
        name,
        conf: p.conf,
        precision: p.eval.precision,
        recall: p.eval.recall,
    };
    let names: std::collections::HashMap<i64, String> =
        gt.categories.iter().map(|c| (c.id, c.name.clone())).collect();
    let curves = curves::draw(
        req.out_dir,
        &prf,
        |k| names.get(&k).cloned().unwrap_or_else(|| k.to_string()),
        &[marker("suspicious", &suspicious), marker("definite", &definite)],
    )?;

    let positives = eval.tallies.iter().filter(|t| t.positive()).count();
    Ok(EvalReport {
        weights: req.weights.to_path_buf(),
        arch: req.arch.clone(),
        classes: req.classes.clone(),
        data: req.data.to_path_buf(),
        split: req.split.name(),
        split_source: eval.split.source.clone(),
        n_images: eval.tallies.len(),
        n_fractured_images: positives,
        n_boxes: eval.tallies.iter().map(|t| t.labels.len()).sum(),
        n_detections: dets.len(),
        settings: req.settings.clone(),
        overall: Overall::new(coco.stats, &prf),
        per_body_part,
        per_size: PerSize::new(&coco.stats, &eval.tallies, &points),
        image_level: ImageLevel {
            positives,
            negatives: eval.tallies.len() - positives,
            suspicious: image_counts(&eval.tallies, points.suspicious.conf),
            definite: image_counts(&eval.tallies, points.definite.conf),
        },
        operating_points: OperatingPointsReport {
            chosen_on: SplitName::Val.name(),
            val_source: val_ref.split.source.clone(),
            val_images: val_ref.tallies.len(),
            val_boxes,
            targets: req.settings.targets,
            suspicious_lowered: points.suspicious_lowered,
            suspicious,
            definite,
        },
        latency_ms_per_image: inference::latency(&eval.runs),
        files: Files {
            gt_json: eval.files.gt_path.clone(),
            detections_json: eval.files.dets_path.clone(),
            val_gt_json: val.as_ref().map(|v| v.files.gt_path.clone()),
            val_detections_json: val.as_ref().map(|v| v.files.dets_path.clone()),
        },
        curves,
        bundle: None,
    })
}
