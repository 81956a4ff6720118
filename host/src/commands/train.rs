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
use crate::train::frcnn::{FrcnnModel, FrcnnTrainer};
use crate::train::optimizer::OptimizerKind;
use crate::train::schedule::LrShape;
use crate::train::trainer::{RunDir, RunState};
use crate::train::yolo::{YoloModel, YoloTrainer};

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  \
  fracture train --arch yolo11n --data data/phantoms --out runs/n --epochs 30\n  \
  fracture train --arch yolo11s --data FracAtlas --out runs/s --hyp best.toml --init yolo11s-coco.safetensors\n  \
  fracture train --arch yolo11s --data FracAtlas --out runs/s --resume\n  \
  fracture train --arch frcnn-r50-fpn-v2 --data FracAtlas --out runs/frcnn --batch 4 --init resnet50-imagenet.safetensors\n\n\
Faster R-CNN's own settings live in the --hyp file's [frcnn] table: loss weights, sample and proposal \
counts, anchor_sizes (one per FPN level, default [32, 64, 128, 256, 512]; smaller for small objects \
at small sizes, saved with the weights). See the README.\n\n\
The study's two-stage schedule (general features at 320, then 416 with the backbone frozen):\n  \
  fracture train --arch yolo11s --data FracAtlas --out runs/s320 --imgsz 320 --epochs 60\n  \
  fracture train --arch yolo11s --data FracAtlas --out runs/s416 --imgsz 416 --epochs 40 \\\n      \
--init runs/s320/weights/best.safetensors --freeze 11")]
pub struct TrainArgs {
    /// yolo11n | yolo11s | yolo11m | yolo11l | yolo11x | frcnn-r50-fpn-v2
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
    /// Start from these weights: ultralytics-named safetensors for YOLO (all tensors must fit);
    /// torchvision-named for Faster R-CNN, partially: an ImageNet ResNet50 (`backbone.body.*`,
    /// or a plain resnet50 state_dict) or a COCO Faster R-CNN (its 91-class predictor is
    /// skipped); a summary says what was loaded.
    #[arg(long)]
    pub init: Option<PathBuf>,
    /// Continue the run in --out from its last completed epoch.
    #[arg(long)]
    pub resume: bool,
    /// Passes over the training images (default 100).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Stop after this many epochs but keep the learning-rate schedule (and mosaic closing)
    /// of the full --epochs; `--resume` later continues past it. `fracture tune` trains its
    /// trials in such steps.
    #[arg(long, value_name = "N")]
    pub stop_after: Option<usize>,
    /// Images per step (default 16, as in the study).
    #[arg(long)]
    pub batch: Option<usize>,
    /// Square network input size, a multiple of 32 (default 416, as in the study). Faster
    /// R-CNN resizes to --min-size / --max-size instead, which default to it.
    #[arg(long)]
    pub imgsz: Option<u32>,
    /// Faster R-CNN: short side after resizing (default: --imgsz).
    #[arg(long)]
    pub min_size: Option<u32>,
    /// Faster R-CNN: cap on the long side after resizing (default: --imgsz).
    #[arg(long)]
    pub max_size: Option<u32>,
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
    /// Focal classification loss with this gamma (Faster R-CNN: objectness and classifier).
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
    if args.min_size.is_some() {
        cfg.frcnn.min_size = args.min_size;
    }
    if args.max_size.is_some() {
        cfg.frcnn.max_size = args.max_size;
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

/// Which detector to train.
enum Arch {
    Yolo(Scale),
    Frcnn,
}

fn arch(name: &str) -> anyhow::Result<Arch> {
    if name == fracture_models::frcnn::ARCH {
        return Ok(Arch::Frcnn);
    }
    let Some(letter) = name.strip_prefix("yolo11") else {
        bail!("--arch {name}: use yolo11n|s|m|l|x or {}", fracture_models::frcnn::ARCH);
    };
    Ok(Arch::Yolo(letter.parse().map_err(|e| anyhow::anyhow!("--arch {name}: {e}"))?))
}

/// Settings one architecture has no use for are errors rather than silently ignored.
fn check_settings(arch: &Arch, cfg: &TrainConfig) -> anyhow::Result<()> {
    if let Arch::Frcnn = arch {
        if cfg.freeze > 0 {
            bail!("--freeze applies to YOLO; Faster R-CNN uses [frcnn] trainable_backbone_layers");
        }
        if cfg.dropout > 0.0 {
            bail!("--dropout applies to YOLO's head, not to Faster R-CNN");
        }
        if cfg.cls_pos_weight.is_some() {
            bail!(
                "--cls-pos-weight applies to YOLO; for Faster R-CNN use --focal-gamma or the \
                 [frcnn] loss weights"
            );
        }
    }
    Ok(())
}

pub fn run(args: &TrainArgs) -> anyhow::Result<()> {
    let state = train(args)?;
    let best = state.history.iter().find(|r| r.epoch == state.best_epoch);
    let stopped = if state.epochs_done < state.config.epochs
        && args.stop_after.is_some_and(|n| state.epochs_done >= n)
    {
        format!(" (--stop-after; {} to go with --resume)", state.config.epochs - state.epochs_done)
    } else {
        String::new()
    };
    println!(
        "done: {} epochs{stopped}; best epoch {} (mAP50 {:.4}, mAP50-95 {:.4}); weights in {}",
        state.epochs_done,
        state.best_epoch,
        best.map_or(0.0, |r| r.map50),
        best.map_or(0.0, |r| r.map50_95),
        args.out.join("weights").display()
    );
    Ok(())
}

/// Everything `fracture train` does but the final summary line: returns the run's state
/// (what `fracture tune` calls for each trial).
pub fn train(args: &TrainArgs) -> anyhow::Result<RunState> {
    let arch = arch(&args.arch)?;
    let mut cfg = config(args)?;
    check_settings(&arch, &cfg)?;
    if let Arch::Frcnn = arch
        && cfg.frcnn.trainable_backbone_layers.is_none()
    {
        // torchvision's default, resolved now so that hyp.toml (and a resume) keeps it.
        cfg.frcnn.trainable_backbone_layers = Some(if args.init.is_some() { 3 } else { 5 });
    }
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
    let size = match arch {
        Arch::Yolo(_) => format!("{} px", cfg.imgsz),
        Arch::Frcnn => format!(
            "min/max size {}/{} px",
            cfg.frcnn.min_size.unwrap_or(cfg.imgsz),
            cfg.frcnn.max_size.unwrap_or(cfg.imgsz)
        ),
    };
    eprintln!(
        "{}: {} train / {} val images ({} / {} fractured), {} epochs at {size}, batch {}",
        args.arch,
        split.train.len(),
        split.val.len(),
        split.train.iter().filter(|&&i| ds.images[i].meta.is_fractured()).count(),
        split.val.iter().filter(|&&i| ds.images[i].meta.is_fractured()).count(),
        cfg.epochs,
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
    let device = fracture_models::compute_device::parse_device(&args.device)?;
    let classes = vec![CLASS_NAME.to_string()];
    let run = RunDir { root: args.out.clone() };
    let state: RunState = match arch {
        Arch::Yolo(scale) => YoloTrainer {
            model: YoloModel::new(scale, classes.len() as i64, cfg.clone(), device),
            classes,
            cfg,
            run,
            init: args.init.clone(),
            resume: args.resume,
            stop_after: args.stop_after,
            device,
            provenance,
        }
        .fit(&train, &val)?,
        Arch::Frcnn => FrcnnTrainer {
            model: FrcnnModel::new(classes.len(), cfg.clone(), device, args.init.is_some()),
            classes,
            cfg,
            run,
            init: args.init.clone(),
            resume: args.resume,
            stop_after: args.stop_after,
            device,
            provenance,
        }
        .fit(&train, &val)?,
    };
    Ok(state)
}
