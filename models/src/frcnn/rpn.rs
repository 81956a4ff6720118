//! The Region Proposal Network: v2's `RPNHead` (two 3×3 conv + ReLU layers, `conv_depth=2`,
//! biased, no norm; then a 1×1 objectness logit and 1×1 box deltas per anchor) shared across
//! the five FPN levels, and torchvision's proposal filtering.
//!
//! Filtering, per image: the `pre_nms_top_n` highest objectness logits *per level*, deltas
//! decoded onto their anchors (weights `(1, 1, 1, 1)`), boxes clipped to the resized image,
//! boxes with a side below `min_size` (1e-3) dropped, then `sigmoid(objectness) >=
//! score_thresh`, NMS at `nms_thresh` (0.7) within each level, and the `post_nms_top_n` best
//! kept. Train and test use different `top_n`s (2000/2000 vs 1000/1000).
//!
//! Training is staged for a later loss: [`Rpn::head_outputs`] returns everything the RPN loss
//! needs (objectness logits, deltas, anchors, per-level counts); assigning anchors to ground
//! truth and sampling them (torchvision's `Matcher` and `BalancedPositiveNegativeSampler`) take
//! those tensors and need nothing else from this module.
//!
//! Variables (below the given path, `rpn.head` in the detector): `conv.{0,1}.0.weight`,
//! `conv.{0,1}.0.bias`, `cls_logits.weight`, `cls_logits.bias`, `bbox_pred.weight`,
//! `bbox_pred.bias`.

use tch::{Kind, TchError, Tensor, nn};

use super::FrcnnError;
use super::anchors::{AnchorGenerator, FPN_DEFAULT_SIZES};
use super::batched_nms::batched_nms;
use super::box_coder::BoxCoder;
use super::conv_norm::{Conv2d, ConvNormAct, ConvNormActSpec, NORMAL_STD_001};
use super::fpn::FPN_LEVEL_NAMES;
use super::transform::ImageBatch;

/// RPN settings; defaults are torchvision's `FasterRCNN` defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct RpnConfig {
    pub pre_nms_top_n_train: i64,
    pub pre_nms_top_n_test: i64,
    pub post_nms_top_n_train: i64,
    pub post_nms_top_n_test: i64,
    pub nms_thresh: f64,
    /// Proposals need `sigmoid(objectness) >= score_thresh`.
    pub score_thresh: f64,
    /// Proposals need both sides `>= min_size` pixels (after clipping).
    pub min_size: f64,
    /// Training: anchor IoU for a positive / below which negative.
    pub fg_iou_thresh: f64,
    pub bg_iou_thresh: f64,
    /// Training: anchors sampled per image, and the positive share.
    pub batch_size_per_image: i64,
    pub positive_fraction: f64,
    /// Anchor size per FPN level (P2..P6), ratios 0.5, 1, 2 on each: v2's `32..512` by
    /// default. Smaller sizes suit small objects at small input sizes; the head's shapes do
    /// not depend on them.
    pub anchor_sizes: Vec<f64>,
}

impl Default for RpnConfig {
    fn default() -> Self {
        Self {
            pre_nms_top_n_train: 2000,
            pre_nms_top_n_test: 1000,
            post_nms_top_n_train: 2000,
            post_nms_top_n_test: 1000,
            nms_thresh: 0.7,
            score_thresh: 0.0,
            min_size: 1e-3,
            fg_iou_thresh: 0.7,
            bg_iou_thresh: 0.3,
            batch_size_per_image: 256,
            positive_fraction: 0.5,
            anchor_sizes: FPN_DEFAULT_SIZES.to_vec(),
        }
    }
}

/// v2's `RPNHead(256, 3, conv_depth=2)`.
#[derive(Debug)]
pub struct RpnHead {
    pub(crate) convs: Vec<ConvNormAct>,
    pub(crate) cls_logits: Conv2d,
    pub(crate) bbox_pred: Conv2d,
}

