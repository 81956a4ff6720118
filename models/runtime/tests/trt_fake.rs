//! The TensorRT backend against the fake shim (no GPU here): a bundle whose `model.onnx`
//! carries the fake's YOLO marker builds an engine with ultralytics' `output0` `[n, 4 + nc,
//! K]`; `YoloTrt` over it finds exactly what the shared post-processing finds on the fake's
//! known output; the engine cache builds once, loads after, and rebuilds when the bundle,
//! precision, TensorRT version or GPU changes, naming the field.

#![allow(clippy::unwrap_used)]

use std::path::Path;

use fracture_models::bundle::{Bundle, Int8Check, Manifest, OperatingPoints};
use fracture_models::detector::Detector;
use fracture_models::nms::NmsConfig;
use fracture_models::pixels::GrayF32;
use fracture_models::weights_file::WeightsMeta;
use fracture_runtime::{Provenance, YoloTrt, YoloTrtError, find_or_build};
use fracture_tensorrt::fake::{yolo_marker, yolo_output};
use fracture_tensorrt::{FakeShim, Precision, Shim};

const IMGSZ: u32 = 64;
const ANCHORS: usize = 6;

/// A YOLO bundle (weights are placeholder bytes: TensorRT reads only the ONNX files) whose
/// FP32 and Q/DQ models are fake-YOLO markers; `tag` makes bundles differ.
fn bundle(dir: &Path, name: &str, classes: &[&str], tag: &str) -> Bundle {
    let meta = WeightsMeta {
        arch: "yolo11n".into(),
        classes: classes.iter().map(|c| c.to_string()).collect(),
        imgsz: IMGSZ,
        extra: Default::default(),
    };
    let mut manifest =
        Manifest::for_weights(name, &meta, OperatingPoints { suspicious: 0.1, definite: 0.3 });
    manifest.int8 = Some(Int8Check {
        method: "entropy".into(),
        map50_fp32: 0.5,
        map50_int8: 0.5,
        max_drop: 0.02,
        passed: true,
    });
    let src = dir.join(format!("{name}-src"));
    std::fs::create_dir_all(&src).unwrap();
    let weights = src.join("w.safetensors");
    std::fs::write(&weights, format!("placeholder {tag}")).unwrap();
    let onnx = src.join("model.onnx");
    std::fs::write(&onnx, format!("{}{tag}", yolo_marker(classes.len(), ANCHORS))).unwrap();
    let extra = [("model.onnx", onnx.as_path()), ("model.int8.onnx", onnx.as_path())];
    Bundle::write_with(&dir.join(name), &weights, &extra, manifest).unwrap()
}

struct Fake {
    _dir: tempfile::TempDir,
    shim: Shim,
    controls: FakeShim,
}

fn fake() -> Fake {
    let dir = tempfile::tempdir().unwrap();
    let path = FakeShim::private_copy(dir.path()).unwrap();
    let shim = Shim::load_exact(&path).unwrap();
    let controls = FakeShim::open(&path).unwrap();
    Fake { _dir: dir, shim, controls }
}

fn nms() -> NmsConfig {
    NmsConfig { conf: 0.1, iou: 0.45, max_det: 300, ..NmsConfig::default() }
}

fn gradient(w: u32, h: u32) -> GrayF32 {
    let mut img = GrayF32::new(w, h, 0.0);
    for (i, v) in img.data.iter_mut().enumerate() {
        let (x, y) = (i as u32 % w, i as u32 / w);
        *v = (x + 2 * y) as f32 / (w + 2 * h) as f32;
    }
    img
}

#[test]
fn yolo_trt_finds_what_the_shared_postprocess_finds_on_the_fakes_output() {
    let tmp = tempfile::tempdir().unwrap();
    let f = fake();
    let classes = ["fracture", "hardware"];
    let b = bundle(tmp.path(), "b", &classes, "a");
    let cached =
        find_or_build(&f.shim, &b, Precision::Fp16, &tmp.path().join("engines"), false).unwrap();
    let names: Vec<String> = classes.iter().map(|c| c.to_string()).collect();
    let model = YoloTrt::new(&f.shim, cached.engine.clone(), names, nms(), IMGSZ).unwrap();
    for (w, h) in [(64, 64), (100, 50), (40, 90)] {
        let img = gradient(w, h);
        let got = model.detect(&img).unwrap();
        // The same letterbox, then the fake's formula, then the one post-processing path.
        let (input, lb) = model.preprocess(&img);
        let s = IMGSZ as usize;
        let known = yolo_output(&input, s, s, classes.len(), ANCHORS);
        let pred =
            tch::Tensor::from_slice(&known).view([1, 4 + classes.len() as i64, ANCHORS as i64]);
        let want = fracture_models::yolo::predictor::postprocess(&pred, &lb, &nms()).unwrap();
        assert!(!want.is_empty(), "the fake's output must hold boxes above conf");
        assert_eq!(got, want, "{w}x{h}");
        // And the forward pass is bit-for-bit the fake's output.
        let fwd = model.forward(&input).unwrap();
        assert_eq!(fwd.size(), vec![1, 4 + classes.len() as i64, ANCHORS as i64]);
        let flat: Vec<f32> = Vec::try_from(fwd.flatten(0, -1)).unwrap();
        assert_eq!(flat, known);
    }
    drop(model);
    drop(cached);
    assert_eq!(f.controls.live_handles().unwrap(), 0, "no handle leaks");
}

