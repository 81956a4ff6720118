//! A study: what is searched (the space, the base configuration), how (seed, trials, rungs,
//! metric) and on which images (the train/val partitions, by image id, so every worker on
//! every machine trains on the same split). Stored as JSON in the study store; a worker that
//! joins an existing study must bring the same settings.

use std::path::Path;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use super::asha::{Ladder, rungs};
use super::halton::Halton;
use super::space::{Space, apply};
use crate::dataset::Dataset;
use crate::dataset::split::{fold_split, stratified_kfold, stratified_split};
use crate::train::config::TrainConfig;
use crate::train::record::EpochRecord;

/// A job whose worker died this many times is marked failed.
pub const MAX_ATTEMPTS: u32 = 3;

/// The validation number trials are ranked by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
pub enum Metric {
    /// mAP at IoU 0.5.
    #[serde(rename = "map50")]
    #[value(name = "map50")]
    Map50,
    /// mAP averaged over IoU 0.5:0.95.
    #[serde(rename = "map50_95")]
    #[value(name = "map50_95")]
    Map50To95,
    /// 0.1·mAP50 + 0.9·mAP50-95 (what `fracture train` picks `best` by).
    #[serde(rename = "fitness")]
    #[value(name = "fitness")]
    Fitness,
    /// Sum of the validation loss components, lower is better. Only comparable when the space
    /// leaves the loss weights alone (refused otherwise); useful while mAP is still 0.
    #[serde(rename = "val_loss")]
    #[value(name = "val_loss")]
    ValLoss,
}

impl Metric {
    pub fn name(self) -> &'static str {
        match self {
            Metric::Map50 => "map50",
            Metric::Map50To95 => "map50_95",
            Metric::Fitness => "fitness",
            Metric::ValLoss => "val_loss",
        }
    }

    pub fn higher_is_better(self) -> bool {
        !matches!(self, Metric::ValLoss)
    }

    /// The metric of one epoch.
    pub fn of(self, r: &EpochRecord) -> f64 {
        match self {
            Metric::Map50 => r.map50,
            Metric::Map50To95 => r.map50_95,
            Metric::Fitness => 0.1 * r.map50 + 0.9 * r.map50_95,
            Metric::ValLoss => r.val_losses.iter().sum(),
        }
    }
}

/// Settings that change what the loss measures: with them in the space, validation losses of
/// different trials are not comparable.
const LOSS_SCALE_KEYS: [&str; 10] = [
    "box_gain",
    "cls_gain",
    "dfl_gain",
    "cls_pos_weight",
    "focal_gamma",
    "frcnn.loss_objectness",
    "frcnn.loss_rpn_box_reg",
    "frcnn.loss_classifier",
    "frcnn.loss_box_reg",
    "frcnn.focal_alpha",
];

/// Which images train and validate: the images of `pool` minus `val[k]` train partition `k`
/// and `val[k]` validates it. One partition for a plain split, K for K-fold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Partitions {
    pub pool: Vec<String>,
    pub val: Vec<Vec<String>>,
    /// Held out; never trained or validated on by the study.
    pub test: Vec<String>,
    /// K-fold (folders `fold-K`) rather than one split.
    pub kfold: bool,
}

