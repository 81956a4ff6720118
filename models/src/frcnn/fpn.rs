//! torchvision's `FeaturePyramidNetwork` as v2 builds it (`norm_layer=nn.BatchNorm2d`): per input
//! level a 1×1 lateral ("inner") block and a 3×3 output ("layer") block, each
//! `Conv2dNormActivation` with `BatchNorm2d` and no activation (so bias-free convolutions);
//! top-down path with nearest-neighbour upsampling to the lateral's size; then
//! `LastLevelMaxPool` (a 1×1 max pool with stride 2 of the last output) as the extra level.
//! Outputs are torchvision's `'0', '1', '2', '3', 'pool'` in that order.
//!
//! Variables (below the given path, `backbone.fpn` in the detector):
//! `inner_blocks.{i}.0.weight`, `inner_blocks.{i}.1.*`, `layer_blocks.{i}.0.weight`,
//! `layer_blocks.{i}.1.*` for each input level `i`.

use tch::{TchError, Tensor, nn};

use super::conv_norm::{ConvNormAct, ConvNormActSpec, KAIMING_UNIFORM_A1};
use super::norm::NormKind;

/// FPN output channels.
pub const FPN_CHANNELS: i64 = 256;
/// Names of the outputs, in order.
pub const FPN_LEVEL_NAMES: [&str; 5] = ["0", "1", "2", "3", "pool"];

/// The feature pyramid.
#[derive(Debug)]
pub struct Fpn {
    pub(crate) inner_blocks: Vec<ConvNormAct>,
    pub(crate) layer_blocks: Vec<ConvNormAct>,
}

impl Fpn {
    /// One inner and one layer block per entry of `in_channels` (C2..C5: 256, 512, 1024, 2048).
    pub fn new(p: &nn::Path, in_channels: &[i64], out_channels: i64) -> Result<Self, TchError> {
        let spec = |kernel| ConvNormActSpec {
            kernel,
            norm: Some(NormKind::Batch),
            relu: false,
            init: KAIMING_UNIFORM_A1,
        };
        let mut inner_blocks = Vec::with_capacity(in_channels.len());
        let mut layer_blocks = Vec::with_capacity(in_channels.len());
        for (i, &c) in in_channels.iter().enumerate() {
            inner_blocks.push(ConvNormAct::new(
                &p.sub("inner_blocks").sub(i),
                c,
                out_channels,
                spec(1),
            )?);
            layer_blocks.push(ConvNormAct::new(
                &p.sub("layer_blocks").sub(i),
                out_channels,
                out_channels,
                spec(3),
            )?);
        }
        Ok(Self { inner_blocks, layer_blocks })
    }

    /// Folds each block's norm into its convolution for eval-mode forwards (see
    /// [`ConvNormAct::fuse`]).
    pub fn fuse(&mut self, on: bool) {
        self.inner_blocks.iter_mut().chain(&mut self.layer_blocks).for_each(|b| b.fuse(on));
    }

    /// C2..C5 (highest resolution first) -> P2..P5 and the pooled P6, each `[B, 256, h, w]` at the
    /// input level's size (P6: `ceil(h5 / 2) × ceil(w5 / 2)`).
    pub fn forward(&self, xs: &[Tensor], train: bool) -> Vec<Tensor> {
        let n = xs.len().min(self.inner_blocks.len());
        if n == 0 {
            return Vec::new();
        }
        let mut last_inner = self.inner_blocks[n - 1].forward(&xs[n - 1], train);
        let mut results = vec![self.layer_blocks[n - 1].forward(&last_inner, train)];
        for idx in (0..n - 1).rev() {
            let lateral = self.inner_blocks[idx].forward(&xs[idx], train);
            let size = lateral.size();
            let top_down = last_inner.upsample_nearest2d([size[2], size[3]], None, None);
            last_inner = lateral + top_down;
            results.insert(0, self.layer_blocks[idx].forward(&last_inner, train));
        }
        // LastLevelMaxPool: a stride-2 subsampling of the last level.
        if let Some(last) = results.last() {
            let pool = last.max_pool2d([1, 1], [2, 2], [0, 0], [1, 1], false);
            results.push(pool);
        }
        results
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn five_levels_with_torchvision_names() {
        let vs = nn::VarStore::new(Device::Cpu);
        let fpn = Fpn::new(&vs.root(), &[8, 16, 32, 64], 4).unwrap();
        let vars = vs.variables();
        assert_eq!(vars["inner_blocks.3.0.weight"].size(), [4, 64, 1, 1]);
        assert_eq!(vars["layer_blocks.0.0.weight"].size(), [4, 4, 3, 3]);
        assert!(vars.contains_key("layer_blocks.2.1.running_var"));
        assert!(!vars.contains_key("inner_blocks.0.0.bias"));
        let opts = (Kind::Float, Device::Cpu);
        let xs = [
            Tensor::rand([2, 8, 24, 26], opts),
            Tensor::rand([2, 16, 12, 13], opts),
            Tensor::rand([2, 32, 6, 7], opts),
            Tensor::rand([2, 64, 3, 4], opts),
        ];
        let out = tch::no_grad(|| fpn.forward(&xs, false));
        let hw: Vec<Vec<i64>> = out.iter().map(|t| t.size()[2..].to_vec()).collect();
        assert_eq!(hw, [vec![24, 26], vec![12, 13], vec![6, 7], vec![3, 4], vec![2, 2]]);
    }
}
