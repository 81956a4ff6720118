//! `fracture eval`: score trained weights on a split of a dataset — mAP, P/R/F1, per body part
//! and box size, the two operating points chosen on val, image-level sensitivity/specificity,
//! latency, curves — as JSON, optionally written into a model bundle. The logic is in
//! [`crate::eval`]; this is the command line and the choice of detector.

use crate::detector_choice::{Choice, Family};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use fracture_models::compute_device::parse_device;
use fracture_models::detector::Detector;
use fracture_models::frcnn::{FrcnnPredictOptions, FrcnnPredictor};
use fracture_models::nms::NmsConfig;
use fracture_models::yolo::{PredictOptions, YoloPredictor};
use fracture_runtime::backend::{self, BackendKind, Chosen, Plan};
use fracture_runtime::{FrcnnOrt, OrtOptions, YoloOrt};

use crate::eval::coco_files::write_json;
use crate::eval::operating_points::Targets;
use crate::eval::report::Settings;
use crate::eval::split::SplitName;
use crate::eval::{EvalRequest, bundle, evaluate};

/// `fracture eval --help`: what the command does and the report's keys.
pub const LONG_ABOUT: &str = "\
Evaluate trained weights on one split of a dataset (FracAtlas layout).

Runs the detector (YOLO11 or Faster R-CNN, read from the weights' metadata) over every image of
the split, writes the ground truth and detections as COCO json (gt.json, detections.json in the
output folder) and scores those files exactly as `fracture metrics` does: mAP50 and mAP50-95 as
pycocotools computes them, precision / recall / F1 at the best-F1 confidence as ultralytics
does. Also per body part (dataset.csv), per box size (COCO small < 32², medium < 96², large),
image-level sensitivity / specificity, TP / FP / FN counts, latency, and curves
(PR_curve.png, F1_curve.png, P_curve.png, R_curve.png).

Two operating points are picked on the VALIDATION split whatever --split says (it is run too):
  suspicious  the highest confidence whose box recall (IoU 0.5) reaches --suspicious-recall
              (else the highest reaching the largest recall);
  definite    the lowest confidence whose box precision reaches --definite-precision
              (else the best-F1 confidence).
If definite comes out below suspicious, suspicious is lowered to it (both targets still hold).
With --bundle they are written into the bundle's manifest (operating_points) with the metrics
(metrics: <split>.mAP50, val.suspicious.recall, ...); the bundle's files are unchanged, its
SHA-256 identity changes.

The split's images come from --split-file (a split.json from `fracture split` or a training
run) or else from the dataset's Utilities/Fracture Split/{train,valid,test}.csv, which in
FracAtlas list fractured images only (then image specificity is null). Evaluate a model on the
split it was trained with: pass its RUN/split.json.

JSON keys (stable; null where a ratio has nothing to count):
  weights, arch, classes, data, split, split_source,
  n_images, n_fractured_images, n_boxes, n_detections,
  settings {conf, iou, max_det, imgsz, device, backend, targets {suspicious_recall, definite_precision}}
  overall {map50, map50_95 (pycocotools AP50, AP), precision, recall, f1, conf_at_best_f1,
           ultralytics_map50, ultralytics_map50_95, coco {AP, AP50, ... ARl}}
  per_body_part {hand|leg|hip|shoulder|mixed|unknown: {images, fractured_images, boxes,
           detections, map50, map50_95, precision, recall, f1, suspicious {..}, definite {..}}}
  per_size {small|medium|large: {area_min, area_max, boxes, ap, ar,
           suspicious {found, missed, recall}, definite {..}}}
  image_level {positives, negatives,
           suspicious|definite: {conf, sensitivity, specificity, tp, fp, tn, fn}}
  operating_points {chosen_on: \"val\", val_source, val_images, val_boxes, targets,
           suspicious_lowered,
           suspicious|definite: {conf, rule (target|max_recall|best_f1), val_recall,
             val_precision, val_tp, val_fp, val_fn,
             eval {tp, fp, fn, precision, recall, image_sensitivity, image_specificity}}}
  latency_ms_per_image {mean, median, images}
  files {gt_json, detections_json, val_gt_json, val_detections_json}
  curves {pr_png, f1_png, p_png, r_png}
  bundle {dir, sha256_before, sha256, operating_points, metrics} or null
