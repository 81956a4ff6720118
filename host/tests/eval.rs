//! `fracture eval` end to end through the real binary, on phantoms scored by the demo model
//! (a yolo11n trained on phantoms of the same kind, so the numbers are not all zero and no
//! training is needed): the report's numbers are `fracture metrics`' on the COCO files it
//! wrote, body parts partition the split, the operating points are ordered, the curves exist,
//! and `--bundle` rewrites the bundle's manifest so that it still verifies. Plus the picking of
//! operating points on a hand-made list.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};

use fracture_host::eval::operating_points::{Rule, Targets, pick};
use fracture_host::eval::tally::Scored;
use fracture_models::bundle::Bundle;
use fracture_models::weights_file;
use serde_json::Value;
use support::{fracture, fracture_fails};

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("{v} is not a number"))
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
    }
}

/// The demo weights as another file: float32 instead of float16, `scale` times the values.
fn weights_copy(src: &Path, dst: &Path, scale: f64) {
    let meta = weights_file::read_meta(src).unwrap().unwrap();
    let tensors: Vec<(String, tch::Tensor)> = weights_file::load_tensors(src)
        .unwrap()
        .into_iter()
        .map(|(n, t)| {
            let t = if t.is_floating_point() { t.to_kind(tch::Kind::Float) * scale } else { t };
            (n, t)
        })
        .collect();
    weights_file::save(dst, &tensors, &meta).unwrap();
}

