//! `fracture train`: split the dataset (or take a saved split), decode the images, and hand over
//! to the architecture's trainer. Flags override the `--hyp` file, which overrides defaults.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{Context, bail};
use fracture_models::yolo::Scale;
use serde_json::json;

use crate::dataset::Dataset;
use crate::dataset::layout::CLASS_NAME;
use crate::dataset::split::{Split, stratified_split};
use crate::train::batch::load_samples;
use crate::train::config::TrainConfig;
use crate::train::optimizer::OptimizerKind;
use crate::train::schedule::LrShape;
use crate::train::yolo::{RunDir, YoloTrainer};

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  \
  fracture train --arch yolo11n --data data/phantoms --out runs/n --epochs 30\n  \
  fracture train --arch yolo11s --data FracAtlas --out runs/s --hyp best.toml --init yolo11s-coco.safetensors\n  \
  fracture train --arch yolo11s --data FracAtlas --out runs/s --resume\n\n\
The study's two-stage schedule (general features at 320, then 416 with the backbone frozen):\n  \
  fracture train --arch yolo11s --data FracAtlas --out runs/s320 --imgsz 320 --epochs 60\n  \
  fracture train --arch yolo11s --data FracAtlas --out runs/s416 --imgsz 416 --epochs 40 \\\n      \
--init runs/s320/weights/best.safetensors --freeze 11")]
pub struct TrainArgs {
    /// yolo11n | yolo11s | yolo11m | yolo11l | yolo11x (frcnn-r50-fpn-v2 comes with its issue).
    #[arg(long)]
    pub arch: String,
    /// Dataset root (FracAtlas layout).
    #[arg(long)]
    pub data: PathBuf,
    /// Run folder: weights/{last,best}.safetensors, metrics.csv, curves, hyp.toml, split.json.
    #[arg(long)]
    pub out: PathBuf,
    /// Hyperparameters (TOML, e.g. written by `fracture tune`); flags below override it.
    #[arg(long)]
    pub hyp: Option<PathBuf>,
    /// A split.json from `fracture split`; default: a stratified 70/15/15 split by --seed.
    #[arg(long)]
    pub split: Option<PathBuf>,
    /// Start from these weights (ultralytics-named safetensors, e.g. COCO-pretrained).
    #[arg(long)]
    pub init: Option<PathBuf>,
    /// Continue the run in --out from its last completed epoch.
    #[arg(long)]
    pub resume: bool,
    /// Passes over the training images (default 100).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Images per step (default 16, as in the study).
    #[arg(long)]
    pub batch: Option<usize>,
    /// Square network input size, a multiple of 32 (default 416, as in the study).
    #[arg(long)]
    pub imgsz: Option<u32>,
    /// adamw | sgd
    #[arg(long, value_parser = parse_optimizer)]
    pub optimizer: Option<OptimizerKind>,
    /// Initial learning rate (default 0.002).
    #[arg(long)]
    pub lr0: Option<f64>,
    /// Cosine instead of linear learning-rate decay.
    #[arg(long)]
    pub cos_lr: bool,
    /// Stop after this many epochs without fitness improvement (default 50; 0 = never).
    #[arg(long)]
    pub patience: Option<usize>,
    /// Switch mosaic off for the last N epochs (default 10).
    #[arg(long)]
    pub close_mosaic: Option<usize>,
    /// Head dropout probability during training (default 0).
    #[arg(long)]
    pub dropout: Option<f64>,
    /// Freeze the first N layers; 11 freezes YOLO11's whole backbone (stage two of the
    /// study's schedule, see the README).
    #[arg(long)]
    pub freeze: Option<usize>,
    /// Positive weight for the classification loss (fractures are rare).
    #[arg(long)]
    pub cls_pos_weight: Option<f64>,
    /// Focal classification loss with this gamma.
    #[arg(long)]
    pub focal_gamma: Option<f64>,
    /// Turn every augmentation off.
    #[arg(long)]
    pub no_augment: bool,
    /// Seed for the split, initialisation, shuffling and augmentation (default 0).
    #[arg(long)]
    pub seed: Option<u64>,
    /// CPU threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// cpu, cuda or cuda:N (CUDA needs a CUDA libtorch; see the README).
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

fn parse_optimizer(s: &str) -> Result<OptimizerKind, String> {
    match s.to_ascii_lowercase().as_str() {
        "adamw" => Ok(OptimizerKind::AdamW),
        "sgd" => Ok(OptimizerKind::Sgd),
        other => Err(format!("unknown optimizer {other:?}: use adamw or sgd")),
    }
}

fn config(args: &TrainArgs) -> anyhow::Result<TrainConfig> {
    let mut cfg = match (&args.hyp, args.resume) {
        (Some(p), _) => TrainConfig::from_toml_file(p)?,
        (None, true) => TrainConfig::from_toml_file(&args.out.join("hyp.toml"))
            .context("resuming needs the run's hyp.toml")?,
        (None, false) => TrainConfig::default(),
    };
    macro_rules! set {
        ($($f:ident),*) => { $( if let Some(v) = args.$f { cfg.$f = v; } )* };
    }
    set!(epochs, batch, imgsz, lr0, patience, close_mosaic, dropout, freeze, seed, threads);
    if let Some(o) = args.optimizer {
        cfg.optimizer = o;
    }
    if args.cos_lr {
        cfg.lr_shape = LrShape::Cosine;
    }
    if args.cls_pos_weight.is_some() {
        cfg.cls_pos_weight = args.cls_pos_weight;
    }
    if args.focal_gamma.is_some() {
        cfg.focal_gamma = args.focal_gamma;
    }
    if args.no_augment {
        cfg.augment = crate::train::augment::AugmentConfig::none();
    }
    cfg.validate()?;
    Ok(cfg)
}

/// The split from a file (image ids) or computed; written into the run folder either way.
fn split(args: &TrainArgs, ds: &Dataset, seed: u64) -> anyhow::Result<Split> {
    let saved = args.out.join("split.json");
    let source =
        args.split.clone().or_else(|| (args.resume && saved.exists()).then(|| saved.clone()));
    let split = if let Some(path) = source {
        let v: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?,
        )
        .with_context(|| format!("{} is not JSON", path.display()))?;
        let ids = |k: &str| -> anyhow::Result<Vec<usize>> {
            let list =
                v[k].as_array().with_context(|| format!("{}: no \"{k}\" list", path.display()))?;
            list.iter()
                .map(|id| {
                    let id = id.as_str().unwrap_or_default();
                    ds.position(id).with_context(|| {
                        format!("{}: image {id} is not in the dataset", path.display())
                    })
                })
                .collect()
        };
        Split { train: ids("train")?, val: ids("val")?, test: ids("test")? }
    } else {
        stratified_split(ds, 0.15, 0.15, seed)?
    };
    let names = |idx: &[usize]| -> Vec<&str> {
        idx.iter().map(|&i| ds.images[i].meta.image_id.as_str()).collect()
    };
    let doc =
        json!({"train": names(&split.train), "val": names(&split.val), "test": names(&split.test)});
    std::fs::write(&saved, serde_json::to_string_pretty(&doc)?)
        .with_context(|| format!("writing {}", saved.display()))?;
    Ok(split)
}

