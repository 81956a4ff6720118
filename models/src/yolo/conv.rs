//! ultralytics' `Conv`: a bias-free `Conv2d` with "same" padding, `BatchNorm2d` (eps 1e-3,
//! momentum 0.03, as `initialize_weights` sets them) and SiLU; plus the plain biased `Conv2d`
//! that ends each Detect branch. [`Conv::fuse`] folds the batch norm into the convolution for
//! inference, as ultralytics' `fuse_conv_and_bn`.
//!
//! Variables (PyTorch state_dict names below the given path): `conv.weight`, `bn.weight`,
//! `bn.bias`, `bn.running_mean`, `bn.running_var`.

use tch::nn::{self, Init, ModuleT};
use tch::{Kind, Tensor};

use crate::packed_conv::{Activation, InferenceConv};

/// Batch-norm epsilon set by ultralytics' `initialize_weights`.
pub const BN_EPS: f64 = 1e-3;
/// Batch-norm momentum set by ultralytics' `initialize_weights`.
pub const BN_MOMENTUM: f64 = 0.03;

/// PyTorch's default `Conv2d` weight init: kaiming-uniform with `a = sqrt(5)`, i.e. uniform in
/// `±1/sqrt(fan_in)`.
pub(crate) fn torch_default_weight_init() -> Init {
    Init::Kaiming {
        dist: nn::init::NormalOrUniform::Uniform,
        fan: nn::init::FanInOut::FanIn,
        non_linearity: nn::init::NonLinearity::ExplicitGain(1.0 / 3f64.sqrt()),
    }
}

/// Conv2d + BatchNorm2d + optional SiLU.
#[derive(Debug)]
pub struct Conv {
    /// `[c2, c1 / groups, k, k]`.
    weight: Tensor,
    bn: nn::BatchNorm,
    pub(crate) stride: i64,
    pub(crate) padding: i64,
    pub(crate) groups: i64,
    /// Whether SiLU follows.
    pub(crate) act: bool,
    /// BN folded into the convolution (weight `[c2, c1/g, k, k]`, bias `[c2]`) by
    /// [`Conv::fuse`]; prepacked for oneDNN on its first CPU call.
    fused: Option<InferenceConv>,
}

impl Conv {
    /// `Conv(c1, c2, k, s)` with SiLU and one group.
    pub fn new(p: &nn::Path, c1: i64, c2: i64, k: i64, s: i64) -> Self {
        Self::with(p, c1, c2, k, s, 1, true)
    }

    /// `Conv(c1, c2, k, s, g=groups, act=act)`; padding is `k / 2`.
    pub fn with(p: &nn::Path, c1: i64, c2: i64, k: i64, s: i64, groups: i64, act: bool) -> Self {
        let weight =
            p.sub("conv").var("weight", &[c2, c1 / groups, k, k], torch_default_weight_init());
        let bn_cfg = nn::BatchNormConfig {
            eps: BN_EPS,
            momentum: BN_MOMENTUM,
            ws_init: Init::Const(1.0),
            bs_init: Init::Const(0.0),
            ..Default::default()
        };
        let bn = nn::batch_norm2d(p.sub("bn"), c2, bn_cfg);
        Self { weight, bn, stride: s, padding: k / 2, groups, act, fused: None }
    }

