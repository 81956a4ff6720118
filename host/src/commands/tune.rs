//! `fracture tune`: define (or rejoin) a study from the flags, run its jobs as a worker, and
//! print the ranked trials / write `best.toml` (see [`crate::tune`]).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::dataset::Dataset;
use crate::train::config::TrainConfig;
use crate::tune::report;
use crate::tune::space::Space;
use crate::tune::store;
use crate::tune::study::{Metric, Partitions, StudySpec};
use crate::tune::worker::{WorkerOptions, run_worker};

#[derive(clap::Args, Debug)]
#[command(
    after_help = "The search space is TOML, one table per hyperparameter named by its key in \
a --hyp file:\n  \
  [lr0]\n  low = 1e-4\n  high = 1e-2\n  log = true\n  \
  [\"augment.fliplr\"]\n  low = 0.0\n  high = 0.5\n  \
  [optimizer]\n  choices = [\"adamw\", \"sgd\"]\n\n\
Examples:\n  \
  fracture tune --data FracAtlas --arch yolo11s --space space.toml --out tune/s --trials 27\n  \
  fracture tune --data FracAtlas --arch yolo11s --space space.toml --out tune/s --folds 5\n  \
  fracture tune --report --out tune/s\n\n\
Several machines (a Slurm job array, a Kubernetes indexed Job) run the same worker command \
against one PostgreSQL store, never SQLite on a network share:\n  \
  fracture tune --worker --store postgres://tune@db:5432/tune --data /data/FracAtlas \
--arch yolo11s --space space.toml --out /shared/tune/s"
)]
pub struct TuneArgs {
    /// Dataset root (FracAtlas layout), on this machine.
    #[arg(long, required_unless_present = "report")]
    pub data: Option<PathBuf>,
    /// yolo11n | yolo11s | yolo11m | yolo11l | yolo11x | frcnn-r50-fpn-v2
    #[arg(long, required_unless_present = "report")]
    pub arch: Option<String>,
    /// Search space TOML (see below).
    #[arg(long, required_unless_present = "report")]
    pub space: Option<PathBuf>,
    /// Study folder: run folders trial-NNNN[/fold-K], splits/, best.toml, trials.csv and the
    /// default store. Workers on several machines should share it (promoted trials continue
    /// from their checkpoints; elsewhere they retrain from epoch 0).
    #[arg(long)]
    pub out: PathBuf,
    /// sqlite:PATH (default sqlite:OUT/study.sqlite3) or postgres://USER@HOST:PORT/DB.
    #[arg(long)]
    pub store: Option<String>,
    /// Study name within the store.
    #[arg(long, default_value = "default")]
    pub study: String,
    /// Trials to start.
    #[arg(long, default_value_t = 6)]
    pub trials: usize,
    /// Epochs of the first rung; rungs are min·eta^k epochs, up to --max-epochs.
    #[arg(long, default_value_t = 1)]
    pub min_epochs: usize,
    /// Epochs of the full schedule (the last rung); every trial's learning rate decays over it.
    #[arg(long, default_value_t = 9)]
    pub max_epochs: usize,
    /// Reduction factor: the best 1/eta of a rung move up.
    #[arg(long, default_value_t = 3)]
    pub eta: usize,
    /// Stratified k-fold cross-validation over the split's train + val images (the metric is
    /// the mean over folds); 0 = the split's own validation set.
    #[arg(long, default_value_t = 0)]
    pub folds: usize,
    /// What ranks trials: map50 | map50_95 | fitness (0.1·mAP50 + 0.9·mAP50-95) | val_loss.
    #[arg(long, value_enum, default_value_t = Metric::Fitness)]
    pub metric: Metric,
    /// Moves the quasi-random points; also picks the split when --split is not given.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Base hyperparameters (TOML as for `fracture train --hyp`) the space's values replace.
    #[arg(long)]
    pub hyp: Option<PathBuf>,
    /// A split.json from `fracture split`; default: stratified 70/15/15 by --seed.
    #[arg(long)]
    pub split: Option<PathBuf>,
    /// Only claim and run jobs until none is left, then exit (for schedulers); no report.
    #[arg(long, conflicts_with = "report")]
    pub worker: bool,
    /// Print the ranked table and write best.toml and trials.csv from the store; train nothing.
    #[arg(long)]
    pub report: bool,
    /// Network input size for every trial (default: the base hyperparameters').
    #[arg(long)]
    pub imgsz: Option<u32>,
    /// Images per step for every trial.
    #[arg(long)]
    pub batch: Option<usize>,
    /// CPU threads of this worker's training.
    #[arg(long)]
    pub threads: Option<usize>,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Seconds a claimed job stays this worker's without renewal (renewed every third of it);
    /// after a worker dies, its job is taken over once this runs out.
    #[arg(long, default_value_t = 120.0)]
    pub lease: f64,
}

