//! `fracture-bench backends`: every CPU backend side by side on the same bundle and images —
//! libtorch fp32, ONNX Runtime fp32 and (when the bundle has an accepted one) ONNX Runtime
//! INT8 — against ultralytics' `predict` with 2 threads and the FLOP lower bound (the fused
//! model's FLOPs over this machine's measured sgemm throughput). End to end is read → decode
//! → letterbox → forward → NMS → boxes in original pixels; "forward" is the graph alone on a
//! fixed input. Targets (yolo11s): ORT fp32 end to end ≤ 0.7× ultralytics and ≤ 1.1× the raw
//! ORT forward; ORT INT8 end to end ≤ 0.4× ultralytics.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};
use fracture_models::bundle::Bundle;
use fracture_models::detector::Finding;
use fracture_models::nms::NmsConfig;
use fracture_models::pixels::read_gray;
use fracture_models::yolo::{PredictOptions, YoloPredictor};
use fracture_runtime::backend::{ONNX_FP32, ONNX_INT8};
use fracture_runtime::{OrtOptions, YoloOrt};
use tch::{Device, Kind, Tensor};

use crate::bench_inputs::{median, write_predict_images};
use crate::int8_bundle;

/// Settings of one `backends` run.
pub struct BackendsBench {
    pub scales: Vec<String>,
    /// Timed passes over the images (one more warms up).
    pub passes: usize,
    pub threads: usize,
}

/// One timed row.
struct Row {
    name: String,
    e2e_ms: f64,
    forward_ms: f64,
}

/// Runs the benchmark; `fracture` exports the bundles.
pub fn run(cfg: &BackendsBench, fracture: &Path, workspace: &Path) -> anyhow::Result<()> {
    let python = workspace.join(".venv/bin/python");
    if !python.exists() {
        bail!("{} is missing: run scripts/setup", python.display());
    }
    tch::set_num_threads(cfg.threads as i32);
    let dir = tempfile::tempdir()?;
    let images = write_predict_images(dir.path())?;
    let peak = sgemm_gflops(cfg.threads);
    println!("measured sgemm peak, {} threads: {peak:.0} GFLOP/s", cfg.threads);
    for scale in &cfg.scales {
        bench_scale(cfg, scale, &images, dir.path(), fracture, &python, workspace, peak)?;
    }
    Ok(())
}

/// Best of a few 1024³ float32 matrix products: the FMA throughput this machine reaches.
fn sgemm_gflops(threads: usize) -> f64 {
    tch::set_num_threads(threads as i32);
    let n = 1024i64;
    let a = Tensor::randn([n, n], (Kind::Float, Device::Cpu));
    let b = Tensor::randn([n, n], (Kind::Float, Device::Cpu));
    let mut best = f64::MAX;
    for _ in 0..8 {
        let t0 = Instant::now();
        let c = a.matmul(&b);
        let _ = c.double_value(&[0, 0]);
        best = best.min(t0.elapsed().as_secs_f64());
    }
    2.0 * (n as f64).powi(3) / best / 1e9
}

