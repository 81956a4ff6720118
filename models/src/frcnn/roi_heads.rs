//! The second stage: v2's box head `FastRCNNConvFCHead((256, 7, 7), [256] × 4, [1024],
//! norm_layer=BatchNorm2d)` (four 3×3 conv + BN + ReLU, flatten, FC 1024 + ReLU), the
//! `FastRCNNPredictor` (class logits, per-class box deltas) and torchvision's
//! `postprocess_detections`.
//!
//! Post-processing, per image: softmax over classes; per-class boxes decoded onto the proposal
//! (weights `(10, 10, 5, 5)`) and clipped to the resized image; the background column dropped;
//! candidates with `score > score_thresh` (strictly; 0.05), both sides `>= 1e-2` pixels; NMS at
//! `nms_thresh` (0.5) within each class; the best `detections_per_img` (100) kept.
//!
//! Training is staged for a later loss: [`RoiHeads::box_features`] and [`RoiHeads::predict`]
//! take any proposals, so a training path samples proposals against ground truth (its own
//! matcher and sampler) before calling them, and computes the loss from the logits and deltas.
//!
//! Variables (below the given path, `roi_heads` in the detector): `box_head.{0..3}.0.weight`,
//! `box_head.{0..3}.1.*`, `box_head.5.weight` (`[1024, 12544]`), `box_head.5.bias`,
//! `box_predictor.cls_score.{weight,bias}` (`[nc, 1024]`), `box_predictor.bbox_pred.{weight,bias}`
//! (`[4·nc, 1024]`).

use tch::{Kind, TchError, Tensor, nn};

use super::FrcnnError;
use super::batched_nms::batched_nms;
use super::box_coder::BoxCoder;
use super::conv_norm::{ConvNormAct, ConvNormActSpec, KAIMING_NORMAL_FAN_OUT, Linear};
use super::norm::NormKind;
use super::roi_align::MultiScaleRoiAlign;
use super::rpn::{clip_boxes, remove_small_boxes};

/// Box-stage settings; defaults are torchvision's `FasterRCNN` defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct RoiHeadsConfig {
    /// Detections need a class probability strictly above this.
    pub score_thresh: f64,
    pub nms_thresh: f64,
    pub detections_per_img: i64,
    /// Detections need both sides `>= min_size` pixels.
    pub min_size: f64,
    pub bbox_reg_weights: [f64; 4],
    /// Training: proposal IoU for a foreground / below which background.
    pub fg_iou_thresh: f64,
    pub bg_iou_thresh: f64,
    /// Training: proposals sampled per image, and the foreground share.
    pub batch_size_per_image: i64,
    pub positive_fraction: f64,
}

impl Default for RoiHeadsConfig {
    fn default() -> Self {
        Self {
            score_thresh: 0.05,
            nms_thresh: 0.5,
            detections_per_img: 100,
            min_size: 1e-2,
            bbox_reg_weights: [10.0, 10.0, 5.0, 5.0],
            fg_iou_thresh: 0.5,
            bg_iou_thresh: 0.5,
            batch_size_per_image: 512,
            positive_fraction: 0.25,
        }
    }
}

/// v2's `FastRCNNConvFCHead`.
#[derive(Debug)]
pub struct BoxHead {
    pub(crate) convs: Vec<ConvNormAct>,
    pub(crate) fc: Linear,
}

impl BoxHead {
    /// `channels × resolution²` inputs; `conv_layers` 3×3 conv + BN + ReLU blocks, then one FC.
    pub fn new(
        p: &nn::Path,
        channels: i64,
        resolution: i64,
        conv_layers: &[i64],
        fc_out: i64,
    ) -> Result<Self, TchError> {
        let spec = ConvNormActSpec {
            kernel: 3,
            norm: Some(NormKind::Batch),
            relu: true,
            init: KAIMING_NORMAL_FAN_OUT,
        };
        let mut convs = Vec::with_capacity(conv_layers.len());
        let mut prev = channels;
        for (i, &c) in conv_layers.iter().enumerate() {
            convs.push(ConvNormAct::new(&p.sub(i), prev, c, spec)?);
            prev = c;
        }
        // Index len(conv_layers) is the Flatten, the Linear comes after it.
        let fc =
            Linear::new(&p.sub(conv_layers.len() + 1), prev * resolution * resolution, fc_out)?;
        Ok(Self { convs, fc })
    }

