//! The training loop both detectors share (`fracture train`): epochs of batches through a
//! [`TrainableModel`] (which owns what differs: the network, its batches, forward, loss and
//! validation), the optimiser and learning-rate schedule (warmup, linear or cosine), the EMA of
//! the weights, validation of the EMA weights every epoch, checkpoints `last` and `best` (by
//! fitness 0.1·mAP50 + 0.9·mAP50-95; safetensors with the reference implementation's tensor
//! names and our metadata), `metrics.csv` with the model's loss components, the curves, early
//! stopping (patience), the progress bar with per-stage timings, and resume after an
//! interruption (`state.safetensors` + `state.json`, written after each completed epoch).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use fracture_models::metrics::{ImagePredictions, PrfSummary};
use fracture_models::weights_file::{self, WeightsMeta};
use indicatif::{ProgressBar, ProgressStyle};
use tch::{Device, Kind, Tensor, nn};

use super::augment::Sample;
use super::config::TrainConfig;
use super::ema::Ema;
use super::optimizer::Optimizer;
use super::record::{EpochRecord, append_csv, plot_curves};
use super::schedule::Schedule;
use super::validate::{fitness, summarize};

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

impl TrainError {
    /// A model error from anything displayable.
    pub fn model(e: impl std::fmt::Display) -> Self {
        TrainError::Model(e.to_string())
    }
}

/// What differs between architectures; the loop in [`Trainer::fit`] is the same.
pub trait TrainableModel {
    /// The network (variables live in the store it was built on).
    type Net;
    /// One batch as the network takes it.
    type Batch;
    /// What a training forward hands to the loss.
    type Output;

    /// `yolo11n` ... `frcnn-r50-fpn-v2`.
    fn arch(&self) -> String;
    /// Loss components (columns `train/<name>` and `val/<name>` of `metrics.csv`).
    fn loss_names(&self) -> &'static [&'static str];
    /// The input size for the weights' metadata, and extra metadata entries.
    fn weights_meta(&self) -> (u32, Vec<(String, String)>);
    /// Builds the network under the store's root (the names are the reference's).
    fn build(&self, vs: &nn::VarStore) -> Result<Self::Net, TrainError>;
    /// Loads `--init` weights into the training store; a summary line for the log, if any.
    fn init(&self, vs: &nn::VarStore, path: &Path) -> Result<Option<String>, TrainError>;
    /// Stops gradients of layers the configuration freezes (after [`TrainableModel::init`]).
    fn freeze(&self, _vs: &nn::VarStore) {}
    /// The batches of one epoch: shuffled and augmented for training, as they are otherwise.
    fn batches<'a>(
        &self,
        samples: &'a [Sample],
        epoch: usize,
        train: bool,
    ) -> Box<dyn Iterator<Item = Self::Batch> + 'a>;
    /// Training-mode forward.
    fn forward(&self, net: &Self::Net, batch: &Self::Batch) -> Result<Self::Output, TrainError>;
    /// The weighted, differentiable total and the components (in `loss_names` order).
    fn loss(
        &self,
        out: Self::Output,
        batch: &Self::Batch,
    ) -> Result<(Tensor, Vec<f64>), TrainError>;
    /// Validation of one batch in eval mode (called inside `no_grad`): per-image predictions
    /// for the metrics (any frame shared by boxes and ground truth) and the loss components.
    fn validate(
        &self,
        net: &Self::Net,
        batch: &Self::Batch,
    ) -> Result<(Vec<ImagePredictions>, Vec<f64>), TrainError>;
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
pub fn named(vs: &nn::VarStore) -> Vec<(String, Tensor)> {
    let mut v: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Io { path: path.to_path_buf(), source }
}

/// A training run of one model.
pub struct Trainer<M: TrainableModel> {
    pub model: M,
    pub classes: Vec<String>,
    pub cfg: TrainConfig,
    pub run: RunDir,
    /// Weights to start from (reference-named safetensors), if any.
    pub init: Option<PathBuf>,
    /// Continue `run` from its saved state.
    pub resume: bool,
    /// Stop once this many epochs are done (of `cfg.epochs`), keeping the learning-rate
    /// schedule of the full `cfg.epochs`; a later `resume` continues past it (`fracture tune`
    /// trains in rungs this way). `None`: run to `cfg.epochs`.
    pub stop_after: Option<usize>,
    /// Where the tensors live (CPU, or a CUDA device with a CUDA libtorch).
    pub device: Device,
    /// Free-form provenance written into the weights' metadata.
    pub provenance: HashMap<String, String>,
}

impl<M: TrainableModel> Trainer<M> {
    fn meta(&self, extra: &[(&str, String)]) -> WeightsMeta {
        let (imgsz, model_extra) = self.model.weights_meta();
        let mut m = self.provenance.clone();
        m.extend(model_extra);
        for (k, v) in extra {
            m.insert((*k).to_string(), v.clone());
        }
        WeightsMeta { arch: self.model.arch(), classes: self.classes.clone(), imgsz, extra: m }
    }

