//! YOLO11 inference end to end on one image: rebuild the network a weights file describes,
//! fuse it, then letterbox → forward → NMS → boxes back in original pixels. The same path
//! serves `fracture predict`, evaluation and the device daemon's libtorch backend.

use std::path::{Path, PathBuf};

use tch::{Device, Kind, Tensor, nn::VarStore};

use super::{Scale, Yolo, YoloConfig, YoloError, load_named};
use crate::detector::{Detector, Finding};
use crate::letterbox::Letterbox;
use crate::nms::{NmsConfig, NmsError, non_max_suppression};
use crate::pixels::GrayF32;
use crate::tensor::{TensorError, batch_from_gray, channels_last};
use crate::weights_file::{self, WeightsFileError};

/// The network's stride: letterboxed inputs are multiples of it.
const MAX_STRIDE: u32 = 32;

#[derive(Debug, thiserror::Error)]
pub enum PredictError {
    #[error(transparent)]
    File(#[from] WeightsFileError),
    #[error(transparent)]
    Weights(#[from] super::WeightsError),
    #[error(transparent)]
    Model(#[from] YoloError),
    #[error(transparent)]
    Nms(#[from] NmsError),
    #[error(transparent)]
    Tensor(#[from] TensorError),
    #[error("{path}: architecture `{arch}` is not a YOLO11 model (yolo11n|s|m|l|x)")]
    NotYolo { path: PathBuf, arch: String },
    #[error(
        "{path}: the file says {file_arch} with {file_nc} class(es) but {arch} with {nc} was asked for"
    )]
    ArchMismatch { path: PathBuf, file_arch: String, file_nc: usize, arch: String, nc: i64 },
    #[error("input size {0} must be a positive multiple of 32")]
    ImageSize(u32),
    #[error("fp16 inference needs a CUDA device; on CPU use bf16 or fp32")]
    HalfOnCpu,
}

/// What to build when a file carries no metadata of ours (a plain ultralytics state_dict), or
/// to check against when it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArchSpec {
    pub scale: Scale,
    pub num_classes: i64,
}

/// Arithmetic of the forward pass. Decoding, NMS and boxes stay float32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    #[default]
    Fp32,
    /// bfloat16: about twice as fast on CPUs with AVX512-BF16 or AMX; scores move by ~1e-2.
    Bf16,
    /// float16, for CUDA devices.
    Fp16,
}

impl Precision {
    pub fn kind(self) -> Kind {
        match self {
            Precision::Fp32 => Kind::Float,
            Precision::Bf16 => Kind::BFloat16,
            Precision::Fp16 => Kind::Half,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Bf16 => "bf16",
            Precision::Fp16 => "fp16",
        }
    }
}

impl std::str::FromStr for Precision {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "fp32" | "float32" => Ok(Precision::Fp32),
            "bf16" | "bfloat16" => Ok(Precision::Bf16),
            "fp16" | "half" | "float16" => Ok(Precision::Fp16),
            other => Err(format!("unknown precision `{other}`: use fp32, bf16 or fp16")),
        }
    }
}

/// Inference settings.
#[derive(Debug, Clone, PartialEq)]
pub struct PredictOptions {
    /// Network input size; `None` takes the one the weights were trained at (416 when unknown).
    pub imgsz: Option<u32>,
    /// Pad only to a multiple of 32 (ultralytics' `predict`) instead of the full square
    /// (fixed shapes, as exported engines need).
    pub rect: bool,
    pub nms: NmsConfig,
    pub device: Device,
    pub precision: Precision,
}

impl Default for PredictOptions {
    fn default() -> Self {
        Self {
            imgsz: None,
            rect: true,
            nms: NmsConfig::default(),
            device: Device::Cpu,
            precision: Precision::Fp32,
        }
    }
}

/// A fused YOLO11 ready to predict.
pub struct YoloPredictor {
    _vs: VarStore,
    model: Yolo,
    classes: Vec<String>,
    imgsz: u32,
    opts: PredictOptions,
}

