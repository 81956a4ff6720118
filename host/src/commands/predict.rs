//! `fracture predict`: run a trained detector on image files and print its boxes in original
//! pixels — a table for people, or JSON (`--json`) for programs. An image that cannot be read
//! is reported and skipped; the exit status says whether every image was processed.

use crate::detector_choice::{Choice, Family};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::bail;
use fracture_models::bundle::Bundle;
use fracture_models::compute_device::parse_device;
use fracture_models::detector::{Detector, Finding};
use fracture_models::frcnn::{FrcnnPredictOptions, FrcnnPredictor};
use fracture_models::nms::NmsConfig;
use fracture_models::pixels::read_gray;
use fracture_models::yolo::{Precision, PredictOptions, YoloPredictor};
use fracture_runtime::backend::{self, BackendKind, Plan};
use fracture_runtime::{FrcnnOrt, OrtOptions, YoloOrt, YoloTrt, find_or_build};
use fracture_tensorrt::{Precision as TrtPrecision, Shim};
use serde::Serialize;

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  \
  fracture predict --weights runs/n/weights/best.safetensors scan1.png scan2.jpg\n  \
  fracture predict --weights runs/n/weights/best.safetensors --json --conf 0.1 images/*.png > boxes.json\n  \
  fracture predict --weights yolo11s-ultralytics.safetensors --arch yolo11s --nc 80 photo.jpg\n  \
  fracture predict --weights runs/frcnn/weights/best.safetensors --proposals 300 scan1.png\n  \
  fracture predict --weights frcnn-coco.safetensors --arch frcnn-r50-fpn-v2 --nc 90 photo.jpg")]
pub struct PredictArgs {
    /// Weights (safetensors). Files written by `fracture train` say their architecture (YOLO11
    /// or Faster R-CNN); a plain ultralytics or torchvision state_dict also needs --arch and
    /// --nc. Runs on libtorch.
    #[arg(long, required_unless_present = "bundle", conflicts_with = "bundle")]
    pub weights: Option<PathBuf>,
    /// A model bundle (`fracture export --bundle`), verified against its manifest first; it
    /// can run on any backend its files allow (see --backend).
    #[arg(long, value_name = "DIR")]
    pub bundle: Option<PathBuf>,
    /// auto (with --bundle: a TensorRT engine, else ONNX Runtime INT8 when calibrated and
    /// accepted, else ONNX Runtime fp32, else libtorch; the choice and why go to stderr),
    /// torch, ort (ONNX Runtime on the bundle's model.onnx / model.int8.onnx) or tensorrt.
    #[arg(long, default_value = "auto")]
    pub backend: BackendKind,
    /// Images (PNG, JPEG, TIFF; 8 or 16 bit).
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<PathBuf>,
    /// Print JSON: one object per image with its boxes (x1, y1, x2, y2 in original pixels),
    /// scores and classes.
    #[arg(long)]
    pub json: bool,
    /// Architecture of a plain state_dict (yolo11n|s|m|l|x|frcnn-r50-fpn-v2); checked against
    /// the file's own metadata when it has some.
    #[arg(long, requires = "nc")]
    pub arch: Option<String>,
    /// Number of classes of a plain state_dict (Faster R-CNN: without the background, so 90
    /// for torchvision's COCO model).
    #[arg(long, requires = "arch")]
    pub nc: Option<i64>,
    /// Keep boxes scoring above this.
    #[arg(long, default_value_t = 0.25)]
    pub conf: f32,
    /// IoU above which NMS suppresses the lower-scoring box of a class.
    #[arg(long, default_value_t = 0.45)]
    pub iou: f64,
    /// At most this many boxes per image.
    #[arg(long, default_value_t = 300)]
    pub max_det: usize,
    /// Network input size (default: the size the weights were trained at). Faster R-CNN: the
    /// resize rule's min and max size both.
    #[arg(long)]
    pub imgsz: Option<u32>,
    /// Faster R-CNN: RPN proposals scored by the box head (default: the training run's
    /// setting, else torchvision's 1000); the box head's time is proportional to it.
    #[arg(long)]
    pub proposals: Option<i64>,
    /// Pad to the full square instead of the next multiple of 32 (what fixed-shape engines see).
    #[arg(long)]
    pub square: bool,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Forward-pass arithmetic: fp32, bf16 (about twice as fast on CPUs with AVX512-BF16;
    /// scores move by about 0.01) or fp16 (CUDA only).
    #[arg(long, default_value = "fp32")]
    pub precision: Precision,
    /// CPU threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// TensorRT (--bundle): the engine's precision, fp16 or int8 (INT8 only for a bundle
    /// whose INT8 accuracy check passed).
    #[arg(long, default_value = "fp16")]
    pub trt_precision: TrtPrecision,
    /// TensorRT (--bundle): the engine cache, where an engine fitting this bundle, GPU,
    /// TensorRT version and precision is loaded from or built into (default:
    /// $XDG_CACHE_HOME/fracture/engines, else ~/.cache/fracture/engines).
    #[arg(long, value_name = "DIR")]
    pub engine_cache: Option<PathBuf>,
    /// TensorRT (--bundle): the shim library, used exactly (default: $FRACTURE_TRT_SHIM, next
    /// to this executable, then the standard library folders).
    #[arg(long, value_name = "PATH")]
    pub shim: Option<PathBuf>,
}

/// One image's result in the JSON output.
#[derive(Serialize)]
struct ImageResult<'a> {
    image: &'a Path,
    width: u32,
    height: u32,
    boxes: Vec<BoxOut<'a>>,
    /// Wall time for decode, preprocessing, forward and NMS, milliseconds.
    ms: f64,
}

#[derive(Serialize)]
struct BoxOut<'a> {
    x1: f32,
    y1: f32,
    x2: f32,
    y2: f32,
    score: f32,
    class: i64,
    label: &'a str,
}

#[derive(Serialize)]
struct ImageFailure<'a> {
    image: &'a Path,
    error: String,
}

pub fn run(args: &PredictArgs) -> anyhow::Result<()> {
    if let Some(t) = args.threads {
        tch::set_num_threads(t.max(1) as i32);
    }
    if let Some(dir) = &args.bundle {
        return run_bundle(dir, args);
    }
    if !matches!(args.backend, BackendKind::Auto | BackendKind::Torch) {
        bail!(
            "--backend {:?} runs a bundle's exported graph: pass --bundle DIR instead of --weights",
            args.backend
        );
    }
    let weights = weights(args)?;
    match choice(args, weights).family()? {
        Family::Frcnn => predict_all(&frcnn_predictor(args, weights)?, args),
        Family::Yolo => predict_all(&yolo_predictor(args, weights)?, args),
    }
}

fn weights(args: &PredictArgs) -> anyhow::Result<&Path> {
    match &args.weights {
        Some(w) => Ok(w),
        None => bail!("pass --weights FILE or --bundle DIR"),
    }
}

/// A bundle on the backend `--backend` picks (see [`backend::open_first`]).
fn run_bundle(dir: &Path, args: &PredictArgs) -> anyhow::Result<()> {
    enum Loaded {
        Yolo(Box<YoloPredictor>),
        Frcnn(Box<FrcnnPredictor>),
        YoloOrt(Box<YoloOrt>),
        FrcnnOrt(Box<FrcnnOrt>),
        YoloTrt(Box<YoloTrt>),
    }
    let bundle = Bundle::open(dir)?;
    let weights = bundle.weights();
    // The verified manifest says the architecture (the weights need not be read for a
    // backend that runs the exported graph).
    let is_frcnn = bundle.manifest.arch == fracture_models::frcnn::ARCH;
    let chosen = backend::open_first(&bundle, args.backend, |plan| match plan {
        Plan::Torch if is_frcnn => frcnn_predictor(args, &weights)
            .map(|p| Loaded::Frcnn(Box::new(p)))
            .map_err(|e| format!("{e:#}")),
        Plan::Torch => yolo_predictor(args, &weights)
            .map(|p| Loaded::Yolo(Box::new(p)))
            .map_err(|e| format!("{e:#}")),
        // The Faster R-CNN graph runs its own NMS (IoU, detections and proposals fixed at
        // export); --conf still applies.
        Plan::Ort { onnx, .. } if is_frcnn => {
            let ort = OrtOptions { threads: args.threads, ..OrtOptions::default() };
            FrcnnOrt::open_bundle(&bundle, onnx, args.conf, &ort)
                .map(|p| Loaded::FrcnnOrt(Box::new(p)))
                .map_err(|e| e.to_string())
        }
        Plan::Ort { onnx, .. } => {
            let ort = OrtOptions { threads: args.threads, ..OrtOptions::default() };
            YoloOrt::open(onnx, bundle.manifest.classes.clone(), nms(args), &ort)
                .map(|p| Loaded::YoloOrt(Box::new(p)))
                .map_err(|e| e.to_string())
        }
        Plan::TensorRt if is_frcnn => {
            Err("Faster R-CNN bundles run on libtorch (no TensorRT runner for its graph yet)"
                .into())
        }
        Plan::TensorRt => trt_detector(&bundle, args)
            .map(|p| Loaded::YoloTrt(Box::new(p)))
            // One line (the shim's search list has many).
            .map_err(|e| format!("{e:#}").lines().map(str::trim).collect::<Vec<_>>().join(" ")),
    })?;
    eprintln!("backend: {}", chosen.reason);
    match chosen.value {
        Loaded::Yolo(p) => predict_all(p.as_ref(), args),
        Loaded::Frcnn(p) => predict_all(p.as_ref(), args),
        Loaded::YoloOrt(p) => predict_all(p.as_ref(), args),
        Loaded::FrcnnOrt(p) => predict_all(p.as_ref(), args),
        Loaded::YoloTrt(p) => predict_all(p.as_ref(), args),
    }
}

/// The engine cache `--engine-cache` names, else the user's cache folder.
fn engine_cache(args: &PredictArgs) -> anyhow::Result<PathBuf> {
    if let Some(dir) = &args.engine_cache {
        return Ok(dir.clone());
    }
    let base = match (std::env::var_os("XDG_CACHE_HOME"), std::env::var_os("HOME")) {
        (Some(x), _) if !x.is_empty() => PathBuf::from(x),
        (_, Some(h)) if !h.is_empty() => PathBuf::from(h).join(".cache"),
        _ => bail!("no $XDG_CACHE_HOME or $HOME for the engine cache: pass --engine-cache DIR"),
    };
    Ok(base.join("fracture").join("engines"))
}

/// The bundle's TensorRT engine (loaded from the cache, or built into it) as a detector.
fn trt_detector(bundle: &Bundle, args: &PredictArgs) -> anyhow::Result<YoloTrt> {
    let shim = match &args.shim {
        Some(path) => Shim::load_exact(path)?,
        None => Shim::load(None)?,
    };
    let cache = engine_cache(args)?;
    let cached = find_or_build(&shim, bundle, args.trt_precision, &cache, false)?;
    eprintln!("tensorrt: {}: {}", cached.provenance, cached.path.display());
    let m = &bundle.manifest;
    Ok(YoloTrt::new(&shim, cached.engine, m.classes.clone(), nms(args), m.imgsz)?)
}

fn choice<'a>(args: &'a PredictArgs, weights: &'a Path) -> Choice<'a> {
    Choice { weights, arch: args.arch.as_deref(), nc: args.nc }
}

fn nms(args: &PredictArgs) -> NmsConfig {
    NmsConfig { conf: args.conf, iou: args.iou, max_det: args.max_det, ..NmsConfig::default() }
}

fn yolo_predictor(args: &PredictArgs, weights: &Path) -> anyhow::Result<YoloPredictor> {
    let spec = choice(args, weights).yolo_spec()?;
    let opts = PredictOptions {
        imgsz: args.imgsz,
        rect: !args.square,
        nms: nms(args),
        device: parse_device(&args.device)?,
        precision: args.precision,
    };
    // Its errors name the file (and the tensor, when one does not fit).
    Ok(YoloPredictor::load(weights, spec, opts)?)
}

fn frcnn_predictor(args: &PredictArgs, weights: &Path) -> anyhow::Result<FrcnnPredictor> {
    if args.precision != Precision::Fp32 {
        bail!("--precision {}: Faster R-CNN predicts in fp32 only", args.precision.name());
    }
    let classes = choice(args, weights).frcnn_classes();
    let opts = FrcnnPredictOptions {
        score_thresh: f64::from(args.conf),
        nms_thresh: args.iou,
        detections_per_img: i64::try_from(args.max_det).unwrap_or(i64::MAX),
        min_size: args.imgsz.map(i64::from),
        max_size: args.imgsz.map(i64::from),
        proposals: args.proposals,
        device: parse_device(&args.device)?,
    };
    Ok(FrcnnPredictor::load(weights, classes, opts)?)
}

/// Runs `predictor` over every image and prints the results.
fn predict_all<D: Detector>(predictor: &D, args: &PredictArgs) -> anyhow::Result<()> {
    let mut results = Vec::new();
    let mut failed = 0usize;
    for path in &args.images {
        let start = Instant::now();
        let outcome = read_gray(path)
            .map_err(anyhow::Error::from)
            .and_then(|img| Ok((predictor.detect(&img)?, img.width, img.height)));
        let ms = start.elapsed().as_secs_f64() * 1e3;
        match outcome {
            Ok((findings, width, height)) => {
                let boxes = findings.iter().map(|f| box_out(f, predictor.classes())).collect();
                let result = ImageResult { image: path, width, height, boxes, ms };
                if args.json {
                    results.push(serde_json::to_value(&result)?);
                } else {
                    print_table(&result);
                }
            }
            Err(e) => {
                failed += 1;
                eprintln!("error: {}: {e:#}", path.display());
                if args.json {
                    results.push(serde_json::to_value(ImageFailure {
                        image: path,
                        error: format!("{e:#}"),
                    })?);
                }
            }
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    }
    if failed > 0 {
        bail!("{failed} of {} image(s) could not be processed", args.images.len());
    }
    Ok(())
}

fn box_out<'a>(f: &Finding, classes: &'a [String]) -> BoxOut<'a> {
    let label = usize::try_from(f.class).ok().and_then(|i| classes.get(i)).map_or("?", |s| s);
    BoxOut { x1: f.x1, y1: f.y1, x2: f.x2, y2: f.y2, score: f.score, class: f.class, label }
}

fn print_table(r: &ImageResult) {
    println!(
        "{} ({}x{}, {:.1} ms): {} box(es)",
        r.image.display(),
        r.width,
        r.height,
        r.ms,
        r.boxes.len()
    );
    for b in &r.boxes {
        println!(
            "  {:<10} {:.3}  [{:.1}, {:.1}, {:.1}, {:.1}]",
            b.label, b.score, b.x1, b.y1, b.x2, b.y2
        );
    }
}
