//! `fracture-bench`: benchmarks that measure us and the reference peer side by side in one run
//! and print both figures and their ratio. Never run as tests (machines here are shared and
//! noisy); run by hand: `cargo run --release -p fracture-e2e --bin fracture-bench -- coco`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use fracture_e2e::bench_inputs::{median, write_predict_images};
use fracture_models::metrics::coco_json::{CocoAnnotation, CocoCategory, CocoImage};
use fracture_models::metrics::{
    CocoDataset, CocoStats, Detection, evaluate, load_detections, load_ground_truth,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

#[derive(Parser)]
#[command(about = "Side-by-side benchmarks against the reference implementations")]
struct Cli {
    #[command(subcommand)]
    bench: Bench,
}

#[derive(Subcommand)]
enum Bench {
    /// COCO bbox evaluation of 5,000 images / ~50k detections vs pycocotools (and
    /// faster-coco-eval when importable).
    Coco {
        #[arg(long, default_value_t = 5000)]
        images: usize,
        #[arg(long, default_value_t = 5)]
        runs: usize,
    },
    /// yolo11s at 416, batch 1, 2 threads: end-to-end predict (read → decode → letterbox →
    /// fused forward → NMS → original pixels) vs ultralytics' `YOLO.predict` on the same
    /// files and weights. Target: ours ≤ 0.7× ultralytics' time.
    Predict {
        /// Passes over the images (the first warms up and is not timed).
        #[arg(long, default_value_t = 5)]
        passes: usize,
        #[arg(long, default_value = "s")]
        scale: String,
    },
    /// Every CPU backend on the same exported bundle and images: libtorch fp32, ONNX Runtime
    /// fp32 (and INT8 when the bundle has one) vs ultralytics `predict` (2 threads) and the
    /// FLOP lower bound. Needs `cargo build --release -p fracture-host`. Targets (yolo11s): ORT
    /// fp32 end to end ≤ 0.7× ultralytics and ≤ 1.1× the raw ORT forward; INT8 ≤ 0.4×.
    Backends {
        /// YOLO11 scales to run.
        #[arg(long, value_delimiter = ',', default_value = "n,s")]
        scales: Vec<String>,
        #[arg(long, default_value_t = 5)]
        passes: usize,
        #[arg(long, default_value_t = 2)]
        threads: usize,
    },
    /// Faster R-CNN R50-FPN v2 vs torchvision on the same weights and images, 2 threads: eval
    /// forward at 416 on libtorch (target ≤ 0.9× torchvision), on ONNX Runtime fp32 and INT8
    /// (calibrated by `fracture calibrate`), and a training step at batch 2 (AdamW). Needs
    /// `cargo build --release -p fracture-host`.
    Frcnn {
        #[arg(long, default_value_t = 416)]
        size: i64,
        #[arg(long, default_value_t = 5)]
        passes: usize,
        #[arg(long, default_value_t = 3)]
        steps: usize,
        #[arg(long, default_value_t = 2)]
        threads: usize,
        /// Test-time proposals scored by the box head (torchvision's default: 1000).
        #[arg(long, default_value_t = 1000)]
        proposals: i64,
    },
    /// Training throughput (images/s over the training passes, validation excluded) of
    /// `fracture train` vs ultralytics on the same phantoms, split and settings (batch 16,
    /// 416, 2 threads, from scratch). The first epoch warms up and is not counted. Needs
    /// `cargo build --release -p fracture-host` (the `fracture` binary). Target: ≥ 1.0×.
    Train {
        #[arg(long, default_value = "n")]
        scale: String,
        #[arg(long, default_value_t = 96)]
        images: usize,
        #[arg(long, default_value_t = 3)]
        epochs: usize,
        #[arg(long, default_value_t = 416)]
        imgsz: u32,
        #[arg(long, default_value_t = 16)]
        batch: usize,
    },
    /// The bedside daemon's overhead beyond model inference: `fractured --once` on N phantoms
    /// (16-bit PNG) with the demo bundle on the CPU; per-stage latency and throughput from its
    /// SQLite log, vs the model alone (the `infer` stage). Needs `cargo build --release -p
    /// fracture-host -p fracture-device`. Target: overhead ≤ 10% of the model's time.
    Daemon {
        #[arg(long, default_value_t = 200)]
        images: usize,
        /// Smallest phantom side in pixels (the phantom generator's default).
        #[arg(long, default_value_t = 352)]
        size_min: u32,
        /// Largest phantom side in pixels.
        #[arg(long, default_value_t = 480)]
        size_max: u32,
        /// Run with `[ingest] decode_ahead = false` (to measure what decode-ahead buys).
        #[arg(long)]
        no_decode_ahead: bool,
    },
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A realistic detector output: 0-5 fractures per image, ~10 detections per image, most
/// true boxes found with jitter, the rest false positives.
fn synthetic_case(n_images: usize, seed: u64) -> (CocoDataset, Vec<Detection>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut gt = CocoDataset {
        categories: vec![CocoCategory { id: 1, name: "fracture".into() }],
        ..Default::default()
    };
    let mut dets = Vec::new();
    for i in 0..n_images {
        let id = i as i64 + 1;
        let (w, h) = (rng.random_range(300.0..900.0f64), rng.random_range(300.0..900.0f64));
        gt.images.push(CocoImage {
            id,
            file_name: format!("{id}.jpg"),
            width: w as u32,
            height: h as u32,
        });
        let n_gt = rng.random_range(0..6);
        for _ in 0..n_gt {
            let (bw, bh) = (rng.random_range(8.0..w / 3.0), rng.random_range(8.0..h / 3.0));
            let bbox = [rng.random_range(0.0..w - bw), rng.random_range(0.0..h - bh), bw, bh];
            let ann_id = gt.annotations.len() as i64 + 1;
            gt.annotations.push(CocoAnnotation {
                id: ann_id,
                image_id: id,
                category_id: 1,
                bbox,
                area: bw * bh,
                iscrowd: 0,
            });
            if rng.random_bool(0.8) {
                let j = rng.random_range(-0.2..0.2);
                dets.push(Detection {
                    image_id: id,
                    category_id: 1,
                    bbox: [bbox[0] + j * bw, bbox[1] - j * bh, bw * (1.0 + j), bh],
                    score: rng.random_range(0.3..1.0),
                });
            }
        }
        while dets.iter().rev().take_while(|d| d.image_id == id).count() < 10 {
            let (bw, bh) = (rng.random_range(8.0..w / 3.0), rng.random_range(8.0..h / 3.0));
            dets.push(Detection {
                image_id: id,
                category_id: 1,
                bbox: [rng.random_range(0.0..w - bw), rng.random_range(0.0..h - bh), bw, bh],
                score: rng.random_range(0.0..0.8),
            });
        }
    }
    (gt, dets)
}

fn coco(n_images: usize, runs: usize) -> anyhow::Result<()> {
    let python = workspace().join(".venv/bin/python");
    if !python.exists() {
        bail!("{} is missing: run scripts/setup", python.display());
    }
    let dir = tempfile::tempdir()?;
    let (gt, dets) = synthetic_case(n_images, 1);
    let (gt_path, dt_path) = (dir.path().join("gt.json"), dir.path().join("dt.json"));
    std::fs::write(&gt_path, serde_json::to_string(&gt)?)?;
    std::fs::write(&dt_path, serde_json::to_string(&dets)?)?;
    println!(
        "case: {} images, {} ground-truth boxes, {} detections",
        gt.images.len(),
        gt.annotations.len(),
        dets.len()
    );

    let (mut load, mut eval) = (Vec::new(), Vec::new());
    let mut stats = [0.0; 12];
    for _ in 0..runs {
        let t0 = Instant::now();
        let g = load_ground_truth(&gt_path)?;
        let d = load_detections(&dt_path)?;
        let t1 = Instant::now();
        stats = evaluate(&g, &d)?.stats.as_array();
        let t2 = Instant::now();
        load.push((t1 - t0).as_secs_f64());
        eval.push((t2 - t1).as_secs_f64());
    }
    let (our_load, our_eval) = (median(load), median(eval));

    let out = Command::new(&python)
        .arg(workspace().join("tests/peers/coco_eval.py"))
        .arg("--bench")
        .args([&gt_path, &dt_path])
        .args(["--runs", &runs.to_string()])
        .output()
        .context("running the pycocotools benchmark")?;
    if !out.status.success() {
        bail!("peer benchmark failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let peers: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    println!("\nmedian of {runs} runs, single thread, same files\n");
    println!(
        "{:<18} {:>10} {:>12} {:>16} {:>16}",
        "implementation", "load (s)", "eval (s)", "eval vs ours", "12 stats"
    );
    println!(
        "{:<18} {:>10.4} {:>12.4} {:>16} {:>16}",
        "ours (Rust)", our_load, our_eval, "1.0x", "-"
    );
    let mut disagree = Vec::new();
    for name in ["pycocotools", "faster-coco-eval"] {
        let p = &peers[name];
        if p.is_null() {
            println!("{name:<18} (not importable)");
            continue;
        }
        let (l, e) =
            (p["load_s"].as_f64().unwrap_or(f64::NAN), p["eval_s"].as_f64().unwrap_or(f64::NAN));
        let theirs: Vec<f64> = p["stats"]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_f64()).collect())
            .unwrap_or_default();
        let max_diff = theirs.iter().zip(stats).map(|(t, o)| (t - o).abs()).fold(0.0, f64::max);
        // 1e-12: the peers print 17 digits and serde_json may parse them 1 ulp off.
        let agree = theirs.len() == 12 && max_diff <= 1e-12;
        if !agree {
            disagree.push(name);
        }
        let verdict = if agree {
            format!("agree ({max_diff:.0e})")
        } else {
            format!("DIFFER {max_diff:.1e}")
        };
        println!("{name:<18} {l:>10.4} {e:>12.4} {:>15.1}x {verdict:>16}", e / our_eval);
    }
    println!("\n(eval = evaluate + accumulate + summarize; target >= 10x faster than pycocotools)");
    println!("\nours:");
    for (n, v) in CocoStats::NAMES.iter().zip(stats) {
        println!("  {n:<6} {v:.6}");
    }
    if !disagree.is_empty() {
        bail!("the 12 stats differ from {}", disagree.join(", "));
    }
    Ok(())
}

fn predict(passes: usize, scale: &str) -> anyhow::Result<()> {
    use fracture_models::nms::NmsConfig;
    use fracture_models::yolo::{ArchSpec, Precision, PredictOptions, Scale, YoloPredictor};

    let python = workspace().join(".venv/bin/python");
    if !python.exists() {
        bail!("{} is missing: run scripts/setup", python.display());
    }
    let passes = passes.max(2);
    let dir = tempfile::tempdir()?;
    let images = write_predict_images(dir.path())?;
    let (conf, iou) = (0.25f32, 0.45f64);
    let out = dir.path().join("peer");
    let mut cmd = Command::new(&python);
    cmd.arg(workspace().join("tests/peers/yolo_predict_reference.py"))
        .arg("--out")
        .arg(&out)
        .arg("--case")
        .arg(format!("{scale}:1:416:{conf}:{iou}"))
        .arg("--bench")
        .arg((passes - 1).to_string());
    for p in &images {
        cmd.arg("--image").arg(p);
    }
    // The peer runs before and after ours (this machine's speed drifts by tens of percent
    // over minutes); its figure is the mean of the two medians.
    let mut peer_ms = Vec::new();
    let mut run_peer = |cmd: &mut Command| -> anyhow::Result<()> {
        println!("ultralytics: {} passes over {} images ...", passes, images.len());
        let status = cmd.status().context("running the ultralytics benchmark")?;
        if !status.success() {
            bail!("yolo_predict_reference.py failed");
        }
        let peer: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("bench.json"))?)?;
        peer_ms.push(peer["median_ms"].as_f64().context("bench.json: median_ms")?);
        Ok(())
    };
    run_peer(&mut cmd)?;

    tch::set_num_threads(2);
    let spec = ArchSpec { scale: scale.parse::<Scale>()?, num_classes: 1 };
    // Three variants, interleaved pass by pass so that drift hits them alike: fp32 with
    // prepacked oneDNN convolutions (the default), fp32 with eager `conv2d` (prepacking off),
    // and bf16.
    use fracture_models::packed_conv;
    let variants = [
        ("fp32", Precision::Fp32, true),
        ("fp32 eager conv", Precision::Fp32, false),
        ("bf16", Precision::Bf16, true),
    ];
    let mut predictors = Vec::new();
    for (_, precision, _) in variants {
        let opts = PredictOptions {
            imgsz: Some(416),
            nms: NmsConfig { conf, iou, ..NmsConfig::default() },
            precision,
            ..PredictOptions::default()
        };
        predictors.push(YoloPredictor::load(&out.join("weights.safetensors"), Some(spec), opts)?);
    }
    let mut total = vec![Vec::new(); variants.len()];
    let mut fwd = vec![Vec::new(); variants.len()];
    let mut found_by: Vec<Vec<Vec<fracture_models::detector::Finding>>> =
        vec![Vec::new(); variants.len()];
    for pass in 0..passes {
        for (v, (predictor, (_, _, packed))) in predictors.iter().zip(variants).enumerate() {
            packed_conv::set_enabled(packed);
            for p in &images {
                let t0 = Instant::now();
                let img = fracture_models::pixels::read_gray(p)?;
                let (x, lb) = predictor.preprocess(&img)?;
                let t1 = Instant::now();
                let pred = predictor.forward(&x)?;
                let t2 = Instant::now();
                let found = predictor.postprocess(&pred, &lb)?;
                let t3 = Instant::now();
                if pass > 0 {
                    total[v].push((t3 - t0).as_secs_f64() * 1e3);
                    fwd[v].push((t2 - t1).as_secs_f64() * 1e3);
                } else {
                    found_by[v].push(found);
                }
            }
        }
    }
    packed_conv::set_enabled(true);
    let rows: Vec<(&str, f64, f64)> = variants
        .iter()
        .zip(total.into_iter().zip(fwd))
        .map(|((name, _, _), (t, f))| (*name, median(t), median(f)))
        .collect();
    run_peer(&mut cmd)?;
    let theirs = peer_ms.iter().sum::<f64>() / peer_ms.len() as f64;
    println!(
        "\nyolo11{scale}, imgsz 416 (rect letterbox), batch 1, 2 threads, {} images x {} timed passes\n",
        images.len(),
        passes - 1
    );
    println!("{:<34} {:>12} {:>10}", "implementation", "median (ms)", "vs peer");
    for (name, total, fwd) in &rows {
        println!(
            "{:<34} {:>12.1} {:>9.2}x",
            format!("ours {name}, end to end"),
            total,
            total / theirs
        );
        println!("{:<34} {:>12.1}", "  of which forward", fwd);
    }
    println!(
        "{:<34} {:>12.1} {:>9.2}x   (before {:.1}, after {:.1})",
        "ultralytics YOLO.predict (fp32)", theirs, 1.0, peer_ms[0], peer_ms[1]
    );
    // How far each variant moves the result: best-IoU match of every fp32 box among its boxes.
    for (v, (name, _, _)) in variants.iter().enumerate().skip(1) {
        let (mut worst_iou, mut worst_score, mut n) = (1.0f32, 0.0f32, 0);
        for (a, b) in found_by[0].iter().zip(&found_by[v]) {
            for f in a {
                n += 1;
                let best = b
                    .iter()
                    .filter(|g| g.class == f.class)
                    .map(|g| {
                        let iou = fracture_models::boxes::iou(f.bbox(), g.bbox());
                        (iou, (f.score - g.score).abs())
                    })
                    .max_by(|x, y| x.0.total_cmp(&y.0));
                let (i, ds) = best.unwrap_or((0.0, f.score));
                worst_iou = worst_iou.min(i);
                worst_score = worst_score.max(ds);
            }
        }
        println!(
            "\n{name} vs fp32 on the same images: {n} fp32 boxes, worst best-match IoU {worst_iou:.3}, worst score change {worst_score:.4}"
        );
    }
    println!("(target: ours <= 0.7x ultralytics)");
    Ok(())
}

