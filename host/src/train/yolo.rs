//! Training YOLO11 (`fracture train --arch yolo11n|s|m|l|x`): the epoch loop around the shared
//! pieces (batches, optimiser, schedule, EMA, validation, records) with checkpoints `last` and
//! `best` (by fitness 0.1·mAP50 + 0.9·mAP50-95), resume after interruption, early stopping
//! and close-mosaic.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use fracture_models::weights_file::{self, WeightsMeta};
use fracture_models::yolo::loss::{ClsLoss, LossGains, YoloLoss};
use fracture_models::yolo::{Scale, Yolo, YoloConfig, load_named};
use indicatif::{ProgressBar, ProgressStyle};
use tch::{Device, Kind, Tensor, nn};

use super::augment::{AugmentConfig, Sample};
use super::batch::EpochBatches;
use super::config::TrainConfig;
use super::ema::Ema;
use super::optimizer::Optimizer;
use super::record::{EpochRecord, append_csv, plot_curves};
use super::schedule::Schedule;
use super::validate::{batch_predictions, fitness, summarize, validation_nms};

pub const LOSS_NAMES: [&str; 3] = ["box_loss", "cls_loss", "dfl_loss"];
const STATE_FILE: &str = "state.safetensors";
const STATE_JSON: &str = "state.json";

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("{0}")]
    Config(#[from] super::config::ConfigError),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("model: {0}")]
    Model(String),
    #[error("weights: {0}")]
    Weights(String),
    #[error("cannot resume from {path}: {message}")]
    Resume { path: PathBuf, message: String },
    #[error("the training split is empty")]
    NoTrainingData,
    #[error("loss became {value} at epoch {epoch}: lower lr0 or check the labels")]
    Diverged { epoch: usize, value: f64 },
}

/// Progress and outcome of a run.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RunState {
    pub arch: String,
    /// Epochs completed (1-based count).
    pub epochs_done: usize,
    pub step: i64,
    pub ema_updates: u64,
    pub best_fitness: f64,
    pub best_epoch: usize,
    pub history: Vec<EpochRecord>,
    pub config: TrainConfig,
}

/// Where the run writes: `weights/{last,best}.safetensors`, `metrics.csv`, curves, `hyp.toml`,
/// and the resume state.
pub struct RunDir {
    pub root: PathBuf,
}

impl RunDir {
    pub fn weights(&self, name: &str) -> PathBuf {
        self.root.join("weights").join(format!("{name}.safetensors"))
    }
}

/// Named variables of a store, sorted by name.
fn named(vs: &nn::VarStore) -> Vec<(String, Tensor)> {
    let mut v: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Io { path: path.to_path_buf(), source }
}

pub struct YoloTrainer {
    pub scale: Scale,
    pub classes: Vec<String>,
    pub cfg: TrainConfig,
    pub run: RunDir,
    /// Weights to start from (ultralytics-named safetensors), if any.
    pub init: Option<PathBuf>,
    /// Continue `run` from its saved state.
    pub resume: bool,
    /// Where the tensors live (CPU, or a CUDA device with a CUDA libtorch).
    pub device: Device,
    /// Free-form provenance written into the weights' metadata.
    pub provenance: HashMap<String, String>,
}

impl YoloTrainer {
    fn arch(&self) -> String {
        format!("yolo11{}", self.scale.letter())
    }

    fn meta(&self, extra: &[(&str, String)]) -> WeightsMeta {
        let mut m = self.provenance.clone();
        for (k, v) in extra {
            m.insert((*k).to_string(), v.clone());
        }
        WeightsMeta {
            arch: self.arch(),
            classes: self.classes.clone(),
            imgsz: self.cfg.imgsz,
            extra: m,
        }
    }