impl RpnHead {
    pub fn new(
        p: &nn::Path,
        channels: i64,
        num_anchors: i64,
        conv_depth: usize,
    ) -> Result<Self, TchError> {
        let spec = ConvNormActSpec { kernel: 3, norm: None, relu: true, init: NORMAL_STD_001 };
        let convs = (0..conv_depth)
            .map(|i| ConvNormAct::new(&p.sub("conv").sub(i), channels, channels, spec))
            .collect::<Result<Vec<_>, _>>()?;
        let zero = Some(nn::Init::Const(0.0));
        let cls_logits = Conv2d::new(
            &p.sub("cls_logits"),
            channels,
            num_anchors,
            1,
            1,
            NORMAL_STD_001,
            zero,
            true,
        )?;
        let bbox_pred = Conv2d::new(
            &p.sub("bbox_pred"),
            channels,
            num_anchors * 4,
            1,
            1,
            NORMAL_STD_001,
            zero,
            true,
        )?;
        Ok(Self { convs, cls_logits, bbox_pred })
    }

    /// Folds the shared convolutions' norms and ReLUs for inference (see
    /// [`ConvNormAct::fuse`]).
    pub fn fuse(&mut self, on: bool) {
        self.convs.iter_mut().for_each(|c| c.fuse(on));
    }

    /// Per level `[B, 256, H, W]` -> (objectness `[B, A, H, W]`, deltas `[B, 4A, H, W]`) per level.
    pub fn forward(&self, features: &[Tensor]) -> (Vec<Tensor>, Vec<Tensor>) {
        features
            .iter()
            .map(|f| {
                let t = self.convs.iter().fold(f.shallow_clone(), |x, c| c.forward(&x, false));
                (self.cls_logits.forward(&t), self.bbox_pred.forward(&t))
            })
            .unzip()
    }
}

/// What the head computes for a batch, flattened the way the loss and the filtering read it.
#[derive(Debug)]
pub struct RpnHeadOutputs {
    /// `[B, N]` objectness logits, N = all anchors of all levels, ordered (level, y, x, anchor).
    pub objectness: Tensor,
    /// `[B·N, 4]` box deltas in the same order.
    pub deltas: Tensor,
    /// `[N, 4]` anchors (the same for every image of the batch).
    pub anchors: Tensor,
    /// Anchors per level (`H_l · W_l · A`).
    pub num_anchors_per_level: Vec<i64>,
}

/// Proposals of one image.
#[derive(Debug)]
pub struct Proposals {
    /// `[K, 4]` `x1, y1, x2, y2` in the resized image's pixels, best first.
    pub boxes: Tensor,
    /// `[K]` `sigmoid(objectness)`.
    pub scores: Tensor,
}

/// `[B, A·C, H, W]` -> `[B, H·W·A, C]` (torchvision's `permute_and_flatten`).
fn permute_and_flatten(layer: &Tensor, c: i64) -> Tensor {
    let s = layer.size();
    let (b, h, w) = (s[0], s[2], s[3]);
    layer.view([b, -1, c, h, w]).permute([0, 3, 4, 1, 2]).reshape([b, -1, c])
}

/// The RPN.
#[derive(Debug)]
pub struct Rpn {
    pub anchor_generator: AnchorGenerator,
    pub head: RpnHead,
    pub box_coder: BoxCoder,
    pub cfg: RpnConfig,
}

impl Rpn {
    pub fn new(p: &nn::Path, channels: i64, cfg: RpnConfig) -> Result<Self, FrcnnError> {
        let top_n = [
            cfg.pre_nms_top_n_train,
            cfg.pre_nms_top_n_test,
            cfg.post_nms_top_n_train,
            cfg.post_nms_top_n_test,
        ];
        if top_n.iter().any(|&n| n < 0) || !(0.0..=1.0).contains(&cfg.nms_thresh) {
            return Err(FrcnnError::Config(format!(
                "RPN top-n counts must be >= 0 and the NMS threshold in [0, 1], got {top_n:?} and {}",
                cfg.nms_thresh
            )));
        }
        if cfg.anchor_sizes.len() != FPN_LEVEL_NAMES.len() {
            return Err(FrcnnError::Config(format!(
                "anchor sizes: one per FPN level ({}) is needed, got {:?}",
                FPN_LEVEL_NAMES.len(),
                cfg.anchor_sizes
            )));
        }
        let anchor_generator = AnchorGenerator::fpn(&cfg.anchor_sizes)?;
        let a = anchor_generator.num_anchors_per_location()[0];
        let head = RpnHead::new(&p.sub("head"), channels, a, 2)?;
        Ok(Self { anchor_generator, head, box_coder: BoxCoder::new([1.0; 4]), cfg })
    }

