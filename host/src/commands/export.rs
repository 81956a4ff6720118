//! `fracture export --bundle`: package trained weights as a model bundle the device installs
//! (`manifest.json` + `weights.safetensors` with our metadata, and for YOLO11 `model.onnx`,
//! the project's own ONNX export at the bundle's input size with a dynamic batch), and
//! `fracture bundle verify` to check one. INT8 and calibration files join with calibration.

use std::path::PathBuf;

use anyhow::{Context, bail};
use fracture_models::bundle::{Bundle, MODEL_ONNX, Manifest, OperatingPoints};
use fracture_models::frcnn::{self, FrcnnPredictOptions, FrcnnPredictor};
use fracture_models::weights_file::{self, WeightsMeta};
use fracture_models::yolo::{ArchSpec, PredictOptions, Scale, YoloPredictor};

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  \
  fracture export --weights runs/n/weights/best.safetensors --bundle bundles/fracture-n-v1\n  \
  fracture export --weights yolo11s.safetensors --arch yolo11s --nc 1 --bundle b --definite 0.6\n  \
  fracture export --weights runs/frcnn/weights/best.safetensors --bundle bundles/frcnn-v1\n\n\
YOLO11 bundles carry ultralytics' letterbox and NMS (0.45, 300 boxes) and model.onnx (opset 17, \
input `images` [batch, 3, imgsz, imgsz], output `output0` [batch, 4 + nc, N] as ultralytics \
exports it); Faster R-CNN bundles \
(frcnn-r50-fpn-v2, fp32 only) carry torchvision's resize rule and post-processing (NMS 0.5, \
100 boxes), with the training sizes kept in the weights' metadata.")]
pub struct ExportArgs {
    /// Weights (safetensors). Plain state_dicts need --arch and --nc, as for `predict`.
    #[arg(long)]
    pub weights: PathBuf,
    /// Bundle folder to write (created; must not already hold a bundle unless --force).
    #[arg(long)]
    pub bundle: PathBuf,
    /// Architecture of a plain state_dict: yolo11n|s|m|l|x or frcnn-r50-fpn-v2.
    #[arg(long, requires = "nc")]
    pub arch: Option<String>,
    #[arg(long, requires = "arch")]
    pub nc: Option<i64>,
    /// Input size of a plain state_dict (files from `fracture train` carry theirs).
    #[arg(long, default_value_t = 416)]
    pub imgsz: u32,
    /// Bundle name shown on the device (default: the folder name).
    #[arg(long)]
    pub id: Option<String>,
    /// High-sensitivity threshold: findings at or above it are reported as suspicious.
    #[arg(long, default_value_t = 0.1)]
    pub suspicious: f32,
    /// High-specificity threshold: findings at or above it are reported as definite.
    #[arg(long, default_value_t = 0.5)]
    pub definite: f32,
    /// A notice shown with every result (e.g. "Not for clinical use").
    #[arg(long)]
    pub notice: Option<String>,
    /// Store the weights as float16 (half the size; they are widened back when loaded, and
    /// the rounding moves scores by ~1e-3).
    #[arg(long)]
    pub half_weights: bool,
    /// Replace a bundle already in the folder.
    #[arg(long)]
    pub force: bool,
}

#[derive(clap::Args, Debug)]
pub struct BundleArgs {
    #[command(subcommand)]
    pub action: BundleAction,
}

#[derive(clap::Subcommand, Debug)]
pub enum BundleAction {
    /// Check every file of a bundle against its manifest's SHA-256.
    Verify {
        /// Bundle folder.
        dir: PathBuf,
    },
}

