//! The ResNet50 body torchvision's detection backbone keeps (`IntermediateLayerGetter` up to
//! `layer4`; no average pool, no classifier): a 7×7/2 stem with max pooling, then four stages of
//! Bottleneck blocks (3, 4, 6, 3 blocks; stride on the 3×3 convolution, "ResNet v1.5"),
//! returning each stage's output, C2..C5 (256, 512, 1024, 2048 channels at strides 4..32).
//!
//! `fasterrcnn_resnet50_fpn_v2` builds the body with plain `BatchNorm2d` (also when it starts
//! from ImageNet weights); [`BackboneConfig::frozen_bn`] swaps in `FrozenBatchNorm2d` instead,
//! as the v1 model does for pretrained backbones. [`BackboneConfig::trainable_layers`] (0..=5)
//! is torchvision's `trainable_backbone_layers`: the last `n` of `layer4, layer3, layer2,
//! layer1, conv1` get gradients (and `bn1` too when `n = 5`); the rest are created without.
//!
//! Variables (below the given path, `backbone.body` in the detector): `conv1.weight`, `bn1.*`,
//! `layer{1..4}.{i}.conv{1,2,3}.weight`, `layer{1..4}.{i}.bn{1,2,3}.*`,
//! `layer{1..4}.0.downsample.0.weight`, `layer{1..4}.0.downsample.1.*`.

use tch::{TchError, Tensor, nn};

use super::conv_norm::{Conv2d, KAIMING_NORMAL_FAN_OUT, usable_folded};
use super::norm::{Norm2d, NormKind};
use crate::packed_conv::InferenceConv;

/// Blocks per stage of ResNet50.
pub const RESNET50_LAYERS: [i64; 4] = [3, 4, 6, 3];
/// Channels of C2..C5.
pub const RESNET50_OUT_CHANNELS: [i64; 4] = [256, 512, 1024, 2048];
/// Bottleneck expansion.
const EXPANSION: i64 = 4;

/// How the body is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackboneConfig {
    /// `FrozenBatchNorm2d` instead of `BatchNorm2d` in the body.
    pub frozen_bn: bool,
    /// torchvision's `trainable_backbone_layers`, 0..=5.
    pub trainable_layers: i64,
}

impl Default for BackboneConfig {
    /// What `fasterrcnn_resnet50_fpn_v2(weights=None, weights_backbone=None)` builds:
    /// `BatchNorm2d`, all five layers trainable.
    fn default() -> Self {
        Self { frozen_bn: false, trainable_layers: 5 }
    }
}

impl BackboneConfig {
    /// Whether the body variables whose state_dict names start with `prefix` (`conv1`, `bn1`,
    /// `layer1`, ...) are trained.
    pub fn is_trainable(&self, prefix: &str) -> bool {
        let n = self.trainable_layers.clamp(0, 5) as usize;
        let mut train: Vec<&str> = ["layer4", "layer3", "layer2", "layer1", "conv1"][..n].to_vec();
        if n == 5 {
            train.push("bn1");
        }
        train.iter().any(|t| prefix.starts_with(t))
    }

    fn norm_kind(&self) -> NormKind {
        if self.frozen_bn { NormKind::Frozen } else { NormKind::Batch }
    }
}

/// ResNet's Bottleneck: 1×1 reduce, 3×3 (stride here), 1×1 expand, plus the (projected) input.
#[derive(Debug)]
pub struct Bottleneck {
    pub(crate) conv1: Conv2d,
    pub(crate) bn1: Norm2d,
    pub(crate) conv2: Conv2d,
    pub(crate) bn2: Norm2d,
    pub(crate) conv3: Conv2d,
    pub(crate) bn3: Norm2d,
    pub(crate) downsample: Option<(Conv2d, Norm2d)>,
    /// conv1..3 and the projection with their norms (and ReLUs) folded in, by
    /// [`Bottleneck::fuse`], for eval-mode forwards.
    folded: Option<FoldedBottleneck>,
}

/// A [`Bottleneck`]'s convolutions with norms folded in: `relu(c1)`, `relu(c2)`, `c3`, and the
/// projection.
#[derive(Debug)]
struct FoldedBottleneck {
    c1: InferenceConv,
    c2: InferenceConv,
    c3: InferenceConv,
    downsample: Option<InferenceConv>,
}

