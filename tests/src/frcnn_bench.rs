//! `fracture-bench frcnn`: our Faster R-CNN ResNet50-FPN v2 against torchvision's on the same
//! weights and images, 2 threads: the eval forward at 416 (batch 1; target ≤ 0.9×
//! torchvision's time) on libtorch and on ONNX Runtime (fp32 and INT8: one bundle exported by
//! `fracture export` and calibrated by `fracture calibrate`, with this run's proposal count),
//! and one training step at batch 2 (forward with the four losses, backward, AdamW).
//! torchvision runs before and after ours; its figure is the mean of the two medians (this
//! machine's speed drifts over minutes).

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};
use fracture_models::bundle::Bundle;
use fracture_models::frcnn::ARCH;
use fracture_models::frcnn::predictor::PROPOSALS_KEY;
use fracture_models::frcnn::{FasterRcnn, FrcnnConfig, FrcnnTarget, load_safetensors};
use fracture_models::weights_file::{self, WeightsMeta};
use fracture_runtime::backend::{ONNX_FP32, ONNX_INT8};
use fracture_runtime::{FrcnnGeometry, FrcnnInput, FrcnnOrt, OrtOptions};
use tch::nn::{OptimizerConfig, VarStore};
use tch::{Device, Tensor};

use crate::bench_inputs::median;
use crate::int8_bundle;

/// Settings of one `frcnn` run.
pub struct FrcnnBench {
    pub size: i64,
    pub passes: usize,
    pub steps: usize,
    pub threads: usize,
    /// Test-time proposals scored by the box head (torchvision's default 1000).
    pub proposals: i64,
}

struct Peer {
    forward_ms: f64,
    step_ms: f64,
}

fn run_peer(python: &Path, script: &Path, out: &Path, cfg: &FrcnnBench) -> anyhow::Result<Peer> {
    println!("torchvision: {} forwards, {} training steps ...", cfg.passes, cfg.steps);
    let status = Command::new(python)
        .arg(script)
        .arg("--out")
        .arg(out)
        .args(["--size", &cfg.size.to_string(), "--proposals", &cfg.proposals.to_string()])
        .args(["--passes", &cfg.passes.to_string(), "--steps", &cfg.steps.to_string()])
        .status()
        .context("running frcnn_bench.py")?;
    if !status.success() {
        bail!("frcnn_bench.py failed");
    }
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("bench.json"))?)?;
    Ok(Peer {
        forward_ms: v["forward_ms"].as_f64().context("bench.json: forward_ms")?,
        step_ms: v["step_ms"].as_f64().context("bench.json: step_ms")?,
    })
}

