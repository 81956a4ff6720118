//! Parity of our detection metrics with the reference implementations on hundreds of
//! randomised cases: the 12 COCO stats against pycocotools, and ultralytics' P/R/F1/mAP
//! against `ultralytics.utils.metrics.ap_per_class` with its validator's matching.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use fracture_models::metrics::coco_json::{CocoAnnotation, CocoCategory, CocoImage};
use fracture_models::metrics::{
    CocoDataset, Detection, ImagePredictions, evaluate, precision_recall_f1,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn python() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    assert!(
        p.exists(),
        "{} is missing: run scripts/setup (it creates the peer virtualenv)",
        p.display()
    );
    p
}

fn peer_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/peers/coco_eval.py")
}

fn run_peer(args: &[&str]) -> serde_json::Value {
    let out = Command::new(python()).arg(peer_script()).args(args).output().unwrap();
    assert!(out.status.success(), "peer failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// One random case exercising a chosen mix of the hard parts.
fn random_case(rng: &mut ChaCha8Rng, case: usize) -> (CocoDataset, Vec<Detection>) {
    let n_images = rng.random_range(1..12);
    let cat_ids: Vec<i64> = match case % 3 {
        0 => vec![1],
        1 => vec![1, 2],
        _ => vec![2, 5, 9],
    };
    let tied = case.is_multiple_of(4); // scores on a coarse grid: many ties
    let mut gt = CocoDataset {
        categories: cat_ids.iter().map(|&id| CocoCategory { id, name: format!("c{id}") }).collect(),
        ..Default::default()
    };
    let mut dets = Vec::new();
    let mut image_id = rng.random_range(1..50);
    let mut ann_id = 1;
    for _ in 0..n_images {
        image_id += rng.random_range(1..20);
        let (w, h) = (rng.random_range(60.0..640.0f64), rng.random_range(60.0..640.0f64));
        gt.images.push(CocoImage {
            id: image_id,
            file_name: String::new(),
            width: w as u32,
            height: h as u32,
        });
        let kind = rng.random_range(0..10);
        let n_gt = match kind {
            0 => 0,                        // negative image (maybe with false positives)
            1 => rng.random_range(15..40), // crowded
            _ => rng.random_range(1..5),
        };
        let score = |rng: &mut ChaCha8Rng| {
            if tied {
                f64::from(rng.random_range(1..6u8)) / 5.0
            } else {
                rng.random_range(0.01..1.0)
            }
        };
        let rand_box = |rng: &mut ChaCha8Rng| {
            // all area ranges: tiny (< 32²) to large (> 96²); some at the borders
            let bw = rng.random_range(2.0..(w * 0.6));
            let bh = rng.random_range(2.0..(h * 0.6));
            let x = if rng.random_bool(0.15) {
                0.0
            } else if rng.random_bool(0.15) {
                w - bw
            } else {
                rng.random_range(0.0..(w - bw))
            };
            let y = if rng.random_bool(0.15) { 0.0 } else { rng.random_range(0.0..(h - bh)) };
            [x, y, bw, bh]
        };
        for _ in 0..n_gt {
            let bbox = rand_box(rng);
            let category_id = cat_ids[rng.random_range(0..cat_ids.len())];
            let iscrowd = u8::from(rng.random_bool(0.08));
            // The area field need not equal w*h (pycocotools uses it for the ranges).
            let area = bbox[2]
                * bbox[3]
                * if rng.random_bool(0.2) { rng.random_range(0.5..1.5) } else { 1.0 };
            gt.annotations.push(CocoAnnotation {
                id: ann_id,
                image_id,
                category_id,
                bbox,
                area,
                iscrowd,
            });
            ann_id += 1;
            // A detection near most gts, occasionally two (duplicates).
            for _ in 0..rng.random_range(0..3) {
                let j = |rng: &mut ChaCha8Rng, s: f64| rng.random_range(-0.25..0.25) * s;
                let cat = if rng.random_bool(0.9) {
                    category_id
                } else {
                    cat_ids[rng.random_range(0..cat_ids.len())]
                };
                let d = [
                    bbox[0] + j(rng, bbox[2]),
                    bbox[1] + j(rng, bbox[3]),
                    bbox[2] * rng.random_range(0.7..1.3),
                    bbox[3] * rng.random_range(0.7..1.3),
                ];
                dets.push(Detection { image_id, category_id: cat, bbox: d, score: score(rng) });
            }
        }
        let n_fp = if kind == 2 { 150 } else { rng.random_range(0..4) }; // > maxDets sometimes
        for _ in 0..n_fp {
            let mut bbox = rand_box(rng);
            if rng.random_bool(0.05) {
                bbox[2] = 0.0; // zero-size detection
            }
            dets.push(Detection {
                image_id,
                category_id: cat_ids[rng.random_range(0..cat_ids.len())],
                bbox,
                score: score(rng),
            });
        }
    }
    // Detections for a category absent from the ground truth are ignored by both.
    if case.is_multiple_of(7) {
        dets.push(Detection { image_id, category_id: 99, bbox: [1.0, 1.0, 5.0, 5.0], score: 0.99 });
    }
    (gt, dets)
}

#[test]
fn coco_stats_equal_pycocotools() {
    let mut rng = ChaCha8Rng::seed_from_u64(2024);
    let dir = tempfile::tempdir().unwrap();
    let n_cases = 240;
    let mut ours = Vec::new();
    for case in 0..n_cases {
        let (gt, dets) = random_case(&mut rng, case);
        let d = dir.path().join(format!("case_{case:04}"));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("gt.json"), serde_json::to_string(&gt).unwrap()).unwrap();
        std::fs::write(d.join("dt.json"), serde_json::to_string(&dets).unwrap()).unwrap();
        ours.push(evaluate(&gt, &dets).unwrap().stats.as_array());
    }
    let theirs = run_peer(&["cases", dir.path().to_str().unwrap()]);
    let mut max_diff = 0.0f64;
    let mut defined = 0;
    for (case, ours) in ours.iter().enumerate() {
        let t = &theirs[format!("case_{case:04}")];
        for (k, o) in ours.iter().enumerate() {
            let r = t[k].as_f64().unwrap();
            let diff = (o - r).abs();
            assert!(
                diff <= 1e-6,
                "case {case} stat {k}: ours {o}, pycocotools {r} (case files under {})",
                dir.path().display()
            );
            max_diff = max_diff.max(diff);
            defined += usize::from(r > -1.0);
        }
    }
    // The cases must exercise real numbers, not only the undefined -1s.
    assert!(defined > n_cases * 8, "only {defined} defined stats");
    println!("{n_cases} cases, {defined} defined stats, max |diff| {max_diff:e}");
}

#[test]
fn prf_equals_ultralytics() {
    let mut rng = ChaCha8Rng::seed_from_u64(77);
    let mut cases = Vec::new();
    let mut json_cases = Vec::new();
    for case in 0..40 {
        let n_cls = 1 + case % 3;
        let mut images = Vec::new();
        for _ in 0..rng.random_range(1..15) {
            let mut img = ImagePredictions::default();
            for _ in 0..rng.random_range(0..6) {
                let (x, y) = (rng.random_range(0.0..300.0f32), rng.random_range(0.0..300.0f32));
                let (w, h) = (rng.random_range(5.0..120.0f32), rng.random_range(5.0..120.0f32));
                let c = rng.random_range(0..n_cls) as i64;
                img.gt_boxes.push([x, y, x + w, y + h]);
                img.gt_classes.push(c);
                for _ in 0..rng.random_range(0..3) {
                    let j = |rng: &mut ChaCha8Rng, s: f32| rng.random_range(-0.3..0.3f32) * s;
                    img.pred_boxes.push([
                        x + j(&mut rng, w),
                        y + j(&mut rng, h),
                        x + w + j(&mut rng, w),
                        y + h + j(&mut rng, h),
                    ]);
                    // Distinct scores: ultralytics sorts with numpy's unstable quicksort, so tied
                    // scores have no defined order to agree with.
                    img.pred_scores.push(rng.random_range(0.001..1.0f32));
                    img.pred_classes.push(if rng.random_bool(0.9) {
                        c
                    } else {
                        rng.random_range(0..n_cls) as i64
                    });
                }
            }
            for _ in 0..rng.random_range(0..3) {
                let (x, y) = (rng.random_range(0.0..300.0f32), rng.random_range(0.0..300.0f32));
                img.pred_boxes.push([x, y, x + 30.0, y + 40.0]);
                img.pred_scores.push(rng.random_range(0.001..1.0f32));
                img.pred_classes.push(rng.random_range(0..n_cls) as i64);
            }
            json_cases.push(serde_json::json!({
                "gt_boxes": img.gt_boxes, "gt_classes": img.gt_classes, "pred_boxes": img.pred_boxes,
                "pred_scores": img.pred_scores, "pred_classes": img.pred_classes,
            }));
            images.push(img);
        }
        let n = images.len();
        cases.push((images, json_cases.split_off(json_cases.len() - n)));
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("prf.json");
    let payload: Vec<&Vec<serde_json::Value>> = cases.iter().map(|c| &c.1).collect();
    std::fs::write(&file, serde_json::to_string(&payload).unwrap()).unwrap();
    let theirs = run_peer(&["prf", file.to_str().unwrap()]);
    let mut max_diff = 0.0f64;
    for (i, (images, _)) in cases.iter().enumerate() {
        let s = precision_recall_f1(images);
        let t = &theirs[i];
        for (name, ours) in [
            ("p", s.precision),
            ("r", s.recall),
            ("f1", s.f1),
            ("map50", s.map50),
            ("map", s.map50_95),
        ] {
            let r = t[name].as_f64().unwrap();
            // 1e-6: numpy sums the F1 smoothing window and the trapezoid in a different order
            // (pairwise) than we do; the values differ in the last bits only.
            assert!((ours - r).abs() <= 1e-6, "case {i} {name}: ours {ours}, ultralytics {r}");
            max_diff = max_diff.max((ours - r).abs());
        }
    }
    println!("40 P/R/F1 cases, max |diff| {max_diff:e}");
}
