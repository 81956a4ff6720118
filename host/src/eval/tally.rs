//! Counting at a confidence threshold: per image, every detection's score and whether it is a
//! true positive at IoU 0.5 ([`super::matching`]), every fracture box's area and the score of
//! the detection that found it; from those, box TP / FP / missed (FN), precision and recall,
//! and image-level sensitivity and specificity (an image is called positive when any of its
//! detections reaches the threshold; it is truly positive when it has a fracture box).
//!
//! A detection is kept at threshold `conf` when `score >= conf` (both `f32`, as the device
//! compares them).

use std::collections::{BTreeMap, HashSet};

use fracture_models::metrics::{CocoDataset, Detection, images_from_coco};
use serde::Serialize;

use super::matching::match_at_iou50;

/// One detection: its score and whether it took a label at IoU 0.5.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scored {
    pub score: f32,
    pub tp: bool,
}

/// One fracture box: its COCO area and the score of the detection that found it, if any.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Label {
    pub area: f64,
    pub found_at: Option<f32>,
}

/// One image of the evaluation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImageTally {
    /// COCO image id.
    pub image_id: i64,
    /// Detections of the evaluated categories.
    pub dets: Vec<Scored>,
    /// Non-crowd fracture boxes.
    pub labels: Vec<Label>,
}

impl ImageTally {
    /// Truly positive: has a fracture box.
    pub fn positive(&self) -> bool {
        !self.labels.is_empty()
    }

    /// Called positive at `conf`.
    pub fn called(&self, conf: f32) -> bool {
        self.dets.iter().any(|d| d.score >= conf)
    }
}

/// The per-image tallies of a COCO ground truth and its detections, in image-id order (the
/// order of [`images_from_coco`], whose matching inputs they use). Detections of categories
/// the ground truth does not list count nowhere, as in the metrics.
pub fn tally(gt: &CocoDataset, dets: &[Detection]) -> Vec<ImageTally> {
    let categories: HashSet<i64> = gt.categories.iter().map(|c| c.id).collect();
    let mut ids: Vec<i64> = gt.images.iter().map(|i| i.id).collect();
    ids.sort_unstable();
    ids.dedup();
    // Areas in the order images_from_coco adds the labels: file order, crowds left out.
    let mut areas: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
    for a in gt.annotations.iter().filter(|a| a.iscrowd == 0) {
        areas.entry(a.image_id).or_default().push(a.area);
    }
    let images = images_from_coco(gt, dets);
    ids.iter()
        .zip(images)
        .map(|(&image_id, img)| {
            let taken_by = match_at_iou50(&img);
            let areas = areas.remove(&image_id).unwrap_or_default();
            let mut labels: Vec<Label> =
                areas.into_iter().map(|area| Label { area, found_at: None }).collect();
            let mut scored = Vec::new();
            for (p, taken) in taken_by.iter().enumerate() {
                if !categories.contains(&img.pred_classes[p]) {
                    continue;
                }
                let score = img.pred_scores[p];
                if let Some(l) = *taken
                    && let Some(label) = labels.get_mut(l)
                {
                    label.found_at = Some(score);
                }
                scored.push(Scored { score, tp: taken.is_some() });
            }
            ImageTally { image_id, dets: scored, labels }
        })
        .collect()
}

/// `num / den`, or `None` when nothing was counted.
pub fn ratio(num: usize, den: usize) -> Option<f64> {
    (den > 0).then(|| num as f64 / den as f64)
}

/// Box and image counts at one threshold.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct AtThreshold {
    /// Detections kept that found a fracture (IoU ≥ 0.5).
    pub tp: usize,
    /// Detections kept that found none.
    pub fp: usize,
    /// Fractures no kept detection found.
    #[serde(rename = "fn")]
    pub missed: usize,
    /// `tp / (tp + fp)`; null when nothing is kept.
    pub precision: Option<f64>,
    /// `tp / boxes`; null without boxes.
    pub recall: Option<f64>,
    /// Fractured images called positive / fractured images; null without any.
    pub image_sensitivity: Option<f64>,
    /// Fracture-free images called negative / fracture-free images; null without any.
    pub image_specificity: Option<f64>,
}

/// The counts at `conf` over `images`.
pub fn at_threshold<'a>(
    images: impl IntoIterator<Item = &'a ImageTally>,
    conf: f32,
) -> AtThreshold {
    let (mut tp, mut fp, mut boxes) = (0, 0, 0);
    let (mut pos, mut pos_called, mut neg, mut neg_clear) = (0, 0, 0, 0);
    for img in images {
        for d in img.dets.iter().filter(|d| d.score >= conf) {
            if d.tp {
                tp += 1;
            } else {
                fp += 1;
            }
        }
        boxes += img.labels.len();
        let called = img.called(conf);
        if img.positive() {
            pos += 1;
            pos_called += usize::from(called);
        } else {
            neg += 1;
            neg_clear += usize::from(!called);
        }
    }
    AtThreshold {
        tp,
        fp,
        missed: boxes - tp,
        precision: ratio(tp, tp + fp),
        recall: ratio(tp, boxes),
        image_sensitivity: ratio(pos_called, pos),
        image_specificity: ratio(neg_clear, neg),
    }
}