    /// `act(bn(conv(x)))`; `train` puts the batch norm in training mode (batch statistics,
    /// running-stat update). Once fused, the folded convolution is used and `train` is ignored.
    pub fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        if let Some(fused) = &self.fused {
            return fused.forward(x);
        }
        let y = x.conv2d(&self.weight, None::<&Tensor>, self.stride, self.padding, 1, self.groups);
        let y = self.bn.forward_t(&y, train);
        if self.act { y.silu() } else { y }
    }

    /// Folds the current batch-norm statistics into a biased convolution:
    /// `w' = w · γ/√(var+ε)`, `b' = β - mean · γ/√(var+ε)`. Call after loading weights.
    pub fn fuse(&mut self) {
        if let Some((w, b)) = self.fold() {
            let act = if self.act { Activation::Silu } else { Activation::None };
            self.fused =
                Some(InferenceConv::new(w, b, self.stride, self.padding, self.groups, act));
        }
    }

    /// The convolution with batch norm folded in, as (weight `[c2, c1/g, k, k]`, bias `[c2]`):
    /// the fused copy when fused, else folded now from the current statistics (the ONNX
    /// export reads this).
    pub(crate) fn folded(&self) -> Option<(Tensor, Tensor)> {
        match &self.fused {
            Some(f) => Some((f.weight().shallow_clone(), f.bias().shallow_clone())),
            None => self.fold(),
        }
    }

    fn fold(&self) -> Option<(Tensor, Tensor)> {
        let (Some(gamma), Some(beta)) = (&self.bn.ws, &self.bn.bs) else { return None };
        // Same operation order as torch's `fuse_conv_bn_weights` (bias-free conv), so the folded
        // values are bit-identical to ultralytics'.
        // Folded in float32 whatever the variables' kind (a bfloat16 model folds its rounded
        // statistics exactly), then stored in that kind.
        let kind = self.weight.kind();
        let f32 = |t: &Tensor| {
            if kind == Kind::Double { t.shallow_clone() } else { t.to_kind(Kind::Float) }
        };
        Some(tch::no_grad(|| {
            let rsqrt = (f32(&self.bn.running_var) + BN_EPS).rsqrt(); // [c2]
            let gamma = f32(gamma);
            let w = f32(&self.weight) * (&gamma * &rsqrt).view([-1, 1, 1, 1]);
            let b = (-f32(&self.bn.running_mean)) * &rsqrt * &gamma + f32(beta);
            (w.to_kind(kind), b.to_kind(kind))
        }))
    }

    /// Output channels (`c2`).
    pub(crate) fn out_channels(&self) -> i64 {
        self.weight.size()[0]
    }

    /// Drops the folded copy: back to conv + batch norm on the live variables.
    pub fn unfuse(&mut self) {
        self.fused = None;
    }
}

/// A plain `nn.Conv2d` with bias, PyTorch default init (the last layer of each Detect branch).
pub(crate) fn plain_conv(p: &nn::Path, c1: i64, c2: i64, k: i64) -> nn::Conv2D {
    let bound = 1.0 / ((c1 * k * k) as f64).sqrt();
    let cfg = nn::ConvConfig {
        padding: k / 2,
        ws_init: torch_default_weight_init(),
        bs_init: Init::Uniform { lo: -bound, up: bound },
        ..Default::default()
    };
    nn::conv2d(p, c1, c2, k, cfg)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn names_and_shapes_match_pytorch() {
        let vs = nn::VarStore::new(Device::Cpu);
        let _c = Conv::with(&vs.root().sub("m"), 8, 16, 3, 2, 4, true);
        let vars = vs.variables();
        assert_eq!(vars["m.conv.weight"].size(), vec![16, 2, 3, 3]);
        for k in ["bn.weight", "bn.bias", "bn.running_mean", "bn.running_var"] {
            assert_eq!(vars[&format!("m.{k}")].size(), vec![16], "{k}");
        }
        assert_eq!(vars.len(), 5);
    }

    #[test]
    fn fused_matches_unfused_in_eval() {
        tch::manual_seed(1);
        let vs = nn::VarStore::new(Device::Cpu);
        let mut c = Conv::new(&vs.root(), 4, 6, 3, 1);
        tch::no_grad(|| {
            let vars = vs.variables();
            let _ = vars["bn.running_mean"].shallow_clone().uniform_(-0.5, 0.5);
            let _ = vars["bn.running_var"].shallow_clone().uniform_(0.5, 2.0);
            let _ = vars["bn.weight"].shallow_clone().uniform_(0.5, 1.5);
            let _ = vars["bn.bias"].shallow_clone().uniform_(-0.5, 0.5);
        });
        let x = Tensor::randn([2, 4, 9, 7], (Kind::Float, Device::Cpu));
        let a = tch::no_grad(|| c.forward(&x, false));
        c.fuse();
        let b = tch::no_grad(|| c.forward(&x, false));
        assert_eq!(a.size(), vec![2, 6, 9, 7]);
        assert!((a - b).abs().max().double_value(&[]) < 1e-5);
    }
}