    /// Trains on `train` and validates on `val` every epoch; returns the final state.
    pub fn fit(&self, train: &[Sample], val: &[Sample]) -> Result<RunState, TrainError> {
        self.cfg.validate()?;
        if train.is_empty() {
            return Err(TrainError::NoTrainingData);
        }
        if self.cfg.threads > 0 {
            tch::set_num_threads(self.cfg.threads as i32);
        }
        tch::manual_seed(self.cfg.seed as i64);
        std::fs::create_dir_all(self.run.root.join("weights")).map_err(io(&self.run.root))?;
        let nc = self.classes.len() as i64;
        let ycfg = YoloConfig { scale: self.scale, num_classes: nc };
        let vs = nn::VarStore::new(self.device);
        let mut model =
            Yolo::new(&vs.root(), &ycfg).map_err(|e| TrainError::Model(e.to_string()))?;
        model.set_head_dropout(self.cfg.dropout);
        if let Some(init) = &self.init {
            let tensors =
                weights_file::load_tensors(init).map_err(|e| TrainError::Weights(e.to_string()))?;
            load_named(&vs, tensors, init).map_err(|e| TrainError::Weights(e.to_string()))?;
        }
        // A second model holds the EMA weights for validation.
        freeze_layers(&vs, self.cfg.freeze);
        let eval_vs = nn::VarStore::new(self.device);
        let eval_model =
            Yolo::new(&eval_vs.root(), &ycfg).map_err(|e| TrainError::Model(e.to_string()))?;

        let trainable: Vec<(String, Tensor)> =
            named(&vs).into_iter().filter(|(_, t)| t.requires_grad()).collect();
        let mut opt = Optimizer::new(self.cfg.optimizer, self.cfg.weight_decay, trainable);
        let mut ema = Ema::new(&named(&vs));
        let cls = match (self.cfg.focal_gamma, self.cfg.cls_pos_weight) {
            (Some(gamma), _) => ClsLoss::Focal { gamma, alpha: 0.25 },
            (None, pos_weight) => ClsLoss::Bce { pos_weight },
        };
        let gains = LossGains {
            box_gain: self.cfg.box_gain,
            cls_gain: self.cfg.cls_gain,
            dfl_gain: self.cfg.dfl_gain,
        };
        let loss_fn = YoloLoss::new(nc, model.reg_max(), &model.strides(), gains, cls);

        let mut state = RunState {
            arch: self.arch(),
            epochs_done: 0,
            step: 0,
            ema_updates: 0,
            best_fitness: f64::NEG_INFINITY,
            best_epoch: 0,
            history: Vec::new(),
            config: self.cfg.clone(),
        };
        if self.resume {
            state = self.load_state(&vs, &mut opt, &mut ema)?;
        } else {
            let hyp = self.run.root.join("hyp.toml");
            std::fs::write(&hyp, self.cfg.to_toml()).map_err(io(&hyp))?;
            let _ = std::fs::remove_file(self.run.root.join("metrics.csv"));
        }

        let schedule = Schedule {
            shape: self.cfg.lr_shape,
            epochs: self.cfg.epochs,
            lrf: self.cfg.lrf,
            warmup_epochs: self.cfg.warmup_epochs,
            warmup_momentum: self.cfg.warmup_momentum,
            warmup_bias_lr: self.cfg.warmup_bias_lr,
            momentum: self.cfg.momentum,
        };
        let nb = train.len().div_ceil(self.cfg.batch);
        let total_steps = (self.cfg.epochs * nb) as u64;
        let bar = ProgressBar::new(total_steps);
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix} [{bar:30}] {pos}/{len} batches, {elapsed} elapsed, ETA {eta} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_position((state.epochs_done * nb) as u64);

