//! The whole detector, as torchvision's `GeneralizedRCNN` runs it.
//!
//! Eval: transform -> ResNet50 body -> FPN -> RPN -> RoI heads -> boxes back to original
//! pixels. Training ([`FasterRcnn::forward_train`]): the same transform (boxes resized with
//! the images), batch norm on batch statistics (every `BatchNorm2d` layer, also in backbone
//! layers excluded from training by `trainable_layers`: torchvision's `model.train()` puts
//! them all in training mode and only stops their parameters' gradients; `FrozenBatchNorm2d`
//! never changes), the RPN with its training `top_n`s and loss ([`super::rpn_loss`]), then the
//! box stage on sampled proposals and its loss ([`super::roi_loss`]).
//!
//! Variables live under torchvision's module paths: `backbone.body`, `backbone.fpn`,
//! `rpn.head`, `roi_heads.box_head`, `roi_heads.box_predictor`.

use tch::{Device, Kind, Tensor, nn};

use super::FrcnnError;
use super::backbone::{BackboneConfig, RESNET50_OUT_CHANNELS, ResNet50Body};
use super::fpn::{FPN_CHANNELS, Fpn};
use super::loss::{FrcnnLosses, LossConfig};
pub use super::roi_heads::FrcnnDetections;
use super::roi_heads::{RoiHeads, RoiHeadsConfig};
use super::roi_loss::{fastrcnn_loss, select_training_samples};
use super::rpn::{Proposals, Rpn, RpnConfig};
use super::rpn_loss::rpn_loss;
use super::sampler::{BalancedSampler, Sampler};
use super::transform::{ImageBatch, Transform, TransformConfig};

/// What to build; [`FrcnnConfig::new`] gives `fasterrcnn_resnet50_fpn_v2`'s defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct FrcnnConfig {
    /// Classes including background (2 for background + fracture; 91 for COCO).
    pub num_classes: i64,
    pub transform: TransformConfig,
    pub backbone: BackboneConfig,
    pub rpn: RpnConfig,
    pub roi_heads: RoiHeadsConfig,
    /// Training losses (torchvision's by default).
    pub loss: LossConfig,
}

impl FrcnnConfig {
    /// torchvision's defaults (`min_size` 800, `max_size` 1333, all thresholds as in
    /// `FasterRCNN`), `BatchNorm2d` everywhere, every backbone layer trainable.
    pub fn new(num_classes: i64) -> Self {
        Self {
            num_classes,
            transform: TransformConfig::default(),
            backbone: BackboneConfig::default(),
            rpn: RpnConfig::default(),
            roi_heads: RoiHeadsConfig::default(),
            loss: LossConfig::default(),
        }
    }

    /// The same with another resize rule.
    pub fn with_sizes(mut self, min_size: i64, max_size: i64) -> Self {
        self.transform.min_size = min_size;
        self.transform.max_size = max_size;
        self
    }
}

/// Every intermediate result of an eval forward (for parity tests and diagnostics).
#[derive(Debug)]
pub struct FrcnnTrace {
    pub batch: ImageBatch,
    /// FPN levels `'0', '1', '2', '3', 'pool'`: `[B, 256, H_l, W_l]`.
    pub features: Vec<Tensor>,
    /// RPN proposals per image, in the resized image's pixels.
    pub proposals: Vec<Proposals>,
    /// Detections per image in the resized image's pixels (before mapping back).
    pub detections_resized: Vec<FrcnnDetections>,
    /// Detections per image in original pixels.
    pub detections: Vec<FrcnnDetections>,
}

/// Ground truth of one training image.
#[derive(Debug)]
pub struct FrcnnTarget {
    /// `[N, 4]` float `x1, y1, x2, y2` in the image's own pixels (as given, before resizing).
    pub boxes: Tensor,
    /// `[N]` int64 classes in `1..num_classes`.
    pub labels: Tensor,
}

impl FrcnnTarget {
    /// An image without boxes (a negative: every anchor and proposal is background).
    pub fn empty(device: Device) -> Self {
        Self {
            boxes: Tensor::zeros([0, 4], (Kind::Float, device)),
            labels: Tensor::zeros([0], (Kind::Int64, device)),
        }
    }
}

