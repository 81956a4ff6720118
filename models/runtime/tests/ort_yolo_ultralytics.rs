//! The ONNX Runtime backend reads ultralytics' own ONNX export: on the same random weights,
//! `YoloOrt` over ultralytics' graph and the libtorch `YoloPredictor` over the safetensors
//! give the same input tensor, the same decoded predictions (1e-4) and the same boxes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use fracture_models::nms::NmsConfig;
use fracture_models::pixels::GrayF32;
use fracture_models::tensor::nchw_from_gray;
use fracture_models::yolo::{ArchSpec, PredictOptions, Scale, YoloPredictor};
use fracture_runtime::{OrtOptions, YoloOrt};
use tch::Kind;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn export(case: &str) -> tempfile::TempDir {
    let python = repo_root().join(".venv/bin/python");
    assert!(python.exists(), "{} is missing: run scripts/setup", python.display());
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(&python)
        .arg(repo_root().join("tests/peers/ultralytics_onnx.py"))
        .arg("--out")
        .arg(dir.path())
        .args(["--case", case])
        .output()
        .unwrap();
    assert!(out.status.success(), "export failed:\n{}", String::from_utf8_lossy(&out.stderr));
    dir
}

/// A gray test image with structure (so boxes and scores vary), not square.
fn image(width: u32, height: u32) -> GrayF32 {
    let data = (0..width * height)
        .map(|i| {
            let (x, y) = ((i % width) as f32, (i / width) as f32);
            0.5 + 0.4 * ((x / 7.0).sin() * (y / 11.0).cos())
        })
        .collect();
    GrayF32 { width, height, data, bit_depth: 8 }
}

#[test]
fn ultralytics_export_runs_like_libtorch() {
    let dir = export("n:n:1:256:256:3");
    let case = dir.path().join("n");
    let nms = NmsConfig { conf: 0.001, ..NmsConfig::default() };
    let torch = YoloPredictor::load(
        &case.join("weights.safetensors"),
        Some(ArchSpec { scale: Scale::N, num_classes: 1 }),
        PredictOptions { imgsz: Some(256), rect: false, nms: nms.clone(), ..Default::default() },
    )
    .unwrap();
    let ort =
        YoloOrt::open(&case.join("model.onnx"), vec!["0".into()], nms, &OrtOptions::default())
            .unwrap();
    assert!(ort.model().threads() >= 1);

    let img = image(300, 200);
    let (x_torch, lb_torch) = torch.preprocess(&img).unwrap();
    let (x_ort, lb_ort) = ort.preprocess(&img);
    assert_eq!(lb_torch, lb_ort);
    let flat: Vec<f32> = Vec::try_from(x_torch.contiguous().flatten(0, -1)).unwrap();
    assert_eq!(flat, x_ort, "both backends must feed the same input");
    assert_eq!(nchw_from_gray(&lb_ort.apply(&img)), x_ort);

    let p_torch = torch.forward(&x_torch).unwrap();
    let p_ort = ort.forward(&x_ort).unwrap();
    assert_eq!(p_torch.size(), p_ort.size());
    let diff =
        (p_torch.to_kind(Kind::Double) - p_ort.to_kind(Kind::Double)).abs().max().double_value(&[]);
    println!("max |libtorch - onnxruntime| over output0: {diff:.3e}");
    assert!(diff <= 1e-4, "decoded predictions differ by {diff}");

    let f_torch = torch.postprocess(&p_torch, &lb_torch).unwrap();
    let f_ort = ort.postprocess(&p_ort, &lb_ort).unwrap();
    assert!(!f_torch.is_empty(), "the test image must produce boxes at conf 0.001");
    assert_eq!(f_torch.len(), f_ort.len());
    for (a, b) in f_torch.iter().zip(&f_ort) {
        let d = a.bbox().iter().zip(b.bbox()).map(|(u, v)| (u - v).abs()).fold(0.0, f32::max);
        // Boxes are output0 coordinates (at most 1e-4 apart) divided by the letterbox gain
        // (256/300 here), so they may move by ~1.2e-4 px; 1e-3 leaves room for f32 rounding.
        assert!(d < 1e-3 && (a.score - b.score).abs() < 1e-4, "{a:?} vs {b:?}");
    }
}

#[test]
fn missing_library_error_lists_where_it_looked() {
    let paths =
        fracture_runtime::ort_library::search_paths(Some(Path::new("/nonexistent/libx.so")));
    assert_eq!(paths[0], Path::new("/nonexistent/libx.so"));
    assert!(paths.iter().any(|p| p.ends_with(".deps/onnxruntime/lib/libonnxruntime.so")));
}

/// Our own export (`fracture_models::onnx::export_yolo`, what `fracture export` writes into
/// bundles) through the ONNX Runtime backend equals the libtorch backend on the same weights:
/// decoded predictions within 1e-4, the same boxes.
#[test]
fn our_export_runs_like_libtorch() {
    let dir = export("s:s:1:256:320:5");
    let case = dir.path().join("s");
    let nms = NmsConfig { conf: 0.001, ..NmsConfig::default() };
    let torch = YoloPredictor::load(
        &case.join("weights.safetensors"),
        Some(ArchSpec { scale: Scale::S, num_classes: 1 }),
        PredictOptions { imgsz: Some(320), rect: false, nms: nms.clone(), ..Default::default() },
    )
    .unwrap();
    // A non-square export: the letterbox must fill 320 wide x 256 high.
    let proto = fracture_models::onnx::export_yolo(torch.model(), 256, 320).unwrap();
    let onnx = dir.path().join("ours.onnx");
    fracture_models::onnx::save(&proto, &onnx).unwrap();
    let ort = YoloOrt::open(&onnx, vec!["0".into()], nms, &OrtOptions::default()).unwrap();
    assert_eq!(ort.model().input_hw(), (256, 320));

    for (w, h) in [(300, 200), (180, 260)] {
        let img = image(w, h);
        let (x_ort, lb) = ort.preprocess(&img);
        // The libtorch side on exactly that input tensor.
        let x = tch::Tensor::from_slice(&x_ort).view([1, 3, 256, 320]);
        let p_torch = torch.forward(&x).unwrap();
        let p_ort = ort.forward(&x_ort).unwrap();
        let diff = (p_torch.to_kind(Kind::Double) - p_ort.to_kind(Kind::Double))
            .abs()
            .max()
            .double_value(&[]);
        println!("{w}x{h}: max |libtorch - onnxruntime (our export)| = {diff:.3e}");
        assert!(diff <= 1e-4, "decoded predictions differ by {diff}");
        let a = torch.postprocess(&p_torch, &lb).unwrap();
        let b = ort.postprocess(&p_ort, &lb).unwrap();
        assert!(!a.is_empty());
        assert_eq!(a.len(), b.len());
        for (u, v) in a.iter().zip(&b) {
            let d = u.bbox().iter().zip(v.bbox()).map(|(p, q)| (p - q).abs()).fold(0.0, f32::max);
            // As above: 1e-4 in input pixels over a gain near 1.
            assert!(d < 1e-3 && (u.score - v.score).abs() < 1e-4, "{u:?} vs {v:?}");
        }
    }
}
