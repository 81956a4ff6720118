//! The box stage's training samples and loss, as torchvision's `RoIHeads` computes them in
//! training mode.
//!
//! Samples, per image: the ground-truth boxes are appended to the RPN proposals; each proposal
//! is matched to the ground truth by IoU (foreground `>= 0.5`, background below; no
//! low-quality matches) and labelled with its box's class (0 for background, and for every
//! proposal of an image without boxes); a [`Sampler`] draws 512 of them, at most a quarter
//! foreground; the drawn proposals are kept in ascending index order, with their regression
//! targets (deltas from the proposal to its ground truth, weights `(10, 10, 5, 5)`).
//!
//! Loss (`fastrcnn_loss`): `loss_classifier` = cross-entropy of the class logits, averaged
//! over the sampled proposals (or the focal variant, see [`super::loss`]); `loss_box_reg` =
//! smooth-L1 (`β = 1/9`) between the foreground proposals' deltas *for their own class* and
//! their targets, summed and divided by the number of sampled proposals.

use tch::{Kind, Tensor};

use super::FrcnnError;
use super::loss::{Focal, box_loss, classifier_loss};
use super::matcher::{BELOW_LOW_THRESHOLD, BETWEEN_THRESHOLDS, Matcher, box_iou};
use super::roi_heads::RoiHeads;
use super::rpn_loss::sorted;
use super::sampler::{SampleQuota, Sampler, Stage};

/// What the box stage trains on.
#[derive(Debug)]
pub struct RoiSamples {
    /// Per image, the sampled proposals `[S_i, 4]` (resized image's pixels).
    pub proposals: Vec<Tensor>,
    /// `[S]` int64 class of each sampled proposal (0 background), images concatenated.
    pub labels: Tensor,
    /// `[S, 4]` regression targets (meaningful where the label is `>= 1`).
    pub regression_targets: Tensor,
}

/// torchvision's `select_training_samples`: `proposals` per image `[K_i, 4]`, ground truth per
/// image `gt_boxes` `[M_i, 4]` (same pixels) and `gt_labels` `[M_i]` int64.
pub fn select_training_samples(
    heads: &RoiHeads,
    proposals: &[Tensor],
    gt_boxes: &[Tensor],
    gt_labels: &[Tensor],
    sampler: &mut dyn Sampler,
) -> Result<RoiSamples, FrcnnError> {
    if proposals.len() != gt_boxes.len() || gt_boxes.len() != gt_labels.len() {
        return Err(FrcnnError::Config(format!(
            "{} proposal lists, {} box lists and {} label lists",
            proposals.len(),
            gt_boxes.len(),
            gt_labels.len()
        )));
    }
    let cfg = &heads.cfg;
    let matcher = Matcher::new(cfg.fg_iou_thresh, cfg.bg_iou_thresh, false);
    let quota = SampleQuota {
        batch_size_per_image: cfg.batch_size_per_image,
        positive_fraction: cfg.positive_fraction,
    };
    let (mut out_props, mut out_labels, mut out_targets) = (Vec::new(), Vec::new(), Vec::new());
    for (i, ((props, gt), gt_lab)) in proposals.iter().zip(gt_boxes).zip(gt_labels).enumerate() {
        let device = props.device();
        let gt = gt.to_device(device).to_kind(props.kind());
        let props = Tensor::cat(&[props.shallow_clone(), gt.shallow_clone()], 0); // [K + M, 4]
        let k = props.size()[0];
        let (labels, matched) = if gt.size()[0] == 0 {
            let zeros = Tensor::zeros([k], (Kind::Int64, device));
            (zeros.shallow_clone(), zeros)
        } else {
            let matches = matcher.matches(&box_iou(&gt, &props)); // [K + M]
            let clamped = matches.clamp_min(0);
            let labels = gt_lab
                .to_device(device)
                .to_kind(Kind::Int64)
                .index_select(0, &clamped)
                .masked_fill(&matches.eq(BELOW_LOW_THRESHOLD), 0)
                .masked_fill(&matches.eq(BETWEEN_THRESHOLDS), -1);
            (labels, clamped)
        };
        let s = sampler.sample(Stage::RoiHeads, i, &labels, quota)?;
        let idx = sorted(&Tensor::cat(&[s.positive, s.negative], 0)); // [S_i]
        let sampled = props.index_select(0, &idx);
        // An image without boxes matches everything to a zero box (targets never used).
        let gt_or_zero =
            if gt.size()[0] == 0 { Tensor::zeros([1, 4], (props.kind(), device)) } else { gt };
        let matched_gt = gt_or_zero.index_select(0, &matched.index_select(0, &idx));
        out_targets.push(heads.box_coder.encode(&matched_gt, &sampled));
        out_labels.push(labels.index_select(0, &idx));
        out_props.push(sampled);
    }
    Ok(RoiSamples {
        proposals: out_props,
        labels: Tensor::cat(&out_labels, 0),
        regression_targets: Tensor::cat(&out_targets, 0),
    })
}

