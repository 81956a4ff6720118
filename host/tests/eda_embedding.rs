//! `fracture eda --weights` end to end on phantoms: a YOLO11n checkpoint (randomly
//! initialised, saved with our metadata as `fracture train` saves it: random features still
//! exercise the whole path) embeds every image, and the EDA folder gets the PCA and t-SNE
//! figures, the outlier grid and `embeddings.csv` with one row per image; `eda.json` and
//! `report.md` carry the numbers. Without `--weights`, none of that is written.

mod support;

use std::collections::HashSet;
use std::path::Path;

use fracture_models::weights_file::{self, WeightsMeta};
use fracture_models::yolo::{Scale, Yolo, YoloConfig};
use support::{fracture, fracture_fails};
use tch::nn::VarStore;
use tch::{Device, Tensor};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const EMBEDDING_FILES: [&str; 4] =
    ["embedding_pca.png", "embedding_tsne.png", "outliers_grid.png", "embeddings.csv"];

/// Random yolo11n weights (nc = 1, trained-at size 160) as a `fracture train` checkpoint.
fn random_checkpoint(path: &Path) -> TestResult {
    tch::manual_seed(7);
    let vs = VarStore::new(Device::Cpu);
    let _model = Yolo::new(&vs.root(), &YoloConfig { scale: Scale::N, num_classes: 1 })?;
    let tensors: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    let meta = WeightsMeta {
        arch: "yolo11n".into(),
        classes: vec!["fracture".into()],
        imgsz: 160,
        extra: Default::default(),
    };
    weights_file::save(path, &tensors, &meta)?;
    Ok(())
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

#[test]
fn eda_with_weights_writes_the_embedding_analysis() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let data = tmp.path().join("data");
    fracture(&[
        "synth",
        "--out",
        s(&data),
        "--count",
        "40",
        "--seed",
        "3",
        "--size-min",
        "224",
        "--size-max",
        "256",
    ]);
    fracture(&["split", "--data", s(&data), "--out", s(&tmp.path().join("split.json"))]);
    let weights = tmp.path().join("n.safetensors");
    random_checkpoint(&weights)?;

    let out = tmp.path().join("eda");
    let text = fracture(&[
        "eda",
        "--data",
        s(&data),
        "--out",
        s(&out),
        "--weights",
        s(&weights),
        "--outliers",
        "8",
    ]);
    assert!(text.contains("embeddings: 40 images x 256 dimensions from yolo11n"), "{text}");
    for f in EMBEDDING_FILES.iter().filter(|f| f.ends_with(".png")) {
        let img = image::open(out.join(f)).map_err(|e| format!("{f}: {e}"))?;
        assert!(img.width() > 500 && img.height() > 300, "{f}");
    }

    // One row per image, each image once, finite coordinates, scores in (0, 1).
    let csv = std::fs::read_to_string(out.join("embeddings.csv"))?;
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("image_id,body_part,fractured,pca1,pca2,tsne1,tsne2,anomaly_score")
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 40);
    let ids: HashSet<&str> = rows.iter().map(|r| r[0]).collect();
    assert_eq!(ids.len(), 40);
    for r in &rows {
        assert_eq!(r.len(), 8, "{r:?}");
        assert!(["0", "1"].contains(&r[2]), "{r:?}");
        let v: Vec<f64> = r[3..].iter().map(|x| x.parse()).collect::<Result<_, _>>()?;
        assert!(v.iter().all(|x| x.is_finite()), "{r:?}");
        assert!(v[4] > 0.0 && v[4] < 1.0, "{r:?}");
    }

    // The numbers in eda.json and report.md agree with the table.
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("eda.json"))?)?;
    let e = &json["embedding"];
    assert_eq!(e["images"], 40);
    assert_eq!(e["dimensions"], 256);
    assert_eq!(e["arch"], "yolo11n");
    let outliers = e["outliers"].as_array().ok_or("outliers")?;
    assert_eq!(outliers.len(), 8);
    let top_score = rows.iter().map(|r| r[7].parse::<f64>().unwrap_or(0.0)).fold(0.0, f64::max);
    assert_eq!(outliers[0]["score"].as_f64(), Some(top_score));
    let report = std::fs::read_to_string(out.join("report.md"))?;
    assert!(report.contains("## Embeddings"));
    for f in EMBEDDING_FILES.iter().filter(|f| f.ends_with(".png")) {
        assert!(report.contains(&format!("]({f})")), "report lacks {f}");
    }

    // Without --weights: today's EDA and nothing more.
    let plain = tmp.path().join("plain");
    fracture(&["eda", "--data", s(&data), "--out", s(&plain)]);
    assert!(plain.join("report.md").is_file());
    for f in EMBEDDING_FILES {
        assert!(!plain.join(f).exists(), "{f} written without --weights");
    }
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(plain.join("eda.json"))?)?;
    assert!(json.get("embedding").is_none());
    // Model flags need weights.
    let err = fracture_fails(&["eda", "--data", s(&data), "--out", s(&plain), "--imgsz", "160"]);
    assert!(err.contains("--weights"), "{err}");
    Ok(())
}
