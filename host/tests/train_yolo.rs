//! Training YOLO11 through the real `fracture` binary on phantoms: a short run writes every
//! artefact, and a run killed mid-training resumes from its last completed epoch and finishes.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::fracture;

fn csv_epochs(run: &Path) -> Vec<usize> {
    std::fs::read_to_string(run.join("metrics.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap().parse().unwrap())
        .collect()
}

#[test]
fn short_run_writes_everything_and_resumes_after_a_kill() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let d = data.to_str().unwrap();
    fracture(&["synth", "--out", d, "--count", "40", "--seed", "4"]);
    let common = [
        "train", "--arch", "yolo11n", "--data", d, "--imgsz", "128", "--batch", "8", "--seed", "1",
    ];

    // A complete short run.
    let run = tmp.path().join("run");
    let r = run.to_str().unwrap();
    let mut args = common.to_vec();
    args.extend(["--out", r, "--epochs", "2"]);
    let text = fracture(&args);
    assert!(text.contains("done: 2 epochs"), "{text}");
    for f in [
        "weights/last.safetensors",
        "weights/best.safetensors",
        "metrics.csv",
        "hyp.toml",
        "split.json",
        "curves_losses.png",
        "curves_metrics.png",
    ] {
        assert!(run.join(f).is_file(), "{f} missing");
    }
    assert_eq!(csv_epochs(&run), vec![1, 2]);
    let meta = fracture_models::weights_file::read_meta(&run.join("weights/best.safetensors"))
        .unwrap()
        .unwrap();
    assert_eq!(meta.arch, "yolo11n");
    assert_eq!(meta.classes, vec!["fracture".to_string()]);
    assert_eq!(meta.imgsz, 128);
    // The weights become a device bundle that verifies, and stops verifying when altered.
    let bundle = tmp.path().join("bundle");
    let b = bundle.to_str().unwrap();
    let best = run.join("weights/best.safetensors");
    let text =
        fracture(&["export", "--weights", best.to_str().unwrap(), "--bundle", b, "--half-weights"]);
    assert!(text.contains("bundle bundle (yolo11n, 1 class(es), 128 px)"), "{text}");
    assert!(fracture(&["bundle", "verify", b]).contains(": ok (2 file(s)"));
    // model.onnx is listed with its SHA-256, so verify covers it too.
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundle.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["files"]["model.onnx"].as_str().unwrap().len(), 64);
    let onnx = std::fs::read(bundle.join("model.onnx")).unwrap();
    std::fs::write(bundle.join("model.onnx"), b"tampered").unwrap();
    let e = support::fracture_fails(&["bundle", "verify", b]);
    assert!(e.contains("model.onnx has SHA-256"), "{e}");
    std::fs::write(bundle.join("model.onnx"), onnx).unwrap();
    let predicted = support::fracture_stdout(&[
        "predict",
        "--weights",
        bundle.join("weights.safetensors").to_str().unwrap(),
        "--json",
        data.join("images/Fractured")
            .read_dir()
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path()
            .to_str()
            .unwrap(),
    ]);
    assert!(predicted.trim_start().starts_with('['), "{predicted}");
    std::fs::write(bundle.join("weights.safetensors"), b"tampered").unwrap();
    let e = support::fracture_fails(&["bundle", "verify", b]);
    assert!(e.contains("has SHA-256"), "{e}");

    // A second run into the same folder is refused without --resume.
    let out = Command::new(env!("CARGO_BIN_EXE_fracture")).args(&args).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--resume"));

    // Killed after its first epoch, then resumed to the end.
    let run2 = tmp.path().join("run2");
    let r2 = run2.to_str().unwrap();
    let mut args = common.to_vec();
    args.extend(["--out", r2, "--epochs", "3"]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_fracture"))
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !run2.join("state.json").exists() {
        assert!(started.elapsed() < Duration::from_secs(300), "no epoch finished in 5 minutes");
        assert!(child.try_wait().unwrap().is_none(), "training ended before it could be killed");
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let done_before = csv_epochs(&run2).len();
    assert!(done_before < 3, "the kill came too late to test resuming");
    let mut resume = args.clone();
    resume.push("--resume");
    let text = fracture(&resume);
    assert!(text.contains("done: 3 epochs"), "{text}");
    assert_eq!(csv_epochs(&run2), vec![1, 2, 3]);
}

/// Weights saved by ultralytics' own trainer (its `last.pt`: the EMA model in float16,
/// converted to a plain safetensors state_dict) start our training: they load with their
/// names and kinds, and the run really starts from them.
#[test]
fn training_starts_from_ultralytics_saved_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let d = data.to_str().unwrap();
    fracture(&["synth", "--out", d, "--count", "40", "--seed", "6", "--fractured-fraction", "0.5"]);
    // Our split, so ultralytics trains on the same images.
    let split = tmp.path().join("split.json");
    fracture(&["split", "--data", d, "--out", split.to_str().unwrap(), "--seed", "1"]);
    let exported = tmp.path().join("ultralytics.safetensors");
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/peers/yolo_train_reference.py");
    let status = Command::new(python)
        .arg(script)
        .args(["--data", d, "--split", split.to_str().unwrap()])
        .arg("--out")
        .arg(tmp.path().join("ultralytics"))
        .args(["--scale", "n", "--epochs", "1", "--imgsz", "128", "--batch", "8", "--no-val"])
        .arg("--export")
        .arg(&exported)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "ultralytics training failed (scripts/setup installs it)");
    let init = fracture_models::weights_file::load_tensors(&exported).unwrap();
    let (_, first) = init.iter().find(|(n, _)| n == "model.0.conv.weight").unwrap();
    assert_eq!(first.kind(), tch::Kind::Half, "ultralytics saves float16 checkpoints");

    // Learning rate ~0 and no warm-up (whose bias rate is 0.1): weights stay where they start,
    // so the run's weights must be ultralytics' (batch-norm statistics aside).
    let hyp = tmp.path().join("hyp.toml");
    std::fs::write(&hyp, "lr0 = 1e-9\nwarmup_epochs = 0.0\n").unwrap();
    let run = tmp.path().join("run");
    fracture(&[
        "train",
        "--arch",
        "yolo11n",
        "--data",
        d,
        "--out",
        run.to_str().unwrap(),
        "--split",
        split.to_str().unwrap(),
        "--hyp",
        hyp.to_str().unwrap(),
        "--init",
        exported.to_str().unwrap(),
        "--epochs",
        "1",
        "--imgsz",
        "128",
        "--batch",
        "8",
    ]);
    let ours =
        fracture_models::weights_file::load_tensors(&run.join("weights/last.safetensors")).unwrap();
    let mut compared = 0;
    for (name, t) in &ours {
        if !name.ends_with("conv.weight") {
            continue;
        }
        let (_, src) = init.iter().find(|(n, _)| n == name).unwrap();
        let d = (t - src.to_kind(tch::Kind::Float)).abs().max().double_value(&[]);
        assert!(d < 1e-6, "{name} moved by {d} from ultralytics' value");
        compared += 1;
    }
    assert!(compared > 50, "only {compared} conv weights compared");
}