impl Bottleneck {
    /// `inplanes -> planes·4` channels, `planes` inside; a 1×1 projection when the shape changes.
    pub fn new(
        p: &nn::Path,
        inplanes: i64,
        planes: i64,
        stride: i64,
        kind: NormKind,
        trainable: bool,
    ) -> Result<Self, TchError> {
        let out = planes * EXPANSION;
        let conv = |name: &str, c1, c2, k, s| {
            Conv2d::new(&p.sub(name), c1, c2, k, s, KAIMING_NORMAL_FAN_OUT, None, trainable)
        };
        let norm = |name: &str, c| Norm2d::new(&p.sub(name), c, kind, trainable);
        let downsample = if stride != 1 || inplanes != out {
            let d = p.sub("downsample");
            let c = Conv2d::new(
                &d.sub("0"),
                inplanes,
                out,
                1,
                stride,
                KAIMING_NORMAL_FAN_OUT,
                None,
                trainable,
            )?;
            Some((c, Norm2d::new(&d.sub("1"), out, kind, trainable)))
        } else {
            None
        };
        Ok(Self {
            conv1: conv("conv1", inplanes, planes, 1, 1)?,
            bn1: norm("bn1", planes),
            conv2: conv("conv2", planes, planes, 3, stride)?,
            bn2: norm("bn2", planes),
            conv3: conv("conv3", planes, out, 1, 1)?,
            bn3: norm("bn3", out),
            downsample,
            folded: None,
        })
    }

    /// Channels of this block's norm layers.
    pub fn norm_channels(&self) -> i64 {
        let ds = self.downsample.as_ref().map_or(0, |(_, n)| n.weight.size()[0]);
        [&self.bn1, &self.bn2, &self.bn3].iter().map(|n| n.weight.size()[0]).sum::<i64>() + ds
    }

    /// Folds the norms' current statistics into the convolutions for eval-mode forwards
    /// (prepacked for oneDNN on the CPU); `on = false` drops the folded copies.
    pub fn fuse(&mut self, on: bool) {
        self.folded = on.then(|| FoldedBottleneck {
            c1: self.conv1.fold(Some(&self.bn1), true),
            c2: self.conv2.fold(Some(&self.bn2), true),
            c3: self.conv3.fold(Some(&self.bn3), false),
            downsample: self.downsample.as_ref().map(|(c, n)| c.fold(Some(n), false)),
        });
    }

    /// `[B, inplanes, H, W]` -> `[B, planes·4, H/stride, W/stride]`.
    pub fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        if let Some(f) = usable_folded(&self.folded, x, train) {
            let y = f.c3.forward(&f.c2.forward(&f.c1.forward(x)));
            let identity = match &f.downsample {
                Some(d) => d.forward(x),
                None => x.shallow_clone(),
            };
            let mut out = y + identity;
            let _ = out.relu_();
            return out;
        }
        let y = self.bn1.forward(&self.conv1.forward(x), train).relu();
        let y = self.bn2.forward(&self.conv2.forward(&y), train).relu();
        let y = self.bn3.forward(&self.conv3.forward(&y), train);
        let identity = match &self.downsample {
            Some((c, n)) => n.forward(&c.forward(x), train),
            None => x.shallow_clone(),
        };
        (y + identity).relu()
    }
}

/// The ResNet50 body.
#[derive(Debug)]
pub struct ResNet50Body {
    pub(crate) conv1: Conv2d,
    pub(crate) bn1: Norm2d,
    pub(crate) layers: Vec<Vec<Bottleneck>>,
    norm_channels: i64,
    /// The stem (conv1, bn1, ReLU) folded by [`ResNet50Body::fuse`].
    folded_stem: Option<InferenceConv>,
}

