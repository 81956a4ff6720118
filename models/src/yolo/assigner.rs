//! The task-aligned assigner of YOLO11 training (TOOD's TAL as ultralytics'
//! `TaskAlignedAssigner` implements it): which anchors learn which ground-truth box, and with
//! what soft class target.
//!
//! For every image, ground truth `g` and anchor `a`:
//! 1. **candidates**: anchors whose centre lies strictly inside `g` (`> 1e-9` from every side);
//!    a box side shorter than [`TaskAlignedAssigner::min_gt_side`] (16 px, the P4 stride) is
//!    widened to it about the box centre for this test only, so tiny boxes still get anchors;
//! 2. **alignment** `t = s^α · u^β` on candidates (0 elsewhere), with `s` the predicted
//!    probability of `g`'s class at `a` and `u` the CIoU of `g` with the predicted box, clamped
//!    at 0 (α = 0.5, β = 6);
//! 3. **top-k**: each ground truth keeps its `k` = 10 anchors of largest `t` among its
//!    candidates (ties broken as libtorch's `topk` does);
//! 4. **conflicts**: an anchor kept by several ground truths goes to the one with the largest
//!    CIoU among all ground truths it is a candidate of;
//! 5. **soft targets**: the one-hot class of the assigned ground truth times
//!    `t · max_a(u) / (max_a(t) + eps)` (maxima over the ground truth's positives), maximised
//!    over ground truths, so the best-aligned positive of each box has target `max_a(u)`.
//!
//! All of it runs without gradient and reproduces ultralytics 8.4 bit for bit on the same
//! float32 inputs (the parity test compares foreground masks exactly).

use tch::{Kind, Tensor};

use crate::boxes_tch::{CIOU_EPS, ciou, xywh_to_xyxy, xyxy_to_xywh};

/// Margin by which an anchor centre must be inside a box to be a candidate.
const INSIDE_EPS: f64 = 1e-9;

#[derive(Debug, thiserror::Error)]
pub enum AssignError {
    #[error("{what} must have shape {expected}, got {got:?}")]
    Shape { what: &'static str, expected: String, got: Vec<i64> },
    #[error("top-k of {topk} needs at least that many anchors, got {anchors}")]
    TooFewAnchors { topk: i64, anchors: i64 },
    #[error("ground-truth class {class} is outside 0..{num_classes}")]
    Class { class: i64, num_classes: i64 },
    #[error("invalid assigner setting: {0}")]
    Config(String),
    #[error(transparent)]
    Torch(#[from] tch::TchError),
}

/// Settings of the assigner; [`TaskAlignedAssigner::new`] gives YOLO11's.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskAlignedAssigner {
    /// Anchors kept per ground truth (10 for YOLO11 detection).
    pub topk: i64,
    pub num_classes: i64,
    /// Exponent of the class score in the alignment metric.
    pub alpha: f64,
    /// Exponent of the CIoU in the alignment metric.
    pub beta: f64,
    /// Guards the normalisation of the soft targets.
    pub eps: f64,
    /// Box sides shorter than this (pixels) are widened to it for the candidate test
    /// (ultralytics uses the second stride, 16).
    pub min_gt_side: f64,
}

/// What the assigner decides; `B` images, `A` anchors, `nc` classes.
#[derive(Debug)]
pub struct Assignment {
    /// `[B, A]` int64: class of the assigned ground truth (0 for background anchors when the
    /// batch has boxes, `nc` when it has none).
    pub target_labels: Tensor,
    /// `[B, A, 4]`: the assigned ground-truth box, corner pixels (meaningful on foreground).
    pub target_bboxes: Tensor,
    /// `[B, A, nc]`: soft class targets, zero on background.
    pub target_scores: Tensor,
    /// `[B, A]` bool: anchors that learn a box.
    pub fg_mask: Tensor,
    /// `[B, A]` int64: index of the assigned ground truth in its image's padded list.
    pub target_gt_idx: Tensor,
}

impl TaskAlignedAssigner {
    /// YOLO11 detection's settings: top-10, α 0.5, β 6, eps 1e-9, minimum side 16.
    pub fn new(num_classes: i64) -> Self {
        Self { topk: 10, num_classes, alpha: 0.5, beta: 6.0, eps: 1e-9, min_gt_side: 16.0 }
    }