        for epoch in state.epochs_done..self.cfg.epochs {
            let started = Instant::now();
            bar.set_prefix(format!("epoch {}/{}", epoch + 1, self.cfg.epochs));
            let mut aug = self.cfg.augment;
            if epoch + self.cfg.close_mosaic >= self.cfg.epochs {
                aug.mosaic = 0.0;
            }
            let batches = EpochBatches::new(
                train,
                self.cfg.batch,
                self.cfg.imgsz,
                aug,
                true,
                self.cfg.seed ^ epoch as u64,
            );
            let mut sums = [0.0f64; 3];
            let mut seen = 0usize;
            let mut lr_now = 0.0;
            let mut times = StageTimes::default();
            let mut clock = Instant::now();
            for (i, batch) in batches.enumerate() {
                times.add(0, &mut clock);
                let iter = epoch * nb + i;
                let rates = schedule.rates(self.cfg.lr0, epoch, iter, nb);
                lr_now = rates.lr;
                let images = batch.images.to_device(self.device);
                let preds = model.forward_raw(&images, true);
                times.add(1, &mut clock);
                let (total, parts) = loss_fn
                    .compute(
                        &preds,
                        &batch.targets.to_device(self.device),
                        [i64::from(self.cfg.imgsz); 2],
                    )
                    .map_err(|e| TrainError::Model(e.to_string()))?;
                let value = total.double_value(&[]);
                if !value.is_finite() {
                    return Err(TrainError::Diverged { epoch: epoch + 1, value });
                }
                times.add(2, &mut clock);
                opt.zero_grad();
                total.backward();
                times.add(3, &mut clock);
                opt.clip_grad_norm(self.cfg.max_grad_norm);
                opt.step(rates.lr, rates.bias_lr, rates.momentum);
                times.add(4, &mut clock);
                ema.update(&named(&vs));
                times.add(5, &mut clock);
                state.step += 1;
                for (s, p) in sums.iter_mut().zip(parts) {
                    *s += p;
                }
                seen += 1;
                bar.set_message(format!(
                    "box {:.3} cls {:.3} dfl {:.3}",
                    sums[0] / seen as f64,
                    sums[1] / seen as f64,
                    sums[2] / seen as f64
                ));
                bar.inc(1);
            }
            // Validate the EMA weights.
            copy_into(&eval_vs, ema.tensors());
            let (summary, val_losses) = self.validate(&eval_model, &loss_fn, val)?;
            times.add(6, &mut clock);
            let record = EpochRecord {
                epoch: epoch + 1,
                train_losses: sums.iter().map(|s| s / seen.max(1) as f64).collect(),
                val_losses: val_losses.to_vec(),
                precision: summary.precision,
                recall: summary.recall,
                map50: summary.map50,
                map50_95: summary.map50_95,
                lr: lr_now,
                seconds: started.elapsed().as_secs_f64(),
                train_seconds: times.training(),
            };
            let fit = fitness(&summary);
            state.epochs_done = epoch + 1;
            state.ema_updates = ema.updates;
            let ema_tensors: Vec<(String, Tensor)> =
                ema.tensors().iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect();
            let meta = self.meta(&[
                ("epoch", (epoch + 1).to_string()),
                ("fitness", format!("{fit:.5}")),
                ("mAP50", format!("{:.5}", summary.map50)),
                ("mAP50-95", format!("{:.5}", summary.map50_95)),
            ]);
            weights_file::save(&self.run.weights("last"), &ema_tensors, &meta)
                .map_err(|e| TrainError::Weights(e.to_string()))?;
            if fit > state.best_fitness {
                state.best_fitness = fit;
                state.best_epoch = epoch + 1;
                weights_file::save(&self.run.weights("best"), &ema_tensors, &meta)
                    .map_err(|e| TrainError::Weights(e.to_string()))?;
            }
            let csv = self.run.root.join("metrics.csv");
            append_csv(&csv, &LOSS_NAMES, &record).map_err(io(&csv))?;
            state.history.push(record);
            if let Err(e) = plot_curves(&self.run.root, &LOSS_NAMES, &state.history) {
                say(&bar, format!("warning: could not draw the curves: {e}"));
            }
            self.save_state(&vs, &opt, &ema, &state)?;
            say(
                &bar,
                format!(
                    "epoch {:>3}: mAP50 {:.4}  mAP50-95 {:.4}  P {:.4}  R {:.4}  fitness {:.4}{}",
                    epoch + 1,
                    summary.map50,
                    summary.map50_95,
                    summary.precision,
                    summary.recall,
                    fit,
                    if state.best_epoch == epoch + 1 { "  (best)" } else { "" }
                ),
            );
            say(
                &bar,
                format!(
                    "           {times}, {:.1} train img/s",
                    train.len() as f64 / times.training()
                ),
            );
            if self.cfg.patience > 0 && epoch + 1 - state.best_epoch >= self.cfg.patience {
                say(
                    &bar,
                    format!(
                        "early stop: no improvement for {} epochs (best epoch {})",
                        self.cfg.patience, state.best_epoch
                    ),
                );
                break;
            }
        }
        bar.finish_and_clear();
        Ok(state)
    }

    /// Validation losses and metrics of `model` (EMA weights) on letterboxed `val`.
    fn validate(
        &self,
        model: &Yolo,
        loss_fn: &YoloLoss,
        val: &[Sample],
    ) -> Result<(fracture_models::metrics::PrfSummary, [f64; 3]), TrainError> {
        let nms = validation_nms();
        let mut images = Vec::with_capacity(val.len());
        let mut sums = [0.0; 3];
        let mut n = 0usize;
        let batches =
            EpochBatches::new(val, self.cfg.batch, self.cfg.imgsz, AugmentConfig::none(), false, 0);
        for batch in batches {
            let (preds, parts) = tch::no_grad(|| -> Result<_, TrainError> {
                let raw = model.forward_raw(&batch.images.to_device(self.device), false);
                let (_, parts) = loss_fn
                    .compute(
                        &raw,
                        &batch.targets.to_device(self.device),
                        [i64::from(self.cfg.imgsz); 2],
                    )
                    .map_err(|e| TrainError::Model(e.to_string()))?;
                Ok((model.decode(&raw), parts))
            })?;
            for (s, p) in sums.iter_mut().zip(parts) {
                *s += p;
            }
            n += 1;
            images.extend(
                batch_predictions(&preds, &batch.samples, &nms)
                    .map_err(|e| TrainError::Model(e.to_string()))?,
            );
        }
        Ok((summarize(&images), sums.map(|s| s / n.max(1) as f64)))
    }

    fn save_state(
        &self,
        vs: &nn::VarStore,
        opt: &Optimizer,
        ema: &Ema,
        state: &RunState,
    ) -> Result<(), TrainError> {
        let mut tensors: Vec<(String, Tensor)> =
            named(vs).into_iter().map(|(n, t)| (format!("model/{n}"), t)).collect();
        tensors.extend(ema.tensors().iter().map(|(n, t)| (format!("ema/{n}"), t.shallow_clone())));
        let (_, opt_state) = opt.state();
        tensors.extend(opt_state.into_iter().map(|(n, t)| (format!("opt/{n}"), t)));
        let meta = self.meta(&[("kind", "resume-state".into())]);
        weights_file::save(&self.run.root.join(STATE_FILE), &tensors, &meta)
            .map_err(|e| TrainError::Weights(e.to_string()))?;
        let json = self.run.root.join(STATE_JSON);
        let text =
            serde_json::to_string_pretty(state).map_err(|e| TrainError::Weights(e.to_string()))?;
        let tmp = json.with_extension("json.partial");
        std::fs::write(&tmp, text).map_err(io(&tmp))?;
        std::fs::rename(&tmp, &json).map_err(io(&json))
    }

    fn load_state(
        &self,
        vs: &nn::VarStore,
        opt: &mut Optimizer,
        ema: &mut Ema,
    ) -> Result<RunState, TrainError> {
        let json = self.run.root.join(STATE_JSON);
        let bad = |message: String| TrainError::Resume { path: self.run.root.clone(), message };
        let text =
            std::fs::read_to_string(&json).map_err(|e| bad(format!("{}: {e}", json.display())))?;
        let state: RunState =
            serde_json::from_str(&text).map_err(|e| bad(format!("{}: {e}", json.display())))?;
        if state.arch != self.arch() {
            return Err(bad(format!("the run trains {}, not {}", state.arch, self.arch())));
        }
        let tensors = weights_file::load_tensors(&self.run.root.join(STATE_FILE))
            .map_err(|e| bad(e.to_string()))?;
        let pick = |prefix: &str| -> Vec<(String, Tensor)> {
            tensors
                .iter()
                .filter_map(|(n, t)| {
                    n.strip_prefix(prefix).map(|s| (s.to_string(), t.shallow_clone()))
                })
                .collect()
        };
        copy_into(vs, &pick("model/"));
        ema.load(&pick("ema/"), state.ema_updates);
        opt.load_state(state.step, &pick("opt/")).map_err(bad)?;
        // metrics.csv keeps only completed epochs.
        let csv = self.run.root.join("metrics.csv");
        let _ = std::fs::remove_file(&csv);
        for r in &state.history {
            append_csv(&csv, &LOSS_NAMES, r).map_err(io(&csv))?;
        }
        Ok(state)
    }
}

