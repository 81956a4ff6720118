//! Detection metrics: COCO-style AP/AR exactly as pycocotools computes them (`coco`), from
//! COCO json files (`coco_json`); precision / recall / F1 at the best-F1 confidence as
//! ultralytics reports them (`prf`); and subsets such as one body part (`breakdown`).

pub mod breakdown;
pub mod coco;
pub mod coco_json;
pub mod prf;

pub use coco::{CocoEval, CocoStats, evaluate};
pub use coco_json::{CocoDataset, Detection, load_detections, load_ground_truth};
pub use prf::{ImagePredictions, PrfCurves, PrfSummary, precision_recall_f1};