#[test]
fn eval_matches_metrics_and_writes_the_bundle() {
    let tmp = tempfile::tempdir().unwrap();
    let p = |name: &str| tmp.path().join(name);
    let s = |path: &PathBuf| path.to_str().unwrap().to_string();
    let data = p("data");
    let d = s(&data);
    fracture(&[
        "synth",
        "--out",
        &d,
        "--count",
        "60",
        "--seed",
        "12",
        "--size-min",
        "224",
        "--size-max",
        "256",
        "--fractured-fraction",
        "0.5",
    ]);
    let split = p("split.json");
    fracture(&["split", "--data", &d, "--out", &s(&split), "--seed", "1"]);

    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../demo/bundle");
    let bundle = p("bundle");
    copy_dir(&demo, &bundle);
    let before = Bundle::open(&bundle).unwrap();
    // The bundle's network in another file (float32): accepted as the bundle's weights.
    let w32 = p("w32.safetensors");
    weights_copy(&bundle.join("weights.safetensors"), &w32, 1.0);

    let report_path = p("report/test.json");
    let text = fracture(&[
        "eval",
        "--weights",
        &s(&w32),
        "--data",
        &d,
        "--split",
        "test",
        "--split-file",
        &s(&split),
        "--json",
        &s(&report_path),
        "--bundle",
        &s(&bundle),
        "--threads",
        "2",
    ]);
    eprintln!("{text}");
    let r = read_json(&report_path);
    let out = p("report");

    // The same numbers as `fracture metrics` on the files the command wrote.
    for name in ["gt.json", "detections.json", "val_gt.json", "val_detections.json"] {
        assert!(out.join(name).is_file(), "{name} missing");
    }
    assert_eq!(r["files"]["gt_json"].as_str().unwrap(), s(&out.join("gt.json")));
    let m_path = p("metrics.json");
    fracture(&[
        "metrics",
        "--gt",
        &s(&out.join("gt.json")),
        "--pred",
        &s(&out.join("detections.json")),
        "--out",
        &s(&m_path),
    ]);
    let m = read_json(&m_path);
    let o = &r["overall"];
    for (ours, theirs) in [
        ("map50", "AP50"),
        ("map50_95", "AP"),
        ("precision", "precision"),
        ("recall", "recall"),
        ("f1", "f1"),
        ("conf_at_best_f1", "conf"),
        ("ultralytics_map50", "mAP50"),
        ("ultralytics_map50_95", "mAP50-95"),
    ] {
        assert_eq!(f(&o[ours]), f(&m[theirs]), "overall.{ours} vs metrics' {theirs}");
    }
    assert!(f(&o["map50"]) > 0.0, "the demo model finds some phantom fractures");

    // Counts: the split's images, partitioned by body part.
    let split_doc = read_json(&split);
    let n_test = split_doc["test"].as_array().unwrap().len();
    assert_eq!(r["n_images"].as_u64().unwrap() as usize, n_test);
    assert_eq!(m["images"].as_u64().unwrap() as usize, n_test);
    assert_eq!(r["n_boxes"], m["annotations"]);
    assert_eq!(r["n_detections"], m["detections"]);
    let parts = r["per_body_part"].as_object().unwrap();
    let sum = |k: &str| parts.values().map(|v| v[k].as_u64().unwrap()).sum::<u64>();
    assert_eq!(sum("images") as usize, n_test);
    assert_eq!(sum("boxes"), r["n_boxes"].as_u64().unwrap());
    let sizes = &r["per_size"];
    let boxes_by_size: u64 =
        ["small", "medium", "large"].iter().map(|k| sizes[k]["boxes"].as_u64().unwrap()).sum();
    assert_eq!(boxes_by_size, r["n_boxes"].as_u64().unwrap());
    let il = &r["image_level"];
    assert_eq!(
        (il["positives"].as_u64().unwrap() + il["negatives"].as_u64().unwrap()) as usize,
        n_test
    );

    // Operating points: ordered, chosen on val, and counted consistently on test.
    let op = &r["operating_points"];
    assert_eq!(op["chosen_on"], "val");
    let (sus, def) = (&op["suspicious"], &op["definite"]);
    let (sus_conf, def_conf) = (f(&sus["conf"]), f(&def["conf"]));
    assert!(0.0 < sus_conf && sus_conf <= def_conf && def_conf <= 1.0, "{sus_conf} {def_conf}");
    assert_eq!(
        op["val_images"].as_u64().unwrap() as usize,
        split_doc["val"].as_array().unwrap().len()
    );
    for point in [sus, def] {
        let e = &point["eval"];
        assert_eq!(
            e["tp"].as_u64().unwrap() + e["fn"].as_u64().unwrap(),
            r["n_boxes"].as_u64().unwrap()
        );
    }
    // A lower threshold keeps more: at least the definite point's true and false positives.
    assert!(sus["eval"]["tp"].as_u64() >= def["eval"]["tp"].as_u64());
    assert!(sus["eval"]["fp"].as_u64() >= def["eval"]["fp"].as_u64());
    assert_eq!(il["suspicious"]["conf"], sus["conf"]);
    assert_eq!(il["suspicious"]["sensitivity"], sus["eval"]["image_sensitivity"]);

    // Curves.
    for key in ["pr_png", "f1_png", "p_png", "r_png"] {
        let png = PathBuf::from(r["curves"][key].as_str().unwrap());
        assert!(png.starts_with(&out), "{key}: {}", png.display());
        image::open(&png).unwrap_or_else(|e| panic!("{}: {e}", png.display()));
    }
    assert!(f(&r["latency_ms_per_image"]["median"]) > 0.0);

    // The bundle: new operating points and metrics, same files, new identity, still verifies.
    let after = Bundle::open(&bundle).unwrap();
    // (f32 in both files, written as the shortest decimal that reads back as the same f32)
    assert_eq!(after.manifest.operating_points.suspicious, sus_conf as f32);
    assert_eq!(after.manifest.operating_points.definite, def_conf as f32);
    assert_eq!(after.manifest.files, before.manifest.files);
    assert_ne!(after.sha256, before.sha256);
    assert_eq!(r["bundle"]["sha256"].as_str().unwrap(), after.sha256);
    assert_eq!(after.manifest.metrics["test.mAP50"], f(&o["map50"]));
    assert_eq!(after.manifest.metrics["test.mAP50-95"], f(&o["map50_95"]));
    assert_eq!(after.manifest.metrics["val.suspicious.recall"], f(&sus["val_recall"]));
    assert_eq!(after.manifest.bundle_id, before.manifest.bundle_id);
    assert!(fracture(&["bundle", "verify", &s(&bundle)]).contains(": ok"));

    // Weights that are not the bundle's are refused before anything runs.
    let other = p("other.safetensors");
    weights_copy(&bundle.join("weights.safetensors"), &other, 1.5);
    let e = fracture_fails(&[
        "eval",
        "--weights",
        &s(&other),
        "--data",
        &d,
        "--bundle",
        &s(&bundle),
        "--json",
        &s(&p("refused/r.json")),
    ]);
    assert!(e.contains("its weights are not") && e.contains("other.safetensors"), "{e}");
    assert_eq!(Bundle::open(&bundle).unwrap().sha256, after.sha256, "bundle left as it was");

    // Without a split file: the dataset's own lists (fractured images only, so no
    // fracture-free image and no specificity); val is evaluated once and picks the points.
    let csv_report = p("csv/val.json");
    fracture(&[
        "eval",
        "--bundle",
        &s(&bundle),
        "--data",
        &d,
        "--split",
        "val",
        "--json",
        &s(&csv_report),
        "--threads",
        "2",
    ]);
    let r = read_json(&csv_report);
    assert!(r["split_source"].as_str().unwrap().ends_with("Utilities/Fracture Split/valid.csv"));
    assert_eq!(r["image_level"]["negatives"], 0);
    assert!(r["image_level"]["definite"]["specificity"].is_null());
    assert!(r["files"]["val_gt_json"].is_null());
    assert_eq!(r["operating_points"]["val_images"], r["n_images"]);
    let bad = fracture_fails(&[
        "eval",
        "--bundle",
        &s(&bundle),
        "--data",
        &s(&p("nowhere")),
        "--out",
        &s(&p("nowhere-out")),
    ]);
    assert!(bad.contains("nowhere"), "{bad}");
}

