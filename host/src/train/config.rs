//! Training hyperparameters: one serialisable struct with the study's defaults (batch 16,
//! input 416), readable from a TOML `--hyp` file (what `fracture tune` writes) and overridable
//! by flags. Names follow ultralytics' where they mean the same thing; what only Faster R-CNN
//! reads lives in its `[frcnn]` table ([`FrcnnHyp`], names after torchvision's arguments).

use std::path::Path;

use serde::{Deserialize, Serialize};

use fracture_models::frcnn::fpn::FPN_LEVEL_NAMES;

use super::augment::AugmentConfig;
use super::optimizer::OptimizerKind;
use super::schedule::LrShape;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch: usize,
    pub imgsz: u32,
    pub optimizer: OptimizerKind,
    pub lr0: f64,
    pub lrf: f64,
    pub lr_shape: LrShape,
    pub momentum: f64,
    pub weight_decay: f64,
    pub warmup_epochs: f64,
    pub warmup_momentum: f64,
    pub warmup_bias_lr: f64,
    /// YOLO loss gains.
    pub box_gain: f64,
    pub cls_gain: f64,
    pub dfl_gain: f64,
    /// Positive weight of the classification BCE (> 1 counters the rarity of fractures).
    pub cls_pos_weight: Option<f64>,
    /// Use focal BCE with this gamma instead of plain BCE.
    pub focal_gamma: Option<f64>,
    /// Dropout on the features entering the head's last 1×1 convs, training only (0 = off,
    /// ultralytics' network).
    pub dropout: f64,
    /// Freeze the first N layers (YOLO11's backbone is layers 0–10: 11 freezes all of it).
    pub freeze: usize,
    /// Global gradient-norm clip.
    pub max_grad_norm: f64,
    /// Epochs without fitness improvement before stopping (0 = never).
    pub patience: usize,
    /// Mosaic is switched off for the last this-many epochs.
    pub close_mosaic: usize,
    pub augment: AugmentConfig,
    pub seed: u64,
    /// CPU threads for libtorch (0 = all cores).
    pub threads: usize,
    /// Faster R-CNN only.
    pub frcnn: FrcnnHyp,
}

/// Faster R-CNN settings (`[frcnn]` in a `--hyp` file). Defaults are torchvision's, except the
/// resize rule, which follows `imgsz` (the study: 416 for both sides).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FrcnnHyp {
    /// Short side after resizing (default: `imgsz`).
    pub min_size: Option<u32>,
    /// Cap on the long side after resizing (default: `imgsz`).
    pub max_size: Option<u32>,
    /// Trainable ResNet layers counted from the top, 0..=5 (default: 3 with `--init`, else 5,
    /// as torchvision's `trainable_backbone_layers`).
    pub trainable_backbone_layers: Option<i64>,
    /// Weights of the four losses in the total.
    pub loss_objectness: f64,
    pub loss_rpn_box_reg: f64,
    pub loss_classifier: f64,
    pub loss_box_reg: f64,
    /// Focal-loss alpha for objectness and classifier when `focal_gamma` is set (0 = no
    /// class weighting).
    pub focal_alpha: f64,
    /// Anchors sampled per image for the RPN loss, and RoIs for the box head's.
    pub rpn_batch_size_per_image: i64,
    pub box_batch_size_per_image: i64,
    /// Proposals kept after the RPN's NMS while training, and while validating / predicting
    /// (the box head's cost is proportional to them).
    pub rpn_post_nms_top_n_train: i64,
    pub rpn_post_nms_top_n_test: i64,
    /// Anchor size in pixels per FPN level P2..P6 (five, ratios 0.5/1/2 on each); default
    /// torchvision's `[32, 64, 128, 256, 512]`. Objects much smaller than the smallest anchor
    /// only ever match one at a low IoU: at small input sizes halve them (`[16, 32, 64, 128,
    /// 256]`). Saved with the weights, so prediction and export use the same.
    pub anchor_sizes: Option<Vec<f64>>,
}

impl Default for FrcnnHyp {
    fn default() -> Self {
        Self {
            min_size: None,
            max_size: None,
            trainable_backbone_layers: None,
            loss_objectness: 1.0,
            loss_rpn_box_reg: 1.0,
            loss_classifier: 1.0,
            loss_box_reg: 1.0,
            focal_alpha: 0.0,
            rpn_batch_size_per_image: 256,
            box_batch_size_per_image: 512,
            rpn_post_nms_top_n_train: 2000,
            rpn_post_nms_top_n_test: 1000,
            anchor_sizes: None,
        }
    }
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: 100,
            batch: 16,
            imgsz: 416,
            optimizer: OptimizerKind::AdamW,
            lr0: 0.002,
            lrf: 0.01,
            lr_shape: LrShape::Linear,
            momentum: 0.9,
            weight_decay: 0.0005,
            warmup_epochs: 3.0,
            warmup_momentum: 0.8,
            warmup_bias_lr: 0.1,
            box_gain: 7.5,
            cls_gain: 0.5,
            dfl_gain: 1.5,
            cls_pos_weight: None,
            focal_gamma: None,
            dropout: 0.0,
            freeze: 0,
            max_grad_norm: 10.0,
            patience: 50,
            close_mosaic: 10,
            augment: AugmentConfig::default(),
            seed: 0,
            threads: 0,
            frcnn: FrcnnHyp::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error("invalid setting: {0}")]
    Invalid(String),
}

