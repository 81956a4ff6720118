//! `fracture calibrate`: the command line of [`crate::calibrate`].

use std::collections::BTreeSet;
use std::path::PathBuf;

use anyhow::bail;
use fracture_calibration::{Method, TrtVersion};
use fracture_runtime::OrtOptions;

use crate::calibrate::{CalibrateRequest, calibrate};
use crate::eval::coco_files::write_json;
use crate::eval::split::SplitName;

pub const LONG_ABOUT: &str = "\
INT8-calibrate a YOLO11 bundle and measure what each precision costs.

Calibration images (the training split by default, at most --images, evenly spaced) are
recorded as a manifest (paths + SHA-256) so the calibration can be reproduced; a set under 300
images or without a fractured image is warned about. Each image runs through the traced ONNX
export exactly as the device preprocesses it, and every activation's range is found by each
--method: entropy (TensorRT's KL-divergence search, 2048 bins into 128 levels), percentile
(--percentile, 99.99 by default) and max.

Per method, the bundle's model.onnx is rewritten with QuantizeLinear/DequantizeLinear
(symmetric int8, per-channel weights, per-tensor activations: TensorRT 10's explicit
quantisation) and scored with ONNX Runtime on the evaluation split (val by default), next to
FP32 and an FP16 copy: mAP50 and mAP50-95 as pycocotools computes them. The DFL projection
convolutions stay float; --keep-float NAME keeps more (Conv node or output names).

--auto-keep-float N finds those layers for you. A sensitivity analysis quantises each
convolution alone (with the first --method's ranges), runs it with ONNX Runtime on
--sensitivity-images calibration images (fractured ones first) and measures how far the raw
output moves from FP32's: score changes on every anchor, plus score and size-relative box
changes on the confident anchors, weighted by confidence, so that shifting a small fracture's
box by a few pixels counts more than shifting a large one. The N most damaging stay float in
every method's INT8 model; the report ranks the top layers and lists what was kept, and each
INT8 model's kept_float records the set that reproduces it. Use it when INT8 loses more mAP50
than --max-drop allows: a few float layers (N = 2-6 of yolo11n's ~90 convolutions) often
recover much of the loss at little speed cost (on the demo model, 2 layers took entropy's
mAP50 drop from 0.078 to 0.028). It runs one ONNX Runtime session per convolution: about 25 s
for yolo11n at 256 px with 8 images on 2 cores.

Unless --dry-run, the best INT8 model (by mAP50) goes into the bundle as model.int8.onnx with
calibration.cache (TensorRT's format, `TRT-<version>-EntropyCalibration2`, every activation's
scale) and calibration.json (the image manifest); manifest.json records the check, and the
device's `auto` backend runs INT8 only when the mAP50 drop is within --max-drop.

Writes calibration-report.json and calibration-report.md into --out.";

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  \
  fracture calibrate --bundle bundles/fracture-n-v1 --data FracAtlas --split-file runs/n/split.json\n  \
  fracture calibrate --bundle b --data phantoms --method entropy --images 500 --max-drop 0.02\n  \
  fracture calibrate --bundle b --data phantoms --dry-run --keep-float model.22.cv3.conv\n  \
  fracture calibrate --bundle b --data phantoms --auto-keep-float 4 --sensitivity-images 16")]
pub struct CalibrateArgs {
    /// The bundle (from `fracture export`; YOLO11 with model.onnx).
    #[arg(long, value_name = "DIR")]
    pub bundle: PathBuf,
    /// Dataset folder (FracAtlas layout, e.g. from `fracture synth`).
    #[arg(long)]
    pub data: PathBuf,
    /// A split.json (from `fracture split` or a training run); default: the dataset's lists.
    #[arg(long, value_name = "SPLIT.json")]
    pub split_file: Option<PathBuf>,
    /// The split the calibration images come from.
    #[arg(long, value_enum, default_value_t = SplitName::Train)]
    pub calib_split: SplitName,
    /// The split the models are scored on.
    #[arg(long, value_enum, default_value_t = SplitName::Val)]
    pub eval_split: SplitName,
    /// At most this many calibration images.
    #[arg(long, default_value_t = 500)]
    pub images: usize,
    /// Calibration methods to compare (repeat or comma-separate): entropy, percentile, max.
    #[arg(long, value_delimiter = ',', default_value = "entropy,percentile,max")]
    pub method: Vec<String>,
    /// The percentile of |x| the percentile method keeps.
    #[arg(long, default_value_t = 99.99)]
    pub percentile: f64,
    /// Conv node or output names kept in float (repeat or comma-separate).
    #[arg(long, value_delimiter = ',')]
    pub keep_float: Vec<String>,
    /// Keep float also the N convolutions a per-layer sensitivity analysis finds INT8 hurts
    /// most (0: no analysis). Try 2-6 when INT8 misses --max-drop.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub auto_keep_float: usize,
    /// Calibration images the sensitivity analysis runs (fractured first); more is steadier
    /// and slower.
    #[arg(long, value_name = "K", default_value_t = crate::calibrate::sensitivity::DEFAULT_IMAGES)]
    pub sensitivity_images: usize,
    /// Largest mAP50 drop (FP32 − INT8) the device accepts for running INT8.
    #[arg(long, default_value_t = 0.03)]
    pub max_drop: f64,
    /// TensorRT version written into the cache header (JetPack 6.1+: 10.3.0).
    #[arg(long, default_value = "10.3.0")]
    pub trt_version: String,
    /// Report folder (also holds every scored model).
    #[arg(long, default_value = "calibration-report")]
    pub out: PathBuf,
    /// Compare only; write nothing into the bundle.
    #[arg(long)]
    pub dry_run: bool,
    /// CPU threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
}

fn parse_version(s: &str) -> anyhow::Result<TrtVersion> {
    let parts: Vec<u32> = s.split('.').map(str::parse).collect::<Result<_, _>>()?;
    match *parts.as_slice() {
        [a, b, c] => TrtVersion::new(a, b, c),
        [a, b] => TrtVersion::new(a, b, 0),
        _ => None,
    }
    .ok_or_else(|| anyhow::anyhow!("--trt-version {s}: expected MAJOR.MINOR.PATCH, e.g. 10.3.0"))
}

pub fn run(args: &CalibrateArgs) -> anyhow::Result<()> {
    if let Some(t) = args.threads {
        tch::set_num_threads(t.max(1) as i32);
    }
    let mut methods = Vec::new();
    for m in &args.method {
        methods.push(match m.as_str() {
            "entropy" => Method::Entropy,
            "percentile" => Method::Percentile(args.percentile),
            "max" => Method::Max,
            other => bail!("--method {other}: use entropy, percentile or max"),
        });
    }
    if args.sensitivity_images == 0 {
        bail!("--sensitivity-images: at least 1");
    }
    if methods.is_empty() {
        bail!("--method: name at least one of entropy, percentile, max");
    }
    let req = CalibrateRequest {
        bundle: &args.bundle,
        data: &args.data,
        split_file: args.split_file.as_deref(),
        calib_split: args.calib_split,
        eval_split: args.eval_split,
        max_images: args.images.max(1),
        methods,
        keep_float: args.keep_float.iter().cloned().collect::<BTreeSet<_>>(),
        auto_keep_float: args.auto_keep_float,
        sensitivity_images: args.sensitivity_images,
        max_drop: args.max_drop,
        trt_version: parse_version(&args.trt_version)?,
        out_dir: &args.out,
        ort: OrtOptions { threads: args.threads, ..OrtOptions::default() },
        write: !args.dry_run,
    };
    let report = calibrate(&req)?;
    let md = report.markdown();
    std::fs::write(args.out.join("calibration-report.md"), &md)?;
    write_json(&args.out.join("calibration-report.json"), &report)?;
    print!("{md}");
    eprintln!("report: {}", args.out.join("calibration-report.md").display());
    Ok(())
}