/// A training forward's losses and what led to them (for parity tests and diagnostics).
#[derive(Debug)]
pub struct FrcnnTrainStep {
    pub losses: FrcnnLosses,
    pub batch: ImageBatch,
    /// RPN proposals per image (training `top_n`s), resized image's pixels.
    pub proposals: Vec<Proposals>,
    /// Ground-truth boxes per image, resized with the images.
    pub gt_boxes: Vec<Tensor>,
    /// `[S, 1024]` the box head's output (after its last ReLU) for the sampled RoIs, image by
    /// image, each image's in ascending proposal index.
    pub box_features: Tensor,
}

/// Faster R-CNN ResNet50-FPN v2.
#[derive(Debug)]
pub struct FasterRcnn {
    pub transform: Transform,
    pub body: ResNet50Body,
    pub fpn: Fpn,
    pub rpn: Rpn,
    pub roi_heads: RoiHeads,
    pub loss: LossConfig,
    num_classes: i64,
    device: Device,
    /// Elements of `FrozenBatchNorm2d` weight/bias (buffers in PyTorch, not parameters).
    frozen_affine_elements: i64,
}

impl FasterRcnn {
    /// Builds the model's variables under `p` (use the VarStore's root for torchvision names).
    pub fn new(p: &nn::Path, cfg: &FrcnnConfig) -> Result<Self, FrcnnError> {
        if cfg.num_classes < 2 {
            return Err(FrcnnError::NumClasses(cfg.num_classes));
        }
        if !(0..=5).contains(&cfg.backbone.trainable_layers) {
            return Err(FrcnnError::TrainableLayers(cfg.backbone.trainable_layers));
        }
        cfg.loss.check()?;
        let transform = Transform::new(cfg.transform.clone())?;
        let bp = p.sub("backbone");
        let body = ResNet50Body::new(&bp.sub("body"), &cfg.backbone)?;
        let fpn = Fpn::new(&bp.sub("fpn"), &RESNET50_OUT_CHANNELS, FPN_CHANNELS)?;
        let rpn = Rpn::new(&p.sub("rpn"), FPN_CHANNELS, cfg.rpn.clone())?;
        let roi_heads = RoiHeads::new(
            &p.sub("roi_heads"),
            FPN_CHANNELS,
            cfg.num_classes,
            cfg.roi_heads.clone(),
        )?;
        let frozen_affine_elements =
            if cfg.backbone.frozen_bn { 2 * body.norm_channels() } else { 0 };
        Ok(Self {
            transform,
            body,
            fpn,
            rpn,
            roi_heads,
            loss: cfg.loss,
            num_classes: cfg.num_classes,
            device: p.device(),
            frozen_affine_elements,
        })
    }

    pub fn num_classes(&self) -> i64 {
        self.num_classes
    }

    /// Folds every norm (and the ReLU after it) into its convolution from the current
    /// statistics, for inference: eval-mode forwards that need no gradient then run one
    /// convolution per layer, prepacked for oneDNN on the CPU. Call after loading weights;
    /// training forwards ignore the folded copies, and [`FasterRcnn::unfuse`] drops them.
    pub fn fuse(&mut self) {
        self.set_fused(true);
    }

    /// Drops what [`FasterRcnn::fuse`] built.
    pub fn unfuse(&mut self) {
        self.set_fused(false);
    }

    fn set_fused(&mut self, on: bool) {
        self.body.fuse(on);
        self.fpn.fuse(on);
        self.rpn.head.fuse(on);
        self.roi_heads.box_head.fuse(on);
    }

    /// Variables' elements that PyTorch would not count as parameters besides the batch-norm
    /// statistics: the affine weights of `FrozenBatchNorm2d` layers.
    pub(crate) fn frozen_affine_elements(&self) -> i64 {
        self.frozen_affine_elements
    }

    /// FPN levels of a prepared batch: `[B, 256, H_l, W_l]` × 5.
    pub fn features(&self, batch: &ImageBatch, train: bool) -> Vec<Tensor> {
        let c = self.body.forward(&batch.tensors, train);
        self.fpn.forward(&c, train)
    }