/// Image-level confusion counts at one threshold.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ImageCounts {
    pub conf: f32,
    pub sensitivity: Option<f64>,
    pub specificity: Option<f64>,
    /// Fractured images called positive.
    pub tp: usize,
    /// Fracture-free images called positive.
    pub fp: usize,
    /// Fracture-free images called negative.
    pub tn: usize,
    /// Fractured images called negative.
    #[serde(rename = "fn")]
    pub missed: usize,
}

pub fn image_counts(images: &[ImageTally], conf: f32) -> ImageCounts {
    let (mut tp, mut fp, mut tn, mut missed) = (0, 0, 0, 0);
    for img in images {
        match (img.positive(), img.called(conf)) {
            (true, true) => tp += 1,
            (true, false) => missed += 1,
            (false, true) => fp += 1,
            (false, false) => tn += 1,
        }
    }
    ImageCounts {
        conf,
        sensitivity: ratio(tp, tp + missed),
        specificity: ratio(tn, tn + fp),
        tp,
        fp,
        tn,
        missed,
    }
}

/// Found / missed fracture boxes at one threshold.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BoxRecall {
    pub found: usize,
    pub missed: usize,
    pub recall: Option<f64>,
}

pub fn box_recall<'a>(labels: impl IntoIterator<Item = &'a Label>, conf: f32) -> BoxRecall {
    let (mut found, mut missed) = (0, 0);
    for l in labels {
        if l.found_at.is_some_and(|s| s >= conf) {
            found += 1;
        } else {
            missed += 1;
        }
    }
    BoxRecall { found, missed, recall: ratio(found, found + missed) }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use fracture_models::metrics::coco_json::{CocoAnnotation, CocoCategory, CocoImage};

    #[test]
    fn counts_boxes_and_images() {
        let image = |id| CocoImage { id, file_name: String::new(), width: 100, height: 100 };
        let ann = |id, image_id, x: f64| CocoAnnotation {
            id,
            image_id,
            category_id: 1,
            bbox: [x, 10.0, 20.0, 20.0],
            area: 400.0,
            iscrowd: 0,
        };
        let det = |image_id, x: f64, score| Detection {
            image_id,
            category_id: 1,
            bbox: [x, 10.0, 20.0, 20.0],
            score,
        };
        let gt = CocoDataset {
            images: vec![image(1), image(2), image(3)],
            annotations: vec![ann(1, 1, 0.0), ann(2, 1, 50.0), ann(3, 2, 0.0)],
            categories: vec![CocoCategory { id: 1, name: "fracture".into() }],
        };
        // image 1: one box found at 0.9, one missed, a false positive at 0.3;
        // image 2: found at 0.2; image 3 (negative): a false positive at 0.6.
        let dets = vec![
            det(1, 0.0, 0.9),
            det(1, 80.0, 0.3),
            det(2, 1.0, 0.2),
            det(3, 0.0, 0.6),
            Detection { category_id: 7, ..det(3, 0.0, 0.99) },
        ];
        let t = tally(&gt, &dets);
        assert_eq!(t.len(), 3);
        assert_eq!(t[0].labels[0].found_at, Some(0.9));
        assert_eq!(t[0].labels[1].found_at, None);
        assert_eq!(t[2].dets.len(), 1, "other categories count nowhere");

        let a = at_threshold(&t, 0.25);
        assert_eq!((a.tp, a.fp, a.missed), (1, 2, 2));
        assert_eq!(a.image_sensitivity, Some(0.5));
        assert_eq!(a.image_specificity, Some(0.0));
        let a = at_threshold(&t, 0.1);
        assert_eq!((a.tp, a.fp, a.missed), (2, 2, 1));
        assert_eq!(a.precision, Some(0.5));
        let a = at_threshold(&t, 0.95);
        assert_eq!((a.tp, a.fp, a.missed, a.precision), (0, 0, 3, None));
        assert_eq!(a.image_specificity, Some(1.0));

        let c = image_counts(&t, 0.7);
        assert_eq!((c.tp, c.fp, c.tn, c.missed), (1, 0, 1, 1));
        let r = box_recall(t.iter().flat_map(|i| &i.labels), 0.2);
        assert_eq!((r.found, r.missed), (2, 1));
    }
}
