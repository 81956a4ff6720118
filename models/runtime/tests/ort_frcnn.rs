//! The ONNX Runtime backend runs a Faster R-CNN bundle's graph like the libtorch backend runs
//! its weights: `FrcnnOrt` (resize here, the exported graph in ONNX Runtime, boxes mapped
//! back here) and `FrcnnPredictor` (the libtorch model) give, on the same grey images of
//! sizes other than the model's, the same detections in the same order: labels equal, scores
//! within 1e-4, box coordinates within 2e-3 px of the resized image (the float32 bound
//! `models/tests/onnx_frcnn.rs` derives as `BOX_TOL`: a coordinate is a ~100 px reference box
//! moved by network outputs carrying ~2e-5 of float32 rounding) times the resize factor back.
//!
//! Random weights (seeded, as saved in a weights file with our metadata) with the heads'
//! last layers rescaled so scores and deltas are spread out: with the default initialisation
//! every score is within ~1e-3 of its neighbours and the ranking would hinge on rounding.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../tests/peers/spread.rs"]
mod spread;

use fracture_models::detector::Detector;
use fracture_models::frcnn::{ARCH, FasterRcnn, FrcnnConfig, FrcnnPredictOptions, FrcnnPredictor};
use fracture_models::onnx::{export_frcnn, save};
use fracture_models::pixels::GrayF32;
use fracture_models::weights_file::{self, WeightsMeta};
use fracture_runtime::{FrcnnOrt, OrtOptions};
use spread::spread_heads;
use tch::{Device, Tensor, nn};

const SIZES: (i64, i64) = (128, 160);
const SCORE_TOL: f64 = 1e-4;
/// See the module doc.
const BOX_TOL_RESIZED: f64 = 2e-3;

/// A textured grey image with a few bright bars (something for the RPN to find).
fn image(w: u32, h: u32, seed: u32) -> GrayF32 {
    let data = (0..h)
        .flat_map(|y| {
            (0..w).map(move |x| {
                let noise = ((x.wrapping_mul(2_654_435_761) ^ y.wrapping_mul(40_503) ^ seed) % 41)
                    as f32
                    / 255.0;
                let bar = if (x / 23 + y / 31 + seed).is_multiple_of(5) { 0.3 } else { 0.0 };
                (0.45 + 0.2 * (x as f32 / 17.0).sin() * (y as f32 / 23.0).cos() + noise + bar)
                    .clamp(0.0, 1.0)
            })
        })
        .collect();
    GrayF32 { width: w, height: h, data, bit_depth: 8 }
}

#[test]
fn onnxruntime_and_libtorch_find_the_same_fractures() {
    tch::manual_seed(21);
    let vs = nn::VarStore::new(Device::Cpu);
    let model =
        FasterRcnn::new(&vs.root(), &FrcnnConfig::new(2).with_sizes(SIZES.0, SIZES.1)).unwrap();
    let vars = vs.variables();
    tch::no_grad(|| {
        let sample = [FrcnnPredictor::image_tensor(&image(150, 130, 5))];
        spread_heads(&model, &vars, &sample);
    });

    // The bundle's two files: weights with our metadata, and the graph exported from them.
    let dir = tempfile::tempdir().unwrap();
    let mut meta = WeightsMeta {
        arch: ARCH.into(),
        classes: vec!["fracture".into()],
        imgsz: SIZES.1 as u32,
        extra: Default::default(),
    };
    meta.extra.insert("min_size".into(), SIZES.0.to_string());
    meta.extra.insert("max_size".into(), SIZES.1.to_string());
    let weights = dir.path().join("weights.safetensors");
    let tensors: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    weights_file::save(&weights, &tensors, &meta).unwrap();
    let torch = FrcnnPredictor::load(&weights, None, FrcnnPredictOptions::default()).unwrap();
    let onnx = dir.path().join("model.onnx");
    save(&export_frcnn(torch.model(), &meta.classes).unwrap(), &onnx).unwrap();
    let ort =
        FrcnnOrt::open(&onnx, meta.classes.clone(), SIZES, 0.05, &OrtOptions::default()).unwrap();

    let (mut compared, mut worst_score, mut worst_px) = (0, 0.0_f64, 0.0_f64);
    // Smaller, larger, landscape, portrait: every one is resized (and padded in the graph).
    for (i, (w, h)) in [(150u32, 130u32), (301, 222), (190, 260)].into_iter().enumerate() {
        let img = image(w, h, i as u32 + 7);
        let (a, b) = (torch.detect(&img).unwrap(), ort.detect(&img).unwrap());
        assert_eq!(a.len(), b.len(), "{w}x{h}: number of detections");
        let (wf, hf) = (f64::from(w), f64::from(h));
        let back = 1.0 / (SIZES.0 as f64 / wf.min(hf)).min(SIZES.1 as f64 / wf.max(hf));
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x.class, y.class, "{w}x{h}: labels in the same order");
            worst_score = worst_score.max(f64::from((x.score - y.score).abs()));
            let d = x.bbox().into_iter().zip(y.bbox()).map(|(p, q)| f64::from((p - q).abs()));
            worst_px = worst_px.max(d.fold(0.0, f64::max) / back);
            compared += 1;
        }
    }
    eprintln!(
        "{compared} detections: scores within {worst_score:.2e}, boxes within {worst_px:.2e} px \
         of the resized image"
    );
    assert!(compared >= 10, "only {compared} detections to compare");
    assert!(worst_score <= SCORE_TOL, "scores differ by {worst_score:e}");
    assert!(worst_px <= BOX_TOL_RESIZED, "boxes differ by {worst_px:e} px (resized image)");
}
