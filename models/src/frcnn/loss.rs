//! The four training losses of Faster R-CNN and the elementwise functions they are made of, as
//! torchvision computes them: objectness is binary cross-entropy with logits averaged over the
//! sampled anchors; both box losses are smooth-L1 with `beta = 1/9` summed over the positive
//! examples and divided by the number of *sampled* examples (positives and negatives); the
//! classifier is cross-entropy averaged over the sampled proposals.
//!
//! Options beyond torchvision (the study's levers against class imbalance): per-loss weights
//! for the total ([`LossWeights`]; torchvision sums with weight 1), and focal variants
//! ([`Focal`]) of the objectness loss (sigmoid focal loss, as `torchvision.ops.
//! sigmoid_focal_loss`) and of the classifier (softmax focal loss), both still averaged over
//! the sampled examples. The defaults reproduce torchvision.

use tch::{Kind, Reduction, Tensor};

use super::FrcnnError;

/// torchvision's smooth-L1 `beta` for both box losses.
pub const SMOOTH_L1_BETA: f64 = 1.0 / 9.0;

/// Focal modulation `α_t · (1 - p_t)^γ` of a cross-entropy term.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Focal {
    /// `γ >= 0` (0: plain cross-entropy).
    pub gamma: f64,
    /// Weight of positives (foreground classes), `1 - alpha` for negatives (background);
    /// `alpha <= 0` disables the weighting.
    pub alpha: f64,
}

impl Focal {
    fn check(&self) -> Result<(), FrcnnError> {
        if !(self.gamma.is_finite()
            && self.gamma >= 0.0
            && self.alpha.is_finite()
            && self.alpha < 1.0)
        {
            return Err(FrcnnError::Config(format!(
                "focal loss needs gamma >= 0 and alpha < 1, got {} and {}",
                self.gamma, self.alpha
            )));
        }
        Ok(())
    }
}

/// Weights of the four losses in the total.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossWeights {
    pub objectness: f64,
    pub rpn_box_reg: f64,
    pub classifier: f64,
    pub box_reg: f64,
}

impl Default for LossWeights {
    fn default() -> Self {
        Self { objectness: 1.0, rpn_box_reg: 1.0, classifier: 1.0, box_reg: 1.0 }
    }
}

/// How the losses are computed; the default is torchvision's.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LossConfig {
    pub weights: LossWeights,
    /// Sigmoid focal loss for objectness instead of plain BCE.
    pub objectness_focal: Option<Focal>,
    /// Softmax focal loss for the classifier instead of plain cross-entropy.
    pub classifier_focal: Option<Focal>,
}

impl LossConfig {
    pub fn check(&self) -> Result<(), FrcnnError> {
        let w = self.weights;
        if [w.objectness, w.rpn_box_reg, w.classifier, w.box_reg]
            .iter()
            .any(|v| !(v.is_finite() && *v >= 0.0))
        {
            return Err(FrcnnError::Config(format!(
                "loss weights must be finite and >= 0, got {w:?}"
            )));
        }
        for f in [self.objectness_focal, self.classifier_focal].into_iter().flatten() {
            f.check()?;
        }
        Ok(())
    }
}

/// The four losses of one training step (scalars, differentiable).
#[derive(Debug)]
pub struct FrcnnLosses {
    /// `loss_objectness`.
    pub objectness: Tensor,
    /// `loss_rpn_box_reg`.
    pub rpn_box_reg: Tensor,
    /// `loss_classifier`.
    pub classifier: Tensor,
    /// `loss_box_reg`.
    pub box_reg: Tensor,
}