impl Partitions {
    /// From a split file (as `fracture split` writes and `fracture train --split` reads) or a
    /// stratified 70/15/15 split by `seed`; with `folds >= 2`, stratified K-fold over the
    /// split's train + val images (its test images stay out).
    pub fn build(
        ds: &Dataset,
        split_file: Option<&Path>,
        folds: usize,
        seed: u64,
    ) -> anyhow::Result<Self> {
        let id = |i: usize| ds.images[i].meta.image_id.clone();
        let (train, mut val, test): (Vec<String>, Vec<String>, Vec<String>) =
            if let Some(path) = split_file {
                let v: serde_json::Value = serde_json::from_str(
                    &std::fs::read_to_string(path)
                        .with_context(|| format!("reading {}", path.display()))?,
                )
                .with_context(|| format!("{} is not JSON", path.display()))?;
                let ids = |k: &str| -> anyhow::Result<Vec<String>> {
                    let list = v[k]
                        .as_array()
                        .with_context(|| format!("{}: no \"{k}\" list", path.display()))?;
                    list.iter()
                        .map(|x| {
                            let s = x.as_str().unwrap_or_default();
                            ds.position(s).with_context(|| {
                                format!("{}: image {s} is not in the dataset", path.display())
                            })?;
                            Ok(s.to_string())
                        })
                        .collect()
                };
                (ids("train")?, ids("val")?, ids("test")?)
            } else {
                let s = stratified_split(ds, 0.15, 0.15, seed)?;
                (
                    s.train.iter().map(|&i| id(i)).collect(),
                    s.val.iter().map(|&i| id(i)).collect(),
                    s.test.iter().map(|&i| id(i)).collect(),
                )
            };
        let mut pool: Vec<String> = train.iter().chain(&val).cloned().collect();
        pool.sort();
        if folds == 0 {
            val.sort();
            if val.is_empty() || pool.len() == val.len() {
                bail!("the split needs both training and validation images");
            }
            return Ok(Self { pool, val: vec![val], test, kfold: false });
        }
        if folds < 2 {
            bail!("--folds {folds}: use 0 (the split's own validation set) or at least 2");
        }
        let sub = Dataset {
            root: ds.root.clone(),
            images: pool
                .iter()
                .filter_map(|s| ds.position(s).map(|i| ds.images[i].clone()))
                .collect(),
            issues: Vec::new(),
        };
        let fold_of = stratified_kfold(&sub, folds, seed)?;
        let mut vals = Vec::with_capacity(folds);
        for k in 0..folds {
            let (_, v) = fold_split(&fold_of, k);
            if v.is_empty() {
                bail!("--folds {folds}: fold {k} has no images (too few images for {folds} folds)");
            }
            let mut v: Vec<String> =
                v.iter().map(|&i| sub.images[i].meta.image_id.clone()).collect();
            v.sort();
            vals.push(v);
        }
        Ok(Self { pool, val: vals, test, kfold: true })
    }

    pub fn count(&self) -> usize {
        self.val.len()
    }

    /// Partition `k` as a split file for `fracture train --split`.
    pub fn split_json(&self, k: usize) -> serde_json::Value {
        let val = &self.val[k];
        let train: Vec<&String> =
            self.pool.iter().filter(|s| val.binary_search(s).is_err()).collect();
        serde_json::json!({ "train": train, "val": val, "test": self.test })
    }
}

/// Everything that defines a study.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StudySpec {
    pub name: String,
    pub arch: String,
    pub space: Space,
    /// The configuration trials start from (`--hyp`, `--imgsz`, `--batch`; epochs = the last
    /// rung).
    pub base: TrainConfig,
    /// Moves the quasi-random points (and picks the split when none is given).
    pub seed: u64,
    pub trials: usize,
    pub eta: usize,
    /// Epochs at the end of each rung.
    pub rungs: Vec<usize>,
    pub metric: Metric,
    pub partitions: Partitions,
}

impl StudySpec {
    /// Checks the settings together: rungs, the space against the base configuration, and
    /// that `val_loss` is not asked for while the space changes the loss weights.
    pub fn check(&self) -> anyhow::Result<()> {
        if self.trials == 0 {
            bail!("--trials must be at least 1");
        }
        if self.name.is_empty() {
            bail!("--study needs a name");
        }
        let last = *self.rungs.last().context("no rungs")?;
        if self.base.epochs != last {
            bail!("the base configuration's epochs must be the last rung's ({last})");
        }
        self.space.check(&self.base)?;
        if self.metric == Metric::ValLoss
            && let Some(k) = self.space.keys().into_iter().find(|k| LOSS_SCALE_KEYS.contains(k))
        {
            bail!(
                "--metric val_loss compares losses across trials, but the space changes the \
                 loss weight {k}: use --metric fitness (or map50 / map50_95)"
            );
        }
        Ok(())
    }

