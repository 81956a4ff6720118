//! The daemon with a model: a bundle made from ultralytics-initialised YOLO11n weights is
//! installed under `bundles/`, `fractured --once` analyses a capture folder, and the findings
//! logged in SQLite are exactly what the shared predictor finds on the same files (boxes in
//! original pixels, scores, operating points), with the bundle's identity on every run.
//! A bundle whose weights were altered after export is refused and images are logged as not
//! analysed.

mod common;

use std::path::Path;
use std::process::Command;

use common::State;
use fracture_models::bundle::{Bundle, Manifest, OperatingPoints};
use fracture_models::detector::{Detector, Finding as Found};
use fracture_models::frcnn::{FasterRcnn, FrcnnConfig, FrcnnPredictOptions, FrcnnPredictor};
use fracture_models::nms::NmsConfig;
use fracture_models::weights_file::{self, WeightsMeta};
use fracture_models::yolo::{PredictOptions, YoloPredictor};

const FRACTURED: &str = env!("CARGO_BIN_EXE_fractured");
const POINTS: OperatingPoints = OperatingPoints { suspicious: 0.05, definite: 0.5 };

/// Random-weight YOLO11n (nc=1) from ultralytics with spread class scores, as a bundle.
fn make_bundle(tmp: &Path, bundles: &Path) -> Bundle {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = tmp.join("peer");
    let img = tmp.join("seed.png");
    common::gray(64, 64, 1).save(&img).expect("seed image");
    let status = Command::new(root.join(".venv/bin/python"))
        .arg(root.join("tests/peers/yolo_predict_reference.py"))
        .arg("--out")
        .arg(&out)
        .args(["--case", "n:1:320:0.05:0.45", "--image"])
        .arg(&img)
        .status()
        .expect("run the ultralytics peer (scripts/setup makes .venv)");
    assert!(status.success());
    let meta = WeightsMeta {
        arch: "yolo11n".into(),
        classes: vec!["fracture".into()],
        imgsz: 320,
        extra: Default::default(),
    };
    let tensors = weights_file::load_tensors(&out.join("weights.safetensors")).expect("tensors");
    let w = tmp.join("w.safetensors");
    weights_file::save(&w, &tensors, &meta).expect("save");
    let manifest = Manifest::for_weights("test-n", &meta, POINTS);
    Bundle::write(&bundles.join("test-n"), &w, manifest).expect("bundle")
}

fn textured(w: u32, h: u32, seed: u32) -> image::GrayImage {
    image::GrayImage::from_fn(w, h, |x, y| {
        let noise = ((x.wrapping_mul(2_654_435_761) ^ y.wrapping_mul(40_503) ^ seed) % 41) as f32;
        let v = 128.0 + 60.0 * (x as f32 / 17.0).sin() * (y as f32 / 23.0).cos() + noise - 20.0;
        image::Luma([v.clamp(0.0, 255.0) as u8])
    })
}

fn run_once(state: &State) -> String {
    let config = state.tmp.path().join("fractured.toml");
    std::fs::write(&config, "[ingest]\nstable_ms = 100\nrescan_ms = 100\n").expect("config");
    let out = Command::new(FRACTURED)
        .arg("--state-dir")
        .arg(&state.root)
        .arg("--config")
        .arg(&config)
        .arg("--once")
        .output()
        .expect("spawn fractured");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "fractured failed:\n{err}");
    err
}

/// Writes textured images of `sizes` into capture/ and returns what `predictor` finds on
/// each (read back from the file, as the daemon reads it).
fn stage_images<D: Detector>(state: &State, predictor: &D, sizes: &[(u32, u32)]) -> Vec<Vec<Found>>
where
    D::Error: std::fmt::Debug,
{
    let mut expected = Vec::new();
    for (i, &(w, h)) in sizes.iter().enumerate() {
        let img = textured(w, h, i as u32);
        let path = state.tmp.path().join(format!("scan{i}.png"));
        img.save(&path).expect("png");
        let gray = fracture_models::pixels::read_gray(&path).expect("read");
        expected.push(predictor.detect(&gray).expect("detect"));
        std::fs::copy(&path, state.capture().join(format!("scan{i}.png"))).expect("copy");
    }
    assert!(expected.iter().all(|e| !e.is_empty()), "the weights must find something to compare");
    expected
}