impl FrcnnLosses {
    /// torchvision's names, in the order of [`FrcnnLosses::values`].
    pub const NAMES: [&'static str; 4] =
        ["loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg"];

    /// `Σ wᵢ · lossᵢ`.
    pub fn total(&self, w: &LossWeights) -> Tensor {
        &self.objectness * w.objectness
            + &self.rpn_box_reg * w.rpn_box_reg
            + &self.classifier * w.classifier
            + &self.box_reg * w.box_reg
    }

    /// The unweighted values, in [`FrcnnLosses::NAMES`] order.
    pub fn values(&self) -> [f64; 4] {
        [&self.objectness, &self.rpn_box_reg, &self.classifier, &self.box_reg]
            .map(|t| t.double_value(&[]))
    }
}

/// `Σ smooth_l1(pred - target; β = 1/9) / count` over `[K, 4]` pairs (0 when K = 0, still
/// attached to `pred`'s graph).
pub fn box_loss(pred: &Tensor, target: &Tensor, count: i64) -> Result<Tensor, FrcnnError> {
    let sum = pred.f_smooth_l1_loss(target, Reduction::Sum, SMOOTH_L1_BETA)?;
    Ok(sum / count.max(1) as f64)
}

/// Objectness of the sampled anchors: `logits` `[S]`, `labels` `[S]` float (1 / 0), mean.
pub fn objectness_loss(
    logits: &Tensor,
    labels: &Tensor,
    focal: Option<Focal>,
) -> Result<Tensor, FrcnnError> {
    if logits.size()[0] == 0 {
        return Ok(logits.sum(Kind::Float) * 0.0);
    }
    let none = None::<Tensor>;
    match focal {
        None => Ok(logits.f_binary_cross_entropy_with_logits(
            labels,
            none.as_ref(),
            none.as_ref(),
            Reduction::Mean,
        )?),
        Some(Focal { gamma, alpha }) => {
            let ce = logits.f_binary_cross_entropy_with_logits(
                labels,
                none.as_ref(),
                none.as_ref(),
                Reduction::None,
            )?; // [S]
            let p = logits.sigmoid();
            let p_t = &p * labels + (-&p + 1.0) * (-labels + 1.0);
            let mut loss = ce * (-p_t + 1.0).pow_tensor_scalar(gamma);
            if alpha > 0.0 {
                loss *= labels * alpha + (-labels + 1.0) * (1.0 - alpha);
            }
            Ok(loss.mean(Kind::Float))
        }
    }
}

/// Classifier loss of the sampled proposals: `logits` `[S, nc]`, `labels` `[S]` int64, mean.
pub fn classifier_loss(
    logits: &Tensor,
    labels: &Tensor,
    focal: Option<Focal>,
) -> Result<Tensor, FrcnnError> {
    if logits.size()[0] == 0 {
        return Ok(logits.sum(Kind::Float) * 0.0);
    }
    match focal {
        None => Ok(logits.f_cross_entropy_loss(
            labels,
            None::<Tensor>.as_ref(),
            Reduction::Mean,
            -100,
            0.0,
        )?),
        Some(Focal { gamma, alpha }) => {
            let logp_t = logits
                .log_softmax(-1, Kind::Float)
                .gather(1, &labels.unsqueeze(1), false)
                .squeeze_dim(1); // [S]
            let mut loss = -(-logp_t.exp() + 1.0).pow_tensor_scalar(gamma) * logp_t;
            if alpha > 0.0 {
                let fg = labels.gt(0).to_kind(Kind::Float);
                loss *= &fg * alpha + (-fg + 1.0) * (1.0 - alpha);
            }
            Ok(loss.mean(Kind::Float))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn close(a: &Tensor, b: f64) -> bool {
        (a.double_value(&[]) - b).abs() < 1e-6
    }

    #[test]
    fn plain_losses_and_focal_with_gamma_zero_agree() {
        let logits = Tensor::from_slice(&[2.0f32, -1.0, 0.5]);
        let labels = Tensor::from_slice(&[1.0f32, 0.0, 0.0]);
        let bce = objectness_loss(&logits, &labels, None).unwrap();
        let want = ((1.0 + (-2.0f64).exp()).ln()
            + (1.0 + (-1.0f64).exp()).ln()
            + (1.0 + 0.5f64.exp()).ln())
            / 3.0;
        assert!(close(&bce, want));
        let f0 = objectness_loss(&logits, &labels, Some(Focal { gamma: 0.0, alpha: 0.0 })).unwrap();
        assert!(close(&f0, want));
        let f2 = objectness_loss(&logits, &labels, Some(Focal { gamma: 2.0, alpha: 0.0 })).unwrap();
        assert!(f2.double_value(&[]) < want);

        let cls = Tensor::from_slice(&[1.0f32, 2.0, 0.0, 0.0, 3.0, 1.0]).view([2, 3]);
        let lab = Tensor::from_slice(&[1i64, 0]);
        let ce = classifier_loss(&cls, &lab, None).unwrap();
        let f0 = classifier_loss(&cls, &lab, Some(Focal { gamma: 0.0, alpha: 0.0 })).unwrap();
        assert!((ce.double_value(&[]) - f0.double_value(&[])).abs() < 1e-6);
        let f2 = classifier_loss(&cls, &lab, Some(Focal { gamma: 2.0, alpha: 0.25 })).unwrap();
        assert!(f2.double_value(&[]) < ce.double_value(&[]));
    }

    #[test]
    fn box_loss_is_smooth_l1_over_the_count() {
        let p = Tensor::from_slice(&[0.0f32, 0.05, 1.0, -1.0]).view([1, 4]);
        let t = Tensor::zeros([1, 4], (Kind::Float, tch::Device::Cpu));
        // 0, 0.5·0.05²·9, 1 - 0.5/9, 1 - 0.5/9
        let want = (0.5 * 0.0025 * 9.0 + 2.0 * (1.0 - 0.5 / 9.0)) / 4.0;
        assert!(close(&box_loss(&p, &t, 4).unwrap(), want));
        let empty = Tensor::zeros([0, 4], (Kind::Float, tch::Device::Cpu));
        assert!(close(&box_loss(&empty, &empty, 0).unwrap(), 0.0));
        assert!(close(
            &objectness_loss(
                &Tensor::zeros([0], (Kind::Float, tch::Device::Cpu)),
                &Tensor::zeros([0], (Kind::Float, tch::Device::Cpu)),
                None
            )
            .unwrap(),
            0.0
        ));
    }

    #[test]
    fn bad_settings_are_errors() {
        let mut c = LossConfig::default();
        assert!(c.check().is_ok());
        c.weights.box_reg = -1.0;
        assert!(c.check().is_err());
        let c = LossConfig {
            classifier_focal: Some(Focal { gamma: -1.0, alpha: 0.0 }),
            ..Default::default()
        };
        assert!(c.check().is_err());
    }
}