pub fn run(args: &TrainArgs) -> anyhow::Result<()> {
    let Some(letter) = args.arch.strip_prefix("yolo11") else {
        bail!(
            "--arch {}: this build trains yolo11n|s|m|l|x (Faster R-CNN training is not in this build yet)",
            args.arch
        );
    };
    let scale: Scale = letter.parse().map_err(|e| anyhow::anyhow!("--arch {}: {e}", args.arch))?;
    let cfg = config(args)?;
    if !args.resume && args.out.join("state.json").exists() {
        bail!(
            "{} already holds a run: pass --resume to continue it, or choose another --out",
            args.out.display()
        );
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let ds =
        Dataset::load(&args.data).with_context(|| format!("loading {}", args.data.display()))?;
    if !ds.issues.is_empty() {
        eprintln!(
            "note: {} integrity issue(s) in the dataset (see `fracture check`)",
            ds.issues.len()
        );
    }
    let split = split(args, &ds, cfg.seed)?;
    eprintln!(
        "{}: {} train / {} val images ({} / {} fractured), {} epochs at {} px, batch {}",
        args.arch,
        split.train.len(),
        split.val.len(),
        split.train.iter().filter(|&&i| ds.images[i].meta.is_fractured()).count(),
        split.val.iter().filter(|&&i| ds.images[i].meta.is_fractured()).count(),
        cfg.epochs,
        cfg.imgsz,
        cfg.batch
    );
    let train = load_samples(&ds, &split.train)?;
    let val = load_samples(&ds, &split.val)?;
    let mut provenance = HashMap::new();
    provenance.insert("data".to_string(), args.data.display().to_string());
    let data_hash = {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for &i in &split.train {
            h.update(ds.images[i].sha256.as_bytes());
        }
        hex::encode(h.finalize())
    };
    provenance.insert("train_data_sha256".to_string(), data_hash);
    let trainer = YoloTrainer {
        scale,
        classes: vec![CLASS_NAME.to_string()],
        cfg,
        run: RunDir { root: args.out.clone() },
        init: args.init.clone(),
        resume: args.resume,
        device: fracture_models::compute_device::parse_device(&args.device)?,
        provenance,
    };
    let state = trainer.fit(&train, &val)?;
    let best = state.history.iter().find(|r| r.epoch == state.best_epoch);
    println!(
        "done: {} epochs; best epoch {} (mAP50 {:.4}, mAP50-95 {:.4}); weights in {}",
        state.epochs_done,
        state.best_epoch,
        best.map_or(0.0, |r| r.map50),
        best.map_or(0.0, |r| r.map50_95),
        args.out.join("weights").display()
    );
    Ok(())
}
