//! The project's ONNX export of Faster R-CNN ResNet50-FPN v2 (`export_frcnn`), checked against
//! ONNX Runtime on random weights:
//! 1. `onnx.checker.check_model(full_check=True)` accepts the file (shape inference included);
//!    its input is `images` `[batch, 3, height, width]` (all symbolic) and its outputs `boxes`
//!    `[batch, D, 4]`, `scores` `[batch, D]` float32 and `labels` `[batch, D]` int64;
//! 2. ONNX Runtime on already-resized inputs gives, image by image, the detections of our
//!    libtorch eval forward (`FasterRcnn::forward_eval_traced`, the path `FrcnnPredictor` runs,
//!    here with a resize rule that leaves the inputs as they are) on the same images: the same
//!    number of real (`score > 0`) detections, the same labels in the same order, scores within
//!    [`SCORE_TOL`], boxes within [`BOX_TOL`], and all-zero padding rows after them;
//! 3. both float32 forwards are equally close to the float64 forward of the same network
//!    (same detections, boxes within [`BOX_TOL_EXACT`]): what separates them is rounding.
//!
//! Inputs: a batch of two 181×232 images (neither side a multiple of 32: the graph pads), its
//! first image alone (dynamic batch) and a 224×160 image (another size, no padding), with 2
//! classes and torchvision's defaults (1,000 proposals, level top-k of 1,000 below the number
//! of anchors on P2/P3 and above it on P4..P6, 100 detections); and a batch of two 176×200
//! images with 3 classes and another configuration (300 proposals, score threshold 0.75, 50
//! detections) under which images have fewer detections than rows (padding rows checked).
//!
//! Weights: random, with batch-norm affine parameters and statistics randomised (γ in [0.7,
//! 1.3], β and the means in ±0.1, variances in [0.8, 1.25]) so every folded batch norm matters,
//! and the heads' last layers rescaled per output channel so that objectness logits spread
//! over ±8, class logits over ±4 and box deltas over ±1 (RPN) and ±3 (box head), as
//! `tests/peers/frcnn_reference.py` does for the parity test. With the default head
//! initialisation every score is within ~1e-3 of its neighbours and the rankings (top-k, NMS
//! order, the final sort) would hinge on float32 rounding. (Batch-norm statistics calibrated on
//! images, as the parity test does, put the random ResNet50 in a chaotic regime where float32
//! rounding grows to ~1e-4 in the scores, so near-tied detections swap places between any two
//! float32 implementations; with these statistics the two forwards' scores differ by < 1e-5.)
//!
//! The ONNX side runs `tests/peers/onnx_check.py` in the project's virtualenv (`scripts/setup`).
#![allow(clippy::unwrap_used)]

mod peers;
#[path = "peers/spread.rs"]
mod spread;

use std::collections::BTreeSet;
use std::time::Instant;

use fracture_models::frcnn::{FasterRcnn, FrcnnConfig, FrcnnDetections};
use fracture_models::onnx::{export_frcnn, save, trace_frcnn};
use peers::max_abs;
use spread::spread_heads;
use tch::{Device, Kind, Tensor, nn};

/// Absolute tolerance on detection scores (probabilities), as the issue asks (measured between
/// ONNX Runtime and libtorch: up to 8e-6).
const SCORE_TOL: f64 = 1e-4;
/// How far a float32 forward's boxes may be from the float64 forward of the same network, in
/// pixels. A detection's coordinate is a reference box moved by network outputs scaled by the
/// reference's size, twice: a proposal is an anchor (32 to 512 px) moved by `dx·w`, `exp(dw)·w`,
/// and the detection is that proposal (up to the image's ~230 px) moved by `dx/10·w`,
/// `exp(dw/5)·w`. Those outputs come out of ~60 float32 convolutions (C5's rounding error
/// against float64 is ~1e-5 of its spread here) and carry ~2e-5 absolute error (measured on
/// the box-head deltas), which the sizes turn into a few 1e-4 px: tens of float32 ulps of a 128-256
/// px coordinate (ulp 1.5e-5 px). Measured over three random models: libtorch up to 3.8e-4 px,
/// ONNX Runtime up to 5.0e-4 px from float64; the bound is twice the largest.
const BOX_TOL_EXACT: f64 = 1e-3;
/// Absolute tolerance on box coordinates between two float32 forwards (ONNX Runtime vs our
/// model): each is within [`BOX_TOL_EXACT`] of the exact maths, so they are within twice that
/// of each other (2e-3 px, under 1e-5 of the image side; measured up to 5.2e-4 px). The
/// issue's 1e-4 px is below what float32 can promise for these coordinates; scores keep 1e-4.
const BOX_TOL: f64 = 2.0 * BOX_TOL_EXACT;

