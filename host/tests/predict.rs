//! `fracture predict` end to end against ultralytics' `YOLO.predict` on the same PNG files and
//! the same (random, plain state_dict) weights: the binary with `--arch/--nc --json`, versus
//! cv2 decode → rect letterbox → fused forward → NMS → `scale_boxes` in Python.
//!
//! Images the letterbox does not resize reach both networks bit-identical, so the boxes must
//! agree to float rounding. An image that is resized does not: cv2 resizes 8-bit images in
//! 8-bit fixed point (rounding every pixel to 1/255), we resize in float. For it the test
//! proves the two halves separately: our letterbox equals cv2's within that rounding
//! (0.5/255 plus cv2's 11-bit coefficient error), and our forward + NMS + mapping back on
//! ultralytics' own input tensor gives ultralytics' boxes.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use fracture_models::detector::Finding;
use fracture_models::nms::NmsConfig;
use fracture_models::pixels::read_gray;
use fracture_models::yolo::{ArchSpec, PredictOptions, Scale, YoloPredictor};
use tch::Tensor;

const CONF: f32 = 0.05;
const IOU: f64 = 0.45;
/// (width, height): exact square; rect padding without resize; a 0.65 downscale.
const SIZES: [(u32, u32); 3] = [(416, 416), (416, 300), (640, 480)];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A textured 8-bit gray image (smooth pattern plus hashed noise), deterministic.
fn write_image(path: &Path, w: u32, h: u32) {
    let img = image::GrayImage::from_fn(w, h, |x, y| {
        let (fx, fy) = (x as f32, y as f32);
        let noise = ((x.wrapping_mul(2_654_435_761) ^ y.wrapping_mul(40_503)) % 41) as f32 - 20.0;
        let v = 128.0 + 60.0 * (fx / 17.0).sin() * (fy / 23.0).cos() + noise;
        image::Luma([v.clamp(0.0, 255.0) as u8])
    });
    img.save(path).expect("write test image");
}

type Row = [f32; 6];

fn reference_rows(v: &serde_json::Value) -> Vec<Row> {
    v.as_array()
        .expect("boxes array")
        .iter()
        .map(|r| {
            let r: Vec<f32> = r
                .as_array()
                .expect("row")
                .iter()
                .map(|x| x.as_f64().expect("number") as f32)
                .collect();
            [r[0], r[1], r[2], r[3], r[4], r[5]]
        })
        .collect()
}

fn rows(findings: &[Finding]) -> Vec<Row> {
    findings.iter().map(|f| [f.x1, f.y1, f.x2, f.y2, f.score, f.class as f32]).collect()
}

/// Same boxes in the same order: coordinates within `px`, scores within `score`.
fn assert_same(ours: &[Row], theirs: &[Row], px: f32, score: f32, what: &str) {
    assert!(!theirs.is_empty(), "{what}: the reference kept no boxes; nothing compared");
    assert_eq!(ours.len(), theirs.len(), "{what}: box counts differ");
    for (i, (a, b)) in ours.iter().zip(theirs).enumerate() {
        assert_eq!(a[5], b[5], "{what}: box {i} class");
        assert!((a[4] - b[4]).abs() <= score, "{what}: box {i} score {} vs {}", a[4], b[4]);
        for k in 0..4 {
            assert!((a[k] - b[k]).abs() <= px, "{what}: box {i} coord {k}: {a:?} vs {b:?}");
        }
    }
}

