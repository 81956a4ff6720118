//! A tune worker: claims jobs from the store until the study has nothing left, and runs each
//! as `fracture train` in this process (the same arguments a person would type: the trial's
//! `--hyp`, the study's `--split`, `--epochs` of the full schedule and `--stop-after` the
//! rung's epochs, `--resume` when the run folder has a checkpoint). A thread renews the job's
//! lease while it trains; a killed worker's lease runs out and another worker (or the rerun
//! command) takes the job over, continuing from the run folder's last checkpoint.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;

use super::store::{self, Claim, EpochRow, Job, Outcome};
use super::study::{Metric, StudySpec};
use crate::commands::train::{TrainArgs, train};
use crate::train::record::EpochRecord;

/// Where and how this worker trains.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// The dataset on this machine.
    pub data: PathBuf,
    /// Run folders (`trial-NNNN[/fold-K]`) and split files. Shared between machines, promoted
    /// trials continue from their checkpoints; otherwise they retrain from epoch 0.
    pub out: PathBuf,
    pub store_url: String,
    pub device: String,
    pub threads: Option<usize>,
    /// Seconds a claim holds without renewal (renewed every third of it).
    pub lease_s: f64,
    /// Pause between asks while other workers' jobs run.
    pub poll: Duration,
}

/// What a worker did.
#[derive(Debug, Clone, Default)]
pub struct WorkerSummary {
    pub worker: String,
    pub jobs: usize,
    pub failed: usize,
}

/// `host:pid[:task]:nonce`: unique per process, readable in the store.
pub fn worker_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "host".into());
    let task = ["SLURM_ARRAY_TASK_ID", "JOB_COMPLETION_INDEX"]
        .iter()
        .find_map(|v| std::env::var(v).ok())
        .map(|t| format!(":{t}"))
        .unwrap_or_default();
    format!("{host}:{}{task}:{:04x}", std::process::id(), rand::random::<u16>())
}

/// The run folder of a trial (and fold).
pub fn run_dir(out: &Path, spec: &StudySpec, trial: usize, fold: usize) -> PathBuf {
    let t = out.join(format!("trial-{trial:04}"));
    if spec.partitions.kfold { t.join(format!("fold-{fold}")) } else { t }
}

fn split_file(out: &Path, k: usize) -> PathBuf {
    out.join("splits").join(format!("partition-{k}.json"))
}