/// The binary `name` of `package`, built next to this one.
fn sibling_binary(name: &str, package: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let bin = exe.with_file_name(name);
    if !bin.exists() {
        bail!("{} is missing: run `cargo build --release -p {package}` first", bin.display());
    }
    Ok(bin)
}

/// The `fracture` binary built next to this one.
fn fracture_binary() -> anyhow::Result<PathBuf> {
    sibling_binary("fracture", "fracture-host")
}

fn run_checked(cmd: &mut Command, what: &str) -> anyhow::Result<()> {
    let status = cmd.status().with_context(|| format!("running {what}"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

struct TrainBench<'a> {
    scale: &'a str,
    images: usize,
    epochs: usize,
    imgsz: u32,
    batch: usize,
}

fn train(b: &TrainBench) -> anyhow::Result<()> {
    let python = workspace().join(".venv/bin/python");
    if !python.exists() {
        bail!("{} is missing: run scripts/setup", python.display());
    }
    let fracture = fracture_binary()?;
    let epochs = b.epochs.max(2);
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("phantoms");
    run_checked(
        Command::new(&fracture).arg("synth").arg("--out").arg(&data).args([
            "--count",
            &b.images.to_string(),
            "--seed",
            "5",
            "--fractured-fraction",
            "0.5",
        ]),
        "fracture synth",
    )?;
    let run = dir.path().join("ours");
    let (imgsz, batch, ep) = (b.imgsz.to_string(), b.batch.to_string(), epochs.to_string());
    println!("ours: fracture train yolo11{} x {epochs} epochs ...", b.scale);
    run_checked(
        Command::new(&fracture).arg("train").arg("--data").arg(&data).arg("--out").arg(&run).args(
            [
                "--arch",
                &format!("yolo11{}", b.scale),
                "--epochs",
                &ep,
                "--imgsz",
                &imgsz,
                "--batch",
                &batch,
                "--threads",
                "2",
                "--patience",
                "0",
            ],
        ),
        "fracture train",
    )?;
    let mut rdr = csv::Reader::from_path(run.join("metrics.csv"))?;
    let col = rdr
        .headers()?
        .iter()
        .position(|h| h == "train_time")
        .context("metrics.csv has no train_time column")?;
    let ours_s: Vec<f64> = rdr
        .records()
        .map(|r| Ok(r?.get(col).unwrap_or("nan").parse::<f64>()?))
        .collect::<anyhow::Result<_>>()?;
    let split: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("split.json"))?)?;
    let n_train = split["train"].as_array().map_or(0, Vec::len);

    println!("ultralytics: the same split and settings ...");
    let peer = dir.path().join("peer");
    run_checked(
        Command::new(&python)
            .arg(workspace().join("tests/peers/yolo_train_reference.py"))
            .arg("--data")
            .arg(&data)
            .arg("--split")
            .arg(run.join("split.json"))
            .arg("--out")
            .arg(&peer)
            .args(["--scale", b.scale, "--epochs", &ep, "--imgsz", &imgsz, "--batch", &batch])
            .arg("--no-val"),
        "yolo_train_reference.py",
    )?;
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(peer.join("summary.json"))?)?;
    let theirs_s: Vec<f64> = summary["epochs"]
        .as_array()
        .context("summary.json: epochs")?
        .iter()
        .filter_map(|e| e["train_seconds"].as_f64())
        .collect();
    let rate = |secs: &[f64]| {
        let counted = &secs[1.min(secs.len())..];
        (n_train * counted.len()) as f64 / counted.iter().sum::<f64>()
    };
    let (ours, theirs) = (rate(&ours_s), rate(&theirs_s));
    println!(
        "\nyolo11{}, {} training images, batch {}, imgsz {}, 2 threads, epochs 2..{epochs} timed\n",
        b.scale, n_train, b.batch, b.imgsz
    );
    println!(
        "{:<24} {:>10} {:>24} {:>10}",
        "implementation", "img/s", "epoch train seconds", "vs peer"
    );
    let fmt = |v: &[f64]| v.iter().map(|s| format!("{s:.1}")).collect::<Vec<_>>().join(" ");
    println!("{:<24} {:>10.2} {:>24} {:>9.2}x", "ours", ours, fmt(&ours_s), ours / theirs);
    println!("{:<24} {:>10.2} {:>24} {:>9.2}x", "ultralytics", theirs, fmt(&theirs_s), 1.0);
    println!("\n(target: ours >= 1.0x ultralytics' images per second)");
    Ok(())
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().bench {
        Bench::Train { scale, images, epochs, imgsz, batch } => {
            train(&TrainBench { scale: &scale, images, epochs, imgsz, batch })
        }
        Bench::Coco { images, runs } => coco(images, runs),
        Bench::Predict { passes, scale } => predict(passes, &scale),
        Bench::Frcnn { size, passes, steps, threads, proposals } => fracture_e2e::frcnn_bench::run(
            &fracture_e2e::frcnn_bench::FrcnnBench { size, passes, steps, threads, proposals },
            &fracture_binary()?,
            &workspace(),
        ),
        Bench::Backends { scales, passes, threads } => fracture_e2e::backends_bench::run(
            &fracture_e2e::backends_bench::BackendsBench { scales, passes, threads },
            &fracture_binary()?,
            &workspace(),
        ),
        Bench::Daemon { images, size_min, size_max, no_decode_ahead } => {
            fracture_e2e::daemon_bench::run(
                &fracture_e2e::daemon_bench::DaemonBench {
                    images,
                    decode_ahead: !no_decode_ahead,
                    size_min,
                    size_max,
                },
                &fracture_binary()?,
                &sibling_binary("fractured", "fracture-device")?,
                &workspace().join("demo/bundle"),
            )
        }
    }
}