    pub fn new_rungs(
        min_epochs: usize,
        max_epochs: usize,
        eta: usize,
    ) -> anyhow::Result<Vec<usize>> {
        rungs(min_epochs, max_epochs, eta).map_err(anyhow::Error::msg)
    }

    pub fn ladder(&self) -> Ladder {
        Ladder {
            rungs: self.rungs.clone(),
            eta: self.eta,
            trials: self.trials,
            higher_is_better: self.metric.higher_is_better(),
            max_attempts: MAX_ATTEMPTS,
        }
    }

    /// Trial `i`: its sampled values (Halton point `i`) and configuration.
    pub fn trial(&self, i: usize) -> anyhow::Result<(Vec<(String, toml::Value)>, TrainConfig)> {
        let u = Halton::new(self.space.dims(), self.seed).point(i as u64);
        let values = self.space.values(&u);
        let cfg = apply(&self.base, &values).with_context(|| format!("trial {i}"))?;
        Ok((values, cfg))
    }

    /// The names of the settings in which `other` differs from this study.
    pub fn differences(&self, other: &StudySpec) -> Vec<&'static str> {
        let mut d = Vec::new();
        let mut check = |same: bool, name: &'static str| {
            if !same {
                d.push(name);
            }
        };
        check(self.arch == other.arch, "--arch");
        check(self.space == other.space, "--space");
        check(self.base == other.base, "--hyp / --imgsz / --batch");
        check(self.seed == other.seed, "--seed");
        check(self.trials == other.trials, "--trials");
        check(self.eta == other.eta, "--eta");
        check(self.rungs == other.rungs, "--min-epochs / --max-epochs");
        check(self.metric == other.metric, "--metric");
        check(
            self.partitions.kfold == other.partitions.kfold
                && self.partitions.count() == other.partitions.count(),
            "--folds",
        );
        check(self.partitions == other.partitions, "the split (--split, --data or --seed)");
        d
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn spec(metric: Metric, space: &str) -> StudySpec {
        StudySpec {
            name: "s".into(),
            arch: "yolo11n".into(),
            space: Space::from_toml_str(space).unwrap(),
            base: TrainConfig { epochs: 9, ..Default::default() },
            seed: 0,
            trials: 6,
            eta: 3,
            rungs: vec![1, 3, 9],
            metric,
            partitions: Partitions {
                pool: vec!["a".into(), "b".into(), "c".into()],
                val: vec![vec!["b".into()]],
                test: vec![],
                kfold: false,
            },
        }
    }

    #[test]
    fn trials_follow_the_points_and_val_loss_refuses_loss_weights() {
        let s = spec(
            Metric::Fitness,
            "[lr0]\nlow = 1e-4\nhigh = 1e-2\nlog = true\n[box_gain]\nlow = 5.0\nhigh = 9.0\n",
        );
        s.check().unwrap();
        let (v0, c0) = s.trial(0).unwrap();
        let (_, c1) = s.trial(1).unwrap();
        assert_eq!(v0.len(), 2);
        assert_ne!(c0.lr0, c1.lr0);
        assert_eq!(c0.epochs, 9);
        let e = spec(Metric::ValLoss, "[box_gain]\nlow = 5.0\nhigh = 9.0\n").check().unwrap_err();
        assert!(e.to_string().contains("box_gain"), "{e}");
        spec(Metric::ValLoss, "[lr0]\nlow = 1e-4\nhigh = 1e-2\n").check().unwrap();
        let a = spec(Metric::Fitness, "[lr0]\nlow = 1e-4\nhigh = 1e-2\n");
        let mut b = a.clone();
        b.seed = 1;
        b.trials = 7;
        assert_eq!(a.differences(&b), vec!["--seed", "--trials"]);
        let p = &a.partitions;
        assert_eq!(p.split_json(0)["train"], serde_json::json!(["a", "c"]));
    }
}
