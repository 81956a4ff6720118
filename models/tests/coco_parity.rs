//! Parity of our detection metrics with the reference implementations on hundreds of
//! randomised cases: the 12 COCO stats against pycocotools' COCOeval, and ultralytics'
//! P/R/F1/mAP against its validator's `match_predictions` + `ap_per_class`. The peers run from
//! the project's virtualenv (`scripts/setup` creates it), once per test over all cases.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use fracture_models::metrics::coco_json::{CocoAnnotation, CocoCategory, CocoImage};
use fracture_models::metrics::{
    CocoDataset, CocoStats, Detection, ImagePredictions, Matching, evaluate, load_detections,
    load_ground_truth, precision_recall_f1, precision_recall_f1_with,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn python() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    assert!(
        p.exists(),
        "{} is missing: run scripts/setup (it creates the peer virtualenv with pycocotools and \
         ultralytics)",
        p.display()
    );
    p
}

fn run_peer(args: &[&str]) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/peers/coco_eval.py");
    let out = Command::new(python()).arg(script).args(args).output().unwrap();
    assert!(out.status.success(), "peer failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Knobs of one random case.
struct Style {
    cat_ids: Vec<i64>,
    /// Scores on a coarse grid (many ties: order falls back to input order).
    tied: bool,
    /// Boxes on an integer grid (exact IoU ties between ground truths, IoU exactly at a
    /// threshold).
    integer: bool,
}

fn random_box(rng: &mut ChaCha8Rng, w: f64, h: f64, integer: bool) -> [f64; 4] {
    // All area ranges: from a few px² (small, < 32²) to most of the image (large, > 96²).
    let bw = rng.random_range(2.0..(w * 0.6));
    let bh = rng.random_range(2.0..(h * 0.6));
    // Some boxes touch the image border.
    let x = match rng.random_range(0..10) {
        0 => 0.0,
        1 => w - bw,
        _ => rng.random_range(0.0..(w - bw)),
    };
    let y = match rng.random_range(0..10) {
        0 => 0.0,
        1 => h - bh,
        _ => rng.random_range(0.0..(h - bh)),
    };
    let b = [x, y, bw, bh];
    if integer { b.map(f64::round) } else { b }
}

/// One random case. Annotation ids start at 1: pycocotools records a match as the matched
/// ground truth's id and later tests it for truthiness (`dtm > 0`, `np.logical_and(dtm, ...)`),
/// so a ground truth with id 0 would count as never matched there. That is a pycocotools quirk
/// we deliberately do not reproduce; real COCO files number annotations from 1.
fn random_case(rng: &mut ChaCha8Rng, case: usize) -> (CocoDataset, Vec<Detection>) {
    let style = Style {
        cat_ids: match case % 3 {
            0 => vec![1],
            1 => vec![1, 2],
            _ => vec![2, 5, 9],
        },
        tied: case.is_multiple_of(4),
        integer: case % 5 == 1,
    };
    let cats = &style.cat_ids;
    let mut gt = CocoDataset {
        categories: cats.iter().map(|&id| CocoCategory { id, name: format!("c{id}") }).collect(),
        ..Default::default()
    };
    let mut dets = Vec::new();
    let mut image_id = rng.random_range(1..50);
    let mut ann_id = 1;
    let score = |rng: &mut ChaCha8Rng| {
        if style.tied {
            f64::from(rng.random_range(1..6u8)) / 5.0
        } else {
            rng.random_range(0.01..1.0)
        }
    };
    for _ in 0..rng.random_range(1..12) {
        image_id += rng.random_range(1..20);
        let (w, h) = (rng.random_range(60.0..640.0f64), rng.random_range(60.0..640.0f64));
        gt.images.push(CocoImage {
            id: image_id,
            file_name: format!("{image_id}.png"),
            width: w as u32,
            height: h as u32,
        });
        let kind = rng.random_range(0..10);
        let n_gt = match kind {
            0 | 3 => 0,                    // negative image; kind 3 also without detections
            1 => rng.random_range(15..40), // crowded
            _ => rng.random_range(1..5),
        };
        for _ in 0..n_gt {
            let mut bbox = random_box(rng, w, h, style.integer);
            if rng.random_bool(0.03) {
                bbox[3] = 0.0; // a degenerate ground truth
            }
            let category_id = cats[rng.random_range(0..cats.len())];
            let iscrowd = u8::from(rng.random_bool(0.08));
            // pycocotools takes the area ranges from this field, which need not be w·h.
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
            // Most ground truths get a detection near them, some two (duplicates), some none.
            for _ in 0..rng.random_range(0..3) {
                let cat = if rng.random_bool(0.9) {
                    category_id
                } else {
                    cats[rng.random_range(0..cats.len())]
                };
                let j = |rng: &mut ChaCha8Rng, s: f64| rng.random_range(-0.25..0.25) * s;
                let mut d = [
                    bbox[0] + j(rng, bbox[2]),
                    bbox[1] + j(rng, bbox[3]),
                    bbox[2] * rng.random_range(0.7..1.3),
                    bbox[3] * rng.random_range(0.7..1.3),
                ];
                if style.integer {
                    d = d.map(f64::round);
                }
                if rng.random_bool(0.1) {
                    d = bbox; // exact hit: IoU 1
                }
                dets.push(Detection { image_id, category_id: cat, bbox: d, score: score(rng) });
            }
        }
        let n_fp = match kind {
            2 => 150, // more than maxDets=100 in one image
            3 => 0,
            _ => rng.random_range(0..4),
        };
        for _ in 0..n_fp {
            let mut bbox = random_box(rng, w, h, style.integer);
            if rng.random_bool(0.05) {
                bbox[2] = 0.0; // zero-size detection
            }
            let category_id = cats[rng.random_range(0..cats.len())];
            dets.push(Detection { image_id, category_id, bbox, score: score(rng) });
        }
    }
    // Detections for a category absent from the ground truth are ignored by both.
    if case.is_multiple_of(7) {
        dets.push(Detection { image_id, category_id: 99, bbox: [1.0, 1.0, 5.0, 5.0], score: 0.99 });
    }
    // Detections in file order are not grouped by image.
    if case.is_multiple_of(2) {
        let n = dets.len();
        for i in (1..n).rev() {
            dets.swap(i, rng.random_range(0..=i));
        }
    }
    match case {
        0 => dets.clear(),           // no detections at all
        1 => gt.annotations.clear(), // nothing to find: every stat is -1
        2 => gt.categories.push(CocoCategory { id: 77, name: "unused".into() }), // no gt, no dt
        _ => {}
    }
    (gt, dets)
}

#[test]
fn coco_stats_equal_pycocotools() {
    let mut rng = ChaCha8Rng::seed_from_u64(2024);
    let dir = tempfile::tempdir().unwrap();
    let n_cases = 240;
    let mut ours = Vec::new();
    let mut sizes = Vec::new();
    for case in 0..n_cases {
        let (gt, dets) = random_case(&mut rng, case);
        let d = dir.path().join(format!("case_{case:04}"));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("gt.json"), serde_json::to_string(&gt).unwrap()).unwrap();
        std::fs::write(d.join("dt.json"), serde_json::to_string(&dets).unwrap()).unwrap();
        // Evaluate what was written, through our loaders, as the product does: serde_json
        // (without its float_roundtrip feature) may parse a 17-digit number 1 ulp away from
        // the value it printed, and Python parses it exactly.
        let gt = load_ground_truth(&d.join("gt.json")).unwrap();
        let dets = load_detections(&d.join("dt.json")).unwrap();
        ours.push(evaluate(&gt, &dets).unwrap().stats.as_array());
        sizes.push((gt.images.len(), gt.annotations.len(), dets.len()));
    }
    let theirs = run_peer(&["--cases", dir.path().to_str().unwrap()]);

    let mut max_diff = 0.0f64;
    let (mut defined, mut exact) = (0, 0);
    let mut first_bad = None;
    for (case, ours) in ours.iter().enumerate() {
        let t: Vec<f64> = theirs[format!("case_{case:04}")]["bits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| f64::from_bits(v.as_u64().unwrap()))
            .collect();
        for (o, r) in ours.iter().zip(&t) {
            let diff = (o - r).abs();
            max_diff = max_diff.max(diff);
            defined += usize::from(*r > -1.0);
            exact += usize::from(o == r);
            if diff > 1e-6 && first_bad.is_none() {
                first_bad = Some((case, t.clone()));
            }
        }
    }
    if let Some((case, t)) = first_bad {
        let kept = dir.keep();
        let (n_img, n_ann, n_det) = sizes[case];
        let mut msg = format!(
            "case {case} ({n_img} images, {n_ann} annotations, {n_det} detections; files kept \
             in {}/case_{case:04}):\n  stat      ours            pycocotools\n",
            kept.display()
        );
        for ((name, o), r) in CocoStats::NAMES.iter().zip(ours[case]).zip(&t) {
            let flag = if (o - r).abs() > 1e-6 { "  <-- differs" } else { "" };
            msg += &format!("  {name:<6} {o:>15.12} {r:>15.12}{flag}\n");
        }
        panic!("COCO stats differ from pycocotools in {msg}");
    }
    if std::env::var_os("COCO_PARITY_KEEP").is_some() {
        println!("case files kept in {}", dir.keep().display());
    }
    // The cases must exercise real numbers, not only the undefined -1s.
    assert!(defined > n_cases * 8, "only {defined} defined stats");
    println!(
        "{n_cases} cases, {} stats ({defined} defined), {exact} bit-identical, max |diff| \
         {max_diff:e}",
        n_cases * 12
    );
}

/// One image of a P/R/F1 case: labels of 1–3 classes, detections near most of them, false
/// positives, some images empty. Scores are distinct: ultralytics sorts them with numpy's
/// unstable quicksort, so tied scores have no defined order to agree with.
fn random_image(rng: &mut ChaCha8Rng, n_cls: i64) -> ImagePredictions {
    let mut img = ImagePredictions::default();
    let n_labels = match rng.random_range(0..8) {
        0 => 0,
        1 => rng.random_range(8..20),
        _ => rng.random_range(1..6),
    };
    let score = |rng: &mut ChaCha8Rng| rng.random_range(0.001..1.0f32);
    for _ in 0..n_labels {
        let (x, y) = (rng.random_range(0.0..300.0f32), rng.random_range(0.0..300.0f32));
        let (w, h) = (rng.random_range(5.0..120.0f32), rng.random_range(5.0..120.0f32));
        let c = rng.random_range(0..n_cls);
        img.gt_boxes.push([x, y, x + w, y + h]);
        img.gt_classes.push(c);
        for _ in 0..rng.random_range(0..3) {
            let j = |rng: &mut ChaCha8Rng, s: f32| rng.random_range(-0.3..0.3f32) * s;
            img.pred_boxes.push([
                x + j(rng, w),
                y + j(rng, h),
                x + w + j(rng, w),
                y + h + j(rng, h),
            ]);
            img.pred_scores.push(score(rng));
            img.pred_classes.push(if rng.random_bool(0.9) {
                c
            } else {
                rng.random_range(0..n_cls)
            });
        }
    }
    for _ in 0..rng.random_range(0..4) {
        let (x, y) = (rng.random_range(0.0..300.0f32), rng.random_range(0.0..300.0f32));
        img.pred_boxes.push([x, y, x + rng.random_range(5.0..80.0), y + 40.0]);
        img.pred_scores.push(score(rng));
        // Class n_cls never has labels: such predictions count nowhere.
        img.pred_classes.push(rng.random_range(0..=n_cls));
    }
    img
}

#[test]
fn prf_equals_ultralytics() {
    let mut rng = ChaCha8Rng::seed_from_u64(77);
    let n_cases = 48;
    let cases: Vec<Vec<ImagePredictions>> = (0..n_cases)
        .map(|case| {
            let n_cls = 1 + case as i64 % 3;
            (0..rng.random_range(1..25)).map(|_| random_image(&mut rng, n_cls)).collect()
        })
        .collect();
    let payload: Vec<Vec<serde_json::Value>> = cases
        .iter()
        .map(|images| {
            images
                .iter()
                .map(|img| {
                    serde_json::json!({
                        "gt_boxes": img.gt_boxes, "gt_classes": img.gt_classes,
                        "pred_boxes": img.pred_boxes, "pred_scores": img.pred_scores,
                        "pred_classes": img.pred_classes,
                    })
                })
                .collect()
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("prf.json");
    std::fs::write(&file, serde_json::to_string(&payload).unwrap()).unwrap();
    let theirs = run_peer(&["--prf", file.to_str().unwrap()]);

    let (mut max_diff, mut exact, mut legacy_differs) = (0.0f64, 0, 0);
    for (i, images) in cases.iter().enumerate() {
        let s = precision_recall_f1(images);
        let legacy = precision_recall_f1_with(images, Matching::IouSorted);
        legacy_differs += usize::from(legacy.map50_95 != s.map50_95);
        let t = &theirs[i];
        for (name, ours) in [
            ("p", s.precision),
            ("r", s.recall),
            ("f1", s.f1),
            ("conf", s.confidence),
            ("map50", s.map50),
            ("map", s.map50_95),
        ] {
            let r = f64::from_bits(t["bits"][name].as_u64().unwrap());
            // 1e-6 leaves room for one numerical difference: ultralytics smooths the F1 curve
            // with np.convolve (a BLAS dot product, summed in its own order) where we sum the
            // window in sequence; the values agree to ~1e-16 and only an exact tie between
            // two window sums could move the chosen confidence.
            assert!(
                (ours - r).abs() <= 1e-6,
                "case {i} ({} images) {name}: ours {ours}, ultralytics {r}",
                images.len()
            );
            max_diff = max_diff.max((ours - r).abs());
            exact += usize::from(ours == r);
        }
    }
    println!(
        "{n_cases} P/R/F1 cases, {exact} of {} values bit-identical, max |diff| {max_diff:e}; \
         pre-8.4 matching would differ in {legacy_differs}",
        n_cases * 6
    );
    // The cases must tell the two matching algorithms apart, or they test little of it.
    assert!(legacy_differs > 0);
}
