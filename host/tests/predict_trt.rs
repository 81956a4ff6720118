//! `fracture predict --bundle B --backend tensorrt` through the binary and the fake shim (no
//! GPU here): the engine is built into `--engine-cache` on first use and loaded after, the
//! boxes are what the runtime's `YoloTrt` finds on the same file, and without a shim the
//! error says where it looked.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

use fracture_models::bundle::{Bundle, Manifest, OperatingPoints};
use fracture_models::detector::Detector;
use fracture_models::nms::NmsConfig;
use fracture_models::weights_file::WeightsMeta;
use fracture_runtime::{YoloTrt, find_or_build};
use fracture_tensorrt::fake::yolo_marker;
use fracture_tensorrt::{FakeShim, Precision, Shim, build_info};

fn bundle(dir: &Path) -> Bundle {
    let weights = dir.join("w.safetensors");
    std::fs::write(&weights, "placeholder: TensorRT reads model.onnx only").unwrap();
    let onnx = dir.join("model.onnx");
    std::fs::write(&onnx, yolo_marker(1, 5)).unwrap();
    let meta = WeightsMeta {
        arch: "yolo11n".into(),
        classes: vec!["fracture".into()],
        imgsz: 64,
        extra: Default::default(),
    };
    let points = OperatingPoints { suspicious: 0.1, definite: 0.5 };
    let manifest = Manifest::for_weights("b", &meta, points);
    Bundle::write_with(&dir.join("b"), &weights, &[("model.onnx", &onnx)], manifest).unwrap()
}

fn fracture(shim: Option<&Path>, args: &[&str]) -> (bool, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fracture"));
    cmd.args(args);
    match shim {
        Some(p) => cmd.env("FRACTURE_TRT_SHIM", p),
        None => cmd.env_remove("FRACTURE_TRT_SHIM"),
    };
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn predict_runs_a_bundle_on_tensorrt_through_the_fake_shim() {
    let dir = tempfile::tempdir().unwrap();
    let b = bundle(dir.path());
    let img = dir.path().join("a.png");
    image::GrayImage::from_fn(90, 60, |x, y| image::Luma([((x * 3 + y * 2) % 220 + 20) as u8]))
        .save(&img)
        .unwrap();
    let cache = dir.path().join("engines");
    let args = [
        "predict",
        "--bundle",
        b.dir.to_str().unwrap(),
        "--backend",
        "tensorrt",
        "--conf",
        "0.1",
        "--engine-cache",
        cache.to_str().unwrap(),
        "--json",
        img.to_str().unwrap(),
    ];
    let fake = build_info::fake_shim();
    let (ok, out, err) = fracture(Some(&fake), &args);
    assert!(ok, "{err}");
    assert!(err.contains("tensorrt: engine built (no engine for this bundle"), "{err}");
    assert!(err.contains("backend: tensorrt (as asked)"), "{err}");
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    let boxes = json[0]["boxes"].as_array().unwrap().clone();

    // The same detector in-process, on a private copy of the fake.
    let lib = FakeShim::private_copy(dir.path()).unwrap();
    let shim = Shim::load_exact(&lib).unwrap();
    let cached =
        find_or_build(&shim, &b, Precision::Fp16, &dir.path().join("mine"), false).unwrap();
    let nms = NmsConfig { conf: 0.1, iou: 0.45, max_det: 300, ..NmsConfig::default() };
    let model = YoloTrt::new(&shim, cached.engine, vec!["fracture".into()], nms, 64).unwrap();
    let want = model.detect(&fracture_models::pixels::read_gray(&img).unwrap()).unwrap();
    assert!(!want.is_empty());
    assert_eq!(boxes.len(), want.len(), "{out}");
    for (g, f) in boxes.iter().zip(&want) {
        for (k, v) in [("x1", f.x1), ("y1", f.y1), ("x2", f.x2), ("y2", f.y2), ("score", f.score)] {
            let got = g[k].as_f64().unwrap();
            assert!((got - f64::from(v)).abs() < 1e-4, "{k}: {got} vs {v}");
        }
    }

    let (ok, _, err) = fracture(Some(&fake), &args);
    assert!(ok && err.contains("tensorrt: cached engine loaded"), "{err}");
    let missing = dir.path().join("missing.so");
    let mut no_shim = args.to_vec();
    no_shim.extend(["--shim", missing.to_str().unwrap()]);
    let (ok, _, err) = fracture(None, &no_shim);
    assert!(!ok && err.contains("tensorrt: TensorRT is not available"), "{err}");
}
