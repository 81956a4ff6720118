//! `fracture compare` end to end through the real binary: one tiny run per architecture (YOLO11n
//! and Faster R-CNN, one epoch at 160 px on 48 phantoms, the same split), compared; the table
//! has both rows, its numbers are those of `fracture eval` on the same weights and split, the
//! HTML page is self-contained, the qualitative figures exist and the fairness section finds
//! the split shared.
//!
//! Few libtorch threads: the test shares two cores with other jobs.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;

use serde_json::Value;
use support::fracture;

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

#[test]
fn compare_two_architectures() {
    let tmp = tempfile::tempdir().unwrap();
    let p = |name: &str| tmp.path().join(name);
    let s = |path: &Path| path.to_str().unwrap().to_string();
    let (data, split) = (p("data"), p("split.json"));
    let d = s(&data);
    fracture(&[
        "synth",
        "--out",
        &d,
        "--count",
        "48",
        "--seed",
        "3",
        "--size-min",
        "160",
        "--size-max",
        "192",
        "--fractured-fraction",
        "0.5",
    ]);
    fracture(&["split", "--data", &d, "--out", &s(&split), "--seed", "1"]);

    let (yolo, frcnn) = (p("yolo"), p("frcnn"));
    let common = |arch: &str, out: &Path| -> Vec<String> {
        ["train", "--arch", arch, "--data", &d, "--out", &s(out), "--split", &s(&split)]
            .iter()
            .map(|v| v.to_string())
            .chain(["--epochs", "1", "--imgsz", "160", "--seed", "1"].map(String::from))
            .collect()
    };
    let run = |args: Vec<String>| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        fracture(&args)
    };
    let mut y = common("yolo11n", &yolo);
    y.extend(["--batch", "8", "--threads", "2"].map(String::from));
    run(y);
    // Faster R-CNN, kept short: small inputs, few proposals and sampled RoIs, the ResNet frozen
    // (only the FPN, RPN and box head train).
    let hyp = p("frcnn.toml");
    std::fs::write(
        &hyp,
        "[frcnn]\nrpn_post_nms_top_n_train = 200\nrpn_post_nms_top_n_test = 100\n\
         box_batch_size_per_image = 64\ntrainable_backbone_layers = 0\n",
    )
    .unwrap();
    let mut f = common("frcnn-r50-fpn-v2", &frcnn);
    f.extend(
        ["--batch", "2", "--min-size", "128", "--max-size", "160", "--threads", "1", "--hyp"]
            .map(String::from),
    );
    f.push(s(&hyp));
    run(f);

    let out = p("compare");
    let text = fracture(&[
        "compare",
        &s(&yolo),
        &s(&frcnn),
        "--data",
        &d,
        "--out",
        &s(&out),
        "--threads",
        "2",
    ]);

    // The table: both rows.
    let md = std::fs::read_to_string(out.join("compare.md")).unwrap();
    println!("{md}");
    assert!(md.contains("| yolo | yolo11n | 1 |"), "{md}");
    assert!(md.contains("| frcnn | frcnn-r50-fpn-v2 | 1 |"), "{md}");
    assert!(text.contains("| yolo | yolo11n |"), "{text}");
    assert!(md.contains("same split: yes"), "{md}");
    assert!(md.contains("same epoch budget: yes"), "{md}");
    assert!(md.contains("same tuning budget: unknown"), "{md}");
    assert!(md.contains("same image size: yes"), "{md}");

    // The numbers are `fracture eval`'s on the same weights and split.
    let cmp = read_json(&out.join("compare.json"));
    let rows = cmp["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    for (row, dir) in rows.iter().zip([&yolo, &frcnn]) {
        let json = p(&format!("eval-{}.json", row["run"].as_str().unwrap()));
        fracture(&[
            "eval",
            "--weights",
            &s(&dir.join("weights/best.safetensors")),
            "--data",
            &d,
            "--split",
            "test",
            "--split-file",
            &s(&dir.join("split.json")),
            "--json",
            &s(&json),
            "--out",
            &s(&p(&format!("eval-{}", row["run"].as_str().unwrap()))),
            "--threads",
            "2",
        ]);
        let eval = read_json(&json);
        for key in ["map50", "map50_95", "precision", "recall", "f1"] {
            assert_eq!(row[key], eval["overall"][key], "{key} of {}", row["run"]);
        }
        let kept = read_json(&out.join(row["run"].as_str().unwrap()).join("eval.json"));
        assert_eq!(kept["overall"], eval["overall"]);
        assert!(row["parameters"].as_u64().unwrap() > 1_000_000, "{row}");
        assert!(row["latency_ms_per_image"].as_f64().unwrap() > 0.0, "{row}");
        assert!(row["train_seconds"].as_f64().unwrap() > 0.0, "{row}");
    }

    // The page is self-contained, the figures exist.
    let html = std::fs::read_to_string(out.join("compare.html")).unwrap();
    assert!(!html.contains("http://") && !html.contains("https://"));
    assert!(html.contains("src=\"data:image/png;base64,"));
    assert!(!html.contains("src=\"/") && !html.contains("src=\"."));
    // Two curves and four figures per run.
    assert_eq!(html.matches("<img ").count(), 12, "{}", &html[..html.len().min(3000)]);
    for run in ["yolo", "frcnn"] {
        for kind in ["found", "multiple", "missed", "true_negatives"] {
            let png = out.join(format!("qualitative_{run}_{kind}.png"));
            image::open(&png).unwrap_or_else(|e| panic!("{}: {e}", png.display()));
        }
    }
}