struct Case {
    name: &'static str,
    nc: i64,
    seed: i64,
    /// Inputs: (suffix of the tensor name `images<suffix>`, batch, height, width).
    inputs: &'static [(&'static str, i64, i64, i64)],
    post_nms: i64,
    score_thresh: f64,
    detections: i64,
}

const CASES: [Case; 2] = [
    Case {
        name: "nc2",
        nc: 2,
        seed: 11,
        inputs: &[("", 2, 181, 232), ("_tall", 1, 224, 160)],
        post_nms: 1000,
        score_thresh: 0.05,
        detections: 100,
    },
    Case {
        name: "nc3",
        nc: 3,
        seed: 12,
        inputs: &[("", 2, 176, 200)],
        post_nms: 300,
        score_thresh: 0.75,
        detections: 50,
    },
];

fn config(case: &Case) -> FrcnnConfig {
    let mut cfg = FrcnnConfig::new(case.nc);
    cfg.rpn.post_nms_top_n_test = case.post_nms;
    cfg.roi_heads.score_thresh = case.score_thresh;
    cfg.roi_heads.detections_per_img = case.detections;
    cfg
}

/// Makes `model` resize nothing for `[h, w]` inputs (short side `min_size`, long side under
/// `max_size`): its eval forward then runs on the very pixels the ONNX graph gets.
fn identity_resize(model: &mut FasterRcnn, h: i64, w: i64) {
    model.transform.cfg.min_size = h.min(w);
    model.transform.cfg.max_size = 1333;
}

/// The model's eval forward on `images` `[B, 3, h, w]`, checking it did not resize.
fn eval(model: &mut FasterRcnn, images: &Tensor) -> Vec<FrcnnDetections> {
    let s = images.size();
    identity_resize(model, s[2], s[3]);
    let list: Vec<Tensor> = (0..s[0]).map(|i| images.get(i)).collect();
    let trace = tch::no_grad(|| model.forward_eval_traced(&list)).unwrap();
    assert!(trace.batch.image_sizes.iter().all(|&hw| hw == [s[2], s[3]]));
    trace.detections
}

/// Random weights as described in the module doc.
fn random_model(case: &Case) -> (nn::VarStore, FasterRcnn) {
    tch::manual_seed(case.seed);
    let vs = nn::VarStore::new(Device::Cpu);
    let mut model = FasterRcnn::new(&vs.root(), &config(case)).unwrap();
    let vars = vs.variables();
    // Sorted: the random draws must not depend on the map's iteration order.
    let bns: BTreeSet<String> =
        vars.keys().filter_map(|k| k.strip_suffix(".running_mean").map(str::to_string)).collect();
    let (_, _, h, w) = case.inputs[0];
    let calib = Tensor::rand([2, 3, h, w], (Kind::Float, Device::Cpu));
    identity_resize(&mut model, h, w);
    let list = [calib.get(0), calib.get(1)];
    tch::no_grad(|| {
        for bn in &bns {
            let _ = vars[&format!("{bn}.weight")].shallow_clone().uniform_(0.7, 1.3);
            let _ = vars[&format!("{bn}.bias")].shallow_clone().uniform_(-0.1, 0.1);
            let _ = vars[&format!("{bn}.running_mean")].shallow_clone().uniform_(-0.1, 0.1);
            let _ = vars[&format!("{bn}.running_var")].shallow_clone().uniform_(0.8, 1.25);
        }
        spread_heads(&model, &vars, &list);
    });
    (vs, model)
}

/// Our detections for one input: per image, float32 and (first input of a case) float64.
struct Expected {
    ours: Vec<FrcnnDetections>,
    exact: Option<Vec<FrcnnDetections>>,
}

