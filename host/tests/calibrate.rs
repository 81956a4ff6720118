//! `fracture calibrate` end to end on phantoms with the repository's demo model (yolo11n
//! trained on phantoms): the INT8 Q/DQ model keeps mAP50 within 0.03 of FP32 on held-out
//! phantoms, the bundle gains `model.int8.onnx`, `calibration.cache` (TensorRT's format, read
//! back) and `calibration.json` (verifiable), the manifest records the check, the bundle
//! still verifies, and `fracture predict --bundle --backend ort` then runs the INT8 model.
//! The run asks for `--auto-keep-float 2`: the sensitivity ranking is reported and its two
//! worst layers stay float in every method's model.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;

use fracture_calibration::CalibrationCache;
use fracture_calibration::manifest::CalibrationManifest;
use fracture_models::bundle::Bundle;
use support::{fracture, fracture_fails};

fn demo_weights() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../demo/bundle/weights.safetensors")
}

#[test]
fn int8_keeps_map50_within_003_and_lands_in_the_bundle() {
    let tmp = tempfile::tempdir().unwrap();
    let t = |p: &str| tmp.path().join(p).to_string_lossy().into_owned();
    // Held-out phantoms of the demo model's training size (it never saw seed 7).
    fracture(&[
        "synth",
        "--out",
        &t("data"),
        "--count",
        "300",
        "--seed",
        "7",
        "--size-min",
        "224",
        "--size-max",
        "256",
    ]);
    fracture(&["split", "--data", &t("data"), "--out", &t("split.json"), "--seed", "1"]);
    fracture(&[
        "export",
        "--weights",
        demo_weights().to_str().unwrap(),
        "--bundle",
        &t("bundle"),
        "--imgsz",
        "256",
    ]);

    let out = fracture(&[
        "calibrate",
        "--bundle",
        &t("bundle"),
        "--data",
        &t("data"),
        "--split-file",
        &t("split.json"),
        "--images",
        "96",
        "--auto-keep-float",
        "2",
        "--sensitivity-images",
        "4",
        "--out",
        &t("report"),
    ]);
    // 96 images: the small-set warning must be given.
    assert!(out.contains("fewer than the 300 recommended"), "{out}");
    let report: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(tmp.path().join("report/calibration-report.json")).unwrap(),
    )
    .unwrap();
    let fp32 = report["fp32"]["map50"].as_f64().unwrap();
    let fp16 = report["fp16"]["map50"].as_f64().unwrap();
    assert!(fp32 > 0.1, "the demo model should find phantom fractures (mAP50 {fp32})");
    assert!((fp32 - fp16).abs() < 0.01, "FP16 {fp16} vs FP32 {fp32}");
    let methods: Vec<&str> =
        report["int8"].as_array().unwrap().iter().map(|m| m["method"].as_str().unwrap()).collect();
    assert_eq!(methods.len(), 3, "{methods:?}");
    // The sensitivity analysis: every quantisable Conv ranked, the two worst kept float in
    // every method's model (next to the DFL projection), and the table in the Markdown.
    let sens = &report["sensitivity"];
    let ranking = sens["ranking"].as_array().unwrap();
    assert!(ranking.len() > 80, "{} ranked", ranking.len());
    assert_eq!(sens["images"].as_array().unwrap().len(), 4);
    let auto: Vec<&str> =
        sens["auto_kept_float"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
    let top: Vec<&str> = ranking[..2].iter().map(|l| l["conv"].as_str().unwrap()).collect();
    assert_eq!(auto, top);
    for m in report["int8"].as_array().unwrap() {
        let kept: Vec<&str> =
            m["kept_float"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
        assert!(auto.iter().all(|c| kept.contains(c)), "{kept:?}");
        assert_eq!(kept.len(), 3, "{kept:?}");
        assert_eq!(m["quantized_convs"].as_u64().unwrap() as usize, ranking.len() - 2);
    }
    assert!(out.contains("## INT8 sensitivity") && out.contains(top[0]), "{out}");
    let chosen = &report["int8"][report["chosen"].as_u64().unwrap() as usize];
    let int8 = chosen["score"]["map50"].as_f64().unwrap();
    println!(
        "held-out val mAP50: fp32 {fp32:.4}, fp16 {fp16:.4}, int8 ({}) {int8:.4}",
        chosen["method"]
    );
    assert!(fp32 - int8 <= 0.03, "INT8 mAP50 {int8} is more than 0.03 below FP32 {fp32}");
    assert_eq!(chosen["passed"], true);

    // The bundle: verified, with the INT8 files listed and the check recorded.
    fracture(&["bundle", "verify", &t("bundle")]);
    let bundle = Bundle::open(&tmp.path().join("bundle")).unwrap();
    for f in ["model.onnx", "model.int8.onnx", "calibration.cache", "calibration.json"] {
        assert!(bundle.manifest.files.contains_key(f), "{f} not listed");
    }
    let check = bundle.manifest.int8.clone().expect("int8 check in the manifest");
    assert!(check.passed && (check.map50_int8 - int8).abs() < 1e-12, "{check:?}");

    // The TensorRT cache: its header, the ONNX input among the names, scales = amax/127 > 0.
    let text = std::fs::read_to_string(tmp.path().join("bundle/calibration.cache")).unwrap();
    assert!(
        text.starts_with("TRT-100300-EntropyCalibration2\n"),
        "{}",
        &text[..40.min(text.len())]
    );
    let cache = CalibrationCache::parse(&text).unwrap();
    assert!(cache.scales.contains_key("images") && cache.scales.contains_key("output0"));
    assert!(cache.scales.values().all(|s| s.is_finite() && *s >= 0.0));
    assert_eq!(cache.to_text().unwrap(), text, "the cache must round-trip byte for byte");
    // The calibration images can be re-checked.
    let m = CalibrationManifest::read(&tmp.path().join("bundle/calibration.json")).unwrap();
    assert_eq!(m.images.len(), 96);

    // The accepted INT8 model is what `--backend ort` runs now.
    let predicted = fracture(&[
        "predict",
        "--bundle",
        &t("bundle"),
        "--backend",
        "ort",
        &tmp.path()
            .join("data/images/Fractured")
            .read_dir()
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path()
            .to_string_lossy(),
    ]);
    assert!(predicted.contains("backend: onnxruntime int8 (as asked)"), "{predicted}");
}

#[test]
fn onnx_less_bundles_and_unknown_methods_are_refused_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let b = tmp.path().join("b");
    // A bundle without model.onnx (written by hand from the demo weights).
    std::fs::create_dir_all(&b).unwrap();
    let src = Bundle::open(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../demo/bundle")).unwrap();
    Bundle::write(&b, &src.weights(), src.manifest.clone()).unwrap();
    let err = fracture_fails(&[
        "calibrate",
        "--bundle",
        b.to_str().unwrap(),
        "--data",
        tmp.path().to_str().unwrap(),
    ]);
    assert!(err.contains("has no model.onnx") && err.contains("fracture export"), "{err}");
    let err = fracture_fails(&[
        "calibrate",
        "--bundle",
        b.to_str().unwrap(),
        "--data",
        ".",
        "--method",
        "kl",
    ]);
    assert!(err.contains("--method kl"), "{err}");
}
