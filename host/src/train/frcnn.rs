//! Training Faster R-CNN ResNet50-FPN v2 (`fracture train --arch frcnn-r50-fpn-v2`): what the
//! shared loop ([`super::trainer`]) needs from it.
//!
//! - Batches: the images at their own sizes, augmented there (rotation, scale, translation,
//!   flips, brightness, contrast, gamma; no mosaic), handed to the model whose transform
//!   resizes (`[frcnn] min_size` / `max_size`, default `imgsz` for both, the study's 416) and
//!   normalises with the ImageNet statistics: that transform replaces YOLO's letterbox.
//! - Loss: torchvision's four (`loss_objectness`, `loss_rpn_box_reg`, `loss_classifier`,
//!   `loss_box_reg`), weighted by `[frcnn] loss_*`, optionally focal (`focal_gamma`,
//!   `[frcnn] focal_alpha`) for objectness and classifier.
//! - Validation: eval-mode detections (torchvision's post-processing) scored in original
//!   pixels, and the four losses on the eval proposals.
//! - `--init`: any torchvision-named file, partially (an ImageNet ResNet50 for the body, a COCO
//!   model without its predictor), with a summary of what was loaded; trainable backbone
//!   layers default to 3 with `--init` and 5 without, as torchvision's.
//!
//! Class `k` of the dataset is the model's label `k + 1` (0 is background).

use std::path::Path;

use fracture_models::frcnn::predictor::{
    ANCHOR_SIZES_KEY, FrcnnPredictor, PROPOSALS_KEY, anchor_sizes_text,
};
use fracture_models::frcnn::{
    ARCH, FasterRcnn, Focal, FrcnnConfig, FrcnnLosses, FrcnnTarget, LossWeights, load_partial,
};
use fracture_models::metrics::ImagePredictions;
use fracture_models::weights_file;
use tch::{Device, Kind, Tensor, nn};

use super::augment::{AugmentConfig, Sample};
use super::batch::{EpochSamples, Geometry, SampleBatch};
use super::config::TrainConfig;
use super::trainer::{TrainError, TrainableModel, Trainer};

/// torchvision's loss names, in the order of `metrics.csv`.
pub const LOSS_NAMES: [&str; 4] = FrcnnLosses::NAMES;

/// One batch: each image `[3, H, W]` in `[0, 1]` at its own size, with its boxes.
pub struct FrcnnBatch {
    pub images: Vec<Tensor>,
    pub targets: Vec<FrcnnTarget>,
    /// The samples after augmentation (boxes in their pixels), for validation.
    pub samples: Vec<Sample>,
}

/// Faster R-CNN for the shared loop.
pub struct FrcnnModel {
    pub cfg: TrainConfig,
    pub model_cfg: FrcnnConfig,
    pub device: Device,
}

/// A Faster R-CNN training run.
pub type FrcnnTrainer = Trainer<FrcnnModel>;

impl FrcnnModel {
    /// `object_classes` without the background; `has_init`: training starts from `--init`.
    pub fn new(object_classes: usize, cfg: TrainConfig, device: Device, has_init: bool) -> Self {
        let h = &cfg.frcnn;
        let min_size = i64::from(h.min_size.unwrap_or(cfg.imgsz));
        let max_size = i64::from(h.max_size.unwrap_or(cfg.imgsz));
        let mut m = FrcnnConfig::new(object_classes as i64 + 1).with_sizes(min_size, max_size);
        m.backbone.trainable_layers =
            h.trainable_backbone_layers.unwrap_or(if has_init { 3 } else { 5 });
        m.rpn.batch_size_per_image = h.rpn_batch_size_per_image;
        m.rpn.post_nms_top_n_train = h.rpn_post_nms_top_n_train;
        m.rpn.post_nms_top_n_test = h.rpn_post_nms_top_n_test;
        m.roi_heads.batch_size_per_image = h.box_batch_size_per_image;
        if let Some(sizes) = &h.anchor_sizes {
            m.rpn.anchor_sizes.clone_from(sizes);
        }
        m.loss.weights = LossWeights {
            objectness: h.loss_objectness,
            rpn_box_reg: h.loss_rpn_box_reg,
            classifier: h.loss_classifier,
            box_reg: h.loss_box_reg,
        };
        let focal = cfg.focal_gamma.map(|gamma| Focal { gamma, alpha: h.focal_alpha });
        m.loss.objectness_focal = focal;
        m.loss.classifier_focal = focal;
        Self { cfg, model_cfg: m, device }
    }
}

/// The network's inputs of a batch of samples.
fn make_batch(b: SampleBatch) -> FrcnnBatch {
    let images = b.samples.iter().map(|s| FrcnnPredictor::image_tensor(&s.image)).collect();
    let targets = b.samples.iter().map(target_of).collect();
    FrcnnBatch { images, targets, samples: b.samples }
}

/// Boxes with a positive width and height (torchvision refuses others) and labels `class + 1`.
fn target_of(s: &Sample) -> FrcnnTarget {
    let (mut boxes, mut labels) = (Vec::new(), Vec::new());
    for (b, c) in s.boxes.iter().zip(&s.classes) {
        if b[2] > b[0] && b[3] > b[1] {
            boxes.extend_from_slice(b);
            labels.push(c + 1);
        }
    }
    FrcnnTarget {
        boxes: Tensor::from_slice(&boxes).view([-1, 4]),
        labels: Tensor::from_slice(&labels).to_kind(Kind::Int64),
    }
}

impl TrainableModel for FrcnnModel {
    type Net = FasterRcnn;
    type Batch = FrcnnBatch;
    type Output = FrcnnLosses;