#[test]
fn frcnn_export_matches_checker_and_onnxruntime() {
    let t0 = Instant::now();
    let work = tempfile::tempdir().unwrap();
    let mut expected: Vec<Vec<Expected>> = Vec::new();
    let mut dirs = Vec::new();
    for case in &CASES {
        let (mut vs, mut model) = random_model(case);
        let names: Vec<String> = (1..case.nc).map(|k| format!("class{k}")).collect();
        let proto = export_frcnn(&model, &names).unwrap();
        let meta: Vec<(String, String)> = proto
            .metadata_props
            .iter()
            .map(|e| (e.key.clone().unwrap(), e.value.clone().unwrap()))
            .collect();
        assert!(meta.contains(&("arch".into(), "frcnn-r50-fpn-v2".into())), "{meta:?}");
        let want_names = serde_json::to_string(&names).unwrap();
        assert!(meta.contains(&("names".into(), want_names)), "{meta:?}");
        let dir = work.path().join(case.name);
        std::fs::create_dir_all(&dir).unwrap();
        save(&proto, &dir.join("model.onnx")).unwrap();
        let mut inputs = Vec::new();
        let mut per_input = Vec::new();
        for (k, &(suffix, b, h, w)) in case.inputs.iter().enumerate() {
            let x = Tensor::rand([b, 3, h, w], (Kind::Float, Device::Cpu));
            let ours = eval(&mut model, &x);
            if k == 0 {
                check_trace(case, &model, &names, &x, &ours);
            }
            // The same network in float64: the exact maths both float32 forwards round.
            let exact = (k == 0).then(|| {
                vs.double();
                let e = eval(&mut model, &x.to_kind(Kind::Double));
                vs.float();
                e
            });
            per_input.push(Expected { ours, exact });
            inputs.push((format!("images{suffix}"), x));
        }
        let named: Vec<(&str, &Tensor)> = inputs.iter().map(|(n, t)| (n.as_str(), t)).collect();
        Tensor::write_safetensors(&named, dir.join("input.safetensors")).unwrap();
        dirs.push(dir.to_string_lossy().into_owned());
        expected.push(per_input);
        println!(
            "{}: model, export, libtorch forwards: {:.1} s",
            case.name,
            t0.elapsed().as_secs_f64()
        );
    }
    // Class names must match the model's classes. (Here rather than in a test of its own: a
    // parallel test reseeding torch's global generator would change the models above.)
    let vs = nn::VarStore::new(Device::Cpu);
    let model = FasterRcnn::new(&vs.root(), &config(&CASES[1])).unwrap();
    assert!(export_frcnn(&model, &["only one".to_string()]).is_err());

    let t1 = Instant::now();
    let cases: Vec<&str> = dirs.iter().map(String::as_str).collect();
    let out = peers::run_reference("onnx_check.py", &cases).unwrap_or_else(|e| panic!("{e}"));
    println!("onnx_check.py (checker, onnxruntime): {:.1} s", t1.elapsed().as_secs_f64());
    let mut padded_rows = 0;
    for (case, per_input) in CASES.iter().zip(&expected) {
        let r = peers::load_reference(out.path(), case.name);
        assert_eq!(r.meta["checker"], "ok");
        assert_eq!(r.meta["ir_version"], 8);
        assert_eq!(r.meta["opsets"][""], 17);
        assert_eq!(r.meta["producer"], "fracture");
        let inputs = r.meta["inputs"].as_array().unwrap();
        assert_eq!(inputs.len(), 1);
        assert_eq!(inputs[0]["name"], "images");
        assert_eq!(inputs[0]["elem_type"], 1);
        assert_eq!(inputs[0]["dims"], serde_json::json!(["batch", 3, "height", "width"]));
        let d = case.detections;
        let want = serde_json::json!([
            {"name": "boxes", "elem_type": 1, "dims": ["batch", d, 4]},
            {"name": "scores", "elem_type": 1, "dims": ["batch", d]},
            {"name": "labels", "elem_type": 7, "dims": ["batch", d]},
        ]);
        assert_eq!(r.meta["outputs"], want);
        for (&(suffix, b, h, w), e) in case.inputs.iter().zip(per_input) {
            let tag = format!("{}{suffix} {b}×{h}×{w}", case.name);
            let rows = |key: &str, i: i64| Rows {
                boxes: r.t[&format!("boxes{key}")].get(i),
                scores: r.t[&format!("scores{key}")].get(i),
                labels: r.t[&format!("labels{key}")].get(i),
            };
            for (i, ours) in e.ours.iter().enumerate() {
                let what = format!("{tag} image {i}");
                let ort = rows(suffix, i as i64);
                padded_rows += ort.check(&what, ours, d, BOX_TOL);
                if let Some(exact) = &e.exact {
                    // Each float32 forward is within BOX_TOL_EXACT of the exact maths.
                    let ours_rows = Rows::from_detections(ours, d);
                    ours_rows.check(
                        &format!("{what}: libtorch vs float64"),
                        &exact[i],
                        d,
                        BOX_TOL_EXACT,
                    );
                    ort.check(
                        &format!("{what}: onnxruntime vs float64"),
                        &exact[i],
                        d,
                        BOX_TOL_EXACT,
                    );
                }
            }
            if b > 1 {
                let what = format!("{tag} image 0 alone");
                rows(&format!("{suffix}_b1"), 0).check(&what, &e.ours[0], d, BOX_TOL);
            }
        }
    }
    assert!(padded_rows > 0, "no image has fewer detections than rows: padding untested");
    println!("total {:.1} s", t0.elapsed().as_secs_f64());
}

