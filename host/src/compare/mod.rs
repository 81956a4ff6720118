//! `fracture compare`: several training runs side by side, as the study reports them — each
//! run's best weights evaluated on the same split by `fracture eval`'s code (its JSON report
//! kept as `OUT/<run>/eval.json`), the results table ([`table`]), whether the comparison is fair
//! ([`fairness`]), each run's learning curves and qualitative figures ([`qualitative`]), written
//! as `compare.md`, a self-contained `compare.html` ([`html`]) and `compare.json`. What a run
//! folder records is read by [`run`].

pub mod fairness;
pub mod html;
pub mod qualitative;
pub mod run;
pub mod table;

use std::path::{Path, PathBuf};

use anyhow::Context;
use fracture_models::metrics::{load_detections, load_ground_truth};
use serde::Serialize;

use crate::dataset::Dataset;
use crate::eval::split::SplitName;
use crate::train::record::{EpochRecord, plot_curves};

use self::fairness::Fairness;
use self::qualitative::Figure;
use self::run::RunInfo;
use self::table::{EvalSummary, Row};

/// What to compare and where the results go.
#[derive(Debug, Clone)]
pub struct CompareOptions {
    /// Training run folders.
    pub runs: Vec<PathBuf>,
    pub data: PathBuf,
    pub out: PathBuf,
    pub split: SplitName,
    /// Score every run on this split file (default: the runs' common `split.json`).
    pub split_file: Option<PathBuf>,
}

/// One evaluation the caller runs (as `fracture eval` would): `run`'s best weights on `split`
/// of the dataset, files into `out_dir`, the JSON report to `json`.
#[derive(Debug, Clone)]
pub struct EvalJob<'a> {
    pub run: &'a RunInfo,
    pub data: &'a Path,
    pub split: SplitName,
    pub split_file: Option<&'a Path>,
    pub out_dir: &'a Path,
    pub json: &'a Path,
}

/// One run's part of `compare.json`.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub name: String,
    pub dir: PathBuf,
    pub weights: PathBuf,
    pub eval_json: PathBuf,
    /// The split file it was scored on (null: the dataset's split lists).
    pub split_file: Option<PathBuf>,
    pub eval_images: usize,
    pub eval_fractured_images: usize,
    pub tune_trial: Option<PathBuf>,
    /// Learning-curve PNGs (the run's own, or drawn here from its metrics.csv).
    pub curves: Vec<PathBuf>,
    /// Qualitative figures, at the run's best-F1 confidence (0.25 when F1 is 0).
    pub qualitative: Vec<Figure>,
}

/// `compare.json`.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub data: PathBuf,
    pub split: &'static str,
    /// Where the evaluated images came from, when every run was scored on the same list.
    pub eval_split: Option<String>,
    pub rows: Vec<Row>,
    pub fairness: Fairness,
    pub runs: Vec<RunReport>,
    pub files: Files,
}

#[derive(Debug, Clone, Serialize)]
pub struct Files {
    pub markdown: PathBuf,
    pub html: PathBuf,
    pub json: PathBuf,
}