pub fn run_export(args: &ExportArgs) -> anyhow::Result<()> {
    let meta = match (weights_file::read_meta(&args.weights)?, &args.arch, args.nc) {
        (Some(m), None, None) => m,
        (_, Some(arch), Some(nc)) => {
            let arch = if arch == frcnn::ARCH {
                arch.clone()
            } else {
                let scale: Scale =
                    arch.parse().map_err(|e| anyhow::anyhow!("--arch {arch}: {e}"))?;
                format!("yolo11{}", scale.letter())
            };
            if nc < 1 {
                bail!("--nc {nc}: a detector needs at least one class");
            }
            let classes = if nc == 1 {
                vec!["fracture".to_string()]
            } else {
                (0..nc).map(|i| i.to_string()).collect()
            };
            WeightsMeta { arch, classes, imgsz: args.imgsz, extra: Default::default() }
        }
        (None, _, _) => {
            bail!("{}: no metadata of ours; pass --arch and --nc", args.weights.display())
        }
        (Some(_), _, _) => bail!("--arch and --nc go together"),
    };
    // Proves the weights build the network the manifest will claim (names, shapes).
    if meta.arch == frcnn::ARCH {
        if args.half_weights {
            bail!("--half-weights: Faster R-CNN bundles hold fp32 weights");
        }
        let classes = Some(meta.classes.clone());
        FrcnnPredictor::load(&args.weights, classes, FrcnnPredictOptions::default())?;
    } else {
        let spec = ArchSpec { scale: meta.arch.parse()?, num_classes: meta.classes.len() as i64 };
        YoloPredictor::load(&args.weights, Some(spec), PredictOptions::default())?;
    }
    if args.bundle.join(fracture_models::bundle::MANIFEST).exists() && !args.force {
        bail!("{} already holds a bundle: pass --force to replace it", args.bundle.display());
    }
    let id = match &args.id {
        Some(id) => id.clone(),
        None => args
            .bundle
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_string)
            .context("--bundle has no folder name; pass --id")?,
    };
    // The bundle's weights always carry our metadata, so the device needs no flags.
    let staged = tempfile::NamedTempFile::new_in(staged_dir(&args.bundle))
        .context("creating a temporary file beside the bundle")?;
    let mut tensors = weights_file::load_tensors(&args.weights)?;
    if args.half_weights {
        for (_, t) in &mut tensors {
            if t.is_floating_point() {
                *t = t.to_kind(tch::Kind::Half);
            }
        }
    }
    weights_file::save(staged.path(), &tensors, &meta)?;
    let points = OperatingPoints { suspicious: args.suspicious, definite: args.definite };
    let mut manifest = Manifest::for_weights(&id, &meta, points);
    manifest.notice = args.notice.clone();
    for key in ["mAP50", "mAP50-95"] {
        if let Some(v) = meta.extra.get(key).and_then(|v| v.parse::<f64>().ok()) {
            manifest.metrics.insert(key.to_string(), v);
        }
    }
    // The ONNX model, exported from the weights as the bundle holds them.
    let proto = if meta.arch == frcnn::ARCH {
        // torchvision's post-processing (score 0.05, NMS 0.5, 100 detections) and the
        // weights' own resize rule and proposal count; the device filters at its operating
        // point on top.
        let predictor = FrcnnPredictor::load(staged.path(), None, FrcnnPredictOptions::default())?;
        fracture_models::onnx::export_frcnn(predictor.model(), &meta.classes)?
    } else {
        let spec = ArchSpec { scale: meta.arch.parse()?, num_classes: meta.classes.len() as i64 };
        let opts = PredictOptions { imgsz: Some(meta.imgsz), ..PredictOptions::default() };
        let predictor = YoloPredictor::load(staged.path(), Some(spec), opts)?;
        let size = i64::from(meta.imgsz);
        let mut proto = fracture_models::onnx::export_yolo(predictor.model(), size, size)?;
        // ultralytics' `names` metadata (a Python dict literal its ONNX loader evaluates).
        let names: Vec<String> = meta
            .classes
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{i}: '{}'", c.replace('\\', "\\\\").replace('\'', "\\'")))
            .collect();
        proto.metadata_props.push(fracture_models::onnx::proto::StringStringEntryProto {
            key: Some("names".into()),
            value: Some(format!("{{{}}}", names.join(", "))),
        });
        proto
    };
    let onnx = {
        let file = tempfile::NamedTempFile::new_in(staged_dir(&args.bundle))
            .context("creating a temporary file beside the bundle")?;
        fracture_models::onnx::save(&proto, file.path())?;
        Some(file)
    };
    let extra: Vec<(&str, &std::path::Path)> =
        onnx.iter().map(|f| (MODEL_ONNX, f.path())).collect();
    let bundle = Bundle::write_with(&args.bundle, staged.path(), &extra, manifest)?;
    println!(
        "bundle {} ({}, {} class(es), {} px) written to {}; sha256 {}",
        bundle.manifest.bundle_id,
        bundle.manifest.arch,
        bundle.manifest.classes.len(),
        bundle.manifest.imgsz,
        bundle.dir.display(),
        bundle.sha256
    );
    Ok(())
}

/// Where temporary files beside the bundle folder go (its parent, or `.`).
fn staged_dir(bundle: &std::path::Path) -> &std::path::Path {
    bundle.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."))
}

pub fn run_bundle(args: &BundleArgs) -> anyhow::Result<()> {
    match &args.action {
        BundleAction::Verify { dir } => {
            let b = Bundle::open(dir)?;
            println!(
                "{}: ok ({} file(s) match the manifest; bundle sha256 {})",
                dir.display(),
                b.manifest.files.len(),
                b.sha256
            );
            Ok(())
        }
    }
}