Box counts match at IoU 0.5 (ultralytics' rule); a detection counts at a threshold when its
score is >= conf.";

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  \
  fracture eval --weights runs/n/weights/best.safetensors --data FracAtlas \\\n      \
--split-file runs/n/split.json --json reports/n-test.json\n  \
  fracture eval --bundle bundles/fracture-n-v1 --data FracAtlas --split-file runs/n/split.json\n  \
  fracture eval --weights runs/frcnn/weights/best.safetensors --data FracAtlas --split val")]
pub struct EvalArgs {
    /// Weights (safetensors), as for `fracture predict`; with --bundle, default: the bundle's.
    #[arg(long, required_unless_present = "bundle")]
    pub weights: Option<PathBuf>,
    /// Dataset root (FracAtlas layout).
    #[arg(long)]
    pub data: PathBuf,
    /// The split to evaluate.
    #[arg(long, value_enum, default_value_t = SplitName::Test)]
    pub split: SplitName,
    /// A split.json (`fracture split`, or a training run's RUN/split.json); default: the
    /// dataset's Utilities/Fracture Split lists.
    #[arg(long, value_name = "SPLIT.json")]
    pub split_file: Option<PathBuf>,
    /// Write the report here (default: standard output).
    #[arg(long, value_name = "OUT.json")]
    pub json: Option<PathBuf>,
    /// Folder for gt.json, detections.json and the curves (default: the folder of --json, or
    /// ./eval-<split>).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Write the operating points and metrics into this bundle's manifest.json.
    #[arg(long, value_name = "BUNDLE_DIR")]
    pub bundle: Option<PathBuf>,
    /// Keep detections scoring above this (low, so the curves and mAP see everything).
    #[arg(long, default_value_t = 0.001)]
    pub conf: f32,
    /// NMS IoU (default: 0.7 for YOLO as ultralytics validates, 0.5 for Faster R-CNN as
    /// torchvision does).
    #[arg(long)]
    pub iou: Option<f64>,
    /// At most this many boxes per image (default: 300 for YOLO, 100 for Faster R-CNN).
    #[arg(long)]
    pub max_det: Option<usize>,
    /// Network input size (default: the weights' own). Faster R-CNN: min and max size both.
    #[arg(long)]
    pub imgsz: Option<u32>,
    /// Faster R-CNN: RPN proposals scored by the box head (default: the training run's).
    #[arg(long)]
    pub proposals: Option<i64>,
    /// Box recall the suspicious operating point must reach on val.
    #[arg(long, default_value_t = 0.9)]
    pub suspicious_recall: f64,
    /// Box precision the definite operating point must reach on val.
    #[arg(long, default_value_t = 0.9)]
    pub definite_precision: f64,
    /// Architecture of a plain state_dict (yolo11n|s|m|l|x|frcnn-r50-fpn-v2).
    #[arg(long, requires = "nc")]
    pub arch: Option<String>,
    /// Number of classes of a plain state_dict.
    #[arg(long, requires = "arch")]
    pub nc: Option<i64>,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// CPU threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// torch (libtorch on the weights) or ort (ONNX Runtime on the bundle's exported graph:
    /// model.int8.onnx when calibrated and accepted, else model.onnx; needs --bundle).
    #[arg(long, default_value = "torch")]
    pub backend: BackendKind,
}

pub fn run(args: &EvalArgs) -> anyhow::Result<()> {
    if let Some(t) = args.threads {
        tch::set_num_threads(t.max(1) as i32);
    }
    let weights = match (&args.weights, &args.bundle) {
        (Some(w), _) => w.clone(),
        (None, Some(b)) => b.join(fracture_models::bundle::WEIGHTS),
        (None, None) => bail!("pass --weights (or --bundle)"),
    };
    if !weights.is_file() {
        bail!("{}: no such weights file", weights.display());
    }
    // Checked before the long inference: the bundle verifies and holds these weights.
    let target_bundle = match &args.bundle {
        Some(dir) => Some(bundle::open_for(dir, &weights)?),
        None => None,
    };
    if args.split_file.is_none() {
        note_run_split(&weights);
    }
    let out_dir = match (&args.out, &args.json) {
        (Some(dir), _) => dir.clone(),
        (None, Some(json)) => match json.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        },
        (None, None) => PathBuf::from(format!("eval-{}", args.split.name())),
    };

    let resolved = choice(args, &weights).resolve()?;
    let frcnn = resolved.family == Family::Frcnn;
    let arch = resolved.arch.unwrap_or_default();
    let settings = Settings {
        conf: args.conf,
        iou: args.iou.unwrap_or(if frcnn { 0.5 } else { 0.7 }),
        max_det: args.max_det.unwrap_or(if frcnn { 100 } else { 300 }),
        imgsz: args.imgsz,
        device: args.device.clone(),
        backend: "libtorch".into(),
        targets: Targets {
            suspicious_recall: args.suspicious_recall,
            definite_precision: args.definite_precision,
        },
    };
    let request = |classes: &[String]| EvalRequest {
        weights: &weights,
        arch: arch.clone(),
        classes: classes.to_vec(),
        data: &args.data,
        split: args.split,
        split_file: args.split_file.as_deref(),
        out_dir: &out_dir,
        settings: settings.clone(),
    };
    let mut report = if let Some(onnx) = ort_graph(args, target_bundle.as_ref())? {
        let mut settings = settings.clone();
        settings.backend = onnx.plan.describe();
        let ort_opts = OrtOptions { threads: args.threads, ..OrtOptions::default() };
        let nms = NmsConfig {
            conf: settings.conf,
            iou: settings.iou,
            max_det: settings.max_det,
            ..NmsConfig::default()
        };
        eprintln!("backend: {}", onnx.reason);
        match target_bundle.as_ref() {
            // The Faster R-CNN graph runs its own NMS (fixed at export); --conf still applies.
            Some(b) if frcnn => {
                let det = FrcnnOrt::open_bundle(b, &onnx.value, settings.conf, &ort_opts)?;
                let mut req = request(det.classes());
                req.settings = settings;
                evaluate(&det, &req)?
            }
            _ => {
                let classes = classes_of(target_bundle.as_ref());
                let det = YoloOrt::open(&onnx.value, classes, nms, &ort_opts)?;
                let mut req = request(det.classes());
                req.settings = settings;
                evaluate(&det, &req)?
            }
        }
    } else if frcnn {
        let det = frcnn_predictor(args, &weights, &settings)?;
        evaluate(&det, &request(det.classes()))?
    } else {
        let det = yolo_predictor(args, &weights, &settings)?;
        if det.classes().len() != 1 {
            eprintln!(
                "note: the model has {} classes; only class 0 is compared with the fracture boxes",
                det.classes().len()
            );
        }
        evaluate(&det, &request(det.classes()))?
    };

    if let Some(b) = &target_bundle {
        let op = &report.operating_points;
        let points = fracture_models::bundle::OperatingPoints {
            suspicious: op.suspicious.conf,
            definite: op.definite.conf,
        };
        let update = bundle::store(b, points, report.manifest_metrics())?;
        eprintln!(
            "bundle {}: operating points suspicious {} / definite {}; sha256 now {}",
            update.dir.display(),
            points.suspicious,
            points.definite,
            update.sha256
        );
        report.bundle = Some(update);
    }

    eprint!("{}", report.summary());
    match &args.json {
        Some(path) => {
            write_json(path, &report)?;
            eprintln!("wrote {} (files in {})", path.display(), out_dir.display());
        }
        None => println!("{}", serde_json::to_string_pretty(&report)?),
    }
    Ok(())
}