/// Runs the comparison; `evaluate` runs one evaluation (the command passes `fracture eval`).
pub fn compare(
    opts: &CompareOptions,
    evaluate: impl Fn(&EvalJob) -> anyhow::Result<()>,
) -> anyhow::Result<Comparison> {
    if opts.runs.is_empty() {
        anyhow::bail!("name at least one run folder");
    }
    let runs = run::read_runs(&opts.runs)?;
    std::fs::create_dir_all(&opts.out)
        .with_context(|| format!("creating {}", opts.out.display()))?;
    let ds = Dataset::load(&opts.data)
        .with_context(|| format!("loading dataset {}", opts.data.display()))?;

    let (split_files, eval_split) = split_files(opts, &runs);
    let mut rows = Vec::new();
    let mut reports = Vec::new();
    for (r, split_file) in runs.iter().zip(&split_files) {
        let dir = opts.out.join(&r.name);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let json = dir.join("eval.json");
        eprintln!("compare: evaluating {} ({}) on {}", r.name, r.arch, opts.split.name());
        evaluate(&EvalJob {
            run: r,
            data: &opts.data,
            split: opts.split,
            split_file: split_file.as_deref(),
            out_dir: &dir,
            json: &json,
        })
        .with_context(|| format!("evaluating {}", r.weights.display()))?;
        let eval = EvalSummary::read(&json)?;
        rows.push(Row::new(r, &eval, &json));

        let gt = load_ground_truth(&eval.files.gt_json)?;
        let dets = load_detections(&eval.files.detections_json)?;
        let qualitative =
            qualitative::draw_all(&ds, &gt, &dets, figure_conf(&eval), &r.name, &opts.out)
                .with_context(|| format!("drawing the qualitative figures of {}", r.name))?;
        reports.push(RunReport {
            name: r.name.clone(),
            dir: r.dir.clone(),
            weights: r.weights.clone(),
            eval_json: json,
            split_file: split_file.clone(),
            eval_images: eval.n_images,
            eval_fractured_images: eval.n_fractured_images,
            tune_trial: r.tune_trial.clone(),
            curves: curves(r, &dir),
            qualitative,
        });
    }

    let fairness = fairness::assess(&runs, eval_split.as_deref());
    let files = Files {
        markdown: opts.out.join("compare.md"),
        html: opts.out.join("compare.html"),
        json: opts.out.join("compare.json"),
    };
    let comparison = Comparison {
        data: opts.data.clone(),
        split: opts.split.name(),
        eval_split,
        rows,
        fairness,
        runs: reports,
        files,
    };
    let write = |path: &Path, text: String| {
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
    };
    write(&comparison.files.markdown, markdown(&comparison))?;
    write(&comparison.files.html, html::page(&comparison)?)?;
    write(&comparison.files.json, serde_json::to_string_pretty(&comparison)? + "\n")?;
    Ok(comparison)
}

/// The confidence the qualitative figures are drawn at: the run's best-F1 confidence, or
/// `fracture predict`'s default 0.25 when nothing was found at any (F1 = 0).
fn figure_conf(eval: &EvalSummary) -> f64 {
    if eval.overall.f1 > 0.0 { eval.overall.conf_at_best_f1 } else { 0.25 }
}

/// The split file each run is scored on, and a description of the common one (`None` when
/// they differ). `--split-file` wins; else the runs' `split.json` when all agree; else each
/// its own (the dataset's lists for a run without one).
fn split_files(opts: &CompareOptions, runs: &[RunInfo]) -> (Vec<Option<PathBuf>>, Option<String>) {
    if let Some(f) = &opts.split_file {
        return (vec![Some(f.clone()); runs.len()], Some(f.display().to_string()));
    }
    let lists: Vec<_> = runs.iter().map(|r| r.split.as_ref()).collect();
    let agree = lists.windows(2).all(|w| match (w[0], w[1]) {
        (Some(a), Some(b)) => (&a.train, &a.val, &a.test) == (&b.train, &b.val, &b.test),
        (None, None) => true,
        _ => false,
    });
    match (agree, lists.first().copied().flatten()) {
        (true, Some(first)) => (
            vec![Some(first.path.clone()); runs.len()],
            Some(format!("{} (the split every run trained with)", first.path.display())),
        ),
        (true, None) => (vec![None; runs.len()], Some("the dataset's own split lists".to_string())),
        (false, _) => {
            eprintln!(
                "note: the runs were trained on different splits; each is scored on its own \
                 split.json (pass --split-file to score all on one)"
            );
            (runs.iter().map(|r| r.split.as_ref().map(|s| s.path.clone())).collect(), None)
        }
    }
}