    fn arch(&self) -> String {
        ARCH.to_string()
    }

    fn loss_names(&self) -> &'static [&'static str] {
        &LOSS_NAMES
    }

    fn weights_meta(&self) -> (u32, Vec<(String, String)>) {
        let t = &self.model_cfg.transform;
        (
            u32::try_from(t.max_size).unwrap_or(self.cfg.imgsz),
            vec![
                ("min_size".to_string(), t.min_size.to_string()),
                ("max_size".to_string(), t.max_size.to_string()),
                (PROPOSALS_KEY.to_string(), self.model_cfg.rpn.post_nms_top_n_test.to_string()),
                (ANCHOR_SIZES_KEY.to_string(), anchor_sizes_text(&self.model_cfg.rpn.anchor_sizes)),
            ],
        )
    }

    fn build(&self, vs: &nn::VarStore) -> Result<FasterRcnn, TrainError> {
        FasterRcnn::new(&vs.root(), &self.model_cfg).map_err(TrainError::model)
    }

    fn init(&self, vs: &nn::VarStore, path: &Path) -> Result<Option<String>, TrainError> {
        let tensors =
            weights_file::load_tensors(path).map_err(|e| TrainError::Weights(e.to_string()))?;
        let summary =
            load_partial(vs, tensors, path).map_err(|e| TrainError::Weights(e.to_string()))?;
        Ok(Some(summary.to_string()))
    }

    fn batches<'a>(
        &self,
        samples: &'a [Sample],
        epoch: usize,
        train: bool,
    ) -> Box<dyn Iterator<Item = FrcnnBatch> + 'a> {
        let cfg = &self.cfg;
        let (aug, seed) =
            if train { (cfg.augment, cfg.seed ^ epoch as u64) } else { (AugmentConfig::none(), 0) };
        let it = EpochSamples::new(samples, cfg.batch, Geometry::Native, aug, train, seed);
        Box::new(it.map(make_batch))
    }

    fn forward(&self, net: &FasterRcnn, batch: &FrcnnBatch) -> Result<FrcnnLosses, TrainError> {
        net.forward_train(&batch.images, &batch.targets).map_err(TrainError::model)
    }

    fn loss(
        &self,
        out: FrcnnLosses,
        _batch: &FrcnnBatch,
    ) -> Result<(Tensor, Vec<f64>), TrainError> {
        Ok((out.total(&self.model_cfg.loss.weights), out.values().to_vec()))
    }

    fn validate(
        &self,
        net: &FasterRcnn,
        batch: &FrcnnBatch,
    ) -> Result<(Vec<ImagePredictions>, Vec<f64>), TrainError> {
        let (losses, dets) =
            net.forward_validate(&batch.images, &batch.targets).map_err(TrainError::model)?;
        let mut out = Vec::with_capacity(dets.len());
        for (d, s) in dets.iter().zip(&batch.samples) {
            let boxes: Vec<f32> = Vec::try_from(d.boxes.to_kind(Kind::Float).reshape([-1]))
                .map_err(TrainError::model)?;
            let scores: Vec<f32> =
                Vec::try_from(d.scores.to_kind(Kind::Float)).map_err(TrainError::model)?;
            let labels: Vec<i64> = Vec::try_from(&d.labels).map_err(TrainError::model)?;
            out.push(ImagePredictions {
                gt_boxes: s.boxes.clone(),
                gt_classes: s.classes.clone(),
                pred_boxes: boxes.chunks_exact(4).map(|b| [b[0], b[1], b[2], b[3]]).collect(),
                pred_scores: scores,
                pred_classes: labels.iter().map(|l| l - 1).collect(),
            });
        }
        Ok((out, losses.values().to_vec()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use fracture_models::pixels::GrayF32;

    #[test]
    fn targets_drop_degenerate_boxes_and_shift_classes() {
        let s = Sample {
            image: GrayF32::new(10, 10, 0.0),
            boxes: vec![[1.0, 1.0, 5.0, 5.0], [2.0, 2.0, 2.0, 6.0]],
            classes: vec![0, 0],
        };
        let t = target_of(&s);
        assert_eq!(t.boxes.size(), [1, 4]);
        assert_eq!(Vec::<i64>::try_from(&t.labels).unwrap(), vec![1]);
        let empty = target_of(&Sample { boxes: vec![], classes: vec![], ..s });
        assert_eq!((empty.boxes.size(), empty.labels.size()), (vec![0, 4], vec![0]));
    }

    #[test]
    fn config_follows_the_hyperparameters() {
        let mut cfg = TrainConfig { imgsz: 160, focal_gamma: Some(2.0), ..Default::default() };
        cfg.frcnn.min_size = Some(128);
        cfg.frcnn.loss_box_reg = 2.0;
        let m = FrcnnModel::new(1, cfg.clone(), Device::Cpu, true);
        assert_eq!((m.model_cfg.transform.min_size, m.model_cfg.transform.max_size), (128, 160));
        assert_eq!(m.model_cfg.num_classes, 2);
        assert_eq!(m.model_cfg.backbone.trainable_layers, 3);
        assert_eq!(m.model_cfg.loss.weights.box_reg, 2.0);
        assert_eq!(m.model_cfg.loss.classifier_focal, Some(Focal { gamma: 2.0, alpha: 0.0 }));
        assert_eq!(
            FrcnnModel::new(1, cfg, Device::Cpu, false).model_cfg.backbone.trainable_layers,
            5
        );
        assert_eq!(m.weights_meta().0, 160);
    }
}
