//! torchvision's `Conv2dNormActivation` as the detection model uses it: a `Conv2d` ("same"
//! padding `(k - 1) / 2`), then an optional norm, then an optional ReLU; the convolution has a
//! bias exactly when there is no norm. Also the weight initialisations torchvision applies to
//! each part of the detector, and plain (biased) convolution / linear layers.
//!
//! Variables (PyTorch state_dict names below the given path): `0.weight` (`[c2, c1, k, k]`),
//! `0.bias` (`[c2]`, without norm only), `1.weight`, `1.bias`, `1.running_mean`,
//! `1.running_var` (with norm only).

use tch::nn::{self, Init};
use tch::{TchError, Tensor};

use super::norm::{Norm2d, NormKind};
use crate::packed_conv::{Activation, InferenceConv};

/// Kaiming normal, `mode="fan_out"`, `nonlinearity="relu"`: `N(0, 2 / (c2·k·k))` (the ResNet body
/// and the box head convolutions).
pub const KAIMING_NORMAL_FAN_OUT: Init = Init::Kaiming {
    dist: nn::init::NormalOrUniform::Normal,
    fan: nn::init::FanInOut::FanOut,
    non_linearity: nn::init::NonLinearity::ReLU,
};

/// Kaiming uniform with `a = 1`: `U(±sqrt(3 / fan_in))` (the FPN convolutions).
pub const KAIMING_UNIFORM_A1: Init = Init::Kaiming {
    dist: nn::init::NormalOrUniform::Uniform,
    fan: nn::init::FanInOut::FanIn,
    non_linearity: nn::init::NonLinearity::ExplicitGain(1.0),
};

/// PyTorch's default `Conv2d` / `Linear` weight init: kaiming uniform with `a = sqrt(5)`, i.e.
/// `U(±1/sqrt(fan_in))`.
pub const TORCH_DEFAULT_WEIGHT: Init = Init::Kaiming {
    dist: nn::init::NormalOrUniform::Uniform,
    fan: nn::init::FanInOut::FanIn,
    non_linearity: nn::init::NonLinearity::ExplicitGain(0.577_350_269_189_625_8), // 1/sqrt(3)
};

/// `N(0, 0.01²)`: the RPN head's convolutions.
pub const NORMAL_STD_001: Init = Init::Randn { mean: 0.0, stdev: 0.01 };

/// A variable `name` of shape `dims` under `p`, initialised by `init`, with gradients only
/// when `trainable`.
pub fn variable(
    p: &nn::Path,
    name: &str,
    dims: &[i64],
    init: Init,
    trainable: bool,
) -> Result<Tensor, TchError> {
    let t = nn::f_init(init, dims, p.device(), p.kind())?;
    Ok(p.add(name, t, trainable))
}

/// PyTorch's default bias init for a layer with `fan_in` inputs: `U(±1/sqrt(fan_in))`.
pub fn default_bias_init(fan_in: i64) -> Init {
    let bound = 1.0 / (fan_in as f64).sqrt();
    Init::Uniform { lo: -bound, up: bound }
}

/// A `Conv2d` with "same" padding for odd `k`, and optional bias.
#[derive(Debug)]
pub struct Conv2d {
    /// `[c2, c1, k, k]`.
    pub weight: Tensor,
    /// `[c2]`.
    pub bias: Option<Tensor>,
    pub stride: i64,
    pub padding: i64,
}

impl Conv2d {
    /// `weight` (and `bias` when `bias_init` is given) under `p`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        p: &nn::Path,
        c1: i64,
        c2: i64,
        k: i64,
        stride: i64,
        init: Init,
        bias_init: Option<Init>,
        trainable: bool,
    ) -> Result<Self, TchError> {
        let weight = variable(p, "weight", &[c2, c1, k, k], init, trainable)?;
        let bias = match bias_init {
            Some(b) => Some(variable(p, "bias", &[c2], b, trainable)?),
            None => None,
        };
        Ok(Self { weight, bias, stride, padding: (k - 1) / 2 })
    }

    /// `[B, c1, H, W]` -> `[B, c2, H', W']`.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        x.conv2d(&self.weight, self.bias.as_ref(), self.stride, self.padding, 1, 1)
    }

    /// An inference copy with the eval-mode `norm` that follows folded in
    /// (`w' = w·scale`, `b' = b·scale + shift`), then `relu` or nothing.
    pub fn fold(&self, norm: Option<&Norm2d>, relu: bool) -> InferenceConv {
        let (weight, bias) = tch::no_grad(|| {
            let bias = match &self.bias {
                Some(b) => b.detach(),
                None => Tensor::zeros(
                    [self.weight.size()[0]],
                    (self.weight.kind(), self.weight.device()),
                ),
            };
            match norm {
                Some(n) => {
                    let (scale, shift) = n.eval_affine();
                    (&self.weight * scale.reshape([-1, 1, 1, 1]), bias * &scale + shift)
                }
                None => (self.weight.detach().copy(), bias.copy()),
            }
        });
        let act = if relu { Activation::Relu } else { Activation::None };
        InferenceConv::new(weight, bias, self.stride, self.padding, 1, act)
    }
}