#[test]
fn yolo_trt_refuses_an_engine_of_another_shape_and_reports_run_failures() {
    let tmp = tempfile::tempdir().unwrap();
    let f = fake();
    let b = bundle(tmp.path(), "b", &["fracture"], "a");
    let cached = find_or_build(&f.shim, &b, Precision::Fp16, &tmp.path().join("e"), false).unwrap();
    // The bundle says two classes, the engine was built for one.
    let two = vec!["a".to_string(), "b".to_string()];
    let e = YoloTrt::new(&f.shim, cached.engine.clone(), two, nms(), IMGSZ).unwrap_err();
    assert!(e.to_string().contains("expected float32 [1, 6, N] for 2 class(es)"), "{e}");
    // The plain fake engine (output0 [-1, 6]) is no YOLO engine.
    let plain = f.shim.deserialize_engine(b"FRACTURE-FAKE-ENGINE\nfp16=1\n").unwrap();
    let e = YoloTrt::new(&f.shim, plain, vec!["x".into()], nms(), IMGSZ).unwrap_err();
    assert!(matches!(e, YoloTrtError::Io { name: "output0", .. }), "{e}");
    let one = vec!["fracture".to_string()];
    let model = YoloTrt::new(&f.shim, cached.engine.clone(), one, nms(), IMGSZ).unwrap();
    for function in
        ["trt_memcpy_htod", "trt_context_enqueue_v3", "trt_stream_synchronize", "trt_memcpy_dtoh"]
    {
        f.controls.set_failure(Some(function), 3).unwrap();
        let e = model.detect(&gradient(64, 64)).unwrap_err();
        assert!(e.to_string().contains(&format!("injected failure in {function}")), "{e}");
        f.controls.set_failure(None, 0).unwrap();
    }
    assert!(!model.detect(&gradient(64, 64)).unwrap().is_empty(), "healed");
    f.controls.set_failure(Some("trt_context_create"), 2).unwrap();
    let e = YoloTrt::new(&f.shim, cached.engine.clone(), vec!["f".into()], nms(), IMGSZ);
    assert!(e.unwrap_err().to_string().contains("injected failure in trt_context_create"));
}

fn built_why(p: &Provenance) -> &str {
    match p {
        Provenance::Built { why } => why,
        Provenance::Loaded => panic!("expected a build, the cached engine was loaded"),
    }
}

#[test]
fn the_cache_builds_once_loads_after_and_rebuilds_naming_what_changed() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("engines");
    let f = fake();
    let b = bundle(tmp.path(), "b", &["fracture"], "a");

    let first = find_or_build(&f.shim, &b, Precision::Fp16, &cache, false).unwrap();
    let why = built_why(&first.provenance);
    assert!(why.starts_with("no engine for this bundle"), "{why}");
    assert!(first.path.is_file() && first.path.starts_with(&cache));
    let again = find_or_build(&f.shim, &b, Precision::Fp16, &cache, false).unwrap();
    assert_eq!(again.provenance, Provenance::Loaded);
    assert_eq!(again.path, first.path);
    let forced = find_or_build(&f.shim, &b, Precision::Fp16, &cache, true).unwrap();
    assert_eq!(built_why(&forced.provenance), "rebuild requested");

    // Precision.
    let int8 = find_or_build(&f.shim, &b, Precision::Int8, &cache, false).unwrap();
    let why = built_why(&int8.provenance);
    assert!(why.contains("precision differs (engine: fp16, needed: int8)"), "{why}");
    assert_ne!(int8.path, first.path);
    assert_eq!(
        find_or_build(&f.shim, &b, Precision::Int8, &cache, false).unwrap().provenance,
        Provenance::Loaded
    );

    // TensorRT version (the fp16 engine is the closest: one field).
    f.controls.set_trt_version("10.7.0").unwrap();
    let up = find_or_build(&f.shim, &b, Precision::Fp16, &cache, false).unwrap();
    let why = built_why(&up.provenance);
    assert!(why.contains("TensorRT version differs (engine: 10.3.0, needed: 10.7.0)"), "{why}");
    assert!(!why.contains("precision differs"), "the closest engine is named: {why}");

    // GPU name and compute capability.
    f.controls.set_device("Orin (nvgpu)", 8, 7).unwrap();
    let gpu = find_or_build(&f.shim, &b, Precision::Fp16, &cache, false).unwrap();
    let why = built_why(&gpu.provenance);
    assert!(
        why.contains(
            "GPU name differs (engine: Fake GPU (fracture-tensorrt tests), needed: Orin (nvgpu))"
        ),
        "{why}"
    );
    f.controls.set_device("Orin (nvgpu)", 9, 0).unwrap();
    let cc = find_or_build(&f.shim, &b, Precision::Fp16, &cache, false).unwrap();
    let why = built_why(&cc.provenance);
    assert!(why.contains("compute capability differs (engine: 8.7, needed: 9.0)"), "{why}");

    // Another bundle (a new export installed).
    let b2 = bundle(tmp.path(), "b2", &["fracture"], "b");
    assert_ne!(b2.sha256, b.sha256);
    let other = find_or_build(&f.shim, &b2, Precision::Fp16, &cache, false).unwrap();
    let why = built_why(&other.provenance);
    assert!(why.contains("bundle sha256 differs"), "{why}");
}