/// The traced graph (`trace_frcnn`: every ONNX op computed with libtorch, NonMaxSuppression
/// and RoiAlign included, as INT8 calibration observes it) gives our eval forward's detections,
/// and every NonMaxSuppression and RoiAlign output has a traced value.
fn check_trace(
    case: &Case,
    model: &FasterRcnn,
    names: &[String],
    x: &Tensor,
    ours: &[FrcnnDetections],
) {
    let trace = trace_frcnn(model, names, x).unwrap();
    for (i, det) in ours.iter().enumerate() {
        let rows = Rows {
            boxes: trace.value("boxes").unwrap().get(i as i64),
            scores: trace.value("scores").unwrap().get(i as i64),
            labels: trace.value("labels").unwrap().get(i as i64),
        };
        rows.check(&format!("{} traced image {i}", case.name), det, case.detections, BOX_TOL);
    }
    let mut detection_ops = 0;
    let mut pooled_rows = 0;
    for n in trace.model.graph.iter().flat_map(|g| &g.node) {
        let op = n.op_type.as_deref();
        if matches!(op, Some("NonMaxSuppression" | "RoiAlign")) {
            let out = &n.output[0];
            let value = trace.value(out).unwrap_or_else(|| panic!("{out} not traced"));
            if op == Some("RoiAlign") {
                // Each RoI is pooled at its own level only: a level may get none.
                pooled_rows += value.size()[0];
            } else {
                assert!(value.numel() > 0, "{out} is empty");
            }
            detection_ops += 1;
        }
    }
    // Every RoI (B · post-NMS proposals, placeholders included) pooled exactly once.
    let rois = trace.value("roi_heads.rois").expect("rois traced").size()[0];
    assert_eq!(pooled_rows, rois, "RoiAlign rows over all levels vs RoIs");
    // Five RPN levels' NMS, four RoiAlign levels, the final NMS.
    assert!(detection_ops >= 10, "{detection_ops} NMS/RoiAlign nodes");
}

/// One image's output rows: `[D, 4]`, `[D]`, `[D]`.
struct Rows {
    boxes: Tensor,
    scores: Tensor,
    labels: Tensor,
}

impl Rows {
    /// Our detections as the graph lays them out (padded with zero rows to `d`).
    fn from_detections(det: &FrcnnDetections, d: i64) -> Self {
        let n = det.scores.size()[0];
        let pad = |t: &Tensor| {
            let mut shape = t.size();
            shape[0] = d - n;
            Tensor::cat(
                &[t.shallow_clone(), Tensor::zeros(shape.as_slice(), (t.kind(), t.device()))],
                0,
            )
        };
        Self {
            boxes: pad(&det.boxes.to_kind(Kind::Float)),
            scores: pad(&det.scores.to_kind(Kind::Float)),
            labels: pad(&det.labels),
        }
    }

    /// Checks these rows against `det`: the same number of real (`score > 0`) rows, the same
    /// labels in the same order, scores within [`SCORE_TOL`], boxes within `box_tol`, and zero
    /// padding rows. Returns the number of padding rows.
    fn check(&self, what: &str, det: &FrcnnDetections, d: i64, box_tol: f64) -> i64 {
        let n = det.scores.size()[0];
        let real = self.scores.gt(0.0).sum(Kind::Int64).int64_value(&[]);
        assert!(n > 0, "{what}: no detections: a weak test");
        assert_eq!(real, n, "{what}: number of detections");
        let ours: Vec<i64> = Vec::try_from(&det.labels).unwrap();
        let theirs: Vec<i64> = Vec::try_from(self.labels.narrow(0, 0, n)).unwrap();
        assert_eq!(theirs, ours, "{what}: labels");
        let db = max_abs(&self.boxes.narrow(0, 0, n), &det.boxes);
        let ds = max_abs(&self.scores.narrow(0, 0, n), &det.scores);
        println!("{what}: {n} detections, max |diff| boxes {db:.3e} px, scores {ds:.3e}");
        assert!(ds <= SCORE_TOL, "{what}: scores differ by {ds}");
        assert!(db <= box_tol, "{what}: boxes differ by {db} px");
        let pad = d - n;
        if pad > 0 {
            assert_eq!(self.scores.narrow(0, n, pad).abs().max().double_value(&[]), 0.0, "{what}");
            assert_eq!(self.boxes.narrow(0, n, pad).abs().max().double_value(&[]), 0.0, "{what}");
            assert_eq!(self.labels.narrow(0, n, pad).abs().max().int64_value(&[]), 0, "{what}");
        }
        pad
    }
}