/// Which parts follow the convolution.
#[derive(Debug, Clone, Copy)]
pub struct ConvNormActSpec {
    pub kernel: i64,
    /// `None`: no norm, and the convolution gets a bias.
    pub norm: Option<NormKind>,
    pub relu: bool,
    /// Weight init of the convolution; its bias (when there is one) starts at 0.
    pub init: Init,
}

/// Conv2d (+ norm) (+ ReLU), stride 1.
#[derive(Debug)]
pub struct ConvNormAct {
    pub conv: Conv2d,
    pub norm: Option<Norm2d>,
    pub(crate) relu: bool,
    /// The three folded into one convolution by [`ConvNormAct::fuse`], for inference.
    folded: Option<InferenceConv>,
}

impl ConvNormAct {
    /// Variables under `p.0` (conv) and `p.1` (norm), as `nn.Sequential` names them.
    pub fn new(p: &nn::Path, c1: i64, c2: i64, spec: ConvNormActSpec) -> Result<Self, TchError> {
        let bias_init = spec.norm.is_none().then_some(Init::Const(0.0));
        let conv = Conv2d::new(&p.sub("0"), c1, c2, spec.kernel, 1, spec.init, bias_init, true)?;
        let norm = spec.norm.map(|kind| Norm2d::new(&p.sub("1"), c2, kind, true));
        Ok(Self { conv, norm, relu: spec.relu, folded: None })
    }

    /// Folds the norm's current statistics and the ReLU into one convolution that eval-mode
    /// forwards use from now on (prepacked for oneDNN on the CPU); `on = false` drops it.
    pub fn fuse(&mut self, on: bool) {
        self.folded = on.then(|| self.conv.fold(self.norm.as_ref(), self.relu));
    }

    /// `[B, c1, H, W]` -> `[B, c2, H, W]`; `train` is passed to the norm (a fused block in
    /// eval mode runs its folded convolution).
    pub fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        if let Some(f) = usable_folded(&self.folded, x, train) {
            return f.forward(x);
        }
        let y = self.conv.forward(x);
        let y = match &self.norm {
            Some(n) => n.forward(&y, train),
            None => y,
        };
        if self.relu { y.relu() } else { y }
    }
}

/// A block's folded (norm-free) copy, when this forward may use it: in eval mode on an input
/// that needs no gradient. Training and gradient checks always run the unfolded layers.
pub(crate) fn usable_folded<'a, T>(
    folded: &'a Option<T>,
    x: &Tensor,
    train: bool,
) -> Option<&'a T> {
    folded.as_ref().filter(|_| !train && !x.requires_grad())
}

/// An `nn.Linear` with PyTorch's default init: `weight [out, in]`, `bias [out]`.
#[derive(Debug)]
pub struct Linear {
    pub weight: Tensor,
    pub bias: Tensor,
}

impl Linear {
    pub fn new(p: &nn::Path, c_in: i64, c_out: i64) -> Result<Self, TchError> {
        let weight = variable(p, "weight", &[c_out, c_in], TORCH_DEFAULT_WEIGHT, true)?;
        let bias = variable(p, "bias", &[c_out], default_bias_init(c_in), true)?;
        Ok(Self { weight, bias })
    }

    /// `[N, in]` -> `[N, out]`.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        x.linear(&self.weight, Some(&self.bias))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn names_bias_and_shapes_follow_torchvision() {
        let vs = nn::VarStore::new(Device::Cpu);
        let spec = ConvNormActSpec {
            kernel: 3,
            norm: Some(NormKind::Batch),
            relu: true,
            init: KAIMING_NORMAL_FAN_OUT,
        };
        let with_norm = ConvNormAct::new(&vs.root().sub("a"), 4, 6, spec).unwrap();
        let plain =
            ConvNormAct::new(&vs.root().sub("b"), 4, 6, ConvNormActSpec { norm: None, ..spec })
                .unwrap();
        let mut names: Vec<String> = vs.variables().into_keys().collect();
        names.sort();
        assert_eq!(
            names,
            [
                "a.0.weight",
                "a.1.bias",
                "a.1.running_mean",
                "a.1.running_var",
                "a.1.weight",
                "b.0.bias",
                "b.0.weight"
            ]
        );
        let x = Tensor::randn([2, 4, 5, 7], (Kind::Float, Device::Cpu));
        assert_eq!(with_norm.forward(&x, false).size(), [2, 6, 5, 7]);
        let y = plain.forward(&x, false);
        assert!(y.min().double_value(&[]) >= 0.0);
    }
}