#[test]
fn an_engine_that_does_not_fit_its_name_or_its_sidecar_is_rebuilt() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("engines");
    let f = fake();
    let b = bundle(tmp.path(), "b", &["fracture"], "a");
    let first = find_or_build(&f.shim, &b, Precision::Fp16, &cache, false).unwrap();
    // A sidecar claiming another precision at the keyed path: a mismatch, rebuilt.
    let sidecar = fracture_tensorrt::identity_path(&first.path);
    let text = std::fs::read_to_string(&sidecar).unwrap();
    std::fs::write(&sidecar, text.replace("\"fp16\"", "\"int8\"")).unwrap();
    let re = find_or_build(&f.shim, &b, Precision::Fp16, &cache, false).unwrap();
    let why = built_why(&re.provenance);
    assert!(why.contains("does not fit: precision differs (engine: int8, needed: fp16)"), "{why}");
    // Engine bytes changed under their sidecar.
    std::fs::write(&first.path, b"FRACTURE-FAKE-ENGINE\ntampered\n").unwrap();
    let re = find_or_build(&f.shim, &b, Precision::Fp16, &cache, false).unwrap();
    let why = built_why(&re.provenance);
    assert!(
        why.contains("is unusable") && why.contains("describes an engine with SHA-256"),
        "{why}"
    );
    // Bytes TensorRT refuses, with a matching sidecar.
    let identity = re.identity.clone();
    fracture_tensorrt::write_engine(&re.path, b"not an engine", &identity).unwrap();
    let re = find_or_build(&f.shim, &b, Precision::Fp16, &cache, false).unwrap();
    let why = built_why(&re.provenance);
    assert!(why.contains("deserializeCudaEngine failed"), "{why}");
    assert_eq!(
        find_or_build(&f.shim, &b, Precision::Fp16, &cache, false).unwrap().provenance,
        Provenance::Loaded
    );
}

#[test]
fn build_failures_say_why_a_build_was_needed() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("engines");
    let f = fake();
    let b = bundle(tmp.path(), "b", &["fracture"], "a");
    f.controls.set_failure(Some("trt_build_serialized"), 6).unwrap();
    let e = find_or_build(&f.shim, &b, Precision::Fp16, &cache, false).unwrap_err().to_string();
    assert!(e.contains("building the engine") && e.contains("(no engine for this bundle"), "{e}");
    assert!(e.contains("injected failure in trt_build_serialized"), "{e}");
    f.controls.set_failure(Some("trt_shim_device_info"), 3).unwrap();
    let e = find_or_build(&f.shim, &b, Precision::Fp16, &cache, false).unwrap_err().to_string();
    assert!(e.contains("injected failure in trt_shim_device_info"), "{e}");
    f.controls.set_failure(None, 0).unwrap();
    // A bundle without the files an engine is built from.
    let mut no_int8 = b.clone();
    no_int8.manifest.int8 = None;
    let e = find_or_build(&f.shim, &no_int8, Precision::Int8, &cache, false).unwrap_err();
    assert!(e.to_string().contains("run `fracture calibrate` first"), "{e}");
    assert_eq!(f.controls.live_handles().unwrap(), 0);
}
