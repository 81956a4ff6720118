//! The normalisation layer of the ResNet body, the FPN and the box head: PyTorch's
//! `BatchNorm2d` (eps 1e-5, momentum 0.1; batch statistics and a running-statistics update in
//! training) or torchvision's `FrozenBatchNorm2d` (always the stored statistics, affine
//! parameters never trained: what detection fine-tuning from ImageNet weights uses).
//!
//! Variables (PyTorch state_dict names below the given path): `weight`, `bias`,
//! `running_mean`, `running_var`, all `[C]`. For the frozen kind torchvision keeps `weight` and
//! `bias` as buffers, not parameters; the names are the same, so files load either way.

use tch::{Tensor, nn};

/// PyTorch's `BatchNorm2d` / `FrozenBatchNorm2d` default epsilon.
pub const BN_EPS: f64 = 1e-5;
/// PyTorch's `BatchNorm2d` default momentum.
pub const BN_MOMENTUM: f64 = 0.1;

/// Which normalisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NormKind {
    /// `nn.BatchNorm2d`.
    Batch,
    /// `torchvision.ops.FrozenBatchNorm2d`.
    Frozen,
}

/// A batch norm over `[B, C, H, W]`.
#[derive(Debug)]
pub struct Norm2d {
    /// `[C]` γ.
    pub weight: Tensor,
    /// `[C]` β.
    pub bias: Tensor,
    pub running_mean: Tensor,
    pub running_var: Tensor,
    kind: NormKind,
}

impl Norm2d {
    /// `weight` 1, `bias` 0, statistics 0 / 1 (PyTorch's init). `trainable` decides whether
    /// γ and β get gradients (a frozen kind never does).
    pub fn new(p: &nn::Path, channels: i64, kind: NormKind, trainable: bool) -> Self {
        let trainable = trainable && kind == NormKind::Batch;
        let opts = (p.kind(), p.device());
        let weight = p.add("weight", Tensor::ones([channels], opts), trainable);
        let bias = p.add("bias", Tensor::zeros([channels], opts), trainable);
        let running_mean = p.add("running_mean", Tensor::zeros([channels], opts), false);
        let running_var = p.add("running_var", Tensor::ones([channels], opts), false);
        Self { weight, bias, running_mean, running_var, kind }
    }

    pub fn kind(&self) -> NormKind {
        self.kind
    }

    /// `[B, C, H, W]` -> same shape. `train` selects batch statistics (and updates the running
    /// ones) for [`NormKind::Batch`]; the frozen kind ignores it.
    pub fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        match self.kind {
            NormKind::Batch => x.batch_norm(
                Some(&self.weight),
                Some(&self.bias),
                Some(&self.running_mean),
                Some(&self.running_var),
                train,
                BN_MOMENTUM,
                BN_EPS,
                true,
            ),
            NormKind::Frozen => {
                let (scale, shift) = self.eval_affine();
                let shape = [1, -1, 1, 1];
                x * scale.reshape(shape) + shift.reshape(shape)
            }
        }
    }

    /// The eval-mode norm as `x·scale + shift` per channel, both `[C]`, in torchvision's
    /// `FrozenBatchNorm2d` order: `scale = γ·rsqrt(var + eps)`, `shift = β - mean·scale`.
    pub fn eval_affine(&self) -> (Tensor, Tensor) {
        let scale = &self.weight * (&self.running_var + BN_EPS).rsqrt();
        let shift = &self.bias - &self.running_mean * &scale;
        (scale, shift)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn frozen_equals_batch_norm_in_eval_and_has_no_trainable_variables() {
        tch::manual_seed(3);
        let vs = nn::VarStore::new(Device::Cpu);
        let a = Norm2d::new(&vs.root().sub("a"), 5, NormKind::Batch, true);
        let vs_f = nn::VarStore::new(Device::Cpu);
        let f = Norm2d::new(&vs_f.root().sub("a"), 5, NormKind::Frozen, true);
        assert_eq!(vs.trainable_variables().len(), 2);
        assert_eq!(vs_f.trainable_variables().len(), 0);
        tch::no_grad(|| {
            for n in [&a, &f] {
                n.weight.shallow_clone().copy_(&Tensor::from_slice(&[0.5f32, 1., 1.5, 2., 0.1]));
                let _ = n.bias.shallow_clone().fill_(0.25);
                n.running_mean
                    .shallow_clone()
                    .copy_(&Tensor::from_slice(&[0.1f32, -0.2, 0., 1., 2.]));
                let _ = n.running_var.shallow_clone().fill_(1.5);
            }
        });
        let x = Tensor::randn([2, 5, 3, 4], (Kind::Float, Device::Cpu));
        let (ya, yf) = tch::no_grad(|| (a.forward(&x, false), f.forward(&x, true)));
        assert!((ya - yf).abs().max().double_value(&[]) < 1e-5);
        assert_eq!(vs.variables().len(), 4);
    }
}