    /// Per-image embedding of `images` (each `[3, H, W]` float in `[0, 1]`, any sizes): the
    /// ResNet50 body's last stage (C5, 2048 channels, stride 32) averaged over each image's own
    /// region of the padded batch, after the eval transform. Call inside `tch::no_grad`.
    pub fn embed(&self, images: &[Tensor]) -> Result<Tensor, FrcnnError> {
        let batch = self.transform.batch(images, self.device)?;
        let c = self.body.forward(&batch.tensors, false);
        // [B, 2048, Hp/32, Wp/32]
        let c5 = c.last().ok_or(FrcnnError::Config("the body returned no stages".into()))?;
        let s = c5.size();
        let pooled: Vec<Tensor> = batch
            .image_sizes
            .iter()
            .enumerate()
            .map(|(i, &[h, w])| {
                // Every stride-2 step rounds up, so an h-row image covers ceil(h / 32) rows.
                let (hc, wc) = (((h + 31) / 32).min(s[2]), ((w + 31) / 32).min(s[3]));
                // [2048, hc, wc] -> [2048]
                c5.get(i as i64).narrow(1, 0, hc).narrow(2, 0, wc).mean_dim(
                    [1i64, 2].as_slice(),
                    false,
                    Kind::Float,
                )
            })
            .collect();
        // [B, 2048]
        Ok(Tensor::stack(&pooled, 0))
    }

    /// Eval forward of `images` (each `[3, H, W]` float in `[0, 1]`, any sizes) with every
    /// intermediate result.
    pub fn forward_eval_traced(&self, images: &[Tensor]) -> Result<FrcnnTrace, FrcnnError> {
        let batch = self.transform.batch(images, self.device)?;
        let features = self.features(&batch, false);
        let (proposals, _) = self.rpn.forward(&features, &batch, false)?;
        let boxes: Vec<Tensor> = proposals.iter().map(|p| p.boxes.shallow_clone()).collect();
        let box_features =
            self.roi_heads.box_features(&features, &boxes, &batch.image_sizes, false)?;
        let (logits, deltas) = self.roi_heads.predict(&box_features);
        let detections_resized =
            self.roi_heads.postprocess(&logits, &deltas, &boxes, &batch.image_sizes)?;
        let detections = detections_resized
            .iter()
            .zip(batch.image_sizes.iter().zip(&batch.original_sizes))
            .map(|(d, (&resized, &original))| FrcnnDetections {
                boxes: Transform::postprocess_boxes(&d.boxes, resized, original),
                scores: d.scores.shallow_clone(),
                labels: d.labels.shallow_clone(),
            })
            .collect();
        Ok(FrcnnTrace { batch, features, proposals, detections_resized, detections })
    }

    /// Eval forward: per image, boxes in original pixels, scores (descending) and labels.
    /// Call inside `tch::no_grad`.
    pub fn forward_eval(&self, images: &[Tensor]) -> Result<Vec<FrcnnDetections>, FrcnnError> {
        Ok(self.forward_eval_traced(images)?.detections)
    }

    /// Checks `targets` against the batch and resizes their boxes with the images: per image,
    /// (`[N, 4]` boxes in the resized image's pixels, `[N]` int64 labels).
    fn prepare_targets(
        &self,
        targets: &[FrcnnTarget],
        batch: &ImageBatch,
    ) -> Result<(Vec<Tensor>, Vec<Tensor>), FrcnnError> {
        if targets.len() != batch.image_sizes.len() {
            return Err(FrcnnError::Target {
                index: targets.len().min(batch.image_sizes.len()),
                message: format!(
                    "{} targets for {} images",
                    targets.len(),
                    batch.image_sizes.len()
                ),
            });
        }
        let mut boxes = Vec::with_capacity(targets.len());
        let mut labels = Vec::with_capacity(targets.len());
        for (index, (t, (&original, &resized))) in
            targets.iter().zip(batch.original_sizes.iter().zip(&batch.image_sizes)).enumerate()
        {
            let bad = |message: String| FrcnnError::Target { index, message };
            let (bs, ls) = (t.boxes.size(), t.labels.size());
            let n = ls.first().copied().unwrap_or(-1);
            if bs.len() != 2 || bs[1] != 4 || ls.len() != 1 || bs[0] != n {
                return Err(bad(format!("boxes {bs:?} and labels {ls:?} must be [N, 4] and [N]")));
            }
            if !t.boxes.is_floating_point() || t.labels.kind() != Kind::Int64 {
                return Err(bad(format!(
                    "boxes must be float and labels int64, got {:?} and {:?}",
                    t.boxes.kind(),
                    t.labels.kind()
                )));
            }
            let b = Transform::resize_boxes(
                &t.boxes.to_device(self.device).to_kind(Kind::Float),
                original,
                resized,
            );
            let l = t.labels.to_device(self.device);
            if n > 0 {
                let (lo, hi) = (l.min().int64_value(&[]), l.max().int64_value(&[]));
                if lo < 1 || hi >= self.num_classes {
                    return Err(bad(format!(
                        "labels must be in 1..{} (0 is background), got {lo}..={hi}",
                        self.num_classes
                    )));
                }
                // torchvision's check: positive width and height (NaN fails it too).
                let ok = b.narrow(1, 2, 2).gt_tensor(&b.narrow(1, 0, 2)).all().int64_value(&[]);
                if ok == 0 {
                    return Err(bad(
                        "every box needs a positive width and height (after resizing)".into(),
                    ));
                }
            }
            boxes.push(b);
            labels.push(l);
        }
        Ok((boxes, labels))
    }

