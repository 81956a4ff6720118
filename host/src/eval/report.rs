//! The JSON report of `fracture eval` and its parts. Key names are a stable interface
//! (documented in `fracture eval --help` and the README); structs keep the key order.
//! Ratios with nothing to count (precision without detections, specificity without
//! fracture-free images, COCO's -1) are `null`, except in `overall`, which carries the COCO
//! and ultralytics numbers exactly as `fracture metrics` prints them.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

use fracture_models::metrics::{CocoStats, PrfSummary, SubsetMetrics};
use serde::Serialize;

use super::bundle::BundleUpdate;
use super::curves::CurveFiles;
use super::inference::Latency;
use super::operating_points::{Picked, Point, Rule, Targets};
use super::tally::{AtThreshold, BoxRecall, ImageCounts, ImageTally, at_threshold, box_recall};

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    pub weights: PathBuf,
    pub arch: String,
    pub classes: Vec<String>,
    pub data: PathBuf,
    pub split: &'static str,
    /// The file listing the split's images.
    pub split_source: PathBuf,
    pub n_images: usize,
    pub n_fractured_images: usize,
    pub n_boxes: usize,
    pub n_detections: usize,
    pub settings: Settings,
    pub overall: Overall,
    pub per_body_part: BTreeMap<String, PartMetrics>,
    pub per_size: PerSize,
    pub image_level: ImageLevel,
    pub operating_points: OperatingPointsReport,
    pub latency_ms_per_image: Latency,
    pub files: Files,
    pub curves: CurveFiles,
    /// Set with `--bundle`.
    pub bundle: Option<BundleUpdate>,
}

/// How the detector was run.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    pub conf: f32,
    pub iou: f64,
    pub max_det: usize,
    /// Network input size (null: the weights' own).
    pub imgsz: Option<u32>,
    pub device: String,
    /// What ran the forward pass: `libtorch`, `onnxruntime fp32`, `onnxruntime int8`.
    pub backend: String,
    pub targets: Targets,
}

/// The whole split: pycocotools' mAP, ultralytics' P/R/F1 at its best-F1 confidence.
#[derive(Debug, Clone, Serialize)]
pub struct Overall {
    /// COCO AP at IoU 0.5 (pycocotools' `AP50`).
    pub map50: f64,
    /// COCO AP at IoU 0.50:0.95 (pycocotools' `AP`).
    pub map50_95: f64,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub conf_at_best_f1: f64,
    /// ultralytics' mAP50 / mAP50-95 (101-point trapezoid, as the study's table).
    pub ultralytics_map50: f64,
    pub ultralytics_map50_95: f64,
    /// The 12 COCO stats.
    pub coco: CocoStats,
}

impl Overall {
    pub fn new(coco: CocoStats, prf: &PrfSummary) -> Self {
        Self {
            map50: coco.AP50,
            map50_95: coco.AP,
            precision: prf.precision,
            recall: prf.recall,
            f1: prf.f1,
            conf_at_best_f1: prf.confidence,
            ultralytics_map50: prf.map50,
            ultralytics_map50_95: prf.map50_95,
            coco,
        }
    }
}

/// COCO's -1 (undefined) as `None`.
fn defined(v: f64) -> Option<f64> {
    (v >= 0.0).then_some(v)
}

/// The split restricted to one body part (`dataset.csv`'s primary part: hand, leg, hip,
/// shoulder, `mixed` for several, `unknown` for none; the parts partition the images).
#[derive(Debug, Clone, Serialize)]
pub struct PartMetrics {
    pub images: usize,
    pub fractured_images: usize,
    pub boxes: usize,
    pub detections: usize,
    pub map50: Option<f64>,
    pub map50_95: Option<f64>,
    pub precision: Option<f64>,
    pub recall: Option<f64>,
    pub f1: Option<f64>,
    pub suspicious: AtThreshold,
    pub definite: AtThreshold,
}