    /// Folds the four convolutions' norms and ReLUs for eval-mode forwards (see
    /// [`ConvNormAct::fuse`]).
    pub fn fuse(&mut self, on: bool) {
        self.convs.iter_mut().for_each(|c| c.fuse(on));
    }

    /// `[R, 256, 7, 7]` -> `[R, 1024]`.
    pub fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        // Channels-last runs oneDNN's faster convolution kernels on CPU (the four 3×3 convs
        // over every RoI are most of the eval time); the values are the same. (Pooled RoIs
        // arrive channels-last already; training keeps torchvision's contiguous layout.)
        let x = if train { x.contiguous() } else { crate::tensor::channels_last(x) };
        let y = self.convs.iter().fold(x, |y, c| c.forward(&y, train));
        self.fc.forward(&y.flatten(1, -1)).relu()
    }
}

/// `FastRCNNPredictor`.
#[derive(Debug)]
pub struct BoxPredictor {
    pub(crate) cls_score: Linear,
    pub(crate) bbox_pred: Linear,
}

impl BoxPredictor {
    pub fn new(p: &nn::Path, in_channels: i64, num_classes: i64) -> Result<Self, TchError> {
        Ok(Self {
            cls_score: Linear::new(&p.sub("cls_score"), in_channels, num_classes)?,
            bbox_pred: Linear::new(&p.sub("bbox_pred"), in_channels, num_classes * 4)?,
        })
    }

    /// `[R, 1024]` -> (class logits `[R, nc]`, box deltas `[R, 4·nc]`).
    pub fn forward(&self, x: &Tensor) -> (Tensor, Tensor) {
        let x = x.flatten(1, -1);
        (self.cls_score.forward(&x), self.bbox_pred.forward(&x))
    }
}

/// Final detections of one image.
#[derive(Debug)]
pub struct FrcnnDetections {
    /// `[K, 4]` `x1, y1, x2, y2`.
    pub boxes: Tensor,
    /// `[K]` class probabilities, descending.
    pub scores: Tensor,
    /// `[K]` int64 classes in `1..num_classes` (0 is background).
    pub labels: Tensor,
}

/// The box stage.
#[derive(Debug)]
pub struct RoiHeads {
    pub box_roi_pool: MultiScaleRoiAlign,
    pub box_head: BoxHead,
    pub box_predictor: BoxPredictor,
    pub box_coder: BoxCoder,
    pub cfg: RoiHeadsConfig,
}

impl RoiHeads {
    pub fn new(
        p: &nn::Path,
        channels: i64,
        num_classes: i64,
        cfg: RoiHeadsConfig,
    ) -> Result<Self, FrcnnError> {
        if cfg.detections_per_img < 0 || !(0.0..=1.0).contains(&cfg.nms_thresh) {
            return Err(FrcnnError::Config(format!(
                "detections per image must be >= 0 and the NMS threshold in [0, 1], got {} and {}",
                cfg.detections_per_img, cfg.nms_thresh
            )));
        }
        let box_roi_pool = MultiScaleRoiAlign::default();
        let res = box_roi_pool.align.output_size[0];
        let box_head = BoxHead::new(&p.sub("box_head"), channels, res, &[256; 4], 1024)?;
        let box_predictor = BoxPredictor::new(&p.sub("box_predictor"), 1024, num_classes)?;
        let box_coder = BoxCoder::new(cfg.bbox_reg_weights);
        Ok(Self { box_roi_pool, box_head, box_predictor, box_coder, cfg })
    }

    /// Pooled and embedded proposals: `[sum K_i, 1024]` for `proposals` (`[K_i, 4]` per image).
    pub fn box_features(
        &self,
        features: &[Tensor],
        proposals: &[Tensor],
        image_sizes: &[[i64; 2]],
        train: bool,
    ) -> Result<Tensor, FrcnnError> {
        let pooled = self.box_roi_pool.forward(features, proposals, image_sizes)?; // [R, 256, 7, 7]
        Ok(self.box_head.forward(&pooled, train))
    }

    /// (class logits `[R, nc]`, box deltas `[R, 4·nc]`).
    pub fn predict(&self, box_features: &Tensor) -> (Tensor, Tensor) {
        self.box_predictor.forward(box_features)
    }