/// The bundle graph `--backend ort` runs (`None`: libtorch on the weights).
fn ort_graph(
    args: &EvalArgs,
    bundle: Option<&fracture_models::bundle::Bundle>,
) -> anyhow::Result<Option<Chosen<PathBuf>>> {
    match (args.backend, bundle) {
        (BackendKind::Torch, _) => Ok(None),
        (BackendKind::Ort, None) => {
            bail!("--backend ort runs a bundle's ONNX graph: pass --bundle")
        }
        (BackendKind::Ort, Some(b)) => {
            let chosen = backend::open_first(b, BackendKind::Ort, |plan| match plan {
                Plan::Ort { onnx, .. } => Ok(onnx.clone()),
                other => Err(format!("{} is not evaluated here", other.describe())),
            })?;
            Ok(Some(chosen))
        }
        (other, _) => bail!("--backend {other:?}: eval runs torch or ort"),
    }
}

fn classes_of(bundle: Option<&fracture_models::bundle::Bundle>) -> Vec<String> {
    bundle.map(|b| b.manifest.classes.clone()).unwrap_or_default()
}

/// A training run keeps the split it trained on beside its weights; the dataset's own lists
/// may hold its training images.
fn note_run_split(weights: &Path) {
    let run_split = weights.parent().and_then(Path::parent).map(|run| run.join("split.json"));
    if let Some(s) = run_split.filter(|s| s.is_file()) {
        eprintln!(
            "note: {} holds the split these weights were trained with; pass --split-file {} to \
             score them on its held-out images (the dataset's own split lists may include \
             training images)",
            s.display(),
            s.display()
        );
    }
}

fn choice<'a>(args: &'a EvalArgs, weights: &'a Path) -> Choice<'a> {
    Choice { weights, arch: args.arch.as_deref(), nc: args.nc }
}

fn yolo_predictor(args: &EvalArgs, weights: &Path, s: &Settings) -> anyhow::Result<YoloPredictor> {
    let spec = choice(args, weights).yolo_spec()?;
    let opts = PredictOptions {
        imgsz: args.imgsz,
        rect: true,
        nms: NmsConfig { conf: s.conf, iou: s.iou, max_det: s.max_det, ..NmsConfig::default() },
        device: parse_device(&args.device)?,
        ..PredictOptions::default()
    };
    YoloPredictor::load(weights, spec, opts)
        .with_context(|| format!("loading {}", weights.display()))
}

fn frcnn_predictor(
    args: &EvalArgs,
    weights: &Path,
    s: &Settings,
) -> anyhow::Result<FrcnnPredictor> {
    let classes = choice(args, weights).frcnn_classes();
    let opts = FrcnnPredictOptions {
        score_thresh: f64::from(s.conf),
        nms_thresh: s.iou,
        detections_per_img: i64::try_from(s.max_det).unwrap_or(i64::MAX),
        min_size: args.imgsz.map(i64::from),
        max_size: args.imgsz.map(i64::from),
        proposals: args.proposals,
        device: parse_device(&args.device)?,
    };
    FrcnnPredictor::load(weights, classes, opts)
        .with_context(|| format!("loading {}", weights.display()))
}