    /// Assigns ground truths to anchors.
    ///
    /// - `pd_scores` `[B, A, nc]`: predicted class probabilities (after the sigmoid);
    /// - `pd_bboxes` `[B, A, 4]`: predicted boxes, corner pixels;
    /// - `anchors` `[A, 2]`: anchor centres, pixels;
    /// - `gt_labels` `[B, M, 1]`: classes (float or integer) of the padded ground truths;
    /// - `gt_bboxes` `[B, M, 4]`: their boxes, corner pixels;
    /// - `mask_gt` `[B, M, 1]`: non-zero for real ground truths, zero for padding.
    ///
    /// Gradients never flow through the result.
    pub fn assign(
        &self,
        pd_scores: &Tensor,
        pd_bboxes: &Tensor,
        anchors: &Tensor,
        gt_labels: &Tensor,
        gt_bboxes: &Tensor,
        mask_gt: &Tensor,
    ) -> Result<Assignment, AssignError> {
        let (b, a, m) = self.check(pd_scores, pd_bboxes, anchors, gt_labels, gt_bboxes, mask_gt)?;
        Ok(tch::no_grad(|| {
            if m == 0 {
                return self.empty(pd_scores, pd_bboxes);
            }
            self.assign_checked(
                pd_scores, pd_bboxes, anchors, gt_labels, gt_bboxes, mask_gt, b, a, m,
            )
        }))
    }

    fn check(
        &self,
        pd_scores: &Tensor,
        pd_bboxes: &Tensor,
        anchors: &Tensor,
        gt_labels: &Tensor,
        gt_bboxes: &Tensor,
        mask_gt: &Tensor,
    ) -> Result<(i64, i64, i64), AssignError> {
        if self.num_classes < 1 {
            return Err(AssignError::Config(format!("num_classes {}", self.num_classes)));
        }
        if self.topk < 1 || !(self.alpha.is_finite() && self.beta.is_finite()) || self.eps < 0.0 {
            return Err(AssignError::Config(format!(
                "topk {} alpha {} beta {} eps {}",
                self.topk, self.alpha, self.beta, self.eps
            )));
        }
        let shape = |what: &'static str, t: &Tensor, expected: String, ok: bool| {
            if ok { Ok(()) } else { Err(AssignError::Shape { what, expected, got: t.size() }) }
        };
        let s = pd_scores.size();
        let nc = self.num_classes;
        shape("pd_scores", pd_scores, format!("[B, A, {nc}]"), s.len() == 3 && s[2] == nc)?;
        let (b, a) = (s[0], s[1]);
        let ok = pd_bboxes.size() == [b, a, 4];
        shape("pd_bboxes", pd_bboxes, format!("[{b}, {a}, 4]"), ok)?;
        shape("anchors", anchors, format!("[{a}, 2]"), anchors.size() == [a, 2])?;
        let g = gt_bboxes.size();
        let ok = g.len() == 3 && g[0] == b && g[2] == 4;
        shape("gt_bboxes", gt_bboxes, format!("[{b}, M, 4]"), ok)?;
        let m = g[1];
        shape("gt_labels", gt_labels, format!("[{b}, {m}, 1]"), gt_labels.size() == [b, m, 1])?;
        shape("mask_gt", mask_gt, format!("[{b}, {m}, 1]"), mask_gt.size() == [b, m, 1])?;
        if m > 0 && a < self.topk {
            return Err(AssignError::TooFewAnchors { topk: self.topk, anchors: a });
        }
        if m > 0 {
            let classes = gt_labels.to_kind(Kind::Int64);
            let valid = mask_gt.ne(0.0);
            let lo = classes.masked_fill(&valid.logical_not(), 0).min().int64_value(&[]);
            let hi = classes.masked_fill(&valid.logical_not(), 0).max().int64_value(&[]);
            for class in [lo, hi] {
                if !(0..nc).contains(&class) {
                    return Err(AssignError::Class { class, num_classes: nc });
                }
            }
        }
        Ok((b, a, m))
    }