impl TrainConfig {
    /// Reads a TOML file; unknown keys are an error naming the key.
    pub fn from_toml_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Io { path: path.display().to_string(), source })?;
        let cfg: Self = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if self.epochs == 0 {
            return bad("epochs must be at least 1".into());
        }
        if self.batch == 0 {
            return bad("batch must be at least 1".into());
        }
        if self.imgsz < 64 || !self.imgsz.is_multiple_of(32) {
            return bad(format!("imgsz {} must be a multiple of 32, at least 64", self.imgsz));
        }
        if !(self.lr0 > 0.0 && self.lr0 < 1.0) {
            return bad(format!("lr0 {} must be in (0, 1)", self.lr0));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad(format!("dropout {} must be in [0, 1)", self.dropout));
        }
        let f = &self.frcnn;
        for (name, v) in [("min_size", f.min_size), ("max_size", f.max_size)] {
            if v.is_some_and(|v| v < 32) {
                return bad(format!("frcnn.{name} must be at least 32"));
            }
        }
        if f.trainable_backbone_layers.is_some_and(|n| !(0..=5).contains(&n)) {
            return bad("frcnn.trainable_backbone_layers must be in 0..=5".into());
        }
        let weights = [f.loss_objectness, f.loss_rpn_box_reg, f.loss_classifier, f.loss_box_reg];
        if weights.iter().any(|w| !(w.is_finite() && *w >= 0.0)) {
            return bad(format!("frcnn loss weights must be finite and >= 0, got {weights:?}"));
        }
        if !(0.0..1.0).contains(&f.focal_alpha) {
            return bad(format!("frcnn.focal_alpha {} must be in [0, 1)", f.focal_alpha));
        }
        let counts = [
            f.rpn_batch_size_per_image,
            f.box_batch_size_per_image,
            f.rpn_post_nms_top_n_train,
            f.rpn_post_nms_top_n_test,
        ];
        if counts.iter().any(|&c| c < 1) {
            return bad(format!("frcnn sample and proposal counts must be >= 1, got {counts:?}"));
        }
        if let Some(sizes) = &f.anchor_sizes
            && (sizes.len() != FPN_LEVEL_NAMES.len()
                || sizes.iter().any(|s| !(s.is_finite() && *s >= 1.0)))
        {
            return bad(format!(
                "frcnn.anchor_sizes needs five sizes >= 1 pixel (P2..P6), got {sizes:?}"
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn toml_round_trip_and_partial_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("hyp.toml");
        let cfg = TrainConfig { epochs: 7, lr0: 0.01, ..Default::default() };
        std::fs::write(&p, cfg.to_toml()).unwrap();
        assert_eq!(TrainConfig::from_toml_file(&p).unwrap(), cfg);
        std::fs::write(&p, "epochs = 3\n[augment]\nfliplr = 0.0\n").unwrap();
        let c = TrainConfig::from_toml_file(&p).unwrap();
        assert_eq!((c.epochs, c.batch, c.augment.fliplr, c.augment.mosaic), (3, 16, 0.0, 1.0));
    }

    #[test]
    fn bad_files_name_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("hyp.toml");
        std::fs::write(&p, "epoch = 3\n").unwrap();
        let e = TrainConfig::from_toml_file(&p).unwrap_err().to_string();
        assert!(e.contains("hyp.toml") && e.contains("epoch"), "{e}");
        std::fs::write(&p, "[frcnn]\nloss_box = 2.0\n").unwrap();
        let e = TrainConfig::from_toml_file(&p).unwrap_err().to_string();
        assert!(e.contains("loss_box"), "{e}");
        std::fs::write(&p, "[frcnn]\nloss_box_reg = -2.0\n").unwrap();
        assert!(TrainConfig::from_toml_file(&p).is_err());
        std::fs::write(&p, "[frcnn]\nloss_box_reg = 2.0\nmin_size = 128\n").unwrap();
        let c = TrainConfig::from_toml_file(&p).unwrap();
        assert_eq!(
            (c.frcnn.loss_box_reg, c.frcnn.min_size, c.frcnn.max_size),
            (2.0, Some(128), None)
        );
        std::fs::write(&p, "[frcnn]\nanchor_sizes = [16, 32, 64, 128]\n").unwrap();
        let e = TrainConfig::from_toml_file(&p).unwrap_err().to_string();
        assert!(e.contains("anchor_sizes needs five"), "{e}");
        std::fs::write(&p, "[frcnn]\nanchor_sizes = [16, 32, 64, 128, 256]\n").unwrap();
        let c = TrainConfig::from_toml_file(&p).unwrap();
        assert_eq!(c.frcnn.anchor_sizes, Some(vec![16.0, 32.0, 64.0, 128.0, 256.0]));
        std::fs::write(&p, "imgsz = 400\n").unwrap();
        assert!(
            TrainConfig::from_toml_file(&p).unwrap_err().to_string().contains("multiple of 32")
        );
    }
}
