//! Which label each detection takes at IoU 0.5: the rule of ultralytics ≥ 8.4's validator
//! (the one behind [`precision_recall_f1`](fracture_models::metrics::precision_recall_f1)) —
//! detections in descending confidence each take the free same-class label with the highest
//! IoU (float32, with ultralytics' 1e-7 in the union; the first label on ties) when that IoU
//! reaches 0.5. [`match_predictions`](fracture_models::metrics::prf::match_predictions) gives
//! only the true-positive flags; the label index is needed here to know which fractures were
//! found and which were missed (per box size). The flags are the same (a unit test checks).
//!
//! The rule is prefix-consistent: the matches of the detections at or above any confidence are
//! the matches those detections would get on their own, so thresholding a matched list gives
//! the counts at that threshold.

use fracture_models::boxes::Xyxy;
use fracture_models::metrics::ImagePredictions;

/// IoU in float32 exactly as ultralytics' `box_iou`.
fn box_iou_f32(a: &Xyxy, b: &Xyxy) -> f32 {
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    let area_a = (a[2] - a[0]) * (a[3] - a[1]);
    let area_b = (b[2] - b[0]) * (b[3] - b[1]);
    inter / (area_a + area_b - inter + 1e-7)
}

/// Per prediction (input order), the index of the label it takes at IoU 0.5, if any.
pub fn match_at_iou50(img: &ImagePredictions) -> Vec<Option<usize>> {
    let np = img.pred_boxes.len();
    let nl = img.gt_boxes.len();
    let mut taken_by = vec![None; np];
    if np == 0 || nl == 0 {
        return taken_by;
    }
    let iou = |l: usize, p: usize| {
        if img.gt_classes[l] == img.pred_classes[p] {
            box_iou_f32(&img.gt_boxes[l], &img.pred_boxes[p])
        } else {
            0.0
        }
    };
    let mut order: Vec<usize> = (0..np).collect();
    order.sort_by(|&a, &b| img.pred_scores[b].total_cmp(&img.pred_scores[a]));
    let mut claimed = vec![false; nl];
    for p in order {
        // argmax over the free labels (claimed ones count as IoU 0), first on ties
        let mut best = (0, if claimed[0] { 0.0 } else { iou(0, p) });
        for (l, &c) in claimed.iter().enumerate().skip(1) {
            let v = if c { 0.0 } else { iou(l, p) };
            if v > best.1 {
                best = (l, v);
            }
        }
        if best.1 >= 0.5 {
            taken_by[p] = Some(best.0);
            claimed[best.0] = true;
        }
    }
    taken_by
}

#[cfg(test)]
mod tests {
    use super::*;
    use fracture_models::metrics::prf::{Matching, match_predictions};
    use rand::{Rng, SeedableRng};

    #[test]
    fn flags_agree_with_the_metrics_matching() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let boxes = |n: usize, rng: &mut rand_chacha::ChaCha8Rng| -> Vec<Xyxy> {
            (0..n)
                .map(|_| {
                    let (x, y) = (rng.random_range(0.0..40.0f32), rng.random_range(0.0..40.0f32));
                    let (w, h) = (rng.random_range(4.0..20.0f32), rng.random_range(4.0..20.0f32));
                    [x, y, x + w, y + h]
                })
                .collect()
        };
        for _ in 0..300 {
            let (nl, np) = (rng.random_range(0..5), rng.random_range(0..8));
            let img = ImagePredictions {
                gt_boxes: boxes(nl, &mut rng),
                gt_classes: (0..nl).map(|_| rng.random_range(0..2)).collect(),
                pred_boxes: boxes(np, &mut rng),
                // coarse scores, so that ties happen
                pred_scores: (0..np).map(|_| f32::from(rng.random_range(0..4u8)) / 4.0).collect(),
                pred_classes: (0..np).map(|_| rng.random_range(0..2)).collect(),
            };
            let ours = match_at_iou50(&img);
            let flags = match_predictions(&img, Matching::Greedy);
            for (p, m) in ours.iter().enumerate() {
                assert_eq!(m.is_some(), flags[p][0], "{img:?}");
            }
            let mut labels: Vec<usize> = ours.iter().flatten().copied().collect();
            labels.sort_unstable();
            labels.dedup();
            assert_eq!(labels.len(), ours.iter().flatten().count(), "a label taken twice");
        }
    }
}