impl PartMetrics {
    pub fn new(m: &SubsetMetrics, tallies: &[&ImageTally], points: &Picked) -> Self {
        let boxes = tallies.iter().map(|t| t.labels.len()).sum();
        let has = |v: f64| (boxes > 0).then_some(v);
        Self {
            images: m.images,
            fractured_images: tallies.iter().filter(|t| t.positive()).count(),
            boxes,
            detections: m.detections,
            map50: defined(m.stats.AP50),
            map50_95: defined(m.stats.AP),
            precision: has(m.prf.precision),
            recall: has(m.prf.recall),
            f1: has(m.prf.f1),
            suspicious: at_threshold(tallies.iter().copied(), points.suspicious.conf),
            definite: at_threshold(tallies.iter().copied(), points.definite.conf),
        }
    }
}

/// Groups of image ids by primary body part.
pub fn body_part_groups(parts: &[(i64, &'static str)]) -> BTreeMap<String, HashSet<i64>> {
    let mut groups: BTreeMap<String, HashSet<i64>> = BTreeMap::new();
    for &(id, part) in parts {
        groups.entry(part.to_string()).or_default().insert(id);
    }
    groups
}

/// COCO's box-size buckets by ground-truth area: small < 32², medium < 96², large the rest.
#[derive(Debug, Clone, Serialize)]
pub struct PerSize {
    pub small: SizeMetrics,
    pub medium: SizeMetrics,
    pub large: SizeMetrics,
}

#[derive(Debug, Clone, Serialize)]
pub struct SizeMetrics {
    pub area_min: f64,
    /// null: unbounded.
    pub area_max: Option<f64>,
    pub boxes: usize,
    /// pycocotools' APs/APm/APl and ARs/ARm/ARl (null without boxes of that size).
    pub ap: Option<f64>,
    pub ar: Option<f64>,
    /// Boxes found and missed at each operating point (IoU 0.5).
    pub suspicious: BoxRecall,
    pub definite: BoxRecall,
}

impl PerSize {
    pub fn new(coco: &CocoStats, tallies: &[ImageTally], points: &Picked) -> Self {
        const SMALL: f64 = 32.0 * 32.0;
        const MEDIUM: f64 = 96.0 * 96.0;
        let bucket = |lo: f64, hi: Option<f64>, ap: f64, ar: f64| {
            let labels: Vec<_> = tallies
                .iter()
                .flat_map(|t| &t.labels)
                .filter(|l| l.area >= lo && hi.is_none_or(|h| l.area < h))
                .copied()
                .collect();
            SizeMetrics {
                area_min: lo,
                area_max: hi,
                boxes: labels.len(),
                ap: defined(ap),
                ar: defined(ar),
                suspicious: box_recall(&labels, points.suspicious.conf),
                definite: box_recall(&labels, points.definite.conf),
            }
        };
        Self {
            small: bucket(0.0, Some(SMALL), coco.APs, coco.ARs),
            medium: bucket(SMALL, Some(MEDIUM), coco.APm, coco.ARm),
            large: bucket(MEDIUM, None, coco.APl, coco.ARl),
        }
    }
}

/// Image-level calls at both operating points.
#[derive(Debug, Clone, Serialize)]
pub struct ImageLevel {
    /// Images with / without a fracture box.
    pub positives: usize,
    pub negatives: usize,
    pub suspicious: ImageCounts,
    pub definite: ImageCounts,
}

/// The operating points, chosen on the validation split, and what they give on the
/// evaluated one.
#[derive(Debug, Clone, Serialize)]
pub struct OperatingPointsReport {
    /// Always `val`.
    pub chosen_on: &'static str,
    pub val_source: PathBuf,
    pub val_images: usize,
    pub val_boxes: usize,
    pub targets: Targets,
    /// The definite point came out below the suspicious one, which was lowered to it.
    pub suspicious_lowered: bool,
    pub suspicious: OperatingPoint,
    pub definite: OperatingPoint,
}

#[derive(Debug, Clone, Serialize)]
pub struct OperatingPoint {
    /// Threshold: detections scoring `>= conf` (equally `> conf`) are kept.
    pub conf: f32,
    /// `target`, or the fallback (`max_recall`, `best_f1`).
    pub rule: Rule,
    pub val_recall: f64,
    pub val_precision: f64,
    pub val_tp: usize,
    pub val_fp: usize,
    pub val_fn: usize,
    /// The same threshold on the evaluated split.
    pub eval: AtThreshold,
}

impl OperatingPoint {
    pub fn new(p: &Point, val_boxes: usize, tallies: &[ImageTally]) -> Self {
        Self {
            conf: p.conf,
            rule: p.rule,
            val_recall: p.recall,
            val_precision: p.precision,
            val_tp: p.tp,
            val_fp: p.fp,
            val_fn: val_boxes - p.tp,
            eval: at_threshold(tallies, p.conf),
        }
    }
}

/// The COCO files written.
#[derive(Debug, Clone, Serialize)]
pub struct Files {
    pub gt_json: PathBuf,
    pub detections_json: PathBuf,
    /// When the evaluated split is not val, the validation files the points came from.
    pub val_gt_json: Option<PathBuf>,
    pub val_detections_json: Option<PathBuf>,
}

impl EvalReport {
    /// The numbers a bundle's manifest keeps (`metrics`), keyed `<split>.<name>` for the
    /// evaluated split and `val.<point>.<name>` for the choice of the points.
    pub fn manifest_metrics(&self) -> BTreeMap<String, f64> {
        let s = self.split;
        let o = &self.overall;
        let mut m = BTreeMap::new();
        for (k, v) in [
            ("mAP50", o.map50),
            ("mAP50-95", o.map50_95),
            ("precision", o.precision),
            ("recall", o.recall),
            ("f1", o.f1),
        ] {
            m.insert(format!("{s}.{k}"), v);
        }
        let op = &self.operating_points;
        for (name, p) in [("suspicious", &op.suspicious), ("definite", &op.definite)] {
            m.insert(format!("val.{name}.recall"), p.val_recall);
            m.insert(format!("val.{name}.precision"), p.val_precision);
            for (k, v) in [
                ("recall", p.eval.recall),
                ("precision", p.eval.precision),
                ("image_sensitivity", p.eval.image_sensitivity),
                ("image_specificity", p.eval.image_specificity),
            ] {
                if let Some(v) = v {
                    m.insert(format!("{s}.{name}.{k}"), v);
                }
            }
        }
        m
    }

    /// A few lines for people (standard error).
    pub fn summary(&self) -> String {
        let o = &self.overall;
        let pct = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{:.1}%", v * 100.0));
        let mut s = format!(
            "{} split: {} images ({} fractured), {} boxes, {} detections\n\
             mAP50 {:.4}  mAP50-95 {:.4}  P {:.4}  R {:.4}  F1 {:.4} at conf {:.3}\n",
            self.split,
            self.n_images,
            self.n_fractured_images,
            self.n_boxes,
            self.n_detections,
            o.map50,
            o.map50_95,
            o.precision,
            o.recall,
            o.f1,
            o.conf_at_best_f1
        );
        let op = &self.operating_points;
        for (name, p) in [("suspicious", &op.suspicious), ("definite", &op.definite)] {
            let e = &p.eval;
            s += &format!(
                "{name:<10} conf {:.4} (val R {:.3} P {:.3}, {}): TP {} FP {} FN {}  \
                 P {}  R {}  image sens {}  spec {}\n",
                p.conf,
                p.val_recall,
                p.val_precision,
                p.rule.name(),
                e.tp,
                e.fp,
                e.missed,
                pct(e.precision),
                pct(e.recall),
                pct(e.image_sensitivity),
                pct(e.image_specificity)
            );
        }
        for (part, m) in &self.per_body_part {
            s += &format!(
                "  {part:<9} {:4} images {:4} boxes  mAP50 {}\n",
                m.images,
                m.boxes,
                m.map50.map_or("-".to_string(), |v| format!("{v:.4}"))
            );
        }
        let l = &self.latency_ms_per_image;
        s += &format!("latency {:.1} ms/image mean, {:.1} median\n", l.mean, l.median);
        s
    }
}
