//! `fracture check` and `fracture split`: load a dataset, report its integrity issues, and
//! write a stratified split or k-fold assignment as JSON.

use std::path::PathBuf;

use anyhow::Context;
use serde_json::json;

use crate::dataset::split::{stratified_kfold, stratified_split};
use crate::dataset::{Dataset, IntegrityIssue};

#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    /// Dataset root (FracAtlas layout).
    #[arg(long)]
    pub data: PathBuf,
    /// Exit with status 1 when any issue is found (for CI gates).
    #[arg(long)]
    pub strict: bool,
}

#[derive(clap::Args, Debug)]
pub struct SplitArgs {
    /// Dataset root (FracAtlas layout).
    #[arg(long)]
    pub data: PathBuf,
    /// Output JSON file.
    #[arg(long)]
    pub out: PathBuf,
    /// Fraction of images for validation.
    #[arg(long, default_value_t = 0.15)]
    pub val: f64,
    /// Fraction of images for test.
    #[arg(long, default_value_t = 0.15)]
    pub test: f64,
    /// Write a stratified k-fold assignment with this many folds instead of a split.
    #[arg(long)]
    pub folds: Option<usize>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

fn load(data: &std::path::Path) -> anyhow::Result<Dataset> {
    Dataset::load(data).with_context(|| format!("loading dataset {}", data.display()))
}

pub fn run_check(args: &CheckArgs) -> anyhow::Result<()> {
    let ds = load(&args.data)?;
    println!(
        "{}: {} images ({} fractured, {} boxes)",
        args.data.display(),
        ds.images.len(),
        ds.fractured_count(),
        ds.box_count()
    );
    let duplicates =
        ds.issues.iter().filter(|i| matches!(i, IntegrityIssue::Duplicate { .. })).count();
    println!("{} issue(s), {duplicates} duplicate group(s)", ds.issues.len());
    for issue in &ds.issues {
        println!("  {issue}");
        if let IntegrityIssue::Duplicate { images, .. } = issue {
            let ids: Vec<&str> =
                images.iter().map(|&i| ds.images[i].meta.image_id.as_str()).collect();
            println!("    {}", ids.join(" "));
        }
    }
    if args.strict && !ds.issues.is_empty() {
        anyhow::bail!("{} integrity issue(s) in {}", ds.issues.len(), args.data.display());
    }
    Ok(())
}

pub fn run(args: &SplitArgs) -> anyhow::Result<()> {
    let ds = load(&args.data)?;
    let ids = |idx: &[usize]| -> Vec<&str> {
        idx.iter().map(|&i| ds.images[i].meta.image_id.as_str()).collect()
    };
    let doc = if let Some(k) = args.folds {
        let folds = stratified_kfold(&ds, k, args.seed)?;
        for f in 0..k {
            let n = folds.iter().filter(|&&x| x == f).count();
            let fr = (0..folds.len())
                .filter(|&i| folds[i] == f && ds.images[i].meta.is_fractured())
                .count();
            println!("fold {f}: {n} images, {fr} fractured");
        }
        let per_image: serde_json::Map<String, serde_json::Value> = ds
            .images
            .iter()
            .zip(&folds)
            .map(|(r, f)| (r.meta.image_id.clone(), json!(f)))
            .collect();
        json!({ "seed": args.seed, "folds": k, "fold_of": per_image })
    } else {
        let s = stratified_split(&ds, args.val, args.test, args.seed)?;
        for (name, part) in [("train", &s.train), ("val", &s.val), ("test", &s.test)] {
            let fr = part.iter().filter(|&&i| ds.images[i].meta.is_fractured()).count();
            println!("{name:>5}: {:5} images, {fr:4} fractured", part.len());
        }
        json!({
            "seed": args.seed, "val_fraction": args.val, "test_fraction": args.test,
            "train": ids(&s.train), "val": ids(&s.val), "test": ids(&s.test),
        })
    };
    std::fs::write(&args.out, serde_json::to_string_pretty(&doc)?)
        .with_context(|| format!("writing {}", args.out.display()))?;
    println!("wrote {}", args.out.display());
    Ok(())
}