/// A line above the progress bar, or on stderr when the bar is hidden (not a terminal).
fn say(bar: &ProgressBar, line: String) {
    if bar.is_hidden() {
        eprintln!("{line}");
    } else {
        bar.println(line);
    }
}

/// Copies tensors into a store's variables by name (no autograd).
/// Freezes the first `n` layers (`model.0.` … `model.{n-1}.`): no gradients, no updates.
/// YOLO11's backbone is layers 0–10, so `n = 11` trains only the neck and head (the study's
/// second stage). Batch-norm statistics of frozen layers still follow the data, as in
/// ultralytics' `freeze`.
fn freeze_layers(vs: &nn::VarStore, n: usize) {
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

fn copy_into(vs: &nn::VarStore, tensors: &[(String, Tensor)]) {
    let vars = vs.variables();
    tch::no_grad(|| {
        for (name, t) in tensors {
            if let Some(v) = vars.get(name) {
                let mut v = v.shallow_clone();
                v.copy_(&t.to_kind(Kind::Float).to_kind(v.kind()));
            }
        }
    });
}

/// Seconds spent per stage of an epoch, for the per-epoch log line (where the time goes).
#[derive(Debug, Default)]
struct StageTimes([f64; 7]);

const STAGES: [&str; 7] = ["data", "forward", "loss", "backward", "optimizer", "ema", "validation"];

impl StageTimes {
    /// Adds the time since `clock` to `stage` and restarts the clock.
    fn add(&mut self, stage: usize, clock: &mut Instant) {
        self.0[stage] += clock.elapsed().as_secs_f64();
        *clock = Instant::now();
    }

    /// Seconds of the training steps (everything but validation).
    fn training(&self) -> f64 {
        self.0[..6].iter().sum()
    }
}

impl std::fmt::Display for StageTimes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> =
            STAGES.iter().zip(self.0).map(|(n, t)| format!("{n} {t:.1} s")).collect();
        write!(f, "{}", parts.join(", "))
    }
}
