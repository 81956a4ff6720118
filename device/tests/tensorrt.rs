//! The daemon's TensorRT backend against the fake shim (no GPU here): with the fake selected
//! by `$FRACTURE_TRT_SHIM` and `[model] backend = "auto"`, `fractured --once` builds the
//! engine into `STATE/engines/` at start, runs every image on it (backend `tensorrt`, the
//! findings the runtime's `YoloTrt` gives on the same files) and says why, and loads the
//! cached engine on the next start. Without a shim, `auto` falls back to libtorch and every
//! run says why TensorRT was not used; `backend = "tensorrt"` without a shim leaves images
//! not analysed with the reason. `fracturectl engine build` prepares the same engine.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::State;
use fracture_models::bundle::{Bundle, Manifest, OperatingPoints};
use fracture_models::detector::{Detector, Finding as Found};
use fracture_models::nms::NmsConfig;
use fracture_models::weights_file::{self, WeightsMeta};
use fracture_models::yolo::{Scale, Yolo, YoloConfig};
use fracture_runtime::{YoloTrt, find_or_build};
use fracture_tensorrt::fake::yolo_marker;
use fracture_tensorrt::{FakeShim, Precision, Shim, build_info};

const FRACTURED: &str = env!("CARGO_BIN_EXE_fractured");
const FRACTURECTL: &str = env!("CARGO_BIN_EXE_fracturectl");
const POINTS: OperatingPoints = OperatingPoints { suspicious: 0.1, definite: 0.3 };
const IMGSZ: u32 = 64;
const ANCHORS: usize = 8;

/// Random-init YOLO11n weights (for the libtorch fallback) and a `model.onnx` the fake
/// builds its YOLO-shaped engine from (the fake parses no real ONNX).
fn make_bundle(state: &State) -> Bundle {
    tch::manual_seed(5);
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let _model =
        Yolo::new(&vs.root(), &YoloConfig { scale: Scale::N, num_classes: 1 }).expect("model");
    let tensors: Vec<(String, tch::Tensor)> = vs.variables().into_iter().collect();
    let meta = WeightsMeta {
        arch: "yolo11n".into(),
        classes: vec!["fracture".into()],
        imgsz: IMGSZ,
        extra: Default::default(),
    };
    let w = state.tmp.path().join("w.safetensors");
    weights_file::save(&w, &tensors, &meta).expect("save");
    let onnx = state.tmp.path().join("model.onnx");
    std::fs::write(&onnx, yolo_marker(1, ANCHORS)).expect("onnx");
    let manifest = Manifest::for_weights("test-trt", &meta, POINTS);
    Bundle::write_with(&state.root.join("bundles/trt"), &w, &[("model.onnx", &onnx)], manifest)
        .expect("bundle")
}

fn textured(w: u32, h: u32, seed: u32) -> image::GrayImage {
    image::GrayImage::from_fn(w, h, |x, y| {
        let v = (x * 3 + y * 5 + seed * 17) % 200 + 30;
        image::Luma([v as u8])
    })
}

/// Writes images into capture/ and returns each file's path as staged.
fn stage(state: &State, first: u32, sizes: &[(u32, u32)]) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    for (i, &(w, h)) in sizes.iter().enumerate() {
        let name = format!("scan{}.png", first + i as u32);
        let path = state.tmp.path().join(&name);
        textured(w, h, first + i as u32).save(&path).expect("png");
        std::fs::copy(&path, state.capture().join(&name)).expect("copy");
        out.push((name, path));
    }
    out
}

/// `fractured --once` with `[model]` lines and the shim environment variable (`None`:
/// removed).
fn run_once(state: &State, model: &str, shim_env: Option<&Path>) -> String {
    let config = state.tmp.path().join("fractured.toml");
    let text = format!("[ingest]\nstable_ms = 100\nrescan_ms = 100\n\n[model]\n{model}\n");
    std::fs::write(&config, text).expect("config");
    let mut cmd = Command::new(FRACTURED);
    cmd.arg("--state-dir").arg(&state.root).arg("--config").arg(&config).arg("--once");
    match shim_env {
        Some(p) => cmd.env("FRACTURE_TRT_SHIM", p),
        None => cmd.env_remove("FRACTURE_TRT_SHIM"),
    };
    let out = cmd.output().expect("spawn fractured");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "fractured failed:\n{err}");
    err
}

struct Run {
    status: String,
    backend: Option<String>,
    precision: Option<String>,
    reason: Option<String>,
    findings: Vec<(f64, f64, f64, f64, f64, String)>,
}