    /// torchvision's `postprocess_detections`: per image, boxes in the resized image's pixels.
    pub fn postprocess(
        &self,
        class_logits: &Tensor,
        box_regression: &Tensor,
        proposals: &[Tensor],
        image_sizes: &[[i64; 2]],
    ) -> Result<Vec<FrcnnDetections>, FrcnnError> {
        let nc = class_logits.size()[1];
        let device = class_logits.device();
        let all_props = Tensor::cat(proposals, 0);
        let pred_boxes = self.box_coder.decode(box_regression, &all_props); // [R, nc, 4]
        let pred_scores = class_logits.softmax(-1, class_logits.kind()); // [R, nc]
        let mut out = Vec::with_capacity(proposals.len());
        let mut start = 0;
        for (props, &hw) in proposals.iter().zip(image_sizes) {
            let n = props.size()[0];
            let boxes = clip_boxes(&pred_boxes.narrow(0, start, n), hw);
            let scores = pred_scores.narrow(0, start, n);
            start += n;
            let labels =
                Tensor::arange(nc, (Kind::Int64, device)).view([1, -1]).expand([n, nc], false);
            // Drop the background column, then one candidate per (proposal, class).
            let m = n * (nc - 1);
            let boxes = boxes.narrow(1, 1, nc - 1).reshape([m, 4]);
            let scores = scores.narrow(1, 1, nc - 1).reshape([m]);
            let labels = labels.narrow(1, 1, nc - 1).reshape([m]);
            let inds = scores.gt(self.cfg.score_thresh).nonzero().view([-1]);
            let (boxes, scores, labels) = (
                boxes.index_select(0, &inds),
                scores.index_select(0, &inds),
                labels.index_select(0, &inds),
            );
            let keep = remove_small_boxes(&boxes, self.cfg.min_size);
            let (boxes, scores, labels) = (
                boxes.index_select(0, &keep),
                scores.index_select(0, &keep),
                labels.index_select(0, &keep),
            );
            let keep = batched_nms(&boxes, &scores, &labels, self.cfg.nms_thresh)?;
            let keep = keep.narrow(0, 0, keep.size()[0].min(self.cfg.detections_per_img));
            out.push(FrcnnDetections {
                boxes: boxes.index_select(0, &keep),
                scores: scores.index_select(0, &keep),
                labels: labels.index_select(0, &keep),
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use tch::Device;

    #[test]
    fn names_and_shapes_follow_torchvision() {
        let vs = nn::VarStore::new(Device::Cpu);
        let heads = RoiHeads::new(&vs.root(), 256, 3, RoiHeadsConfig::default()).unwrap();
        let vars = vs.variables();
        assert_eq!(vars["box_head.3.0.weight"].size(), [256, 256, 3, 3]);
        assert!(vars.contains_key("box_head.3.1.running_mean"));
        assert_eq!(vars["box_head.5.weight"].size(), [1024, 256 * 49]);
        assert_eq!(vars["box_predictor.bbox_pred.weight"].size(), [12, 1024]);
        let x = Tensor::rand([2, 256, 7, 7], (Kind::Float, Device::Cpu));
        let f = tch::no_grad(|| heads.box_head.forward(&x, false));
        let (logits, deltas) = heads.predict(&f);
        assert_eq!((logits.size(), deltas.size()), (vec![2, 3], vec![2, 12]));
    }

    #[test]
    fn postprocess_thresholds_and_per_class_nms() {
        let vs = nn::VarStore::new(Device::Cpu);
        let heads = RoiHeads::new(&vs.root(), 256, 3, RoiHeadsConfig::default()).unwrap();
        // Two overlapping proposals; class 1 wins the first, class 2 the second; zero deltas.
        let props =
            Tensor::from_slice(&[0.0f32, 0.0, 10.0, 10.0, 1.0, 0.0, 11.0, 10.0]).view([2, 4]);
        let logits = Tensor::from_slice(&[0.0f32, 5.0, -5.0, 0.0, 4.0, 4.5]).view([2, 3]);
        let deltas = Tensor::zeros([2, 12], (Kind::Float, Device::Cpu));
        let d = heads.postprocess(&logits, &deltas, &[props], &[[8, 20]]).unwrap();
        let labels: Vec<i64> = Vec::try_from(&d[0].labels).unwrap();
        // (p0, c1) 0.99; (p1, c2) 0.61; (p1, c1) 0.37 is suppressed by (p0, c1);
        // (p0, c2) 0.0000 is below 0.05.
        assert_eq!(labels, vec![1, 2]);
        assert_eq!(Vec::<f32>::try_from(d[0].boxes.get(0)).unwrap(), vec![0.0, 0.0, 10.0, 8.0]);
    }
}