pub fn run(cfg: &FrcnnBench, fracture: &Path, workspace: &Path) -> anyhow::Result<()> {
    let python = workspace.join(".venv/bin/python");
    if !python.exists() {
        bail!("{} is missing: run scripts/setup", python.display());
    }
    let script = workspace.join("tests/peers/frcnn_bench.py");
    let dir = tempfile::tempdir()?;
    let before = run_peer(&python, &script, dir.path(), cfg)?;

    tch::set_num_threads(cfg.threads as i32);
    let inputs: HashMap<String, Tensor> =
        Tensor::read_safetensors(dir.path().join("inputs.safetensors"))?.into_iter().collect();
    let get =
        |k: &str| inputs.get(k).map(Tensor::shallow_clone).with_context(|| format!("inputs: {k}"));
    let images = [get("image0")?, get("image1")?];
    let targets = [
        FrcnnTarget { boxes: get("boxes0")?, labels: get("labels0")? },
        FrcnnTarget { boxes: get("boxes1")?, labels: get("labels1")? },
    ];
    let weights = dir.path().join("weights.safetensors");
    let mut cfg_model = FrcnnConfig::new(2).with_sizes(cfg.size, cfg.size);
    cfg_model.rpn.post_nms_top_n_test = cfg.proposals;
    let vs = VarStore::new(Device::Cpu);
    let mut model = FasterRcnn::new(&vs.root(), &cfg_model)?;
    load_safetensors(&vs, &weights)?;

    // As torchvision runs it (norms unfolded), then as our predictor does (`fuse`: norms and
    // ReLUs folded into prepacked oneDNN convolutions).
    let time_forward = |model: &FasterRcnn, label: &str| -> anyhow::Result<f64> {
        println!("ours ({label}): {} forwards ...", cfg.passes);
        median_ms(cfg.passes, || {
            tch::no_grad(|| model.forward_eval(std::slice::from_ref(&images[0])))?;
            Ok(())
        })
    };
    let unfused_fwd = time_forward(&model, "unfused")?;
    model.fuse();
    let ours_fwd = time_forward(&model, "fused")?;
    model.unfuse();
    println!("ours: {} training steps ...", cfg.steps);
    let mut opt = tch::nn::AdamW::default().wd(0.01).build(&vs, 1e-4)?;
    let ours_step = median_ms(cfg.steps, || {
        opt.zero_grad();
        let losses = model.forward_train(&images, &targets)?;
        let total = &losses.objectness + &losses.rpn_box_reg + &losses.classifier + &losses.box_reg;
        total.backward();
        opt.step();
        Ok(())
    })?;
    // One bundle for both ONNX Runtime rows: the peer's weights (as loaded above, before the
    // training steps) with our metadata, so `fracture export` keeps this run's proposal count,
    // then `fracture calibrate` adds its INT8 model.
    println!("onnxruntime: exporting a bundle and calibrating its INT8 model ...");
    let tagged = dir.path().join("weights-tagged.safetensors");
    let meta = WeightsMeta {
        arch: ARCH.to_string(),
        classes: vec!["fracture".to_string()],
        imgsz: u32::try_from(cfg.size)?,
        extra: HashMap::from([(PROPOSALS_KEY.to_string(), cfg.proposals.to_string())]),
    };
    weights_file::save(&tagged, &weights_file::load_tensors(&weights)?, &meta)?;
    let bundle_dir = dir.path().join("bundle");
    let (w, b) = (tagged.to_string_lossy(), bundle_dir.to_string_lossy());
    int8_bundle::run_quiet(fracture, &["export", "--weights", &w, "--bundle", &b])?;
    int8_bundle::calibrate(fracture, dir.path(), "frcnn", &bundle_dir)?;
    let bundle = Bundle::open(&bundle_dir)?;
    let ort_opts = OrtOptions { threads: Some(cfg.threads), ..OrtOptions::default() };
    int8_bundle::print_weight_form(&ort_opts);
    let input = {
        let s = images[0].size();
        let resized = model.transform.resize(&images[0]).contiguous();
        let r = resized.size();
        FrcnnInput {
            data: Vec::<f32>::try_from(resized.reshape([-1]))?,
            geometry: FrcnnGeometry { resized: [r[1], r[2]], original: [s[1], s[2]] },
        }
    };
    let time_ort = |file: &str| -> anyhow::Result<f64> {
        println!("onnxruntime {file}: {} forwards ...", cfg.passes);
        let ort = FrcnnOrt::open_bundle(&bundle, &bundle.dir.join(file), 0.05, &ort_opts)?;
        median_ms(cfg.passes, || {
            ort.forward(&input)?;
            Ok(())
        })
    };
    let ort_fwd = time_ort(ONNX_FP32)?;
    let int8_fwd = time_ort(ONNX_INT8)?;
    let after = run_peer(&python, &script, dir.path(), cfg)?;
    let theirs_fwd = (before.forward_ms + after.forward_ms) / 2.0;
    let theirs_step = (before.step_ms + after.step_ms) / 2.0;
    println!(
        "\nFaster R-CNN R50-FPN v2, {}x{} resize, {} threads, {} test proposals\n",
        cfg.size, cfg.size, cfg.threads, cfg.proposals
    );
    println!("{:<28} {:>12} {:>14} {:>8}", "", "ours (ms)", "torchvision", "ratio");
    println!(
        "{:<28} {:>12.0} {:>14.0} {:>8.2}",
        "eval forward, batch 1",
        ours_fwd,
        theirs_fwd,
        ours_fwd / theirs_fwd
    );
    println!(
        "{:<28} {:>12.0} {:>14.0} {:>8.2}",
        "  unfused (no prepacking)",
        unfused_fwd,
        theirs_fwd,
        unfused_fwd / theirs_fwd
    );
    println!(
        "{:<28} {:>12.0} {:>14.0} {:>8.2}",
        "ORT fp32 forward, batch 1",
        ort_fwd,
        theirs_fwd,
        ort_fwd / theirs_fwd
    );
    println!(
        "{:<28} {:>12.0} {:>14.0} {:>8.2}",
        "ORT int8 forward, batch 1",
        int8_fwd,
        theirs_fwd,
        int8_fwd / theirs_fwd
    );
    println!(
        "{:<28} {:>12.0} {:>14.0} {:>8.2}",
        "training step, batch 2",
        ours_step,
        theirs_step,
        ours_step / theirs_step
    );
    let ok = if ours_fwd / theirs_fwd <= 0.9 { "PASS" } else { "FAIL" };
    println!("\ntarget: forward <= 0.9x torchvision -> {ok}");
    Ok(())
}

/// Runs `f` once to warm up, then `passes` more times; the median of those, in ms.
fn median_ms(passes: usize, mut f: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<f64> {
    f()?;
    let mut ms = Vec::with_capacity(passes);
    for _ in 0..passes {
        let t0 = Instant::now();
        f()?;
        ms.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    Ok(median(ms))
}