fn run_of(state: &State, name: &str) -> Run {
    let db = state.db();
    let conn = db.conn();
    let (id, status, backend, precision, reason): (i64, String, _, _, _) = conn
        .query_row(
            "SELECT runs.id, runs.status, runs.backend, runs.precision, runs.backend_reason \
             FROM runs JOIN images ON images.id = runs.image_id WHERE images.original_name = ?1",
            [name],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .expect("one run per image");
    let mut stmt = conn
        .prepare(
            "SELECT x1, y1, x2, y2, score, operating_point FROM findings WHERE run_id = ?1 \
             ORDER BY score DESC, id",
        )
        .expect("prepare");
    let findings = stmt
        .query_map([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    Run { status, backend, precision, reason, findings }
}

/// What `YoloTrt` finds on `path` through a private copy of the fake (its own engine cache).
fn expected(bundle: &Bundle, path: &Path) -> Vec<Found> {
    let dir = tempfile::tempdir().expect("tempdir");
    let lib = FakeShim::private_copy(dir.path()).expect("copy");
    let shim = Shim::load_exact(&lib).expect("shim");
    let cached = find_or_build(&shim, bundle, Precision::Fp16, &dir.path().join("e"), false)
        .expect("engine");
    let m = &bundle.manifest;
    let nms = NmsConfig {
        conf: POINTS.suspicious,
        iou: m.nms_iou,
        max_det: m.max_det,
        ..NmsConfig::default()
    };
    let model = YoloTrt::new(&shim, cached.engine, m.classes.clone(), nms, m.imgsz).expect("yolo");
    let mut found =
        model.detect(&fracture_models::pixels::read_gray(path).expect("read")).expect("detect");
    found.sort_by(|a, b| b.score.total_cmp(&a.score));
    found
}

fn engines(state: &State) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(state.root.join("engines"))
        .expect("STATE/engines")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn auto_builds_the_engine_at_start_runs_on_tensorrt_and_loads_it_next_time() {
    let state = State::new();
    let bundle = make_bundle(&state);
    let fake = build_info::fake_shim();
    let staged = stage(&state, 0, &[(64, 64), (120, 80)]);
    let log = run_once(&state, "backend = \"auto\"", Some(&fake));
    assert!(log.contains("backend chosen") && log.contains("tensorrt (auto)"), "{log}");
    let names = engines(&state);
    assert_eq!(names.len(), 2, "engine and identity: {names:?}");
    assert!(names[0].ends_with("-fp16-trt10.3.0-fake-gpu-fracture-tensorrt-tests-sm87.engine"));
    for (name, path) in &staged {
        let run = run_of(&state, name);
        assert_eq!(run.status, "analysed");
        assert_eq!(run.backend.as_deref(), Some("tensorrt"));
        assert_eq!(run.precision.as_deref(), Some("fp16"));
        let reason = run.reason.expect("a reason");
        assert!(reason.starts_with("tensorrt (auto)"), "{reason}");
        assert!(reason.contains("engine built (no engine for this bundle"), "{reason}");
        let want = expected(&bundle, path);
        assert!(!want.is_empty(), "the fake's engine finds boxes");
        assert_eq!(run.findings.len(), want.len(), "{name}");
        for (g, f) in run.findings.iter().zip(&want) {
            for (a, b) in [(g.0, f.x1), (g.1, f.y1), (g.2, f.x2), (g.3, f.y2), (g.4, f.score)] {
                assert!((a - f64::from(b)).abs() < 1e-5, "{name}: {g:?} vs {f:?}");
            }
            let op = if f.score >= POINTS.definite { "definite" } else { "suspicious" };
            assert_eq!(g.5, op);
        }
    }
    // Next start: the cached engine fits and is loaded, not rebuilt.
    let more = stage(&state, 10, &[(64, 64)]);
    run_once(&state, "backend = \"auto\"", Some(&fake));
    let reason = run_of(&state, &more[0].0).reason.expect("reason");
    assert!(reason.contains("cached engine loaded"), "{reason}");
    assert_eq!(engines(&state), names);
    // int8 for a bundle without an accepted INT8 check: auto falls back and says why.
    let more = stage(&state, 20, &[(64, 64)]);
    run_once(&state, "backend = \"auto\"\ntensorrt_precision = \"int8\"", Some(&fake));
    let run = run_of(&state, &more[0].0);
    assert_eq!(run.backend.as_deref(), Some("libtorch-cpu"));
    let reason = run.reason.expect("reason");
    assert!(reason.contains("tensorrt: bundle test-trt: cannot build an engine"), "{reason}");
    assert!(reason.contains("run `fracture calibrate` first"), "{reason}");
}

#[test]
fn without_a_shim_auto_falls_back_and_says_why() {
    let state = State::new();
    make_bundle(&state);
    let staged = stage(&state, 0, &[(64, 64)]);
    let missing = state.tmp.path().join("no-such-shim.so");
    let model = format!("backend = \"auto\"\ntensorrt_shim = \"{}\"", missing.display());
    run_once(&state, &model, None);
    let run = run_of(&state, &staged[0].0);
    assert_eq!(run.status, "analysed");
    // model.onnx is the fake's marker, so ONNX Runtime refuses it too: libtorch runs.
    assert_eq!(run.backend.as_deref(), Some("libtorch-cpu"));
    let reason = run.reason.expect("reason");
    assert!(reason.starts_with("libtorch (auto); not used: "), "{reason}");
    assert!(reason.contains("tensorrt: TensorRT is not available"), "{reason}");
    assert!(reason.contains(&missing.display().to_string()), "{reason}");
    assert!(!reason.contains('\n'), "one line: {reason}");
    assert!(engines(&state).is_empty());
    // The status page says it too.
    let out = Command::new(FRACTURECTL)
        .arg("--state-dir")
        .arg(&state.root)
        .args(["status", "--json"])
        .output()
        .expect("fracturectl status");
    assert!(out.status.success());
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(status["models"][0]["backend"], "libtorch-cpu");
    assert_eq!(status["models"][0]["backend_reason"], reason.as_str());
    let out = Command::new(FRACTURECTL)
        .arg("--state-dir")
        .arg(&state.root)
        .arg("status")
        .output()
        .expect("fracturectl status");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("  backend     libtorch (auto); not used: "), "{text}");
}

#[test]
fn tensorrt_as_asked_without_a_shim_leaves_images_not_analysed_with_the_reason() {
    let state = State::new();
    make_bundle(&state);
    let staged = stage(&state, 0, &[(64, 64)]);
    let missing = state.tmp.path().join("no-such-shim.so");
    let model = format!("backend = \"tensorrt\"\ntensorrt_shim = \"{}\"", missing.display());
    let log = run_once(&state, &model, Some(&build_info::fake_shim()));
    let run = run_of(&state, &staged[0].0);
    assert_eq!(run.status, "not_analysed");
    assert!(log.contains("tensorrt: TensorRT is not available"), "{log}");
    assert!(log.contains("images are logged as not analysed"), "{log}");
}

#[test]
fn fracturectl_engine_build_prepares_the_engine_the_daemon_loads() {
    let state = State::new();
    make_bundle(&state);
    let fake = build_info::fake_shim();
    let ctl = |extra: &[&str], shim: Option<&Path>| {
        let mut cmd = Command::new(FRACTURECTL);
        cmd.arg("--state-dir").arg(&state.root).args(["engine", "build"]).args(extra);
        match shim {
            Some(p) => cmd.env("FRACTURE_TRT_SHIM", p),
            None => cmd.env_remove("FRACTURE_TRT_SHIM"),
        };
        let out = cmd.output().expect("spawn fracturectl");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    };
    let (ok, text) = ctl(&[], Some(&fake));
    assert!(ok, "{text}");
    assert!(text.contains("engine built (no engine for this bundle"), "{text}");
    assert!(text.contains("fp16: warm-up inference passed"), "{text}");
    let (ok, text) = ctl(&["--precision", "fp16"], Some(&fake));
    assert!(ok && text.contains("cached engine loaded"), "{text}");
    let (ok, text) = ctl(&["--force"], Some(&fake));
    assert!(ok && text.contains("engine built (rebuild requested)"), "{text}");
    // INT8 without an accepted calibration, and no shim at all: refused, saying why.
    let (ok, text) = ctl(&["--precision", "int8"], Some(&fake));
    assert!(!ok && text.contains("run `fracture calibrate` first"), "{text}");
    let missing = state.tmp.path().join("nope.so");
    let (ok, text) = ctl(&["--shim", missing.to_str().expect("utf-8")], None);
    assert!(!ok && text.contains("TensorRT is not available"), "{text}");
    let (ok, text) = ctl(&["--precision", "fp17"], Some(&fake));
    assert!(!ok && text.contains("unknown precision"), "{text}");
    // The daemon then loads what fracturectl built.
    let staged = stage(&state, 0, &[(64, 64)]);
    run_once(&state, "backend = \"tensorrt\"", Some(&fake));
    let run = run_of(&state, &staged[0].0);
    assert_eq!(run.backend.as_deref(), Some("tensorrt"));
    let reason = run.reason.expect("reason");
    assert!(reason.starts_with("tensorrt (as asked); cached engine loaded"), "{reason}");
}
