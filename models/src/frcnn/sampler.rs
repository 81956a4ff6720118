//! Which matched anchors (RPN) and proposals (RoI heads) a training step learns from.
//!
//! [`BalancedSampler`] is torchvision's `BalancedPositiveNegativeSampler`: per image, up to
//! `⌊batch_size_per_image · positive_fraction⌋` positives (label `>= 1`) drawn at random, then
//! negatives (label 0) to fill the batch, labels `-1` never drawn; the draws are
//! `randperm` on libtorch's generator (`tch::manual_seed` makes them repeatable).
//!
//! Sampling is behind the [`Sampler`] trait so a test can replay the indices torchvision drew
//! ([`RecordedSampler`]) and compare losses exactly; the recorded indices are checked against
//! our own labels, so a replay also proves the matching agrees.

use tch::{Kind, Tensor};

use super::FrcnnError;

/// Which stage asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Anchors, for the objectness and RPN box losses.
    Rpn,
    /// Proposals (with the ground truth appended), for the classifier and box losses.
    RoiHeads,
}

/// How many to draw per image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SampleQuota {
    pub batch_size_per_image: i64,
    pub positive_fraction: f64,
}

/// The drawn indices of one image (into its anchors or proposals), int64.
#[derive(Debug)]
pub struct Sampled {
    /// `[P]`.
    pub positive: Tensor,
    /// `[Q]`.
    pub negative: Tensor,
}

/// Draws training examples from the labels of one image.
pub trait Sampler {
    /// `labels` `[N]` int64: `>= 1` positive (its class), 0 negative, `-1` ignored.
    fn sample(
        &mut self,
        stage: Stage,
        image: usize,
        labels: &Tensor,
        quota: SampleQuota,
    ) -> Result<Sampled, FrcnnError>;
}

/// torchvision's random balanced sampler.
#[derive(Debug, Clone, Copy, Default)]
pub struct BalancedSampler;

impl Sampler for BalancedSampler {
    fn sample(
        &mut self,
        _stage: Stage,
        _image: usize,
        labels: &Tensor,
        quota: SampleQuota,
    ) -> Result<Sampled, FrcnnError> {
        let positive = labels.ge(1).nonzero().view([-1]); // [P]
        let negative = labels.eq(0).nonzero().view([-1]); // [Q]
        let want_pos = (quota.batch_size_per_image as f64 * quota.positive_fraction) as i64;
        let num_pos = positive.size()[0].min(want_pos);
        let num_neg = negative.size()[0].min(quota.batch_size_per_image - num_pos).max(0);
        let draw = |from: &Tensor, k: i64| {
            let perm = Tensor::randperm(from.size()[0], (Kind::Int64, from.device()));
            from.index_select(0, &perm.narrow(0, 0, k))
        };
        Ok(Sampled { positive: draw(&positive, num_pos), negative: draw(&negative, num_neg) })
    }
}

/// Replays given indices: per stage, per image, `(positive, negative)`.
#[derive(Debug, Clone, Default)]
pub struct RecordedSampler {
    pub rpn: Vec<(Vec<i64>, Vec<i64>)>,
    pub roi_heads: Vec<(Vec<i64>, Vec<i64>)>,
}

impl Sampler for RecordedSampler {
    fn sample(
        &mut self,
        stage: Stage,
        image: usize,
        labels: &Tensor,
        _quota: SampleQuota,
    ) -> Result<Sampled, FrcnnError> {
        let table = match stage {
            Stage::Rpn => &self.rpn,
            Stage::RoiHeads => &self.roi_heads,
        };
        let Some((pos, neg)) = table.get(image) else {
            return Err(FrcnnError::Config(format!(
                "no recorded {stage:?} samples for image {image}"
            )));
        };
        let labels_cpu: Vec<i64> =
            Vec::try_from(labels.to_kind(Kind::Int64).to_device(tch::Device::Cpu))?;
        let check = |idx: &[i64], positive: bool| -> Result<(), FrcnnError> {
            for &i in idx {
                let label = usize::try_from(i).ok().and_then(|u| labels_cpu.get(u)).copied();
                let ok = match label {
                    Some(l) if positive => l >= 1,
                    Some(l) => l == 0,
                    None => false,
                };
                if !ok {
                    return Err(FrcnnError::Config(format!(
                        "recorded {stage:?} {} index {i} of image {image} has label {label:?} here",
                        if positive { "positive" } else { "negative" }
                    )));
                }
            }
            Ok(())
        };
        check(pos, true)?;
        check(neg, false)?;
        let device = labels.device();
        Ok(Sampled {
            positive: Tensor::from_slice(pos).to_device(device),
            negative: Tensor::from_slice(neg).to_device(device),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn balanced_quota_and_scarce_positives() {
        tch::manual_seed(1);
        // 3 positives, 10 negatives, 2 ignored.
        let mut v = vec![1i64, 1, 2];
        v.extend([0; 10]);
        v.extend([-1, -1]);
        let labels = Tensor::from_slice(&v);
        let quota = SampleQuota { batch_size_per_image: 8, positive_fraction: 0.5 };
        let s = BalancedSampler.sample(Stage::Rpn, 0, &labels, quota).unwrap();
        let (p, n): (Vec<i64>, Vec<i64>) =
            (Vec::try_from(&s.positive).unwrap(), Vec::try_from(&s.negative).unwrap());
        assert_eq!((p.len(), n.len()), (3, 5)); // positives scarce: negatives fill up
        assert!(p.iter().all(|&i| i < 3) && n.iter().all(|&i| (3..13).contains(&i)));
        let mut uniq = n.clone();
        uniq.sort();
        uniq.dedup();
        assert_eq!(uniq.len(), 5);
        // ⌊5 · 0.25⌋ = 1 positive.
        let quota = SampleQuota { batch_size_per_image: 5, positive_fraction: 0.25 };
        let s = BalancedSampler.sample(Stage::RoiHeads, 0, &labels, quota).unwrap();
        assert_eq!((s.positive.size()[0], s.negative.size()[0]), (1, 4));
    }

    #[test]
    fn recorded_indices_are_checked_against_labels() {
        let labels = Tensor::from_slice(&[1i64, 0, -1]);
        let quota = SampleQuota { batch_size_per_image: 2, positive_fraction: 0.5 };
        let mut ok = RecordedSampler { rpn: vec![(vec![0], vec![1])], roi_heads: vec![] };
        assert!(ok.sample(Stage::Rpn, 0, &labels, quota).is_ok());
        assert!(ok.sample(Stage::RoiHeads, 0, &labels, quota).is_err());
        let mut bad = RecordedSampler { rpn: vec![(vec![0], vec![2])], roi_heads: vec![] };
        let e = bad.sample(Stage::Rpn, 0, &labels, quota).unwrap_err().to_string();
        assert!(e.contains("negative index 2"), "{e}");
    }
}