#[test]
fn predict_matches_ultralytics_predict() {
    let dir = tempfile::tempdir().expect("tempdir");
    let images: Vec<PathBuf> = SIZES
        .iter()
        .map(|&(w, h)| {
            let p = dir.path().join(format!("img_{w}x{h}.png"));
            write_image(&p, w, h);
            p
        })
        .collect();
    let out = dir.path().join("reference");
    let python = repo_root().join(".venv/bin/python");
    let mut cmd = Command::new(&python);
    cmd.arg(repo_root().join("tests/peers/yolo_predict_reference.py"))
        .arg("--out")
        .arg(&out)
        .arg("--case")
        .arg(format!("n:2:416:{CONF}:{IOU}"));
    for p in &images {
        cmd.arg("--image").arg(p);
    }
    let status = cmd.status().expect("run the ultralytics reference (scripts/setup makes .venv)");
    assert!(status.success(), "yolo_predict_reference.py failed");
    let reference: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("predictions.json")).expect("predictions.json"),
    )
    .expect("reference json");
    let weights = out.join("weights.safetensors");

    // The binary, as a user runs it.
    let mut args = vec![
        "predict".to_string(),
        "--weights".into(),
        weights.display().to_string(),
        "--arch".into(),
        "yolo11n".into(),
        "--nc".into(),
        "2".into(),
        "--conf".into(),
        CONF.to_string(),
        "--iou".into(),
        IOU.to_string(),
        "--json".into(),
    ];
    args.extend(images.iter().map(|p| p.display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let stdout = support::fracture_stdout(&args);
    let ours: serde_json::Value = serde_json::from_str(&stdout).expect("predict --json output");
    for (i, &(w, h)) in SIZES.iter().enumerate() {
        assert_eq!(ours[i]["width"], w);
        assert_eq!(ours[i]["height"], h);
    }
    for i in 0..2 {
        let mine: Vec<Row> = ours[i]["boxes"]
            .as_array()
            .expect("boxes")
            .iter()
            .map(|b| {
                let f = |k: &str| b[k].as_f64().expect("number") as f32;
                [f("x1"), f("y1"), f("x2"), f("y2"), f("score"), f("class")]
            })
            .collect();
        let theirs = reference_rows(&reference[i]["boxes"]);
        // Same input bits; fused-conv summation order differs (1e-6 relative on ~400 px).
        assert_same(&mine, &theirs, 1e-3, 1e-4, &format!("image {}", SIZES[i].0));
    }

    // The resized image, half by half.
    let spec = ArchSpec { scale: Scale::N, num_classes: 2 };
    let opts = PredictOptions {
        nms: NmsConfig { conf: CONF, iou: IOU, ..NmsConfig::default() },
        ..PredictOptions::default()
    };
    let predictor = YoloPredictor::load(&weights, Some(spec), opts).expect("load weights");
    let inputs = Tensor::read_safetensors(out.join("inputs.safetensors")).expect("inputs");
    let theirs_input = &inputs.iter().find(|(k, _)| k == "input2").expect("input2").1;
    let image = read_gray(&images[2]).expect("read image");
    let (mine_input, lb) = predictor.preprocess(&image).expect("preprocess");
    assert_eq!(mine_input.size(), theirs_input.size(), "letterbox shape");
    let diff = (&mine_input - theirs_input).abs().max().double_value(&[]);
    // cv2: 8-bit output (0.5/255 rounding) from 11-bit fixed-point weights (~0.3/255 more).
    assert!(diff <= 1.0 / 255.0, "letterbox differs from cv2's by {diff}");
    let pred = predictor.forward(theirs_input).expect("forward");
    let mine = rows(&predictor.postprocess(&pred, &lb).expect("postprocess"));
    let theirs = reference_rows(&reference[2]["boxes"]);
    assert_same(&mine, &theirs, 1e-3, 1e-4, "resized image on ultralytics' input");
}

#[test]
fn bad_weights_give_errors_naming_the_tensor() {
    let dir = tempfile::tempdir().expect("tempdir");
    let img = dir.path().join("a.png");
    write_image(&img, 64, 64);
    let w = dir.path().join("w.safetensors");
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let _ = fracture_models::yolo::Yolo::new(
        &vs.root(),
        &fracture_models::yolo::YoloConfig { scale: Scale::N, num_classes: 1 },
    )
    .expect("model");
    vs.save(&w).expect("save plain state_dict");
    let (img, w) = (img.display().to_string(), w.display().to_string());

    let e = support::fracture_fails(&["predict", "--weights", &w, &img]);
    assert!(e.contains("--arch and --nc"), "{e}");
    let e = support::fracture_fails(&[
        "predict",
        "--weights",
        &w,
        "--arch",
        "yolo11s",
        "--nc",
        "1",
        &img,
    ]);
    assert!(e.contains("`model.0.bn.bias` has shape [16], the model expects [32]"), "{e}");
    let e = support::fracture_fails(&[
        "predict",
        "--weights",
        &w,
        "--arch",
        "yolo11n",
        "--nc",
        "2",
        &img,
    ]);
    assert!(e.contains("model.23.cv3.0.2.bias"), "{e}");
    // A good file and one unreadable image: the other is still processed, the exit says so.
    let bad = dir.path().join("broken.png");
    std::fs::write(&bad, b"\x89PNG\r\n\x1a\n garbage").expect("write");
    let e = support::fracture_fails(&[
        "predict",
        "--weights",
        &w,
        "--arch",
        "yolo11n",
        "--nc",
        "1",
        &img,
        &bad.display().to_string(),
    ]);
    assert!(e.contains("broken.png") && e.contains("1 of 2 image(s)"), "{e}");
}