/// The run's learning-curve PNGs, or ones drawn into `dir` from its `metrics.csv`.
fn curves(r: &RunInfo, dir: &Path) -> Vec<PathBuf> {
    if !r.curves.is_empty() {
        return r.curves.clone();
    }
    let csv = r.dir.join("metrics.csv");
    match read_history(&csv) {
        Some((names, history)) if !history.is_empty() => {
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            match plot_curves(dir, &names, &history) {
                Ok(()) => vec![dir.join("curves_losses.png"), dir.join("curves_metrics.png")],
                Err(e) => {
                    eprintln!("note: {}: no learning curves ({e})", r.name);
                    Vec::new()
                }
            }
        }
        _ => Vec::new(),
    }
}

/// `metrics.csv` back into epoch records (loss names from its `train/...` columns).
fn read_history(path: &Path) -> Option<(Vec<String>, Vec<EpochRecord>)> {
    let mut reader = csv::ReaderBuilder::new().trim(csv::Trim::All).from_path(path).ok()?;
    let headers = reader.headers().ok()?.clone();
    let names: Vec<String> =
        headers.iter().filter_map(|h| h.strip_prefix("train/").map(String::from)).collect();
    let col = |h: &str| headers.iter().position(|x| x == h);
    let mut history = Vec::new();
    for record in reader.records() {
        let record = record.ok()?;
        let num = |h: &str| {
            col(h).and_then(|c| record.get(c)).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0)
        };
        history.push(EpochRecord {
            epoch: num("epoch") as usize,
            train_losses: names.iter().map(|n| num(&format!("train/{n}"))).collect(),
            val_losses: names.iter().map(|n| num(&format!("val/{n}"))).collect(),
            precision: num("metrics/precision(B)"),
            recall: num("metrics/recall(B)"),
            map50: num("metrics/mAP50(B)"),
            map50_95: num("metrics/mAP50-95(B)"),
            lr: num("lr/pg0"),
            seconds: num("time"),
            train_seconds: num("train_time"),
        });
    }
    Some((names, history))
}

/// A path relative to `base` when it lies under it (links in compare.md), else as given.
fn relative(path: &Path, base: &Path) -> String {
    path.strip_prefix(base).unwrap_or(path).display().to_string()
}

/// The notes under the table, shared by the Markdown and the HTML.
pub const TABLE_NOTES: &str = "mAP50 and mAP50-95 as pycocotools computes them; precision, \
recall and F1 at each run's best-F1 confidence (ultralytics' rule), exactly as `fracture eval` \
reports them. Epochs: completed (of the budget, when they differ). Parameters: the weights' \
tensors less batch-norm statistics. Latency: mean wall time per image (decode, preprocessing, \
forward, NMS) during the evaluation. Train time: the sum of metrics.csv's train_time (the \
training steps alone, validation excluded).";

/// `compare.md`.
pub fn markdown(c: &Comparison) -> String {
    let mut md = String::from("# Model comparison\n\n");
    md += &format!(
        "Dataset `{}`, split **{}**{}.\n\n",
        c.data.display(),
        c.split,
        c.eval_split.as_ref().map_or(String::new(), |s| format!(" from {s}"))
    );
    md += "## Results\n\n";
    md += &table::markdown(&c.rows);
    md += &format!("\n{TABLE_NOTES}\n\n## Fairness\n\n{}\n", c.fairness.markdown());
    let base = c.files.markdown.parent().unwrap_or(Path::new(""));
    for r in &c.runs {
        md += &format!(
            "## {}\n\nEvaluated on {} images ({} fractured); report `{}`.\n\n",
            r.name,
            r.eval_images,
            r.eval_fractured_images,
            relative(&r.eval_json, base)
        );
        for p in &r.curves {
            md += &format!("![learning curves]({})\n", p.display());
        }
        if r.curves.is_empty() {
            md += "No learning curves (no curves PNG, no metrics.csv).\n";
        }
        md += "\n";
        for f in &r.qualitative {
            md += &format!("![{}]({})\n", f.title, relative(&f.path, base));
        }
        md += "\n";
    }
    md
}
