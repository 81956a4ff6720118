//! `fracture metrics`: COCO json in (ground truth + detections), the 12 COCO stats and
//! ultralytics-style precision / recall / F1 at the best-F1 confidence out, as JSON.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::Context;
use fracture_models::boxes::xywh_to_xyxy;
use fracture_models::metrics::{
    CocoStats, ImagePredictions, evaluate, load_detections, load_ground_truth, precision_recall_f1,
};
use serde_json::json;

#[derive(clap::Args, Debug)]
pub struct MetricsArgs {
    /// Ground truth in COCO json (images, annotations with bbox and area, categories).
    #[arg(long)]
    pub gt: PathBuf,
    /// Detections in COCO results json: a list of {image_id, category_id, bbox [x,y,w,h], score}.
    #[arg(long)]
    pub pred: PathBuf,
    /// Write the JSON here instead of standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn run(args: &MetricsArgs) -> anyhow::Result<()> {
    let gt = load_ground_truth(&args.gt)?;
    let dets = load_detections(&args.pred)?;
    let coco =
        evaluate(&gt, &dets).with_context(|| format!("evaluating {}", args.pred.display()))?;

    // The same data through ultralytics' matching (crowd annotations are not labels there).
    let mut per_image: HashMap<i64, ImagePredictions> =
        gt.images.iter().map(|i| (i.id, ImagePredictions::default())).collect();
    for a in gt.annotations.iter().filter(|a| a.iscrowd == 0) {
        if let Some(img) = per_image.get_mut(&a.image_id) {
            img.gt_boxes.push(xywh_to_xyxy(a.bbox.map(|v| v as f32)));
            img.gt_classes.push(a.category_id);
        }
    }
    for d in &dets {
        if let Some(img) = per_image.get_mut(&d.image_id) {
            img.pred_boxes.push(xywh_to_xyxy(d.bbox.map(|v| v as f32)));
            img.pred_scores.push(d.score as f32);
            img.pred_classes.push(d.category_id);
        }
    }
    let mut images: Vec<(i64, ImagePredictions)> = per_image.into_iter().collect();
    images.sort_by_key(|(id, _)| *id);
    let images: Vec<ImagePredictions> = images.into_iter().map(|(_, p)| p).collect();
    let prf = precision_recall_f1(&images);

    let stats: serde_json::Map<String, serde_json::Value> = CocoStats::NAMES
        .iter()
        .zip(coco.stats.as_array())
        .map(|(n, v)| (n.to_string(), json!(v)))
        .collect();
    let doc = json!({
        "coco": stats,
        "precision": prf.precision, "recall": prf.recall, "f1": prf.f1,
        "confidence": prf.confidence, "mAP50": prf.map50, "mAP50-95": prf.map50_95,
        "images": gt.images.len(), "annotations": gt.annotations.len(), "detections": dets.len(),
    });
    eprintln!("{:<8} {:>8}", "metric", "value");
    for (n, v) in CocoStats::NAMES.iter().zip(coco.stats.as_array()) {
        eprintln!("{n:<8} {v:>8.4}");
    }
    eprintln!(
        "P {:.4}  R {:.4}  F1 {:.4} at conf {:.3}  (mAP50 {:.4}, mAP50-95 {:.4})",
        prf.precision, prf.recall, prf.f1, prf.confidence, prf.map50, prf.map50_95
    );
    let text = serde_json::to_string_pretty(&doc)?;
    match &args.out {
        Some(path) => {
            std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?
        }
        None => println!("{text}"),
    }
    Ok(())
}
