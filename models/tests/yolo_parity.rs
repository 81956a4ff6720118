//! Parity of our YOLO11 with ultralytics' (the reference the study trained): the same random
//! weights (BN statistics randomised too) loaded into both sides must give the same parameter
//! counts, per-level raw head outputs, decoded `[B, 4 + nc, N]` predictions (also after BN
//! fusion) and the same NMS keeps. The reference numbers come from
//! `tests/peers/yolo_reference.py` run in the project's virtualenv (`scripts/setup`).
#![allow(clippy::unwrap_used)]

mod peers;

use peers::{Reference, max_abs};

use std::path::Path;
use std::sync::OnceLock;

use fracture_models::nms::{Detection, NmsConfig, non_max_suppression};
use fracture_models::yolo::decode::flatten_levels;
use fracture_models::yolo::{Scale, Yolo, YoloConfig, load_safetensors, parameter_count};
use tch::{Device, Kind, Tensor, nn};

const TOL: f64 = 1e-4;

/// The reference cases: `name:scale:nc:imgsz:batch`.
const CASES: [&str; 2] = ["n80:n:80:320:2", "s1:s:1:416:1"];

/// Runs the Python peer once for all cases; the directory lives as long as the test process.
fn reference_dir() -> &'static Path {
    static DIR: OnceLock<Result<tempfile::TempDir, String>> = OnceLock::new();
    let dir = DIR.get_or_init(|| peers::run_reference("yolo_reference.py", &CASES));
    match dir {
        Ok(d) => d.path(),
        Err(e) => panic!("{e}"),
    }
}

fn reference(name: &str) -> Reference {
    peers::load_reference(reference_dir(), name)
}

fn build(scale: Scale, nc: i64) -> (nn::VarStore, Yolo) {
    let vs = nn::VarStore::new(Device::Cpu);
    let model = Yolo::new(&vs.root(), &YoloConfig { scale, num_classes: nc }).unwrap();
    (vs, model)
}

#[test]
fn parameter_counts_match_ultralytics() {
    let expected = [
        (Scale::N, 80, 2_624_080),
        (Scale::N, 1, 2_590_035),
        (Scale::S, 80, 9_458_752),
        (Scale::S, 1, 9_428_179),
        (Scale::M, 80, 20_114_688),
        (Scale::L, 80, 25_372_160),
        (Scale::X, 80, 56_966_176),
    ];
    for (scale, nc, count) in expected {
        let (vs, _m) = build(scale, nc);
        assert_eq!(parameter_count(&vs), count, "yolo11{scale} nc={nc}");
    }
}

fn kept(dets: &[Detection]) -> Vec<(usize, i64)> {
    dets.iter().map(|d| (d.index, d.class)).collect()
}

fn nms_config(s: &serde_json::Value) -> NmsConfig {
    NmsConfig {
        conf: s["conf"].as_f64().unwrap() as f32,
        iou: s["iou"].as_f64().unwrap(),
        max_det: s["max_det"].as_u64().unwrap() as usize,
        max_nms: s["max_nms"].as_u64().unwrap() as usize,
        agnostic: s["agnostic"].as_bool().unwrap(),
        ..NmsConfig::default()
    }
}

/// Compares NMS on `pred` with the reference keeps; exact unless `ours_pred`.
fn check_nms(r: &Reference, pred: &Tensor, ours_pred: bool) {
    let batch = r.meta["batch"].as_u64().unwrap() as usize;
    for (k, s) in r.meta["nms"].as_array().unwrap().iter().enumerate() {
        let out = non_max_suppression(pred, &nms_config(s)).unwrap();
        assert_eq!(out.len(), batch);
        for (b, dets) in out.iter().enumerate() {
            let idx: Vec<i64> = Vec::try_from(&r.t[&format!("nms{k}_b{b}_idx")]).unwrap();
            let det = &r.t[&format!("nms{k}_b{b}_det")];
            let cls: Vec<f32> =
                if idx.is_empty() { vec![] } else { Vec::try_from(det.select(1, 5)).unwrap() };
            let want: Vec<(usize, i64)> =
                idx.iter().zip(&cls).map(|(&i, &c)| (i as usize, c as i64)).collect();
            assert!(!want.is_empty(), "setting {k} keeps nothing: a weak test");
            assert_eq!(
                kept(dets),
                want,
                "NMS setting {k}, image {b} (on {} output)",
                if ours_pred { "our" } else { "ultralytics'" }
            );
            let ours: Vec<f32> = dets
                .iter()
                .flat_map(|d| [d.bbox[0], d.bbox[1], d.bbox[2], d.bbox[3], d.score, d.class as f32])
                .collect();
            let ours = Tensor::from_slice(&ours).view([-1, 6]);
            let diff = max_abs(&ours, det);
            let tol = if ours_pred { TOL } else { 0.0 };
            assert!(diff <= tol, "NMS setting {k}, image {b}: boxes differ by {diff}");
        }
    }
}