/// torchvision's `fastrcnn_loss`: `(loss_classifier, loss_box_reg)` from the class logits
/// `[S, nc]` and per-class deltas `[S, 4·nc]` of the sampled proposals.
pub fn fastrcnn_loss(
    class_logits: &Tensor,
    box_regression: &Tensor,
    samples: &RoiSamples,
    focal: Option<Focal>,
) -> Result<(Tensor, Tensor), FrcnnError> {
    let labels = &samples.labels;
    let classifier = classifier_loss(class_logits, labels, focal)?;
    let s = class_logits.size();
    let (n, nc) = (s[0], s[1]);
    let pos = labels.gt(0).nonzero().view([-1]); // [P]
    let labels_pos = labels.index_select(0, &pos);
    // Row (proposal, own class) of the `[S·nc, 4]` deltas.
    let rows = &pos * nc + labels_pos;
    let pred = box_regression.reshape([n * nc, 4]).index_select(0, &rows); // [P, 4]
    let target = samples.regression_targets.index_select(0, &pos);
    let box_reg = box_loss(&pred, &target, n)?;
    Ok((classifier, box_reg))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::frcnn::roi_heads::RoiHeadsConfig;
    use crate::frcnn::sampler::RecordedSampler;
    use tch::{Device, nn};

    #[test]
    fn gt_is_appended_matched_and_lost_on_its_own_class() {
        let vs = nn::VarStore::new(Device::Cpu);
        let heads = RoiHeads::new(&vs.root(), 8, 3, RoiHeadsConfig::default()).unwrap();
        let props =
            Tensor::from_slice(&[0.0f32, 0.0, 10.0, 10.0, 40.0, 40.0, 50.0, 50.0]).view([2, 4]);
        let gt = Tensor::from_slice(&[0.0f32, 0.0, 10.0, 12.0]).view([1, 4]);
        let gt_lab = Tensor::from_slice(&[2i64]);
        // Proposal 0 (IoU 0.83) and the appended gt (index 2) are foreground, 1 background.
        let mut sampler = RecordedSampler { rpn: vec![], roi_heads: vec![(vec![2, 0], vec![1])] };
        let s = select_training_samples(&heads, &[props], &[gt], &[gt_lab], &mut sampler).unwrap();
        assert_eq!(Vec::<i64>::try_from(&s.labels).unwrap(), vec![2, 0, 2]);
        assert_eq!(s.proposals[0].size(), [3, 4]);
        // The gt matched to itself has zero targets.
        assert_eq!(s.regression_targets.get(2).abs().sum(Kind::Float).double_value(&[]), 0.0);
        // Deltas equal to the targets on the own class: zero box loss whatever the others.
        let mut deltas = Tensor::randn([3, 12], (Kind::Float, Device::Cpu));
        deltas.narrow(1, 8, 4).copy_(&s.regression_targets);
        let logits = Tensor::zeros([3, 3], (Kind::Float, Device::Cpu));
        let (cls, boxes) = fastrcnn_loss(&logits, &deltas, &s, None).unwrap();
        assert!((cls.double_value(&[]) - 3f64.ln()).abs() < 1e-6);
        assert!(boxes.double_value(&[]).abs() < 1e-7);
        deltas = deltas.zeros_like();
        let (_, boxes) = fastrcnn_loss(&logits, &deltas, &s, None).unwrap();
        assert!(boxes.double_value(&[]) > 0.0);
    }
}
