//! The RPN's training loss, as torchvision's `RegionProposalNetwork` computes it in training
//! mode: every anchor is matched to the ground truth by IoU (positive `>= 0.7`, negative
//! `< 0.3`, in between ignored, and each ground-truth box's best anchors positive whatever
//! their IoU); an image without boxes makes every anchor negative. A [`Sampler`] draws 256
//! anchors per image, at most half positive. Then
//!
//! - `loss_objectness` = BCE-with-logits over the sampled anchors, averaged (or the focal
//!   variant, see [`super::loss`]);
//! - `loss_rpn_box_reg` = smooth-L1 (`β = 1/9`) between the positives' predicted deltas and the
//!   deltas from their anchor to their ground truth (weights `(1, 1, 1, 1)`), summed and
//!   divided by the number of sampled anchors.
//!
//! Sampled anchors are taken in ascending order of their index in the batch (image, level, y,
//! x, anchor), positives first, as torchvision concatenates them.

use tch::{Kind, Tensor};

use super::FrcnnError;
use super::loss::{Focal, box_loss, objectness_loss};
use super::matcher::{BELOW_LOW_THRESHOLD, BETWEEN_THRESHOLDS, Matcher, box_iou};
use super::rpn::{Rpn, RpnHeadOutputs};
use super::sampler::{SampleQuota, Sampler, Stage};

/// Ascending copy of an int64 index list `[K]`.
pub(crate) fn sorted(idx: &Tensor) -> Tensor {
    idx.sort(0, false).0
}

/// Anchor labels of one image: `[N]` int64, 1 positive, 0 negative, -1 ignored; and the
/// matched ground-truth index of each anchor (`[N]`, clamped at 0; meaningless where the label
/// is not 1). `gt` `[M, 4]`, `anchors` `[N, 4]`.
pub fn anchor_labels(matcher: &Matcher, gt: &Tensor, anchors: &Tensor) -> (Tensor, Tensor) {
    let n = anchors.size()[0];
    let device = anchors.device();
    if gt.size()[0] == 0 {
        let zeros = Tensor::zeros([n], (Kind::Int64, device));
        return (zeros.shallow_clone(), zeros);
    }
    let matches = matcher.matches(&box_iou(gt, anchors)); // [N]
    let labels = matches.ge(0).to_kind(Kind::Int64);
    let labels = labels
        .masked_fill(&matches.eq(BELOW_LOW_THRESHOLD), 0)
        .masked_fill(&matches.eq(BETWEEN_THRESHOLDS), -1);
    (labels, matches.clamp_min(0))
}

/// `(loss_objectness, loss_rpn_box_reg)` of the head outputs `out` for ground-truth boxes
/// `gt_boxes` (per image `[M_i, 4]`, in the resized image's pixels).
pub fn rpn_loss(
    rpn: &Rpn,
    out: &RpnHeadOutputs,
    gt_boxes: &[Tensor],
    sampler: &mut dyn Sampler,
    focal: Option<Focal>,
) -> Result<(Tensor, Tensor), FrcnnError> {
    let b = out.objectness.size()[0];
    let n = out.anchors.size()[0];
    if gt_boxes.len() as i64 != b {
        return Err(FrcnnError::Config(format!(
            "{} target lists for a batch of {b}",
            gt_boxes.len()
        )));
    }
    let cfg = &rpn.cfg;
    let matcher = Matcher::new(cfg.fg_iou_thresh, cfg.bg_iou_thresh, true);
    let quota = SampleQuota {
        batch_size_per_image: cfg.batch_size_per_image,
        positive_fraction: cfg.positive_fraction,
    };
    let (mut pos_all, mut neg_all, mut targets) = (Vec::new(), Vec::new(), Vec::new());
    for (i, gt) in gt_boxes.iter().enumerate() {
        let gt = gt.to_device(out.anchors.device()).to_kind(out.anchors.kind());
        let (labels, matched) = anchor_labels(&matcher, &gt, &out.anchors);
        let s = sampler.sample(Stage::Rpn, i, &labels, quota)?;
        let (pos, neg) = (sorted(&s.positive), sorted(&s.negative));
        if pos.size()[0] > 0 {
            let anchors = out.anchors.index_select(0, &pos); // [P, 4]
            let matched_gt = gt.index_select(0, &matched.index_select(0, &pos));
            targets.push(rpn.box_coder.encode(&matched_gt, &anchors));
        }
        let offset = i as i64 * n;
        pos_all.push(pos + offset);
        neg_all.push(neg + offset);
    }
    let pos = Tensor::cat(&pos_all, 0); // [P], indices into B·N
    let neg = Tensor::cat(&neg_all, 0); // [Q]
    let (p, q) = (pos.size()[0], neg.size()[0]);
    let device = out.objectness.device();
    let targets = if targets.is_empty() {
        Tensor::zeros([0, 4], (out.deltas.kind(), device))
    } else {
        Tensor::cat(&targets, 0)
    };
    let box_reg = box_loss(&out.deltas.index_select(0, &pos), &targets, p + q)?;
    let sampled = Tensor::cat(&[&pos, &neg], 0);
    let logits = out.objectness.reshape([-1]).index_select(0, &sampled); // [P + Q]
    let labels = Tensor::cat(
        &[Tensor::ones([p], (logits.kind(), device)), Tensor::zeros([q], (logits.kind(), device))],
        0,
    );
    let objectness = objectness_loss(&logits, &labels, focal)?;
    Ok((objectness, box_reg))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn anchors_are_labelled_like_torchvision() {
        let anchors = Tensor::from_slice(&[
            0.0f32, 0.0, 10.0, 10.0, // IoU 1 with the gt
            0.0, 0.0, 10.0, 5.0, // 0.5: ignored
            50.0, 50.0, 60.0, 60.0, // 0: negative
        ])
        .view([3, 4]);
        let gt = Tensor::from_slice(&[0.0f32, 0.0, 10.0, 10.0]).view([1, 4]);
        let (labels, matched) = anchor_labels(&Matcher::new(0.7, 0.3, true), &gt, &anchors);
        assert_eq!(Vec::<i64>::try_from(&labels).unwrap(), vec![1, -1, 0]);
        assert_eq!(Vec::<i64>::try_from(&matched).unwrap(), vec![0, 0, 0]);
        let none = Tensor::zeros([0, 4], (Kind::Float, tch::Device::Cpu));
        let (labels, _) = anchor_labels(&Matcher::new(0.7, 0.3, true), &none, &anchors);
        assert_eq!(Vec::<i64>::try_from(&labels).unwrap(), vec![0, 0, 0]);
    }
}
