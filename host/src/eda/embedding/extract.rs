//! Per-image embeddings from a trained detector's backbone, preprocessed exactly as
//! `fracture predict` preprocesses: YOLO11's layer-10 (C2PSA, stride 32) map after the rect
//! letterbox, or Faster R-CNN's ResNet50 C5 after its transform, each averaged over its
//! spatial positions ([`fracture_models::yolo::Yolo::embed`],
//! [`fracture_models::frcnn::FasterRcnn::embed`]). The weights file says which detector it
//! holds; a plain state_dict needs `arch` and `nc`, as for `fracture predict`.

use crate::detector_choice::{Choice, Family};
use std::path::PathBuf;

use fracture_models::frcnn::{self, FrcnnPredictOptions, FrcnnPredictor};
use fracture_models::pixels::{GrayF32, read_gray};
use fracture_models::yolo::{PredictOptions, YoloPredictor};
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;
use tch::{Device, Kind, Tensor};

use super::EmbeddingError;
use crate::dataset::Dataset;
use crate::eda::intensity::{Unreadable, image_path};

/// Which weights, and how to run them.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSpec {
    pub weights: PathBuf,
    /// Architecture of a plain state_dict (`yolo11n|s|m|l|x|frcnn-r50-fpn-v2`), checked
    /// against the file's metadata when it has some.
    pub arch: Option<String>,
    /// Classes of a plain state_dict (Faster R-CNN: without the background).
    pub nc: Option<i64>,
    /// Network input size (default: the size the weights were trained at).
    pub imgsz: Option<u32>,
    pub device: Device,
}

/// A loaded detector that embeds images.
pub struct Embedder {
    network: Network,
    /// `yolo11n` ... or `frcnn-r50-fpn-v2`.
    arch: String,
}

enum Network {
    Yolo(Box<YoloPredictor>),
    Frcnn(Box<FrcnnPredictor>),
}

/// Images decoded at once before they go through the network one by one.
const DECODE_CHUNK: usize = 16;

impl Embedder {
    /// Loads the weights as `fracture predict` does: Faster R-CNN when the file (or `arch`)
    /// says so, else YOLO11.
    pub fn load(spec: &ModelSpec) -> Result<Self, EmbeddingError> {
        let path = &spec.weights;
        let choice = Choice { weights: path, arch: spec.arch.as_deref(), nc: spec.nc };
        let resolved = choice.resolve().map_err(|e| EmbeddingError::Arch(e.to_string()))?;
        if resolved.family == Family::Frcnn {
            let classes = choice.frcnn_classes();
            let opts = FrcnnPredictOptions {
                min_size: spec.imgsz.map(i64::from),
                max_size: spec.imgsz.map(i64::from),
                device: spec.device,
                ..FrcnnPredictOptions::default()
            };
            let network = Network::Frcnn(Box::new(FrcnnPredictor::load(path, classes, opts)?));
            return Ok(Embedder { network, arch: frcnn::ARCH.into() });
        }
        let arch_spec = choice.yolo_spec().map_err(|e| EmbeddingError::Arch(e.to_string()))?;
        let opts =
            PredictOptions { imgsz: spec.imgsz, device: spec.device, ..PredictOptions::default() };
        let network = Network::Yolo(Box::new(YoloPredictor::load(path, arch_spec, opts)?));
        // Loading succeeded, so the file or --arch named the architecture.
        let arch = resolved.arch.unwrap_or_else(|| "yolo11".into());
        Ok(Embedder { network, arch })
    }

    pub fn arch(&self) -> &str {
        &self.arch
    }

    /// Which feature map the embedding pools, for captions.
    pub fn layer(&self) -> String {
        match &self.network {
            Network::Yolo(p) => format!("layer 10 C2PSA, stride 32, {} px letterbox", p.imgsz()),
            Network::Frcnn(_) => "ResNet50 C5, stride 32".into(),
        }
    }

    /// The embedding of one image, `[C]` in f64.
    pub fn embed(&self, image: &GrayF32) -> Result<Vec<f64>, EmbeddingError> {
        let t: Tensor = match &self.network {
            Network::Yolo(p) => p.embed(image)?,
            Network::Frcnn(p) => p.embed(image)?,
        };
        // [1, C] -> [C]
        let flat = t.to_device(Device::Cpu).to_kind(Kind::Double).contiguous().view([-1]);
        Ok(Vec::<f64>::try_from(&flat)?)
    }
}