fn store_url(args: &TuneArgs) -> String {
    args.store
        .clone()
        .unwrap_or_else(|| format!("sqlite:{}", args.out.join("study.sqlite3").display()))
}

/// The study the flags describe.
fn spec(args: &TuneArgs) -> anyhow::Result<StudySpec> {
    let (Some(data), Some(arch), Some(space)) = (&args.data, &args.arch, &args.space) else {
        bail!("--data, --arch and --space are needed");
    };
    let space = Space::from_file(space)?;
    let mut base = match &args.hyp {
        Some(p) => TrainConfig::from_toml_file(p)?,
        None => TrainConfig::default(),
    };
    if let Some(v) = args.imgsz {
        base.imgsz = v;
    }
    if let Some(v) = args.batch {
        base.batch = v;
    }
    let rungs = StudySpec::new_rungs(args.min_epochs, args.max_epochs, args.eta)?;
    base.epochs = args.max_epochs;
    base.validate()?;
    let ds = Dataset::load(data).with_context(|| format!("loading {}", data.display()))?;
    let partitions = Partitions::build(&ds, args.split.as_deref(), args.folds, args.seed)?;
    let spec = StudySpec {
        name: args.study.clone(),
        arch: arch.clone(),
        space,
        base,
        seed: args.seed,
        trials: args.trials,
        eta: args.eta,
        rungs,
        metric: args.metric,
        partitions,
    };
    spec.check()?;
    Ok(spec)
}

fn report(args: &TuneArgs, store: &mut dyn store::Store, spec: &StudySpec) -> anyhow::Result<()> {
    let trials = store.trials(&spec.name)?;
    let jobs = store.jobs(&spec.name)?;
    let ranked = report::rank(spec, &trials, &jobs);
    let running =
        jobs.iter().filter(|j| j.row.state == crate::tune::asha::JobState::Running).count();
    println!(
        "study {:?}: {} of {} trials, rungs {:?} epochs, ranked by {}{}",
        spec.name,
        trials.len(),
        spec.trials,
        spec.rungs,
        spec.metric.name(),
        if running > 0 { format!(" ({running} job(s) still running)") } else { String::new() }
    );
    print!("{}", report::table(spec, &ranked));
    match report::write(&args.out, spec, &ranked)? {
        Some(best) => println!("best configuration: {}", best.display()),
        None => println!("no trial has finished a rung yet"),
    }
    println!("all trials: {}", args.out.join("trials.csv").display());
    Ok(())
}

pub fn run(args: &TuneArgs) -> anyhow::Result<()> {
    let url = store_url(args);
    if args.report {
        let mut store = store::open(&url)?;
        let spec = store
            .study(&args.study)?
            .with_context(|| format!("no study {:?} in {url}", args.study))?;
        return report(args, store.as_mut(), &spec);
    }
    if !(args.lease >= 3.0 && args.lease.is_finite()) {
        bail!("--lease must be at least 3 seconds");
    }
    let wanted = spec(args)?;
    let mut store = store::open(&url)?;
    let spec = store.ensure_study(&wanted)?;
    let differ = spec.differences(&wanted);
    if !differ.is_empty() {
        bail!(
            "study {:?} in {url} was created with other settings ({}); rerun with the same \
             flags, or name a new study with --study",
            spec.name,
            differ.join(", ")
        );
    }
    let opts = WorkerOptions {
        data: args.data.clone().context("--data is needed")?,
        out: args.out.clone(),
        store_url: url,
        device: args.device.clone(),
        threads: args.threads,
        lease_s: args.lease,
        poll: Duration::from_secs_f64((args.lease / 4.0).min(2.0)),
    };
    let summary = run_worker(&spec, &opts)?;
    eprintln!(
        "tune: {}: ran {} job(s), {} failed; nothing left to claim",
        summary.worker, summary.jobs, summary.failed
    );
    if !args.worker {
        report(args, store.as_mut(), &spec)?;
    }
    Ok(())
}