#[allow(clippy::too_many_arguments)]
fn bench_scale(
    cfg: &BackendsBench,
    scale: &str,
    images: &[PathBuf],
    tmp: &Path,
    fracture: &Path,
    python: &Path,
    workspace: &Path,
    peak_gflops: f64,
) -> anyhow::Result<()> {
    let (conf, iou) = (0.25f32, 0.45f64);
    let peer_dir = tmp.join(format!("peer-{scale}"));
    let mut peer = Command::new(python);
    peer.arg(workspace.join("tests/peers/yolo_predict_reference.py"))
        .arg("--out")
        .arg(&peer_dir)
        .arg("--case")
        .arg(format!("{scale}:1:416:{conf}:{iou}"))
        .arg("--bench")
        .arg(cfg.passes.to_string());
    for p in images {
        peer.arg("--image").arg(p);
    }
    // The peer runs before and after ours (this machine's speed drifts over minutes); its
    // figure is the mean of the two medians.
    let mut peer_ms = Vec::new();
    let mut gflops = f64::NAN;
    let mut run_peer = |cmd: &mut Command| -> anyhow::Result<()> {
        println!("yolo11{scale}: ultralytics predict, {} passes ...", cfg.passes);
        if !cmd.status().context("running ultralytics")?.success() {
            bail!("yolo_predict_reference.py failed");
        }
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(peer_dir.join("bench.json"))?)?;
        peer_ms.push(v["median_ms"].as_f64().context("bench.json: median_ms")?);
        gflops = v["gflops"].as_f64().unwrap_or(f64::NAN);
        Ok(())
    };
    run_peer(&mut peer)?;

    let bundle_dir = tmp.join(format!("bundle-{scale}"));
    let status = Command::new(fracture)
        .arg("export")
        .arg("--weights")
        .arg(peer_dir.join("weights.safetensors"))
        .args(["--arch", &format!("yolo11{scale}"), "--nc", "1", "--imgsz", "416", "--bundle"])
        .arg(&bundle_dir)
        .status()
        .context("running fracture export")?;
    if !status.success() {
        bail!("fracture export failed");
    }
    int8_bundle::calibrate(fracture, tmp, scale, &bundle_dir)?;
    let bundle = Bundle::open(&bundle_dir)?;
    let nms = NmsConfig { conf, iou, ..NmsConfig::default() };

    let mut rows = Vec::new();
    let torch = YoloPredictor::load(
        &bundle.weights(),
        None,
        PredictOptions { imgsz: Some(416), nms: nms.clone(), ..PredictOptions::default() },
    )?;
    rows.push(time_backend("libtorch fp32 (rect letterbox)", cfg.passes, images, |img| {
        let (x, lb) = torch.preprocess(img)?;
        let t = Instant::now();
        let pred = torch.forward(&x)?;
        let fwd = t.elapsed();
        Ok((torch.postprocess(&pred, &lb)?, fwd.as_secs_f64() * 1e3))
    })?);
    let ort_opts = OrtOptions { threads: Some(cfg.threads), ..OrtOptions::default() };
    int8_bundle::print_weight_form(&ort_opts);
    let onnx_files = [(ONNX_FP32, "onnxruntime fp32"), (ONNX_INT8, "onnxruntime int8 (Q/DQ)")];
    let mut raw_forward = Vec::new();
    for (file, name) in onnx_files {
        if !bundle.manifest.files.contains_key(file) {
            bail!("the exported bundle has no {file}");
        }
        let ort = YoloOrt::open(
            &bundle.dir.join(file),
            bundle.manifest.classes.clone(),
            nms.clone(),
            &ort_opts,
        )?;
        let row = time_backend(name, cfg.passes, images, |img| {
            let (x, lb) = ort.preprocess(img);
            let t = Instant::now();
            let pred = ort.forward(&x)?;
            let fwd = t.elapsed();
            Ok((ort.postprocess(&pred, &lb)?, fwd.as_secs_f64() * 1e3))
        })?;
        raw_forward.push(row.forward_ms);
        rows.push(row);
    }
    run_peer(&mut peer)?;
    let theirs = peer_ms.iter().sum::<f64>() / peer_ms.len() as f64;
    let bound = gflops / peak_gflops * 1e3;

    println!(
        "\nyolo11{scale}, 416, batch 1, {} threads, {} images x {} timed passes; {gflops:.2} GFLOPs fused\n",
        cfg.threads,
        images.len(),
        cfg.passes
    );
    println!("{:<34} {:>10} {:>12} {:>10}", "", "e2e (ms)", "forward (ms)", "e2e/peer");
    println!(
        "{:<34} {:>10.1} {:>12} {:>10}",
        "ultralytics predict (2 threads)", theirs, "-", "1.00"
    );
    for r in &rows {
        println!(
            "{:<34} {:>10.1} {:>12.1} {:>10.2}",
            r.name,
            r.e2e_ms,
            r.forward_ms,
            r.e2e_ms / theirs
        );
    }
    println!("{:<34} {:>10} {:>12.1} {:>10.2}", "FLOP lower bound", "-", bound, bound / theirs);
    if scale == "s" {
        let fp32 = &rows[1];
        println!("\ntargets (yolo11s):");
        verdict("ORT fp32 e2e <= 0.7x ultralytics", fp32.e2e_ms / theirs, 0.7);
        verdict("ORT fp32 e2e <= 1.1x raw ORT forward", fp32.e2e_ms / raw_forward[0], 1.1);
        match rows.get(2) {
            Some(int8) => verdict("ORT int8 e2e <= 0.4x ultralytics", int8.e2e_ms / theirs, 0.4),
            None => println!("  ORT int8 e2e <= 0.4x ultralytics: not measured (no INT8 model)"),
        }
    }
    println!();
    Ok(())
}

fn verdict(what: &str, ratio: f64, target: f64) {
    let ok = if ratio <= target { "PASS" } else { "FAIL" };
    println!("  {what}: {ratio:.2} -> {ok}");
}

/// Times `detect` (decode included) over every image, `passes` times after one warm-up.
fn time_backend(
    name: &str,
    passes: usize,
    images: &[PathBuf],
    mut detect: impl FnMut(&fracture_models::pixels::GrayF32) -> anyhow::Result<(Vec<Finding>, f64)>,
) -> anyhow::Result<Row> {
    println!("  {name} ...");
    let (mut e2e, mut fwd) = (Vec::new(), Vec::new());
    for pass in 0..=passes {
        for p in images {
            let t0 = Instant::now();
            let img = read_gray(p)?;
            let (_, forward_ms) = detect(&img)?;
            if pass > 0 {
                e2e.push(t0.elapsed().as_secs_f64() * 1e3);
                fwd.push(forward_ms);
            }
        }
    }
    Ok(Row { name: name.to_string(), e2e_ms: median(e2e), forward_ms: median(fwd) })
}