/// The picking rule on a hand-made list (10 boxes; cumulative TP/FP by threshold: 0.95 1/0,
/// 0.9 2/0, 0.85 2/1, 0.8 3/1, 0.7 4/1, 0.6 5/1, 0.5 5/2, 0.45 6/2, 0.4 7/2, 0.3 8/2,
/// 0.2 8/3, 0.15 9/3, 0.1 9/4, 0.05 9/5).
#[test]
fn operating_points_on_a_hand_made_list() {
    let list: Vec<Scored> = [
        (0.95, true),
        (0.9, true),
        (0.85, false),
        (0.8, true),
        (0.7, true),
        (0.6, true),
        (0.5, false),
        (0.45, true),
        (0.4, true),
        (0.3, true),
        (0.2, false),
        (0.15, true),
        (0.1, false),
        (0.05, false),
    ]
    .into_iter()
    .map(|(score, tp)| Scored { score, tp })
    .collect();
    let p = pick(&list, 10, Targets::default()).unwrap();
    // Recall 0.9 first reached at 0.15; precision ≥ 0.9 last holds at 0.9.
    assert_eq!((p.suspicious.score, p.suspicious.rule), (0.15, Rule::Target));
    assert_eq!((p.suspicious.tp, p.suspicious.fp), (9, 3));
    assert_eq!(p.suspicious.conf, 0.15f32.next_down());
    assert_eq!((p.definite.score, p.definite.rule), (0.9, Rule::Target));
    assert_eq!((p.definite.tp, p.definite.fp), (2, 0));
    assert!(!p.suspicious_lowered);
    // Out of reach: recall 0.95 -> the highest threshold with the largest recall (0.9 at
    // 0.15); precision 0.95 still holds at 0.9.
    let t = Targets { suspicious_recall: 0.95, definite_precision: 0.95 };
    let p = pick(&list, 10, t).unwrap();
    assert_eq!((p.suspicious.score, p.suspicious.rule), (0.15, Rule::MaxRecall));
    assert_eq!((p.definite.score, p.definite.rule), (0.9, Rule::Target));
    // Precision 0.8 last holds at 0.3, below recall 0.5's 0.6: suspicious is lowered to 0.3.
    let t = Targets { suspicious_recall: 0.5, definite_precision: 0.8 };
    let p = pick(&list, 10, t).unwrap();
    assert!(p.suspicious_lowered);
    assert_eq!((p.suspicious.score, p.definite.score), (0.3, 0.3));
    assert!(p.suspicious.conf <= p.definite.conf);
}