/// The findings logged for each staged image equal `expected`, with the bundle's identity on
/// every run; returns the timing stages logged.
fn check_logged(state: &State, bundle: &Bundle, expected: &[Vec<Found>]) -> Vec<String> {
    let db = state.db();
    let conn = db.conn();
    for (i, want) in expected.iter().enumerate() {
        let name = format!("scan{i}.png");
        let (run_id, bundle_sha, status, reason): (i64, String, String, String) = conn
            .query_row(
                "SELECT runs.id, runs.bundle_sha256, runs.status, runs.backend_reason FROM runs \
                 JOIN images ON images.id = runs.image_id WHERE images.original_name = ?1",
                [&name],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .expect("one run per image");
        assert_eq!(status, "analysed");
        assert_eq!(bundle_sha, bundle.sha256);
        // `auto` (the default) on a bundle with weights only: libtorch, saying why not the rest.
        assert!(reason.starts_with("libtorch (auto); not used: "), "{reason}");
        assert!(reason.contains("tensorrt: "), "{reason}");
        let mut stmt = conn
            .prepare(
                "SELECT x1, y1, x2, y2, score, class_name, operating_point FROM findings \
                 WHERE run_id = ?1 ORDER BY score DESC, id",
            )
            .expect("prepare");
        let got: Vec<(f64, f64, f64, f64, f64, String, String)> = stmt
            .query_map([run_id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?))
            })
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows");
        assert_eq!(got.len(), want.len(), "{name}: finding count");
        let mut want = want.clone();
        want.sort_by(|a, b| b.score.total_cmp(&a.score));
        for (g, f) in got.iter().zip(&want) {
            // Same code, same input bits: equal up to the f32 -> REAL round trip.
            for (a, b) in [(g.0, f.x1), (g.1, f.y1), (g.2, f.x2), (g.3, f.y2), (g.4, f.score)] {
                assert!((a - f64::from(b)).abs() < 1e-5, "{name}: {g:?} vs {f:?}");
            }
            assert_eq!(g.5, "fracture");
            let op = if f.score >= POINTS.definite { "definite" } else { "suspicious" };
            assert_eq!(g.6, op);
        }
    }
    conn.prepare("SELECT DISTINCT stage FROM timings ORDER BY stage")
        .expect("prepare")
        .query_map([], |r| r.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("stages")
}

#[test]
fn logged_findings_equal_the_predictor_on_the_same_files() {
    let state = State::new();
    let bundle = make_bundle(state.tmp.path(), &state.root.join("bundles"));
    let opts = PredictOptions {
        nms: NmsConfig { conf: POINTS.suspicious, ..NmsConfig::default() },
        ..PredictOptions::default()
    };
    let predictor = YoloPredictor::load(&bundle.weights(), None, opts).expect("predictor");
    let expected = stage_images(&state, &predictor, &[(320, 320), (400, 300), (256, 384)]);
    run_once(&state);
    let stages = check_logged(&state, &bundle, &expected);
    for s in ["infer", "nms", "preprocess"] {
        assert!(stages.iter().any(|x| x == s), "no {s} timing in {stages:?}");
    }
}

/// A Faster R-CNN bundle (random weights with our metadata, trained-size 128/160) runs in
/// the daemon exactly as `FrcnnPredictor` runs on the host.
#[test]
fn a_faster_rcnn_bundle_is_analysed_like_the_host_predictor() {
    let state = State::new();
    tch::manual_seed(3);
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let _model =
        FasterRcnn::new(&vs.root(), &FrcnnConfig::new(2).with_sizes(128, 160)).expect("model");
    let tensors: Vec<(String, tch::Tensor)> = vs.variables().into_iter().collect();
    let mut meta = WeightsMeta {
        arch: fracture_models::frcnn::ARCH.into(),
        classes: vec!["fracture".into()],
        imgsz: 160,
        extra: Default::default(),
    };
    meta.extra.insert("min_size".into(), "128".into());
    meta.extra.insert("max_size".into(), "160".into());
    let w = state.tmp.path().join("frcnn.safetensors");
    weights_file::save(&w, &tensors, &meta).expect("save");
    let manifest = Manifest::for_weights("test-frcnn", &meta, POINTS);
    assert_eq!((manifest.nms_iou, manifest.max_det), (0.5, 100));
    let bundle =
        Bundle::write(&state.root.join("bundles").join("frcnn"), &w, manifest).expect("bundle");
    let opts = FrcnnPredictOptions {
        score_thresh: f64::from(POINTS.suspicious),
        ..FrcnnPredictOptions::default()
    };
    let predictor = FrcnnPredictor::load(&bundle.weights(), None, opts).expect("predictor");
    let expected = stage_images(&state, &predictor, &[(160, 160), (200, 150)]);
    let log = run_once(&state);
    assert!(log.contains("model loaded"), "{log}");
    let stages = check_logged(&state, &bundle, &expected);
    assert!(stages.iter().any(|x| x == "infer"), "{stages:?}");
}

#[test]
fn a_tampered_bundle_is_refused_and_images_are_not_analysed() {
    let state = State::new();
    let bundle = make_bundle(state.tmp.path(), &state.root.join("bundles"));
    // One byte changed in the weights after export.
    let mut bytes = std::fs::read(bundle.weights()).expect("read");
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(bundle.weights(), bytes).expect("write");
    textured(128, 128, 9).save(state.capture().join("a.png")).expect("png");
    let log = run_once(&state);
    assert!(log.contains("weights.safetensors has SHA-256"), "says why:\n{log}");
    let db = state.db();
    let status: String =
        db.conn().query_row("SELECT status FROM runs", [], |r| r.get(0)).expect("one run");
    assert_eq!(status, "not_analysed");
}