    /// Runs the head on the FPN levels (`[B, 256, H_l, W_l]`) of `batch` and flattens it.
    pub fn head_outputs(&self, features: &[Tensor], batch: &ImageBatch) -> RpnHeadOutputs {
        let (logits, deltas) = self.head.forward(features);
        let grids: Vec<[i64; 2]> = features.iter().map(|f| [f.size()[2], f.size()[3]]).collect();
        let anchors = self.anchor_generator.anchors(batch.batch_hw(), &grids, features[0].device());
        let num_anchors_per_level: Vec<i64> =
            logits.iter().map(|o| o.size()[1..].iter().product()).collect();
        let b = logits[0].size()[0];
        let obj: Vec<Tensor> = logits.iter().map(|o| permute_and_flatten(o, 1)).collect();
        let del: Vec<Tensor> = deltas.iter().map(|d| permute_and_flatten(d, 4)).collect();
        let objectness = Tensor::cat(&obj, 1).flatten(0, -2).reshape([b, -1]); // [B, N]
        let deltas = Tensor::cat(&del, 1).reshape([-1, 4]); // [B·N, 4]
        RpnHeadOutputs { objectness, deltas, anchors, num_anchors_per_level }
    }

    /// Decoded boxes for every anchor of every image: `[B, N, 4]`.
    pub fn decode(&self, out: &RpnHeadOutputs) -> Tensor {
        let b = out.objectness.size()[0];
        let anchors = out.anchors.repeat([b, 1]); // [B·N, 4], image after image
        self.box_coder.decode(&out.deltas.detach(), &anchors).view([b, -1, 4])
    }

    /// The proposals of each image (`train` picks the training `top_n`s).
    pub fn filter_proposals(
        &self,
        out: &RpnHeadOutputs,
        image_sizes: &[[i64; 2]],
        train: bool,
    ) -> Result<Vec<Proposals>, FrcnnError> {
        let (pre_n, post_n) = if train {
            (self.cfg.pre_nms_top_n_train, self.cfg.post_nms_top_n_train)
        } else {
            (self.cfg.pre_nms_top_n_test, self.cfg.post_nms_top_n_test)
        };
        let objectness = out.objectness.detach(); // [B, N]
        if image_sizes.len() as i64 != objectness.size()[0] {
            return Err(FrcnnError::Config(format!(
                "{} image sizes for a batch of {}",
                image_sizes.len(),
                objectness.size()[0]
            )));
        }
        let proposals = self.decode(out); // [B, N, 4]
        let device = objectness.device();
        // Top-n per level, as indices into N.
        let mut top = Vec::new();
        let mut levels = Vec::new();
        let mut offset = 0;
        for (lvl, &n) in out.num_anchors_per_level.iter().enumerate() {
            let ob = objectness.narrow(1, offset, n);
            let k = pre_n.min(n);
            let (_, idx) = ob.topk(k, 1, true, true); // [B, k]
            top.push(idx + offset);
            levels.push(Tensor::full([k], lvl as i64, (Kind::Int64, device)));
            offset += n;
        }
        let top = Tensor::cat(&top, 1); // [B, K]
        let levels = Tensor::cat(&levels, 0); // [K]
        let scores = objectness.gather(1, &top, false).sigmoid(); // [B, K]
        let mut result = Vec::with_capacity(image_sizes.len());
        for (i, &[h, w]) in image_sizes.iter().enumerate() {
            let idx = top.get(i as i64);
            let boxes = clip_boxes(&proposals.get(i as i64).index_select(0, &idx), [h, w]);
            let scores = scores.get(i as i64);
            let keep = remove_small_boxes(&boxes, self.cfg.min_size);
            let (boxes, scores, lvl) = (
                boxes.index_select(0, &keep),
                scores.index_select(0, &keep),
                levels.index_select(0, &keep),
            );
            let keep = scores.ge(self.cfg.score_thresh).nonzero().view([-1]);
            let (boxes, scores, lvl) = (
                boxes.index_select(0, &keep),
                scores.index_select(0, &keep),
                lvl.index_select(0, &keep),
            );
            let keep = batched_nms(&boxes, &scores, &lvl, self.cfg.nms_thresh)?;
            let keep = keep.narrow(0, 0, keep.size()[0].min(post_n));
            result.push(Proposals {
                boxes: boxes.index_select(0, &keep),
                scores: scores.index_select(0, &keep),
            });
        }
        Ok(result)
    }

