//! `fracture-bench`: benchmarks that measure us and the reference peer side by side in one run
//! and print both figures and their ratio. Never run as tests (machines here are shared and
//! noisy); run by hand: `cargo run --release -p fracture-e2e --bin fracture-bench -- coco`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
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
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
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

fn main() -> anyhow::Result<()> {
    match Cli::parse().bench {
        Bench::Coco { images, runs } => coco(images, runs),
    }
}