fn parity(name: &str, scale: Scale) {
    let r = reference(name);
    let nc = r.meta["nc"].as_i64().unwrap();
    let (vs, mut model) = build(scale, nc);
    assert_eq!(parameter_count(&vs), r.meta["params"].as_i64().unwrap());
    load_safetensors(&vs, &r.dir.join("weights.safetensors")).unwrap();

    let x = &r.t["input"];
    Yolo::check_input(x).unwrap();
    let raw = tch::no_grad(|| model.forward_raw(x, false));
    assert_eq!(raw.len(), 3);
    for (i, level) in raw.iter().enumerate() {
        let d = max_abs(level, &r.t[&format!("raw{i}")]);
        eprintln!("{name}: raw level {i} {:?} max |diff| {d:.2e}", level.size());
        assert!(d < TOL, "raw level {i} differs by {d}");
    }
    let pred = tch::no_grad(|| model.forward_inference(x));
    let d = max_abs(&pred, &r.t["pred"]);
    let scale_px = r.t["pred"].abs().max().double_value(&[]);
    eprintln!("{name}: decoded {:?} max |diff| {d:.2e} (max |value| {scale_px:.1})", pred.size());
    assert!(d < TOL, "decoded output differs by {d}");

    // Where float32 rounding legitimately differs (other conv algorithms), boxes are compared
    // normalised by the input size.
    let imgsz = r.meta["imgsz"].as_f64().unwrap();
    let norm = |p: &Tensor| {
        let parts = p.split_with_sizes([4, nc], 1);
        Tensor::cat(&[&parts[0] / imgsz, parts[1].shallow_clone()], 1)
    };

    // A channels-last input (faster CPU convolutions) gives the same predictions.
    let x_cl = x.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2]);
    let pred_cl = tch::no_grad(|| model.forward_inference(&x_cl));
    let d_cl = max_abs(&norm(&pred_cl), &norm(&pred));
    eprintln!("{name}: channels-last input max |diff| (boxes / input size) {d_cl:.2e}");
    assert!(d_cl < TOL, "channels-last predictions differ by {d_cl}");

    check_nms(&r, &r.t["pred"], false);
    check_nms(&r, &pred, true);

    // Fused: ultralytics' own fused output differs from its unfused one by ~4e-3 px (float32
    // rounding through ~90 folded convs; raw logits move by ~1e-4), so boxes are compared
    // normalised by the input size and raw logits with 1e-3. Against ultralytics' fused model
    // the comparison is in pixels (the folding is done in the same operation order), with eager
    // `conv2d` as ultralytics runs it.
    model.fuse();
    fracture_models::packed_conv::set_enabled(false);
    let fused_raw = tch::no_grad(|| model.forward_raw(x, false));
    let d_raw = raw.iter().zip(&fused_raw).map(|(a, b)| max_abs(a, b)).fold(0.0, f64::max);
    let fused = tch::no_grad(|| model.forward_inference(x));
    let d_self = max_abs(&norm(&fused), &norm(&pred));
    let d_ref = max_abs(&fused, &r.t["pred_fused"]);
    let d_ref_unfused = max_abs(&r.t["pred_fused"], &r.t["pred"]);
    eprintln!(
        "{name}: fused vs unfused: raw {d_raw:.2e}, decoded (boxes / input size) {d_self:.2e}; \
         fused vs ultralytics fused {d_ref:.2e} px (ultralytics fused vs unfused {d_ref_unfused:.2e} px)"
    );
    assert!(d_raw < 10.0 * TOL, "fused raw outputs differ from unfused by {d_raw}");
    assert!(d_self < TOL, "fused output differs from unfused by {d_self}");
    assert!(d_ref < TOL, "fused output differs from ultralytics' fused by {d_ref}");
    // What inference runs on the CPU: the fused convolutions prepacked for oneDNN with SiLU
    // applied inside (`packed_conv`). Another convolution algorithm, so float32 rounding
    // differs as it does for channels-last input (~4e-3 px over ~90 layers): boxes compared
    // normalised by the input size, raw logits with 1e-3, as fused vs unfused above.
    fracture_models::packed_conv::set_enabled(true);
    let packed_raw = tch::no_grad(|| model.forward_raw(x, false));
    let d_packed_raw =
        fused_raw.iter().zip(&packed_raw).map(|(a, b)| max_abs(a, b)).fold(0.0, f64::max);
    let packed = tch::no_grad(|| model.forward_inference(x));
    let d_packed = max_abs(&norm(&packed), &norm(&fused));
    let packed_cl = tch::no_grad(|| model.forward_inference(&x_cl));
    let d_packed_cl = max_abs(&norm(&packed_cl), &norm(&fused));
    eprintln!(
        "{name}: packed vs eager fused: raw {d_packed_raw:.2e}, decoded (boxes / input size) \
         {d_packed:.2e}, channels-last input {d_packed_cl:.2e}"
    );
    assert!(d_packed_raw < 10.0 * TOL, "packed raw outputs differ by {d_packed_raw}");
    assert!(d_packed < TOL, "packed output differs from eager fused by {d_packed}");
    assert!(d_packed_cl < TOL, "packed channels-last output differs by {d_packed_cl}");
    model.unfuse();
    let again = tch::no_grad(|| model.forward_inference(x));
    assert!(max_abs(&again, &pred) == 0.0);
}