    /// Eval-mode RPN: head, decoding and filtering.
    pub fn forward(
        &self,
        features: &[Tensor],
        batch: &ImageBatch,
        train: bool,
    ) -> Result<(Vec<Proposals>, RpnHeadOutputs), FrcnnError> {
        let out = self.head_outputs(features, batch);
        let props = self.filter_proposals(&out, &batch.image_sizes, train)?;
        Ok((props, out))
    }
}

/// Clamps `[..., 4]` boxes into an `[h, w]` image: x into `[0, w]`, y into `[0, h]`.
pub fn clip_boxes(boxes: &Tensor, hw: [i64; 2]) -> Tensor {
    let x = boxes.slice(-1, 0, None, 2).clamp(0.0, hw[1] as f64); // x1, x2
    let y = boxes.slice(-1, 1, None, 2).clamp(0.0, hw[0] as f64); // y1, y2
    Tensor::stack(&[x, y], -1).reshape(boxes.size())
}

/// Indices `[K]` of the `[N, 4]` boxes whose sides are both `>= min_size`.
pub fn remove_small_boxes(boxes: &Tensor, min_size: f64) -> Tensor {
    let ws = boxes.select(-1, 2) - boxes.select(-1, 0);
    let hs = boxes.select(-1, 3) - boxes.select(-1, 1);
    ws.ge(min_size).logical_and(&hs.ge(min_size)).nonzero().view([-1])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use tch::Device;

    #[test]
    fn flattening_order_is_level_y_x_anchor() {
        // [1, A·C = 2·1, H = 1, W = 2]: channel a, column x -> value 10·x + a.
        let t = Tensor::from_slice(&[0.0f32, 10.0, 1.0, 11.0]).view([1, 2, 1, 2]);
        let f: Vec<f32> = Vec::try_from(permute_and_flatten(&t, 1).view([-1])).unwrap();
        assert_eq!(f, vec![0.0, 1.0, 10.0, 11.0]);
    }

    #[test]
    fn clip_and_small_boxes() {
        let b = Tensor::from_slice(&[-5.0f32, 2.0, 50.0, 70.0, 3.0, 3.0, 3.0005, 9.0]).view([2, 4]);
        let c = clip_boxes(&b, [60, 40]);
        assert_eq!(Vec::<f32>::try_from(c.get(0)).unwrap(), vec![0.0, 2.0, 40.0, 60.0]);
        let keep: Vec<i64> = Vec::try_from(remove_small_boxes(&c, 1e-3)).unwrap();
        assert_eq!(keep, vec![0]);
    }

    #[test]
    fn head_names_and_proposals() {
        let vs = nn::VarStore::new(Device::Cpu);
        let rpn = Rpn::new(&vs.root().sub("rpn"), 8, RpnConfig::default()).unwrap();
        let vars = vs.variables();
        assert_eq!(vars["rpn.head.conv.1.0.weight"].size(), [8, 8, 3, 3]);
        assert_eq!(vars["rpn.head.bbox_pred.weight"].size(), [12, 8, 1, 1]);
        assert_eq!(vars.len(), 8);
        let opts = (Kind::Float, Device::Cpu);
        let feats: Vec<Tensor> = [[16, 16], [8, 8], [4, 4], [2, 2], [1, 1]]
            .iter()
            .map(|s| Tensor::rand([1, 8, s[0], s[1]], opts))
            .collect();
        let batch = ImageBatch {
            tensors: Tensor::zeros([1, 3, 64, 64], opts),
            image_sizes: vec![[60, 64]],
            original_sizes: vec![[60, 64]],
        };
        let (props, out) = tch::no_grad(|| rpn.forward(&feats, &batch, false)).unwrap();
        assert_eq!(out.objectness.size(), [1, (256 + 64 + 16 + 4 + 1) * 3]);
        assert_eq!(props.len(), 1);
        let b = &props[0].boxes;
        assert!(b.size()[0] > 0);
        assert!(b.select(1, 3).max().double_value(&[]) <= 60.0);
    }
}