impl ResNet50Body {
    pub fn new(p: &nn::Path, cfg: &BackboneConfig) -> Result<Self, TchError> {
        let kind = cfg.norm_kind();
        let conv1 = Conv2d::new(
            &p.sub("conv1"),
            3,
            64,
            7,
            2,
            KAIMING_NORMAL_FAN_OUT,
            None,
            cfg.is_trainable("conv1"),
        )?;
        let bn1 = Norm2d::new(&p.sub("bn1"), 64, kind, cfg.is_trainable("bn1"));
        let mut inplanes = 64;
        let mut norm_channels = 64;
        let mut layers = Vec::with_capacity(4);
        for (i, &blocks) in RESNET50_LAYERS.iter().enumerate() {
            let name = format!("layer{}", i + 1);
            let lp = p.sub(&name);
            let trainable = cfg.is_trainable(&name);
            let planes = 64 << i;
            let stride = if i == 0 { 1 } else { 2 };
            let mut stage = Vec::with_capacity(blocks as usize);
            for b in 0..blocks {
                let s = if b == 0 { stride } else { 1 };
                let block = Bottleneck::new(&lp.sub(b), inplanes, planes, s, kind, trainable)?;
                norm_channels += block.norm_channels();
                stage.push(block);
                inplanes = planes * EXPANSION;
            }
            layers.push(stage);
        }
        Ok(Self { conv1, bn1, layers, norm_channels, folded_stem: None })
    }

    /// Folds every norm's current statistics into its convolution for eval-mode forwards
    /// (prepacked for oneDNN on the CPU); `on = false` drops the folded copies.
    pub fn fuse(&mut self, on: bool) {
        self.folded_stem = on.then(|| self.conv1.fold(Some(&self.bn1), true));
        self.layers.iter_mut().flatten().for_each(|b| b.fuse(on));
    }

    /// Channels of all norm layers together (26,560 for ResNet50).
    pub fn norm_channels(&self) -> i64 {
        self.norm_channels
    }

    /// `[B, 3, H, W]` -> C2..C5: `[B, 256, H/4, W/4]`, `[B, 512, H/8, W/8]`,
    /// `[B, 1024, H/16, W/16]`, `[B, 2048, H/32, W/32]` (sizes rounded as the strided
    /// convolutions round them).
    pub fn forward(&self, x: &Tensor, train: bool) -> Vec<Tensor> {
        let mut y = match usable_folded(&self.folded_stem, x, train) {
            Some(stem) => stem.forward(x),
            None => self.bn1.forward(&self.conv1.forward(x), train).relu(),
        };
        y = y.max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false);
        let mut outs = Vec::with_capacity(4);
        for stage in &self.layers {
            for block in stage {
                y = block.forward(&y, train);
            }
            outs.push(y.shallow_clone());
        }
        outs
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn trainable_layers_follow_torchvision() {
        let cfg = |n| BackboneConfig { frozen_bn: false, trainable_layers: n };
        assert!(!cfg(0).is_trainable("layer4"));
        assert!(cfg(1).is_trainable("layer4") && !cfg(1).is_trainable("layer3"));
        assert!(cfg(3).is_trainable("layer2") && !cfg(3).is_trainable("layer1"));
        assert!(!cfg(4).is_trainable("conv1") && cfg(4).is_trainable("layer1"));
        assert!(cfg(5).is_trainable("conv1") && !cfg(4).is_trainable("bn1"));
        assert!(cfg(5).is_trainable("bn1"));
    }

    #[test]
    fn shapes_and_frozen_variables() {
        let vs = nn::VarStore::new(Device::Cpu);
        let cfg = BackboneConfig { frozen_bn: false, trainable_layers: 3 };
        let body = ResNet50Body::new(&vs.root(), &cfg).unwrap();
        let vars = vs.variables();
        assert_eq!(vars["layer1.0.downsample.0.weight"].size(), [256, 64, 1, 1]);
        assert_eq!(vars["layer4.2.conv3.weight"].size(), [2048, 512, 1, 1]);
        assert!(!vars["conv1.weight"].requires_grad());
        assert!(!vars["layer1.0.conv1.weight"].requires_grad());
        assert!(vars["layer2.0.conv2.weight"].requires_grad());
        let x = Tensor::rand([1, 3, 64, 96], (Kind::Float, Device::Cpu));
        let outs = tch::no_grad(|| body.forward(&x, false));
        let sizes: Vec<Vec<i64>> = outs.iter().map(|t| t.size()).collect();
        assert_eq!(
            sizes,
            [vec![1, 256, 16, 24], vec![1, 512, 8, 12], vec![1, 1024, 4, 6], vec![1, 2048, 2, 3]]
        );
    }
}
