//! `fracture metrics`: COCO json in (ground truth + detections), the 12 COCO stats (as
//! pycocotools computes them) and ultralytics-style precision / recall / F1 at the best-F1
//! confidence with mAP50 / mAP50-95 out, as JSON; a human summary on stderr.

use std::path::{Path, PathBuf};

use anyhow::Context;
use fracture_models::metrics::{
    CocoStats, evaluate, images_from_coco, load_detections, load_ground_truth, precision_recall_f1,
};

/// What the boxes are (pycocotools' `iouType`); only boxes are supported.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IouType {
    #[default]
    Bbox,
}

#[derive(clap::Args, Debug)]
pub struct MetricsArgs {
    /// Ground truth in COCO json (images, annotations with bbox [x,y,w,h] and area, categories).
    #[arg(long, value_name = "GT.json")]
    pub gt: PathBuf,
    /// Detections in COCO results json: a list of {image_id, category_id, bbox [x,y,w,h], score}.
    #[arg(long, value_name = "PRED.json")]
    pub pred: PathBuf,
    /// Write the JSON here instead of standard output.
    #[arg(long, value_name = "OUT.json")]
    pub out: Option<PathBuf>,
    /// IoU type (pycocotools' iouType); only `bbox`.
    #[arg(long, value_enum, default_value_t = IouType::Bbox)]
    pub iou_type: IouType,
}

/// The JSON written: the 12 COCO stats under pycocotools' names first, then the ultralytics
/// numbers and the counts (a struct, so the keys keep this order).
#[derive(serde::Serialize)]
struct Report<'a> {
    gt: &'a Path,
    pred: &'a Path,
    iou_type: &'static str,
    #[serde(flatten)]
    coco: CocoStats,
    precision: f64,
    recall: f64,
    f1: f64,
    /// The confidence at the best (smoothed, class-mean) F1.
    conf: f64,
    #[serde(rename = "mAP50")]
    map50: f64,
    #[serde(rename = "mAP50-95")]
    map50_95: f64,
    images: usize,
    annotations: usize,
    detections: usize,
    categories: &'a [i64],
}

pub fn run(args: &MetricsArgs) -> anyhow::Result<()> {
    let IouType::Bbox = args.iou_type;
    let gt = load_ground_truth(&args.gt)?;
    let dets = load_detections(&args.pred)?;
    let coco = evaluate(&gt, &dets).with_context(|| {
        format!("evaluating {} against {}", args.pred.display(), args.gt.display())
    })?;
    // The same data through ultralytics' matching (crowd annotations are not labels there).
    let prf = precision_recall_f1(&images_from_coco(&gt, &dets));

    let report = Report {
        gt: &args.gt,
        pred: &args.pred,
        iou_type: "bbox",
        coco: coco.stats,
        precision: prf.precision,
        recall: prf.recall,
        f1: prf.f1,
        conf: prf.confidence,
        map50: prf.map50,
        map50_95: prf.map50_95,
        images: coco.image_ids.len(),
        annotations: gt.annotations.len(),
        detections: dets.len(),
        categories: &coco.category_ids,
    };
    eprint!("{}", summary_table(&coco.stats));
    eprintln!(
        "ultralytics: P {:.4}  R {:.4}  F1 {:.4} at conf {:.3}  mAP50 {:.4}  mAP50-95 {:.4}",
        prf.precision, prf.recall, prf.f1, prf.confidence, prf.map50, prf.map50_95
    );
    eprintln!(
        "({} images, {} annotations, {} detections)",
        report.images, report.annotations, report.detections
    );
    let text = serde_json::to_string_pretty(&report)?;
    match &args.out {
        Some(path) => {
            std::fs::write(path, text + "\n")
                .with_context(|| format!("writing {}", path.display()))?;
        }
        None => println!("{text}"),
    }
    Ok(())
}

/// The 12 stats with pycocotools' descriptions.
fn summary_table(s: &CocoStats) -> String {
    const ROWS: [(&str, &str, &str, &str); 12] = [
        ("Precision", "0.50:0.95", "all", "100"),
        ("Precision", "0.50", "all", "100"),
        ("Precision", "0.75", "all", "100"),
        ("Precision", "0.50:0.95", "small", "100"),
        ("Precision", "0.50:0.95", "medium", "100"),
        ("Precision", "0.50:0.95", "large", "100"),
        ("Recall", "0.50:0.95", "all", "1"),
        ("Recall", "0.50:0.95", "all", "10"),
        ("Recall", "0.50:0.95", "all", "100"),
        ("Recall", "0.50:0.95", "small", "100"),
        ("Recall", "0.50:0.95", "medium", "100"),
        ("Recall", "0.50:0.95", "large", "100"),
    ];
    let mut out = String::new();
    for ((name, v), (kind, iou, area, max_dets)) in s.named().zip(ROWS) {
        let abbr = if kind == "Recall" { "AR" } else { "AP" };
        out += &format!("{name:<6} Average {kind:<9} ({abbr}) @[ IoU={iou:<9} | area={area:>6} ");
        out += &format!("| maxDets={max_dets:>3} ] = {v:.3}\n");
    }
    out
}
