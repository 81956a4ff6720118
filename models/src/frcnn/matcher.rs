//! Matching predictions to ground truth for training: torchvision's pairwise `box_iou` and its
//! `Matcher`, which gives every prediction (anchor or proposal) the index of the ground-truth
//! box it overlaps most, or a negative code: [`BELOW_LOW_THRESHOLD`] (`IoU < low`: background)
//! or [`BETWEEN_THRESHOLDS`] (`low <= IoU < high`: ignored).
//!
//! With `allow_low_quality_matches` (the RPN), every ground-truth box also keeps the
//! predictions that overlap it best, ties included, even below `high`: each such prediction
//! gets its own best ground truth back. Ties are found by exact equality, so the IoU is
//! computed in torchvision's operation order (`lt = max`, `rb = min`, `wh = (rb - lt).clamp(0)`,
//! `inter / (area1 + area2 - inter)`) and the same boxes give the same matches.

use tch::{Kind, Tensor};

/// Matcher code: the best IoU is below the low threshold (background).
pub const BELOW_LOW_THRESHOLD: i64 = -1;
/// Matcher code: the best IoU lies between the thresholds (ignored in training).
pub const BETWEEN_THRESHOLDS: i64 = -2;

/// Pairwise IoU of `boxes1` `[M, 4]` and `boxes2` `[N, 4]` (`x1, y1, x2, y2`): `[M, N]`.
pub fn box_iou(boxes1: &Tensor, boxes2: &Tensor) -> Tensor {
    let area = |b: &Tensor| {
        (b.select(-1, 2) - b.select(-1, 0)) * (b.select(-1, 3) - b.select(-1, 1)) // [K]
    };
    let (area1, area2) = (area(boxes1), area(boxes2));
    let b1 = boxes1.unsqueeze(1); // [M, 1, 4]
    let lt = b1.narrow(-1, 0, 2).maximum(&boxes2.narrow(-1, 0, 2).unsqueeze(0)); // [M, N, 2]
    let rb = b1.narrow(-1, 2, 2).minimum(&boxes2.narrow(-1, 2, 2).unsqueeze(0));
    let wh = (rb - lt).clamp_min(0.0);
    let inter = wh.select(-1, 0) * wh.select(-1, 1); // [M, N]
    let union = area1.unsqueeze(1) + area2.unsqueeze(0) - &inter;
    inter / union
}

/// torchvision's `Matcher(high, low, allow_low_quality_matches)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Matcher {
    pub high_threshold: f64,
    pub low_threshold: f64,
    pub allow_low_quality_matches: bool,
}

impl Matcher {
    pub fn new(high_threshold: f64, low_threshold: f64, allow_low_quality_matches: bool) -> Self {
        Self { high_threshold, low_threshold, allow_low_quality_matches }
    }

    /// For a quality matrix `[M, N]` (M >= 1 ground-truth boxes, N >= 1 predictions), the
    /// match of each prediction: `[N]` int64, a ground-truth index in `0..M` or one of the
    /// negative codes.
    pub fn matches(&self, quality: &Tensor) -> Tensor {
        let (matched_vals, matches) = quality.max_dim(0, false); // [N], [N]
        let below = matched_vals.lt(self.low_threshold);
        let between =
            matched_vals.ge(self.low_threshold).logical_and(&matched_vals.lt(self.high_threshold));
        let mut out = matches.shallow_clone().copy();
        let _ = out.masked_fill_(&below, BELOW_LOW_THRESHOLD);
        let _ = out.masked_fill_(&between, BETWEEN_THRESHOLDS);
        if self.allow_low_quality_matches {
            // For each ground truth, the predictions that reach its best quality (ties
            // included) get their own best match back.
            let (best_per_gt, _) = quality.max_dim(1, true); // [M, 1]
            let hit = quality.eq_tensor(&best_per_gt).any_dim(0, false); // [N]
            out = matches.where_self(&hit, &out);
        }
        out.to_kind(Kind::Int64)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn boxes(v: &[f32]) -> Tensor {
        Tensor::from_slice(v).view([-1, 4])
    }

    #[test]
    fn iou_of_known_boxes() {
        let a = boxes(&[0.0, 0.0, 10.0, 10.0]);
        let b = boxes(&[0.0, 0.0, 10.0, 10.0, 5.0, 0.0, 15.0, 10.0, 20.0, 20.0, 30.0, 30.0]);
        let iou: Vec<f32> = Vec::try_from(box_iou(&a, &b).view([-1])).unwrap();
        assert_eq!(iou, vec![1.0, 50.0 / 150.0, 0.0]);
    }

    #[test]
    fn thresholds_and_low_quality_matches() {
        // Two ground truths, four predictions.
        let q = Tensor::from_slice(&[
            0.9f32, 0.5, 0.1, 0.2, //
            0.1, 0.6, 0.2, 0.2,
        ])
        .view([2, 4]);
        let strict: Vec<i64> = Vec::try_from(Matcher::new(0.7, 0.3, false).matches(&q)).unwrap();
        assert_eq!(strict, vec![0, BETWEEN_THRESHOLDS, BELOW_LOW_THRESHOLD, BELOW_LOW_THRESHOLD]);
        // GT 1's best is prediction 1 (0.6): matched although below 0.7. GT 0's best is
        // prediction 0, already matched.
        let low: Vec<i64> = Vec::try_from(Matcher::new(0.7, 0.3, true).matches(&q)).unwrap();
        assert_eq!(low, vec![0, 1, BELOW_LOW_THRESHOLD, BELOW_LOW_THRESHOLD]);
        // Ties: both predictions at GT 1's best value (0.2) are kept, each with its own best
        // ground truth (prediction 0 keeps GT 0).
        let q = Tensor::from_slice(&[0.9f32, 0.0, 0.0, 0.2, 0.2, 0.1]).view([2, 3]);
        let tie: Vec<i64> = Vec::try_from(Matcher::new(0.7, 0.3, true).matches(&q)).unwrap();
        assert_eq!(tie, vec![0, 1, BELOW_LOW_THRESHOLD]);
    }
}