/// Writes `text` through a temporary name and a rename (workers sharing `out` write the same
/// content at the same time).
fn write_atomic(path: &Path, text: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension(format!("partial-{}", std::process::id()));
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

/// Claims and runs jobs until the study has none left for anyone.
pub fn run_worker(spec: &StudySpec, opts: &WorkerOptions) -> anyhow::Result<WorkerSummary> {
    let id = worker_id();
    std::fs::create_dir_all(opts.out.join("splits"))
        .with_context(|| format!("creating {}", opts.out.display()))?;
    for k in 0..spec.partitions.count() {
        write_atomic(
            &split_file(&opts.out, k),
            &serde_json::to_string_pretty(&spec.partitions.split_json(k))?,
        )?;
    }
    let mut store = store::open(&opts.store_url)?;
    let mut summary = WorkerSummary { worker: id.clone(), ..Default::default() };
    let mut waiting = false;
    loop {
        let job = match store.claim(spec, &id, opts.lease_s)? {
            Claim::Done => break,
            Claim::Wait => {
                if !waiting {
                    eprintln!("tune: {id}: waiting for running trials");
                    waiting = true;
                }
                std::thread::sleep(opts.poll);
                continue;
            }
            Claim::Run(job) => job,
        };
        waiting = false;
        eprintln!(
            "tune: {id}: trial {} rung {} (to epoch {} of {}, {}) {}",
            job.trial,
            job.rung,
            job.epochs,
            spec.base.epochs,
            job.kind.as_str(),
            job.params
        );
        let lease = Lease::start(opts, &spec.name, &job, &id);
        let result = run_job(spec, opts, &job);
        if lease.stop() {
            eprintln!(
                "tune: {id}: lost the lease of trial {} rung {} to another worker",
                job.trial, job.rung
            );
        }
        let (outcome, epochs) = match result {
            Ok((metric, result, epochs)) => (Outcome::Done { metric, result }, epochs),
            Err(e) => (Outcome::Failed { error: format!("{e:#}") }, Vec::new()),
        };
        let recorded = store.finish(spec, job.trial, job.rung, &id, &outcome, &epochs)?;
        summary.jobs += 1;
        match (&outcome, recorded) {
            (_, false) => eprintln!(
                "tune: {id}: trial {} rung {}: the job was taken over; result not recorded",
                job.trial, job.rung
            ),
            (Outcome::Done { metric, .. }, true) => eprintln!(
                "tune: {id}: trial {} rung {}: {} {metric:.5}",
                job.trial,
                job.rung,
                spec.metric.name()
            ),
            (Outcome::Failed { error }, true) => {
                summary.failed += 1;
                eprintln!("tune: {id}: trial {} rung {} failed: {error}", job.trial, job.rung);
            }
        }
    }
    Ok(summary)
}

/// `fracture train`'s arguments, parsed exactly as on its command line.
#[derive(Parser)]
struct TrainCommand {
    #[command(flatten)]
    args: TrainArgs,
}

/// Trains every fold of `job` up to the rung's epoch; the metric (mean over folds), the
/// per-fold result and the epochs' numbers.
fn run_job(
    spec: &StudySpec,
    opts: &WorkerOptions,
    job: &Job,
) -> anyhow::Result<(f64, serde_json::Value, Vec<EpochRow>)> {
    let mut values = Vec::new();
    let mut result = Vec::new();
    let mut epochs = Vec::new();
    for fold in 0..spec.partitions.count() {
        let dir = run_dir(&opts.out, spec, job.trial, fold);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let hyp = dir.join("trial.toml");
        std::fs::write(&hyp, &job.hyp).with_context(|| format!("writing {}", hyp.display()))?;
        let split = split_file(&opts.out, fold);
        let mut argv: Vec<OsString> =
            vec!["train".into(), "--arch".into(), spec.arch.clone().into()];
        for (flag, value) in [
            ("--data", opts.data.as_os_str()),
            ("--out", dir.as_os_str()),
            ("--hyp", hyp.as_os_str()),
            ("--split", split.as_os_str()),
        ] {
            argv.push(flag.into());
            argv.push(value.to_os_string());
        }
        argv.extend(["--stop-after".into(), job.epochs.to_string().into()]);
        argv.extend(["--device".into(), opts.device.clone().into()]);
        if let Some(t) = opts.threads {
            argv.extend(["--threads".into(), t.to_string().into()]);
        }
        // A checkpoint: the previous rung's (promotion) or a killed worker's (reclaim).
        if dir.join("state.json").exists() {
            argv.push("--resume".into());
        }
        let args = TrainCommand::try_parse_from(&argv)
            .map_err(|e| anyhow::anyhow!("fracture train arguments: {e}"))?
            .args;
        let state = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| train(&args)))
            .map_err(|p| {
                let msg = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "unknown panic".into());
                anyhow::anyhow!("training panicked: {msg}")
            })?
            .with_context(|| format!("training {}", dir.display()))?;
        let Some(last) = state.history.iter().rev().find(|r| r.epoch <= job.epochs) else {
            bail!("{}: no completed epoch", dir.display());
        };
        let v = spec.metric.of(last);
        values.push(v);
        result.push(fold_result(fold, last, spec.metric));
        epochs.extend(state.history.iter().map(|r| epoch_row(job.trial, fold, r)));
    }
    let mean = values.iter().sum::<f64>() / values.len().max(1) as f64;
    Ok((mean, serde_json::Value::Array(result), epochs))
}

fn fold_result(fold: usize, r: &EpochRecord, metric: Metric) -> serde_json::Value {
    serde_json::json!({
        "fold": fold,
        "epoch": r.epoch,
        "metric": metric.of(r),
        "map50": r.map50,
        "map50_95": r.map50_95,
        "fitness": Metric::Fitness.of(r),
        "val_loss": Metric::ValLoss.of(r),
    })
}

fn epoch_row(trial: usize, fold: usize, r: &EpochRecord) -> EpochRow {
    EpochRow {
        trial,
        fold,
        epoch: r.epoch,
        precision: r.precision,
        recall: r.recall,
        map50: r.map50,
        map50_95: r.map50_95,
        fitness: Metric::Fitness.of(r),
        val_loss: Metric::ValLoss.of(r),
        seconds: r.seconds,
    }
}

/// Renews a job's lease from a thread with its own store connection.
struct Lease {
    stop: mpsc::Sender<()>,
    handle: JoinHandle<bool>,
}

impl Lease {
    fn start(opts: &WorkerOptions, study: &str, job: &Job, worker: &str) -> Self {
        let (stop, rx) = mpsc::channel::<()>();
        let (url, study, worker) = (opts.store_url.clone(), study.to_string(), worker.to_string());
        let (trial, rung, lease_s) = (job.trial, job.rung, opts.lease_s);
        let handle = std::thread::spawn(move || {
            let mut store = None;
            loop {
                match rx.recv_timeout(Duration::from_secs_f64(lease_s / 3.0)) {
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    _ => return false,
                }
                if store.is_none() {
                    store = store::open(&url).ok();
                }
                let Some(s) = store.as_mut() else { continue };
                match s.renew(&study, trial, rung, &worker, lease_s) {
                    Ok(true) => {}
                    Ok(false) => return true,
                    Err(e) => {
                        eprintln!("tune: {worker}: renewing the lease failed (will retry): {e}");
                        store = None;
                    }
                }
            }
        });
        Self { stop, handle }
    }

    /// Stops renewing; true when the job was lost to another worker meanwhile.
    fn stop(self) -> bool {
        let _ = self.stop.send(());
        self.handle.join().unwrap_or(false)
    }
}