    /// Trains on `train` and validates on `val` every epoch; returns the final state.
    pub fn fit(&self, train: &[Sample], val: &[Sample]) -> Result<RunState, TrainError> {
        self.cfg.validate()?;
        if self.stop_after == Some(0) {
            return Err(TrainError::Config(super::config::ConfigError::Invalid(
                "stop_after must be at least 1".into(),
            )));
        }
        if train.is_empty() {
            return Err(TrainError::NoTrainingData);
        }
        if self.cfg.threads > 0 {
            tch::set_num_threads(self.cfg.threads as i32);
        }
        tch::manual_seed(self.cfg.seed as i64);
        std::fs::create_dir_all(self.run.root.join("weights")).map_err(io(&self.run.root))?;
        let loss_names = self.model.loss_names();
        let vs = nn::VarStore::new(self.device);
        let net = self.model.build(&vs)?;
        let bar = progress_bar();
        if let Some(init) = &self.init
            && let Some(line) = self.model.init(&vs, init)?
        {
            say(&bar, line);
        }
        self.model.freeze(&vs);
        // A second network holds the EMA weights for validation.
        let eval_vs = nn::VarStore::new(self.device);
        let eval_net = self.model.build(&eval_vs)?;

        let trainable: Vec<(String, Tensor)> =
            named(&vs).into_iter().filter(|(_, t)| t.requires_grad()).collect();
        let mut opt = Optimizer::new(self.cfg.optimizer, self.cfg.weight_decay, trainable);
        let mut ema = Ema::new(&named(&vs));

        let mut state = RunState {
            arch: self.model.arch(),
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
        bar.set_length((self.cfg.epochs * nb) as u64);
        bar.set_position((state.epochs_done * nb) as u64);

        let end = self.stop_after.map_or(self.cfg.epochs, |n| n.min(self.cfg.epochs));
        for epoch in state.epochs_done..end {
            let started = Instant::now();
            bar.set_prefix(format!("epoch {}/{}", epoch + 1, self.cfg.epochs));
            let mut sums = vec![0.0f64; loss_names.len()];
            let mut seen = 0usize;
            let mut lr_now = 0.0;
            let mut times = StageTimes::default();
            let mut clock = Instant::now();
            for (i, batch) in self.model.batches(train, epoch, true).enumerate() {
                times.add(0, &mut clock);
                let iter = epoch * nb + i;
                let rates = schedule.rates(self.cfg.lr0, epoch, iter, nb);
                lr_now = rates.lr;
                let out = self.model.forward(&net, &batch)?;
                times.add(1, &mut clock);
                let (total, parts) = self.model.loss(out, &batch)?;
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
                let shown: Vec<String> = loss_names
                    .iter()
                    .zip(&sums)
                    .map(|(n, s)| format!("{} {:.3}", short_name(n), s / seen as f64))
                    .collect();
                bar.set_message(shown.join(" "));
                bar.inc(1);
            }
            // Validate the EMA weights.
            copy_into(&eval_vs, ema.tensors());
            let (summary, val_losses) = self.validate(&eval_net, val)?;
            times.add(6, &mut clock);
            let record = EpochRecord {
                epoch: epoch + 1,
                train_losses: sums.iter().map(|s| s / seen.max(1) as f64).collect(),
                val_losses,
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
            let meta =
                self.meta(&[("epoch", (epoch + 1).to_string()), ("fitness", format!("{fit:.5}"))]);
            weights_file::save(&self.run.weights("last"), &ema_tensors, &meta)
                .map_err(|e| TrainError::Weights(e.to_string()))?;
            if fit > state.best_fitness {
                state.best_fitness = fit;
                state.best_epoch = epoch + 1;
                weights_file::save(&self.run.weights("best"), &ema_tensors, &meta)
                    .map_err(|e| TrainError::Weights(e.to_string()))?;
            }
            let csv = self.run.root.join("metrics.csv");
            append_csv(&csv, loss_names, &record).map_err(io(&csv))?;
            state.history.push(record);
            if let Err(e) = plot_curves(&self.run.root, loss_names, &state.history) {
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

    /// Metrics and mean loss components of the EMA network on `val`.
    fn validate(&self, net: &M::Net, val: &[Sample]) -> Result<(PrfSummary, Vec<f64>), TrainError> {
        let mut images = Vec::with_capacity(val.len());
        let mut sums = vec![0.0; self.model.loss_names().len()];
        let mut n = 0usize;
        for batch in self.model.batches(val, 0, false) {
            let (preds, parts) = tch::no_grad(|| self.model.validate(net, &batch))?;
            for (s, p) in sums.iter_mut().zip(parts) {
                *s += p;
            }
            n += 1;
            images.extend(preds);
        }
        Ok((summarize(&images), sums.into_iter().map(|s| s / n.max(1) as f64).collect()))
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
        if state.arch != self.model.arch() {
            return Err(bad(format!("the run trains {}, not {}", state.arch, self.model.arch())));
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
            append_csv(&csv, self.model.loss_names(), r).map_err(io(&csv))?;
        }
        Ok(state)
    }
}

fn progress_bar() -> ProgressBar {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix} [{bar:30}] {pos}/{len} batches, {elapsed} elapsed, ETA {eta} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar
}

/// `box_loss` -> `box`, `loss_rpn_box_reg` -> `rpn_box_reg` (the progress bar's labels).
fn short_name(name: &str) -> &str {
    let n = name.strip_prefix("loss_").unwrap_or(name);
    n.strip_suffix("_loss").unwrap_or(n)
}

/// A line above the progress bar, or on stderr when the bar is hidden (not a terminal).
pub fn say(bar: &ProgressBar, line: String) {
    if bar.is_hidden() {
        eprintln!("{line}");
    } else {
        bar.println(line);
    }
}

/// Copies tensors into a store's variables by name (no autograd).
pub fn copy_into(vs: &nn::VarStore, tensors: &[(String, Tensor)]) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_for_the_bar() {
        assert_eq!(short_name("box_loss"), "box");
        assert_eq!(short_name("loss_rpn_box_reg"), "rpn_box_reg");
        assert_eq!(short_name("loss_classifier"), "classifier");
    }
}