impl YoloPredictor {
    /// Loads `path` (safetensors with ultralytics names). Our files say what they hold;
    /// a plain state_dict needs `spec`. When both exist they must agree.
    pub fn load(
        path: &Path,
        spec: Option<ArchSpec>,
        opts: PredictOptions,
    ) -> Result<Self, PredictError> {
        let meta = weights_file::read_meta(path)?;
        let (cfg, classes, trained_at) = match (meta, spec) {
            (Some(m), spec) => {
                let scale: Scale = m.arch.parse().map_err(|_| PredictError::NotYolo {
                    path: path.to_path_buf(),
                    arch: m.arch.clone(),
                })?;
                let nc = m.classes.len() as i64;
                if let Some(s) = spec
                    && (s.scale != scale || s.num_classes != nc)
                {
                    return Err(PredictError::ArchMismatch {
                        path: path.to_path_buf(),
                        file_arch: m.arch,
                        file_nc: m.classes.len(),
                        arch: format!("yolo11{}", s.scale.letter()),
                        nc: s.num_classes,
                    });
                }
                (YoloConfig { scale, num_classes: nc }, m.classes, Some(m.imgsz))
            }
            (None, Some(s)) => {
                let classes = (0..s.num_classes).map(|i| i.to_string()).collect();
                (YoloConfig { scale: s.scale, num_classes: s.num_classes }, classes, None)
            }
            (None, None) => {
                return Err(WeightsFileError::NoMetadata { path: path.to_path_buf() }.into());
            }
        };
        let imgsz = opts.imgsz.or(trained_at).unwrap_or(416);
        if imgsz == 0 || !imgsz.is_multiple_of(MAX_STRIDE) {
            return Err(PredictError::ImageSize(imgsz));
        }
        if opts.precision == Precision::Fp16 && opts.device == Device::Cpu {
            return Err(PredictError::HalfOnCpu);
        }
        let mut vs = VarStore::new(opts.device);
        let mut model = Yolo::new(&vs.root(), &cfg)?;
        load_named(&vs, weights_file::load_tensors(path)?, path)?;
        if opts.precision != Precision::Fp32 {
            vs.set_kind(opts.precision.kind());
        }
        model.fuse();
        Ok(Self { _vs: vs, model, classes, imgsz, opts })
    }

    pub fn imgsz(&self) -> u32 {
        self.imgsz
    }

    /// The fused network (for export).
    pub fn model(&self) -> &Yolo {
        &self.model
    }

    pub fn options(&self) -> &PredictOptions {
        &self.opts
    }

    /// The letterbox this predictor applies to an image of the given size.
    pub fn letterbox_for(&self, width: u32, height: u32) -> Letterbox {
        if self.opts.rect {
            Letterbox::rect(width, height, self.imgsz, MAX_STRIDE)
        } else {
            Letterbox::square(width, height, self.imgsz)
        }
    }

    /// The network's input tensor `[1, 3, h, w]` for `image`, and the letterbox used.
    pub fn preprocess(&self, image: &GrayF32) -> Result<(Tensor, Letterbox), PredictError> {
        let lb = self.letterbox_for(image.width, image.height);
        let x = batch_from_gray(&[lb.apply(image)])?
            .to_device(self.opts.device)
            .to_kind(self.opts.precision.kind());
        let x = channels_last(&x);
        Ok((x, lb))
    }

    /// Decoded predictions `[1, 4 + nc, N]` for a preprocessed input.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor, PredictError> {
        Yolo::check_input(x)?;
        let x = x.to_kind(self.opts.precision.kind());
        Ok(tch::no_grad(|| self.model.forward_inference(&x)))
    }

    /// Backbone embedding `[1, C]` (float32) of `image`, preprocessed exactly as for
    /// detection (see [`Yolo::embed`]).
    pub fn embed(&self, image: &GrayF32) -> Result<Tensor, PredictError> {
        let (x, _) = self.preprocess(image)?;
        Yolo::check_input(&x)?;
        Ok(tch::no_grad(|| self.model.embed(&x)))
    }

    /// NMS and the mapping back to original pixels.
    pub fn postprocess(&self, pred: &Tensor, lb: &Letterbox) -> Result<Vec<Finding>, PredictError> {
        Ok(postprocess(pred, lb, &self.opts.nms)?)
    }
}

/// NMS on decoded predictions `[1, 4 + nc, N]` (input pixels) and the boxes mapped back to
/// original pixels: the one post-processing path of every YOLO backend (libtorch, ONNX
/// Runtime, TensorRT), so backends differ only in how the forward pass runs.
pub fn postprocess(
    pred: &Tensor,
    lb: &Letterbox,
    nms: &NmsConfig,
) -> Result<Vec<Finding>, NmsError> {
    let dets = non_max_suppression(pred, nms)?;
    Ok(dets
        .into_iter()
        .flatten()
        .map(|d| Finding::new(lb.to_source(d.bbox), d.score, d.class))
        .collect())
}

impl Detector for YoloPredictor {
    type Error = PredictError;

    fn classes(&self) -> &[String] {
        &self.classes
    }

    fn detect(&self, image: &GrayF32) -> Result<Vec<Finding>, PredictError> {
        let (x, lb) = self.preprocess(image)?;
        let pred = self.forward(&x)?;
        self.postprocess(&pred, &lb)
    }
}
