//! Validation during and after training: run a detector over letterboxed validation samples,
//! apply NMS at ultralytics' validation settings (conf 0.001, IoU 0.7), and score the result
//! with the ultralytics-style P / R / F1 / mAP in the network's input frame (the letterbox is
//! a uniform scale and shift, so IoU and every metric are the same as in original pixels).
//! Faster R-CNN brings its own post-processing and scores in original pixels
//! ([`super::frcnn`]); both end in [`summarize`] and [`fitness`].

use fracture_models::metrics::{ImagePredictions, PrfSummary, precision_recall_f1};
use fracture_models::nms::{NmsConfig, NmsError, non_max_suppression};
use tch::Tensor;

use super::augment::Sample;

/// ultralytics' validation NMS: everything above 0.001, IoU 0.7, 300 per image.
pub fn validation_nms() -> NmsConfig {
    NmsConfig { conf: 0.001, iou: 0.7, max_det: 300, ..NmsConfig::default() }
}

/// Turns one batch's decoded output (`[B, 4 + nc, N]`) plus its samples into per-image
/// predictions for the metrics.
pub fn batch_predictions(
    decoded: &Tensor,
    samples: &[Sample],
    nms: &NmsConfig,
) -> Result<Vec<ImagePredictions>, NmsError> {
    let dets = non_max_suppression(decoded, nms)?;
    Ok(samples
        .iter()
        .zip(dets)
        .map(|(s, d)| ImagePredictions {
            gt_boxes: s.boxes.clone(),
            gt_classes: s.classes.clone(),
            pred_boxes: d.iter().map(|x| x.bbox).collect(),
            pred_scores: d.iter().map(|x| x.score).collect(),
            pred_classes: d.iter().map(|x| x.class).collect(),
        })
        .collect())
}

/// The summary over every image seen.
pub fn summarize(images: &[ImagePredictions]) -> PrfSummary {
    precision_recall_f1(images)
}

/// ultralytics' fitness: 0.1 · mAP50 + 0.9 · mAP50-95.
pub fn fitness(s: &PrfSummary) -> f64 {
    0.1 * s.map50 + 0.9 * s.map50_95
}
