//! The study's results table, one row per run: model, epochs, mAP50, mAP50-95, P, R, F1 (the
//! numbers of the run's `fracture eval` report, unchanged), plus parameters, latency per image
//! and training time; as rows for `compare.json` and as a Markdown table.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::run::RunInfo;

/// The parts of a `fracture eval` JSON report the comparison reads.
#[derive(Debug, Clone, Deserialize)]
pub struct EvalSummary {
    pub split: String,
    pub split_source: PathBuf,
    pub n_images: usize,
    pub n_fractured_images: usize,
    pub overall: OverallSummary,
    pub latency_ms_per_image: LatencySummary,
    pub files: FilesSummary,
}

#[derive(Debug, Clone, Deserialize)]
pub struct OverallSummary {
    pub map50: f64,
    pub map50_95: f64,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub conf_at_best_f1: f64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LatencySummary {
    pub mean: f64,
    pub median: f64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct FilesSummary {
    pub gt_json: PathBuf,
    pub detections_json: PathBuf,
}

impl EvalSummary {
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("{}: not an eval report", path.display()))
    }
}

/// One row of the table (`compare.json`'s `rows`).
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub run: String,
    pub model: String,
    /// Epochs completed (`metrics.csv` rows).
    pub epochs: Option<usize>,
    /// The epoch budget (`hyp.toml`).
    pub epoch_budget: Option<usize>,
    pub map50: f64,
    pub map50_95: f64,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// The confidence P, R and F1 are read at (best F1).
    pub conf_at_best_f1: f64,
    pub parameters: u64,
    /// Mean wall time per image (decode, preprocessing, forward, NMS), milliseconds.
    pub latency_ms_per_image: f64,
    pub latency_ms_median: f64,
    /// Sum of the training steps' time over the epochs, seconds.
    pub train_seconds: Option<f64>,
    /// Sum of the whole epochs' time (validation and checkpoints included), seconds.
    pub wall_seconds: Option<f64>,
    pub input_size: String,
    pub eval_json: PathBuf,
}

impl Row {
    pub fn new(run: &RunInfo, eval: &EvalSummary, eval_json: &Path) -> Self {
        let o = &eval.overall;
        Self {
            run: run.name.clone(),
            model: run.arch.clone(),
            epochs: run.epochs_trained,
            epoch_budget: run.epoch_budget(),
            map50: o.map50,
            map50_95: o.map50_95,
            precision: o.precision,
            recall: o.recall,
            f1: o.f1,
            conf_at_best_f1: o.conf_at_best_f1,
            parameters: run.parameters,
            latency_ms_per_image: eval.latency_ms_per_image.mean,
            latency_ms_median: eval.latency_ms_per_image.median,
            train_seconds: run.train_seconds,
            wall_seconds: run.wall_seconds,
            input_size: run.input_size(),
            eval_json: eval_json.to_path_buf(),
        }
    }
}

/// The column headings, in order.
pub const HEADINGS: [&str; 11] = [
    "Run",
    "Model",
    "Epochs",
    "mAP50",
    "mAP50-95",
    "Precision",
    "Recall",
    "F1",
    "Parameters",
    "Latency (ms/img)",
    "Train time (s)",
];

/// A row's cells as text, in the order of [`HEADINGS`].
pub fn cells(r: &Row) -> Vec<String> {
    let epochs = match (r.epochs, r.epoch_budget) {
        (Some(e), Some(b)) if e != b => format!("{e} of {b}"),
        (Some(e), _) => e.to_string(),
        (None, Some(b)) => format!("? of {b}"),
        (None, None) => "?".into(),
    };
    vec![
        r.run.clone(),
        r.model.clone(),
        epochs,
        format!("{:.4}", r.map50),
        format!("{:.4}", r.map50_95),
        format!("{:.4}", r.precision),
        format!("{:.4}", r.recall),
        format!("{:.4}", r.f1),
        parameters(r.parameters),
        format!("{:.1}", r.latency_ms_per_image),
        r.train_seconds.map_or("?".into(), |s| format!("{s:.1}")),
    ]
}

/// `2,590,035 (2.59M)`.
pub fn parameters(n: u64) -> String {
    let digits = n.to_string();
    let mut grouped = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(c);
    }
    format!("{grouped} ({:.2}M)", n as f64 / 1e6)
}

/// The table in Markdown (pipes in cells escaped).
pub fn markdown(rows: &[Row]) -> String {
    let esc = |s: &str| s.replace('|', "\\|");
    let mut out = format!("| {} |\n", HEADINGS.join(" | "));
    out += &format!("|{}\n", "---|".repeat(HEADINGS.len()));
    for r in rows {
        let c: Vec<String> = cells(r).iter().map(|c| esc(c)).collect();
        out += &format!("| {} |\n", c.join(" | "));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> Row {
        Row {
            run: "y|n".into(),
            model: "yolo11n".into(),
            epochs: Some(1),
            epoch_budget: Some(3),
            map50: 0.54381,
            map50_95: 0.2402,
            precision: 0.6534,
            recall: 0.5462,
            f1: 0.595,
            conf_at_best_f1: 0.2,
            parameters: 2_590_035,
            latency_ms_per_image: 12.34,
            latency_ms_median: 12.0,
            train_seconds: Some(61.24),
            wall_seconds: None,
            input_size: "long side ≤ 160".into(),
            eval_json: PathBuf::from("e.json"),
        }
    }

    #[test]
    fn markdown_has_a_row_per_run_with_four_decimals() {
        let md = markdown(&[row()]);
        let lines: Vec<&str> = md.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("| Run | Model | Epochs | mAP50 | mAP50-95"));
        assert_eq!(lines[1].matches("---|").count(), HEADINGS.len());
        assert!(lines[2].contains("| y\\|n | yolo11n | 1 of 3 | 0.5438 | 0.2402 |"), "{md}");
        assert!(lines[2].contains("2,590,035 (2.59M) | 12.3 | 61.2"), "{md}");
    }

    #[test]
    fn parameters_are_grouped() {
        assert_eq!(parameters(999), "999 (0.00M)");
        assert_eq!(parameters(1_000), "1,000 (0.00M)");
        assert_eq!(parameters(43_256_000), "43,256,000 (43.26M)");
    }
}
