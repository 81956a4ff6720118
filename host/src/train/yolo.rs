//! Training YOLO11 (`fracture train --arch yolo11n|s|m|l|x`): what the shared loop
//! ([`super::trainer`]) needs from it: letterboxed mosaic batches (mosaic off for the last
//! `close_mosaic` epochs), ultralytics' loss (box, cls, dfl), validation at ultralytics' NMS
//! settings, `--init` from ultralytics-named weights (strict) and `--freeze N` (the first N
//! layers).

use std::path::Path;

use fracture_models::metrics::ImagePredictions;
use fracture_models::weights_file;
use fracture_models::yolo::head::{REG_MAX, STRIDES};
use fracture_models::yolo::loss::{ClsLoss, LossGains, YoloLoss};
use fracture_models::yolo::{Scale, Yolo, YoloConfig, load_named};
use tch::{Device, Tensor, nn};

use super::augment::{AugmentConfig, Sample};
use super::batch::{Batch, EpochBatches};
use super::config::TrainConfig;
use super::trainer::{TrainError, TrainableModel, Trainer};
use super::validate::{batch_predictions, validation_nms};

pub const LOSS_NAMES: [&str; 3] = ["box_loss", "cls_loss", "dfl_loss"];

/// YOLO11 of one scale, for the shared loop.
pub struct YoloModel {
    pub scale: Scale,
    pub num_classes: i64,
    pub cfg: TrainConfig,
    pub device: Device,
    loss: YoloLoss,
}

/// A YOLO11 training run.
pub type YoloTrainer = Trainer<YoloModel>;

impl YoloModel {
    pub fn new(scale: Scale, num_classes: i64, cfg: TrainConfig, device: Device) -> Self {
        let cls = match (cfg.focal_gamma, cfg.cls_pos_weight) {
            (Some(gamma), _) => ClsLoss::Focal { gamma, alpha: 0.25 },
            (None, pos_weight) => ClsLoss::Bce { pos_weight },
        };
        let gains =
            LossGains { box_gain: cfg.box_gain, cls_gain: cfg.cls_gain, dfl_gain: cfg.dfl_gain };
        // The loss needs the head's layout only, the same at every scale.
        let loss = YoloLoss::new(num_classes, REG_MAX, &STRIDES, gains, cls);
        Self { scale, num_classes, cfg, device, loss }
    }

    fn imgsz(&self) -> [i64; 2] {
        [i64::from(self.cfg.imgsz); 2]
    }
}

impl TrainableModel for YoloModel {
    type Net = Yolo;
    type Batch = Batch;
    type Output = Vec<Tensor>;

    fn arch(&self) -> String {
        format!("yolo11{}", self.scale.letter())
    }

    fn loss_names(&self) -> &'static [&'static str] {
        &LOSS_NAMES
    }

    fn weights_meta(&self) -> (u32, Vec<(String, String)>) {
        (self.cfg.imgsz, Vec::new())
    }

    fn build(&self, vs: &nn::VarStore) -> Result<Yolo, TrainError> {
        let ycfg = YoloConfig { scale: self.scale, num_classes: self.num_classes };
        let mut model = Yolo::new(&vs.root(), &ycfg).map_err(TrainError::model)?;
        model.set_head_dropout(self.cfg.dropout);
        Ok(model)
    }

    fn init(&self, vs: &nn::VarStore, path: &Path) -> Result<Option<String>, TrainError> {
        let tensors =
            weights_file::load_tensors(path).map_err(|e| TrainError::Weights(e.to_string()))?;
        load_named(vs, tensors, path).map_err(|e| TrainError::Weights(e.to_string()))?;
        Ok(None)
    }

    /// Freezes the first `freeze` layers (`model.0.` … `model.{n-1}.`): no gradients, no
    /// updates. YOLO11's backbone is layers 0–10, so `n = 11` trains only the neck and head (the
    /// study's second stage). Batch-norm statistics of frozen layers still follow the data, as
    /// in ultralytics' `freeze`.
    fn freeze(&self, vs: &nn::VarStore) {
        let n = self.cfg.freeze;
        if n == 0 {
            return;
        }
        let prefixes: Vec<String> = (0..n).map(|i| format!("model.{i}.")).collect();
        for (name, mut t) in vs.variables() {
            if prefixes.iter().any(|p| name.starts_with(p)) {
                let _ = t.requires_grad_(false);
            }
        }
    }

    fn batches<'a>(
        &self,
        samples: &'a [Sample],
        epoch: usize,
        train: bool,
    ) -> Box<dyn Iterator<Item = Batch> + 'a> {
        let cfg = &self.cfg;
        if !train {
            return Box::new(EpochBatches::new(
                samples,
                cfg.batch,
                cfg.imgsz,
                AugmentConfig::none(),
                false,
                0,
            ));
        }
        let mut aug = cfg.augment;
        if epoch + cfg.close_mosaic >= cfg.epochs {
            aug.mosaic = 0.0;
        }
        Box::new(EpochBatches::new(
            samples,
            cfg.batch,
            cfg.imgsz,
            aug,
            true,
            cfg.seed ^ epoch as u64,
        ))
    }

    fn forward(&self, net: &Yolo, batch: &Batch) -> Result<Vec<Tensor>, TrainError> {
        Ok(net.forward_raw(&batch.images.to_device(self.device), true))
    }

    fn loss(&self, out: Vec<Tensor>, batch: &Batch) -> Result<(Tensor, Vec<f64>), TrainError> {
        let (total, parts) = self
            .loss
            .compute(&out, &batch.targets.to_device(self.device), self.imgsz())
            .map_err(TrainError::model)?;
        Ok((total, parts.to_vec()))
    }

    fn validate(
        &self,
        net: &Yolo,
        batch: &Batch,
    ) -> Result<(Vec<ImagePredictions>, Vec<f64>), TrainError> {
        let raw = net.forward_raw(&batch.images.to_device(self.device), false);
        let (_, parts) = self
            .loss
            .compute(&raw, &batch.targets.to_device(self.device), self.imgsz())
            .map_err(TrainError::model)?;
        let preds = batch_predictions(&net.decode(&raw), &batch.samples, &validation_nms())
            .map_err(TrainError::model)?;
        Ok((preds, parts.to_vec()))
    }
}