    /// Training forward with torchvision's random sampling (libtorch's generator): the four
    /// losses of `images` (each `[3, H, W]` float in `[0, 1]`) with their `targets`.
    pub fn forward_train(
        &self,
        images: &[Tensor],
        targets: &[FrcnnTarget],
    ) -> Result<FrcnnLosses, FrcnnError> {
        Ok(self.forward_train_with(images, targets, &mut BalancedSampler)?.losses)
    }

    /// [`FasterRcnn::forward_train`] with the anchors and proposals drawn by `sampler`, and
    /// the intermediate results.
    pub fn forward_train_with(
        &self,
        images: &[Tensor],
        targets: &[FrcnnTarget],
        sampler: &mut dyn Sampler,
    ) -> Result<FrcnnTrainStep, FrcnnError> {
        let batch = self.transform.batch(images, self.device)?;
        let (gt_boxes, gt_labels) = self.prepare_targets(targets, &batch)?;
        let features = self.features(&batch, true);
        let out = self.rpn.head_outputs(&features, &batch);
        let proposals = self.rpn.filter_proposals(&out, &batch.image_sizes, true)?;
        let (objectness, rpn_box_reg) =
            rpn_loss(&self.rpn, &out, &gt_boxes, sampler, self.loss.objectness_focal)?;
        let boxes: Vec<Tensor> = proposals.iter().map(|p| p.boxes.shallow_clone()).collect();
        let samples =
            select_training_samples(&self.roi_heads, &boxes, &gt_boxes, &gt_labels, sampler)?;
        let box_features =
            self.roi_heads.box_features(&features, &samples.proposals, &batch.image_sizes, true)?;
        let (logits, deltas) = self.roi_heads.predict(&box_features);
        let (classifier, box_reg) =
            fastrcnn_loss(&logits, &deltas, &samples, self.loss.classifier_focal)?;
        let losses = FrcnnLosses { objectness, rpn_box_reg, classifier, box_reg };
        Ok(FrcnnTrainStep { losses, batch, proposals, gt_boxes, box_features })
    }