/// The embeddings of a dataset's images.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Embedded {
    /// `(index into dataset.images, embedding)` for each image that decoded, in dataset order.
    pub rows: Vec<(usize, Vec<f64>)>,
    /// The images that did not decode.
    pub unreadable: Vec<Unreadable>,
}

/// Embeds every image of `dataset`. Decoding runs in parallel a chunk at a time; the network
/// sees one image at a time (the rect letterbox gives each its own shape). `progress` shows a
/// bar on stderr when it is a terminal.
pub fn embed_dataset(
    dataset: &Dataset,
    embedder: &Embedder,
    progress: bool,
) -> Result<Embedded, EmbeddingError> {
    let n = dataset.images.len();
    let bar = if progress { ProgressBar::new(n as u64) } else { ProgressBar::hidden() };
    if let Ok(style) = ProgressStyle::with_template(
        "{msg} {bar:40} {pos}/{len} images [{elapsed_precise}, eta {eta}]",
    ) {
        bar.set_style(style);
    }
    bar.set_message("embedding");
    let mut embedded = Vec::with_capacity(n);
    let mut unreadable = Vec::new();
    let indices: Vec<usize> = (0..n).collect();
    for chunk in indices.chunks(DECODE_CHUNK) {
        let decoded: Vec<_> = chunk
            .par_iter()
            .map(|&i| read_gray(&image_path(dataset, &dataset.images[i])))
            .collect();
        for (&i, image) in chunk.iter().zip(decoded) {
            let image_id = &dataset.images[i].meta.image_id;
            match image {
                Ok(img) => embedded.push((i, embedder.embed(&img)?)),
                Err(e) => {
                    unreadable.push(Unreadable { image_id: image_id.clone(), error: e.to_string() })
                }
            }
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    Ok(Embedded { rows: embedded, unreadable })
}

#[cfg(test)]
mod tests {
    use super::*;
    use fracture_models::frcnn::{FasterRcnn, FrcnnConfig};
    use fracture_models::weights_file::{self, WeightsMeta};
    use fracture_models::yolo::{Scale, Yolo, YoloConfig};
    use tch::nn::VarStore;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    /// A textured gray image.
    fn image(w: u32, h: u32) -> GrayF32 {
        let mut img = GrayF32::new(w, h, 0.0);
        for (k, v) in img.data.iter_mut().enumerate() {
            *v = ((k * 37 % 101) as f32) / 100.0;
        }
        img
    }

    #[test]
    fn yolo_embeddings_through_a_weights_file() -> TestResult {
        tch::manual_seed(0);
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("n.safetensors");
        let vs = VarStore::new(Device::Cpu);
        let _model = Yolo::new(&vs.root(), &YoloConfig { scale: Scale::N, num_classes: 1 })?;
        let tensors: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
        let meta = WeightsMeta {
            arch: "yolo11n".into(),
            classes: vec!["fracture".into()],
            imgsz: 64,
            extra: Default::default(),
        };
        weights_file::save(&path, &tensors, &meta)?;
        let spec =
            ModelSpec { weights: path, arch: None, nc: None, imgsz: None, device: Device::Cpu };
        let e = Embedder::load(&spec)?;
        assert_eq!(e.arch(), "yolo11n");
        let v = e.embed(&image(90, 50))?;
        // yolo11n's layer 10 has 1024 · 0.25 = 256 channels.
        assert_eq!(v.len(), 256);
        assert!(v.iter().all(|x| x.is_finite()));
        assert_eq!(v, e.embed(&image(90, 50))?, "deterministic");
        let wrong = ModelSpec { arch: Some("yolo11s".into()), nc: Some(1), ..spec };
        assert!(matches!(Embedder::load(&wrong), Err(EmbeddingError::Arch(_))));
        Ok(())
    }

    #[test]
    fn frcnn_embeddings_pool_c5() -> TestResult {
        tch::manual_seed(0);
        let vs = VarStore::new(Device::Cpu);
        let m = FasterRcnn::new(&vs.root(), &FrcnnConfig::new(2).with_sizes(64, 96))?;
        let opts = (Kind::Float, Device::Cpu);
        let imgs = [Tensor::rand([3, 50, 70], opts), Tensor::rand([3, 64, 40], opts)];
        // [2, 2048]
        let e = tch::no_grad(|| m.embed(&imgs))?;
        assert_eq!(e.size(), [2, 2048]);
        assert!(e.isfinite().all().int64_value(&[]) == 1);
        Ok(())
    }
}