    /// No ground truth in the whole batch: everything is background.
    fn empty(&self, pd_scores: &Tensor, pd_bboxes: &Tensor) -> Assignment {
        let s = pd_scores.size();
        let (b, a) = (s[0], s[1]);
        let dev = pd_scores.device();
        Assignment {
            target_labels: Tensor::full([b, a], self.num_classes, (Kind::Int64, dev)),
            target_bboxes: pd_bboxes.zeros_like(),
            target_scores: pd_scores.zeros_like(),
            fg_mask: Tensor::zeros([b, a], (Kind::Bool, dev)),
            target_gt_idx: Tensor::zeros([b, a], (Kind::Int64, dev)),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn assign_checked(
        &self,
        pd_scores: &Tensor,
        pd_bboxes: &Tensor,
        anchors: &Tensor,
        gt_labels: &Tensor,
        gt_bboxes: &Tensor,
        mask_gt: &Tensor,
        b: i64,
        a: i64,
        m: i64,
    ) -> Assignment {
        let valid = mask_gt.ne(0.0); // [B, M, 1] bool
        let in_gts = self.candidates(anchors, gt_bboxes, &valid); // [B, M, A] bool
        let candidates = in_gts.logical_and(&valid);
        let (align, overlaps) =
            self.box_metrics(pd_scores, pd_bboxes, gt_labels, gt_bboxes, &candidates, [b, m, a]);

        // Top-k per ground truth; padded ground truths' lists point at anchor 0 k times and
        // are dropped by the count > 1 rule (as ultralytics does).
        let (_, topk_idx) = align.topk(self.topk, -1, true, true); // [B, M, k]
        let topk_idx = topk_idx.masked_fill(&valid.logical_not(), 0);
        let count = Tensor::zeros([b, m, a], (Kind::Int64, align.device())).scatter_add(
            -1,
            &topk_idx,
            &topk_idx.ones_like(),
        );
        let in_topk = count.eq(1); // [B, M, A]
        let mask_pos = in_topk.logical_and(&in_gts).logical_and(&valid).to_kind(align.kind());

        // Anchors claimed by several ground truths keep the one of largest overlap.
        let multi = mask_pos.sum_dim_intlist(-2, true, align.kind()).gt(1.0); // [B, 1, A]
        let (_, best_gt) = overlaps.max_dim(1, true); // [B, 1, A]
        let is_best = overlaps.zeros_like().scatter_value(1, &best_gt, 1.0);
        let mask_pos = is_best.where_self(&multi, &mask_pos); // [B, M, A] 0/1
        let (fg, target_gt_idx) = mask_pos.max_dim(-2, false); // [B, A]
        let fg_mask = fg.gt(0.0);

        // Targets of the assigned ground truths.
        let flat_idx =
            &target_gt_idx + Tensor::arange(b, (Kind::Int64, align.device())).view([b, 1]) * m;
        let flat_idx = flat_idx.view([-1]);
        let target_labels = gt_labels
            .to_kind(Kind::Int64)
            .view([-1])
            .index_select(0, &flat_idx)
            .view([b, a])
            .clamp_min(0);
        let target_bboxes = gt_bboxes.view([-1, 4]).index_select(0, &flat_idx).view([b, a, 4]);
        let one_hot = pd_scores.zeros_like().scatter_value(2, &target_labels.unsqueeze(-1), 1.0)
            * fg_mask.unsqueeze(-1).to_kind(pd_scores.kind()); // [B, A, nc]

        // Normalised alignment: per ground truth, scaled so its best positive gets its best IoU.
        let align = align * &mask_pos;
        let pos_align = align.amax([-1], true); // [B, M, 1]
        let overlaps = overlaps * &mask_pos;
        let pos_overlaps = overlaps.amax([-1], true); // [B, M, 1]
        let norm = (align * pos_overlaps / (pos_align + self.eps)).amax([-2], false); // [B, A]
        let target_scores = one_hot * norm.unsqueeze(-1);

        Assignment { target_labels, target_bboxes, target_scores, fg_mask, target_gt_idx }
    }

    /// `[B, M, A]` bool: anchor centre strictly inside the (widened) ground truth.
    fn candidates(&self, anchors: &Tensor, gt_bboxes: &Tensor, valid: &Tensor) -> Tensor {
        let xywh = xyxy_to_xywh(gt_bboxes); // [B, M, 4]
        let wh = xywh.narrow(-1, 2, 2);
        let small = wh.lt(self.min_gt_side).logical_and(valid); // [B, M, 2]
        let wh = wh.masked_fill(&small, self.min_gt_side);
        let boxes = xywh_to_xyxy(&Tensor::cat(&[xywh.narrow(-1, 0, 2), wh], -1));
        let side = |i: i64| boxes.narrow(-1, i, 1); // [B, M, 1]
        let ax = anchors.select(1, 0); // [A]
        let ay = anchors.select(1, 1);
        (&ax - side(0))
            .gt(INSIDE_EPS)
            .logical_and(&(&ay - side(1)).gt(INSIDE_EPS))
            .logical_and(&(side(2) - &ax).gt(INSIDE_EPS))
            .logical_and(&(side(3) - &ay).gt(INSIDE_EPS))
    }

    /// Alignment metric and CIoU `[B, M, A]`, computed on the candidate pairs only (zero
    /// elsewhere). The CIoU is of the ground truth (first) against the prediction.
    fn box_metrics(
        &self,
        pd_scores: &Tensor,
        pd_bboxes: &Tensor,
        gt_labels: &Tensor,
        gt_bboxes: &Tensor,
        candidates: &Tensor,
        shape: [i64; 3],
    ) -> (Tensor, Tensor) {
        let idx = candidates.nonzero(); // [K, 3]: image, gt, anchor
        let (bi, gi, ai) = (idx.select(1, 0), idx.select(1, 1), idx.select(1, 2));
        let zero = Tensor::zeros_like(&bi);
        let cls = gt_labels.index(&[Some(&bi), Some(&gi), Some(&zero)]).to_kind(Kind::Int64);
        let scores = pd_scores.index(&[Some(&bi), Some(&ai), Some(&cls)]); // [K]
        let gt = gt_bboxes.index(&[Some(&bi), Some(&gi)]); // [K, 4]
        let pd = pd_bboxes.index(&[Some(&bi), Some(&ai)]); // [K, 4]
        let iou = ciou(&gt, &pd, CIOU_EPS).squeeze_dim(-1).clamp_min(0.0); // [K]
        let align = scores.pow_tensor_scalar(self.alpha) * iou.pow_tensor_scalar(self.beta);
        let opts = (pd_bboxes.kind(), pd_bboxes.device());
        let indices = [Some(bi), Some(gi), Some(ai)];
        let overlaps = Tensor::zeros(shape, opts).index_put(&indices, &iou, false);
        let align = Tensor::zeros(shape, (align.kind(), opts.1)).index_put(&indices, &align, false);
        (align, overlaps)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use tch::Device;

    const F: (Kind, Device) = (Kind::Float, Device::Cpu);

    /// A 1-D row of 12 anchors at x = 4, 12, ..., 92 (y = 4), i.e. stride 8.
    fn anchors() -> Tensor {
        let x = Tensor::arange(12, F) * 8.0 + 4.0;
        Tensor::stack(&[x.shallow_clone(), x.full_like(4.0)], 1)
    }

    fn vec_i64(t: &Tensor) -> Vec<i64> {
        Vec::try_from(t.flatten(0, -1).to_kind(Kind::Int64)).unwrap()
    }

    fn vec_f32(t: &Tensor) -> Vec<f32> {
        Vec::try_from(t.flatten(0, -1).to_kind(Kind::Float)).unwrap()
    }

    /// Every anchor predicts the box `[x - 8, -4, x + 8, 12]` with probability `p` for class 0
    /// and 0.1 for class 1.
    fn predictions(p: &[f32]) -> (Tensor, Tensor) {
        let x = Tensor::arange(12, F) * 8.0 + 4.0;
        let boxes = Tensor::stack(&[&x - 8.0, x.full_like(-4.0), &x + 8.0, x.full_like(12.0)], 1)
            .unsqueeze(0);
        let s0 = Tensor::from_slice(p);
        let scores = Tensor::stack(&[s0.shallow_clone(), s0.full_like(0.1)], 1).unsqueeze(0);
        (scores, boxes)
    }

    #[test]
    fn hand_made_assignment() {
        // gt 0 (class 0): x 0..40 has the candidate anchors 0..=4 (x = 4..36); gt 1 (class 1):
        // x 30..60 has 4..=6 (x = 36..52; x = 60 is on the edge, not strictly inside). With
        // top-5 both keep all their candidates, so anchor 4 is claimed twice: its predicted box
        // [28, 44] overlaps gt 1 (CIoU ~0.37) more than gt 0 (~0.15), so gt 1 gets it.
        // gt 2 is padding.
        let mut assigner = TaskAlignedAssigner::new(2);
        assigner.topk = 5;
        let p = [0.9, 0.8, 0.7, 0.2, 0.5, 0.4, 0.3, 0.2, 0.1, 0.1, 0.1, 0.1];
        let (scores, boxes) = predictions(&p);
        let gt_bboxes = Tensor::from_slice(&[
            0.0f32, -4.0, 40.0, 12.0, 30.0, -4.0, 60.0, 12.0, 0.0, 0.0, 0.0, 0.0,
        ])
        .view([1, 3, 4]);
        let gt_labels = Tensor::from_slice(&[0.0f32, 1.0, 0.0]).view([1, 3, 1]);
        let mask_gt = Tensor::from_slice(&[1.0f32, 1.0, 0.0]).view([1, 3, 1]);
        let r =
            assigner.assign(&scores, &boxes, &anchors(), &gt_labels, &gt_bboxes, &mask_gt).unwrap();
        assert_eq!(vec_i64(&r.fg_mask), vec![1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0]);
        assert_eq!(&vec_i64(&r.target_gt_idx)[..7], &[0, 0, 0, 0, 1, 1, 1]);
        assert_eq!(&vec_i64(&r.target_labels)[..7], &[0, 0, 0, 0, 1, 1, 1]);
        assert_eq!(vec_f32(&r.target_bboxes.narrow(1, 4, 1)), vec![30.0, -4.0, 60.0, 12.0]);

        // Soft targets: zero on background and off the assigned class; per gt, the
        // best-aligned positive gets the gt's best CIoU among its positives, others less.
        let ts = r.target_scores.squeeze_dim(0); // [A, 2]
        assert_eq!(vec_f32(&ts.narrow(0, 7, 5)), vec![0.0; 10]);
        assert_eq!(vec_f32(&ts.narrow(0, 0, 4).select(1, 1)), vec![0.0; 4]);
        assert_eq!(vec_f32(&ts.narrow(0, 4, 3).select(1, 0)), vec![0.0; 3]);
        for (gt, first, n) in [(0, 0, 4), (1, 4, 3)] {
            let t = vec_f32(&ts.narrow(0, first, n).select(1, gt));
            let ious =
                ciou(&gt_bboxes.select(1, gt), &boxes.squeeze_dim(0).narrow(0, first, n), CIOU_EPS);
            let best_iou = ious.max().double_value(&[]);
            let best = t.iter().copied().fold(0.0f32, f32::max);
            assert!((f64::from(best) - best_iou).abs() < 1e-6, "gt {gt}: {t:?} vs {best_iou}");
            assert!(t.iter().all(|&v| v > 0.0 && v <= best), "gt {gt}: {t:?}");
        }
    }

    #[test]
    fn tiny_boxes_are_widened_to_the_minimum_side() {
        // A 2-px box around x = 13 contains no anchor centre, but widened to 16 px (5..21) it
        // contains the anchors at x = 12 and 20 (not 4). The one at 20 has CIoU < 0, so a zero
        // metric: top-12 keeps it regardless of how ties among zeros are ordered.
        let mut assigner = TaskAlignedAssigner::new(2);
        assigner.topk = 12;
        let (scores, boxes) = predictions(&[0.5; 12]);
        let gt_bboxes = Tensor::from_slice(&[12.0f32, 3.0, 14.0, 5.0]).view([1, 1, 4]);
        let gt_labels = Tensor::zeros([1, 1, 1], F);
        let mask_gt = Tensor::ones([1, 1, 1], F);
        let r =
            assigner.assign(&scores, &boxes, &anchors(), &gt_labels, &gt_bboxes, &mask_gt).unwrap();
        assert_eq!(vec_i64(&r.fg_mask), vec![0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        // Without widening nothing is inside.
        assigner.min_gt_side = 0.0;
        let r =
            assigner.assign(&scores, &boxes, &anchors(), &gt_labels, &gt_bboxes, &mask_gt).unwrap();
        assert_eq!(r.fg_mask.sum(Kind::Int64).int64_value(&[]), 0);
    }

    #[test]
    fn no_ground_truth_is_all_background() {
        let assigner = TaskAlignedAssigner::new(2);
        let (scores, boxes) = predictions(&[0.5; 12]);
        let none = Tensor::zeros([1, 0, 4], F);
        let r = assigner
            .assign(
                &scores,
                &boxes,
                &anchors(),
                &Tensor::zeros([1, 0, 1], F),
                &none,
                &Tensor::zeros([1, 0, 1], F),
            )
            .unwrap();
        assert_eq!(r.fg_mask.sum(Kind::Int64).int64_value(&[]), 0);
        assert_eq!(vec_i64(&r.target_labels), vec![2; 12]);
        assert_eq!(r.target_scores.abs().sum(Kind::Float).double_value(&[]), 0.0);
    }

    #[test]
    fn bad_inputs_are_errors() {
        let assigner = TaskAlignedAssigner::new(2);
        let (scores, boxes) = predictions(&[0.5; 12]);
        let gt = Tensor::from_slice(&[0.0f32, 0.0, 40.0, 8.0]).view([1, 1, 4]);
        let one = Tensor::ones([1, 1, 1], F);
        let bad_class = Tensor::full([1, 1, 1], 2.0, F);
        assert!(matches!(
            assigner.assign(&scores, &boxes, &anchors(), &bad_class, &gt, &one),
            Err(AssignError::Class { class: 2, .. })
        ));
        assert!(matches!(
            assigner.assign(&scores, &boxes, &anchors().narrow(0, 0, 5), &one, &gt, &one),
            Err(AssignError::Shape { what: "anchors", .. })
        ));
        let mut big = TaskAlignedAssigner::new(2);
        big.topk = 13;
        assert!(matches!(
            big.assign(&scores, &boxes, &anchors(), &one.zeros_like(), &gt, &one),
            Err(AssignError::TooFewAnchors { .. })
        ));
    }
}