#[test]
fn yolo11n_matches_ultralytics() {
    parity("n80", Scale::N);
}

#[test]
fn yolo11s_matches_ultralytics() {
    parity("s1", Scale::S);
}

/// Training mode: batch-statistics batch norm and the running-statistics update (momentum 0.03).
#[test]
fn training_mode_matches_ultralytics() {
    let r = reference("n80");
    let (vs, model) = build(Scale::N, 80);
    load_safetensors(&vs, &r.dir.join("weights.safetensors")).unwrap();
    let raw = tch::no_grad(|| model.forward_raw(&r.t["input"], true));
    let (boxes, scores) = flatten_levels(&raw, model.reg_max(), model.num_classes());
    let d = max_abs(&boxes, &r.t["train_boxes"]).max(max_abs(&scores, &r.t["train_scores"]));
    eprintln!("n80: training-mode raw max |diff| {d:.2e}");
    assert!(d < TOL, "training-mode outputs differ by {d}");
    let vars = vs.variables();
    let mut checked = 0;
    for (key, want) in r.t.iter().filter_map(|(k, v)| Some((k.strip_prefix("train_")?, v))) {
        if let Some(ours) = vars.get(key) {
            let d = max_abs(ours, want);
            assert!(d < 1e-5, "{key} after one training step differs by {d}");
            checked += 1;
        }
    }
    assert_eq!(checked, 6, "running statistics compared");
}

#[test]
fn bad_weights_and_inputs_are_errors() {
    let r = reference("n80");
    let (vs, _m) = build(Scale::S, 80);
    let e = load_safetensors(&vs, &r.dir.join("weights.safetensors")).unwrap_err();
    assert!(
        e.to_string().contains("`model.0.bn.bias` has shape [16], the model expects [32]"),
        "{e}"
    );
    let (vs, _m) = build(Scale::N, 1);
    let e = load_safetensors(&vs, &r.dir.join("weights.safetensors")).unwrap_err();
    assert!(
        e.to_string()
            .contains("`model.23.cv3.0.0.1.bn.bias` has shape [80], the model expects [64]"),
        "{e}"
    );
    let bad = Tensor::zeros([1, 3, 100, 96], (Kind::Float, Device::Cpu));
    assert!(Yolo::check_input(&bad).is_err());
    assert!(Yolo::check_input(&Tensor::zeros([3, 64, 64], (Kind::Float, Device::Cpu))).is_err());
    assert!(
        Yolo::new(&vs.root().sub("x"), &YoloConfig { scale: Scale::N, num_classes: 0 }).is_err()
    );
}

/// Informational: median fused forward of yolo11s at 416, 2 threads
/// (`cargo test -p fracture-models --release --test yolo_parity -- --ignored --nocapture`).
#[test]
#[ignore]
fn yolo11s_forward_timing() {
    // The reference weights, not a fresh init: default-init activations shrink into float
    // denormals layer by layer, which makes CPU convolutions many times slower.
    let r = reference("s1");
    tch::set_num_threads(2);
    let (vs, mut model) = build(Scale::S, 1);
    load_safetensors(&vs, &r.dir.join("weights.safetensors")).unwrap();
    model.fuse();
    let x = r.t["input"].shallow_clone();
    for (label, input) in [
        ("contiguous", x.shallow_clone()),
        ("channels_last", x.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])),
    ] {
        let mut ts = Vec::new();
        tch::no_grad(|| {
            for i in 0..13 {
                let t0 = std::time::Instant::now();
                let _ = model.forward_inference(&input);
                if i >= 3 {
                    ts.push(t0.elapsed().as_secs_f64() * 1e3);
                }
            }
        });
        ts.sort_by(f64::total_cmp);
        eprintln!(
            "yolo11s 416 fused forward ({label}, 2 threads): median {:.1} ms, min {:.1} ms",
            ts[ts.len() / 2],
            ts[0]
        );
    }
}
