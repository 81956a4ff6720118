//! Detection metrics: COCO-style AP/AR exactly as pycocotools computes them (`coco`), from
//! COCO json files (`coco_json`); precision / recall / F1 at the best-F1 confidence and
//! mAP50 / mAP50-95 as ultralytics reports them (`prf`); and the same on subsets of images
//! such as one body part (`breakdown`).
//!
//! Both paths are checked number for number against their reference implementations
//! (pycocotools, ultralytics) by `models/tests/coco_parity.rs`.

pub mod breakdown;
pub mod coco;
pub mod coco_json;
pub mod prf;

pub use breakdown::{SubsetMetrics, evaluate_groups, evaluate_image_set, evaluate_subset};
pub use coco::{CocoError, CocoEval, CocoStats, evaluate};
pub use coco_json::{CocoDataset, CocoJsonError, Detection, load_detections, load_ground_truth};
pub use prf::{
    ImagePredictions, Matching, PrfCurves, PrfSummary, images_from_coco, precision_recall_f1,
    precision_recall_f1_with,
};
