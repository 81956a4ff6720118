//! End to end through the real `fracture` binary: phantoms in the FracAtlas layout, loaded back
//! without integrity issues, split, and explored (report and plots written).
#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;

use support::fracture;

use fracture_host::dataset::Dataset;

fn count_files(dir: &Path, ext: &str) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == ext))
        .count()
}

#[test]
fn synth_check_split_eda() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("phantoms");
    let d = data.to_str().unwrap();
    fracture(&["synth", "--out", d, "--count", "500", "--seed", "1"]);

    // The exact FracAtlas layout.
    let csv = std::fs::read_to_string(data.join("dataset.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next().unwrap(),
        "image_id,hand,leg,hip,shoulder,mixed,hardware,multiscan,fractured,fracture_count,frontal,lateral,oblique"
    );
    assert_eq!(lines.count(), 500);
    let fractured = count_files(&data.join("images/Fractured"), "jpg");
    let negative = count_files(&data.join("images/Non_fractured"), "jpg");
    assert_eq!(fractured + negative, 500);
    assert!((50..=130).contains(&fractured), "{fractured} fractured of 500, expected ~18%");
    assert_eq!(count_files(&data.join("Annotations/YOLO"), "txt"), 500);
    assert_eq!(count_files(&data.join("Annotations/PASCAL VOC"), "xml"), 500);
    let coco: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(data.join("Annotations/COCO JSON/COCO_fracture_masks.json"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(coco["images"].as_array().unwrap().len(), fractured);
    for split in ["train", "valid", "test"] {
        assert!(data.join(format!("Utilities/Fracture Split/{split}.csv")).is_file());
    }

    // Loads back with every cross-check passing, and the COCO file agrees with the YOLO labels.
    let ds = Dataset::load(&data).unwrap();
    assert!(ds.issues.is_empty(), "{:#?}", &ds.issues[..ds.issues.len().min(5)]);
    assert_eq!(coco["annotations"].as_array().unwrap().len(), ds.box_count());

    let check = fracture(&["check", "--data", d, "--strict"]);
    assert!(check.contains("500 images"), "{check}");
    let split = tmp.path().join("split.json");
    fracture(&["split", "--data", d, "--out", split.to_str().unwrap(), "--seed", "3"]);
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&split).unwrap()).unwrap();
    let n = |k: &str| s[k].as_array().unwrap().len();
    assert_eq!(n("train") + n("val") + n("test"), 500);

    let report = tmp.path().join("eda");
    fracture(&["eda", "--data", d, "--out", report.to_str().unwrap()]);
    let md = std::fs::read_to_string(report.join("report.md")).unwrap();
    let pngs = count_files(&report, "png");
    assert!(pngs >= 8, "only {pngs} plots");
    // Every plot the report links to exists and decodes.
    for link in md.split("](").skip(1) {
        let file = &link[..link.find(')').unwrap()];
        if file.ends_with(".png") {
            image::open(report.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        }
    }
    assert!(md.contains(&format!("{fractured}")), "report must state the fractured count");
}

#[test]
fn synth_is_deterministic_per_seed() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, c) = (tmp.path().join("a"), tmp.path().join("b"), tmp.path().join("c"));
    for (dir, seed) in [(&a, "7"), (&b, "7"), (&c, "8")] {
        fracture(&["synth", "--out", dir.to_str().unwrap(), "--count", "12", "--seed", seed]);
    }
    let read = |d: &Path| std::fs::read(d.join("dataset.csv")).unwrap();
    assert_eq!(read(&a), read(&b));
    let ds = Dataset::load(&a).unwrap();
    for r in &ds.images {
        let rel = r.path.strip_prefix(&a).unwrap();
        assert_eq!(
            std::fs::read(&r.path).unwrap(),
            std::fs::read(b.join(rel)).unwrap(),
            "{rel:?} differs"
        );
    }
    let other = Dataset::load(&c).unwrap();
    assert_ne!(
        ds.images.iter().map(|r| &r.sha256).collect::<Vec<_>>(),
        other.images.iter().map(|r| &r.sha256).collect::<Vec<_>>()
    );
}
