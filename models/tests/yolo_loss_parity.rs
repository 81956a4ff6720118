//! Parity of our YOLO11 training loss with ultralytics' `v8DetectionLoss` (the loss the study
//! trained with): on the same random per-level head outputs and label batches, the box, cls
//! and dfl components, the total and the gradients with respect to the head outputs must
//! agree, and so must the task-aligned assignment (foreground anchors exactly, soft targets and
//! target boxes to float32 rounding). The reference numbers come from
//! `tests/peers/yolo_loss_reference.py` run in the project's virtualenv (`scripts/setup`).
#![allow(clippy::unwrap_used)]

mod peers;

use peers::{Reference, max_abs};

use std::path::Path;
use std::sync::OnceLock;

use fracture_models::yolo::loss::YoloLoss;
use tch::{Kind, Tensor};

/// Components and total: `|ours - ref| <= ABS + REL·|ref|`.
const REL: f64 = 1e-4;
const ABS: f64 = 1e-6;
/// Gradients: max abs difference <= GRAD_REL · max |ref grad| (per level).
const GRAD_REL: f64 = 1e-5;

/// `name:nc:height:width:batch:boxes per image:seed`. Empty images, an all-empty batch,
/// crowded images (with duplicated and sub-stride boxes), nc 1 and 3, 320 and 416, and a
/// non-square input.
const CASES: [&str; 7] = [
    "nc1_320_b2:1:320:320:2:0-3:11",
    "nc3_416_b4:3:416:416:4:0-1-7-25:12",
    "empty_320_b3:1:320:320:3:0-0-0:13",
    "nc1_416_b3:1:416:416:3:12-0-2:14",
    "nc3_320_b2_crowded:3:320:320:2:40-5:15",
    "nc1_320x416_b2:1:320:416:2:4-9:16",
    "nc3_416_b4_full:3:416:416:4:2-3-1-6:17",
];

/// Runs the Python peer once for all cases; the directory lives as long as the test process.
fn reference_dir() -> &'static Path {
    static DIR: OnceLock<Result<tempfile::TempDir, String>> = OnceLock::new();
    let dir = DIR.get_or_init(|| peers::run_reference("yolo_loss_reference.py", &CASES));
    match dir {
        Ok(d) => d.path(),
        Err(e) => panic!("{e}"),
    }
}

fn reference(name: &str) -> Reference {
    peers::load_reference(reference_dir(), name)
}

fn values(t: &Tensor) -> Vec<f64> {
    Vec::try_from(t.to_kind(Kind::Double).reshape([-1])).unwrap()
}

/// What one case measured.
struct Outcome {
    /// Relative differences of box, cls, dfl, total.
    rel: [f64; 4],
    /// Per level: max |grad diff| / max |ref grad| (0 when the reference is all zero).
    grad_rel: f64,
    grad_abs: f64,
    positives: i64,
    failures: Vec<String>,
}

fn run_case(case: &str) -> Outcome {
    let name = case.split(':').next().unwrap();
    let r = reference(name);
    let nc = r.meta["nc"].as_i64().unwrap();
    let imgsz = [r.meta["height"].as_i64().unwrap(), r.meta["width"].as_i64().unwrap()];
    let levels: Vec<Tensor> =
        (0..3).map(|i| r.t[&format!("level{i}")].copy().set_requires_grad(true)).collect();
    let loss = YoloLoss::yolo11(nc);
    let out = loss.compute_detailed(&levels, &r.t["targets"], Some(imgsz)).unwrap();
    out.total.backward();
    let mut failures = Vec::new();

    // Components and total.
    let mut ours = values(&out.components);
    ours.push(out.total.double_value(&[]));
    let mut theirs = values(&r.t["loss"]);
    theirs.push(r.t["total"].double_value(&[0]));
    let mut rel = [0.0; 4];
    for (k, label) in ["box", "cls", "dfl", "total"].iter().enumerate() {
        let (a, b) = (ours[k], theirs[k]);
        rel[k] = if b == 0.0 { (a - b).abs() } else { (a - b).abs() / b.abs() };
        if (a - b).abs() > ABS + REL * b.abs() {
            failures.push(format!("{name}: {label} {a} vs ultralytics {b}"));
        }
    }

    // Gradients.
    let (mut grad_rel, mut grad_abs) = (0.0f64, 0.0f64);
    for (i, l) in levels.iter().enumerate() {
        let reference = &r.t[&format!("grad{i}")];
        let diff = max_abs(&l.grad(), reference);
        let scale = reference.abs().max().double_value(&[]);
        grad_abs = grad_abs.max(diff);
        if scale > 0.0 {
            grad_rel = grad_rel.max(diff / scale);
        }
        if diff > GRAD_REL * scale {
            failures
                .push(format!("{name}: level {i} gradient differs by {diff} (max |grad| {scale})"));
        }
    }

    // The assignment.
    let a = &out.assignment;
    let fg = a.fg_mask.to_kind(Kind::Float);
    let ref_fg = &r.t["fg_mask"];
    let positives = fg.sum(Kind::Int64).int64_value(&[]);
    if max_abs(&fg, ref_fg) != 0.0 {
        let differ = (&fg - ref_fg).abs().sum(Kind::Int64).int64_value(&[]);
        failures.push(format!("{name}: {differ} anchors differ in the foreground mask"));
    } else {
        let d = max_abs(&a.target_scores, &r.t["target_scores"]);
        if d > 1e-6 {
            failures.push(format!("{name}: target scores differ by {d}"));
        }
        let fg3 = fg.unsqueeze(-1);
        let d = max_abs(&(&a.target_bboxes * &fg3), &(&r.t["target_bboxes"] * &fg3));
        if d > 1e-4 {
            failures.push(format!("{name}: target boxes differ by {d}"));
        }
    }
    if positives != r.meta["positives"].as_i64().unwrap() {
        failures.push(format!("{name}: {positives} positives vs {}", r.meta["positives"]));
    }
    Outcome { rel, grad_rel, grad_abs, positives, failures }
}

#[test]
fn loss_matches_ultralytics() {
    let mut failures = Vec::new();
    let mut worst = [0.0f64; 4];
    let (mut worst_grad_rel, mut worst_grad_abs) = (0.0f64, 0.0f64);
    for case in CASES {
        let o = run_case(case);
        eprintln!(
            "{case}: positives {}, rel diff box {:.1e} cls {:.1e} dfl {:.1e} total {:.1e}, \
             grad max |diff| {:.1e} ({:.1e} of max |grad|)",
            o.positives, o.rel[0], o.rel[1], o.rel[2], o.rel[3], o.grad_abs, o.grad_rel
        );
        for (w, r) in worst.iter_mut().zip(o.rel) {
            *w = w.max(r);
        }
        worst_grad_rel = worst_grad_rel.max(o.grad_rel);
        worst_grad_abs = worst_grad_abs.max(o.grad_abs);
        failures.extend(o.failures);
    }
    eprintln!(
        "worst: rel diff box {:.1e} cls {:.1e} dfl {:.1e} total {:.1e}; grad {:.1e} abs, \
         {:.1e} of max |grad|",
        worst[0], worst[1], worst[2], worst[3], worst_grad_abs, worst_grad_rel
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn empty_batch_matches_ultralytics() {
    // Also covered above; kept separate so an all-empty regression is named on its own.
    let o = run_case(CASES[2]);
    assert_eq!(o.positives, 0);
    assert!(o.failures.is_empty(), "{}", o.failures.join("\n"));
}