    /// Validation in one pass with eval-mode batch norm: the detections (as
    /// [`FasterRcnn::forward_eval`]) and the four losses, computed on the eval-time proposals
    /// (test `top_n`s) with torchvision's random sampling. Call inside `tch::no_grad`.
    pub fn forward_validate(
        &self,
        images: &[Tensor],
        targets: &[FrcnnTarget],
    ) -> Result<(FrcnnLosses, Vec<FrcnnDetections>), FrcnnError> {
        let sampler = &mut BalancedSampler;
        let batch = self.transform.batch(images, self.device)?;
        let (gt_boxes, gt_labels) = self.prepare_targets(targets, &batch)?;
        let features = self.features(&batch, false);
        let out = self.rpn.head_outputs(&features, &batch);
        let proposals = self.rpn.filter_proposals(&out, &batch.image_sizes, false)?;
        let (objectness, rpn_box_reg) =
            rpn_loss(&self.rpn, &out, &gt_boxes, sampler, self.loss.objectness_focal)?;
        let boxes: Vec<Tensor> = proposals.iter().map(|p| p.boxes.shallow_clone()).collect();
        let samples =
            select_training_samples(&self.roi_heads, &boxes, &gt_boxes, &gt_labels, sampler)?;
        let sampled_features = self.roi_heads.box_features(
            &features,
            &samples.proposals,
            &batch.image_sizes,
            false,
        )?;
        let (logits, deltas) = self.roi_heads.predict(&sampled_features);
        let (classifier, box_reg) =
            fastrcnn_loss(&logits, &deltas, &samples, self.loss.classifier_focal)?;
        let losses = FrcnnLosses { objectness, rpn_box_reg, classifier, box_reg };

        let box_features =
            self.roi_heads.box_features(&features, &boxes, &batch.image_sizes, false)?;
        let (logits, deltas) = self.roi_heads.predict(&box_features);
        let resized = self.roi_heads.postprocess(&logits, &deltas, &boxes, &batch.image_sizes)?;
        let detections = resized
            .iter()
            .zip(batch.image_sizes.iter().zip(&batch.original_sizes))
            .map(|(d, (&r, &o))| FrcnnDetections {
                boxes: Transform::postprocess_boxes(&d.boxes, r, o),
                scores: d.scores.shallow_clone(),
                labels: d.labels.shallow_clone(),
            })
            .collect();
        Ok((losses, detections))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::frcnn::parameter_count;
    use tch::Kind;

    #[test]
    fn parameter_counts_match_torchvision() {
        for (nc, count) in [(2, 43_256_153), (91, 43_712_278)] {
            let vs = nn::VarStore::new(Device::Cpu);
            let m = FasterRcnn::new(&vs.root(), &FrcnnConfig::new(nc)).unwrap();
            assert_eq!(parameter_count(&vs, &m), count, "num_classes={nc}");
        }
        // Frozen BN: weight/bias become buffers (53 layers, 26,560 channels of ResNet50).
        let vs = nn::VarStore::new(Device::Cpu);
        let mut cfg = FrcnnConfig::new(2);
        cfg.backbone = BackboneConfig { frozen_bn: true, trainable_layers: 3 };
        let m = FasterRcnn::new(&vs.root(), &cfg).unwrap();
        assert_eq!(parameter_count(&vs, &m), 43_256_153 - 2 * 26_560);
        let trainable: i64 = vs.trainable_variables().iter().map(|t| t.numel() as i64).sum();
        assert!(trainable < 43_256_153 - 2 * 26_560);
    }

    #[test]
    fn bad_configs_and_inputs_are_errors() {
        let vs = nn::VarStore::new(Device::Cpu);
        assert!(matches!(
            FasterRcnn::new(&vs.root(), &FrcnnConfig::new(1)),
            Err(FrcnnError::NumClasses(1))
        ));
        let mut cfg = FrcnnConfig::new(2);
        cfg.backbone.trainable_layers = 6;
        assert!(matches!(FasterRcnn::new(&vs.root(), &cfg), Err(FrcnnError::TrainableLayers(6))));
        let mut cfg = FrcnnConfig::new(2);
        cfg.rpn.post_nms_top_n_test = -1;
        assert!(matches!(FasterRcnn::new(&vs.root(), &cfg), Err(FrcnnError::Config(_))));
        let mut cfg = FrcnnConfig::new(2);
        cfg.roi_heads.nms_thresh = 1.5;
        assert!(matches!(FasterRcnn::new(&vs.root(), &cfg), Err(FrcnnError::Config(_))));
        // One anchor size per FPN level (five).
        let mut cfg = FrcnnConfig::new(2);
        cfg.rpn.anchor_sizes = vec![16.0, 32.0, 64.0, 128.0];
        assert!(matches!(FasterRcnn::new(&vs.root(), &cfg), Err(FrcnnError::Config(_))));
    }

    #[test]
    fn small_forward_runs_end_to_end() {
        tch::manual_seed(0);
        let vs = nn::VarStore::new(Device::Cpu);
        let m = FasterRcnn::new(&vs.root(), &FrcnnConfig::new(2).with_sizes(64, 96)).unwrap();
        let imgs = [Tensor::rand([3, 50, 70], (Kind::Float, Device::Cpu))];
        let t = tch::no_grad(|| m.forward_eval_traced(&imgs)).unwrap();
        assert_eq!(t.batch.tensors.size(), [1, 3, 64, 96]);
        assert_eq!(t.features.len(), 5);
        assert_eq!(t.detections.len(), 1);
        let d = &t.detections[0];
        assert_eq!(d.boxes.size()[0], d.scores.size()[0]);
        assert!(m.forward_eval(&[Tensor::zeros([3, 4], (Kind::Float, Device::Cpu))]).is_err());
    }

    #[test]
    fn training_forward_gives_four_finite_losses_and_checks_targets() {
        tch::manual_seed(2);
        let vs = nn::VarStore::new(Device::Cpu);
        let mut cfg = FrcnnConfig::new(3).with_sizes(64, 96);
        cfg.rpn.post_nms_top_n_train = 50;
        cfg.roi_heads.batch_size_per_image = 32;
        let m = FasterRcnn::new(&vs.root(), &cfg).unwrap();
        let opts = (Kind::Float, Device::Cpu);
        let imgs = [Tensor::rand([3, 50, 70], opts), Tensor::rand([3, 64, 40], opts)];
        let targets = [
            FrcnnTarget {
                boxes: Tensor::from_slice(&[5.0f32, 5.0, 30.0, 40.0, 40.0, 10.0, 60.0, 30.0])
                    .view([2, 4]),
                labels: Tensor::from_slice(&[1i64, 2]),
            },
            FrcnnTarget::empty(Device::Cpu),
        ];
        let losses = m.forward_train(&imgs, &targets).unwrap();
        let v = losses.values();
        assert!(v.iter().all(|x| x.is_finite() && *x >= 0.0), "{v:?}");
        assert!(v[0] > 0.0 && v[2] > 0.0, "{v:?}");
        losses.total(&LossConfig::default().weights).backward();
        let grad = vs.variables()["roi_heads.box_predictor.cls_score.weight"].grad();
        assert!(grad.abs().sum(Kind::Float).double_value(&[]) > 0.0);

        let bad_label = [
            FrcnnTarget {
                boxes: Tensor::from_slice(&[5.0f32, 5.0, 30.0, 40.0]).view([1, 4]),
                labels: Tensor::from_slice(&[3i64]),
            },
            FrcnnTarget::empty(Device::Cpu),
        ];
        let e = m.forward_train(&imgs, &bad_label).unwrap_err().to_string();
        assert!(e.contains("target 0") && e.contains("labels must be in 1..3"), "{e}");
        let degenerate = [
            FrcnnTarget::empty(Device::Cpu),
            FrcnnTarget {
                boxes: Tensor::from_slice(&[5.0f32, 5.0, 5.0, 40.0]).view([1, 4]),
                labels: Tensor::from_slice(&[1i64]),
            },
        ];
        let e = m.forward_train(&imgs, &degenerate).unwrap_err().to_string();
        assert!(e.contains("target 1") && e.contains("positive width"), "{e}");
        assert!(m.forward_train(&imgs, &targets[..1]).is_err());
    }

    #[test]
    fn no_proposals_give_empty_detections() {
        let vs = nn::VarStore::new(Device::Cpu);
        let mut cfg = FrcnnConfig::new(3).with_sizes(64, 96);
        cfg.rpn.score_thresh = 1.5; // no sigmoid reaches it
        let m = FasterRcnn::new(&vs.root(), &cfg).unwrap();
        let imgs = [
            Tensor::rand([3, 50, 70], (Kind::Float, Device::Cpu)),
            Tensor::rand([3, 64, 40], (Kind::Float, Device::Cpu)),
        ];
        let t = tch::no_grad(|| m.forward_eval_traced(&imgs)).unwrap();
        assert!(t.proposals.iter().all(|p| p.boxes.size() == [0, 4]));
        for d in &t.detections {
            assert_eq!(d.boxes.size(), [0, 4]);
            assert_eq!(d.labels.size(), [0]);
        }
        // NaN pixels flow through without a panic.
        let nan = Tensor::full([3, 40, 40], f64::NAN, (Kind::Float, Device::Cpu));
        let m2 = FasterRcnn::new(
            &nn::VarStore::new(Device::Cpu).root(),
            &FrcnnConfig::new(2).with_sizes(64, 96),
        )
        .unwrap();
        assert!(tch::no_grad(|| m2.forward_eval(&[nan])).is_ok());
    }
}
