//! What `fracture calibrate` found: the accuracy of FP32, FP16 and each INT8 method on the
//! evaluation split, the calibration set, the per-layer INT8 sensitivity (when asked for), and
//! what was written — as JSON and as a table.

use std::fmt::Write as _;
use std::path::PathBuf;

use serde::Serialize;

use super::sensitivity::LayerSensitivity;
use crate::eval::SplitScore;

/// Rows of the sensitivity ranking the Markdown report shows (the JSON has them all).
const RANKING_ROWS: usize = 10;

/// One calibration method's INT8 (Q/DQ) model, scored.
#[derive(Debug, Clone, Serialize)]
pub struct MethodScore {
    /// `entropy`, `percentile(99.99)`, `max`.
    pub method: String,
    pub score: SplitScore,
    /// FP32 mAP50 − this model's mAP50.
    pub map50_drop: f64,
    /// Whether the drop is within the allowed one.
    pub passed: bool,
    pub quantized_convs: usize,
    /// Conv outputs left in float (by name, by the sensitivity analysis, or the DFL
    /// projection): with the calibration cache, what reproduces this model.
    pub kept_float: Vec<String>,
    /// The Q/DQ model scored (in the report folder).
    pub model: PathBuf,
}

/// The per-layer sensitivity analysis (`--auto-keep-float`).
#[derive(Debug, Clone, Serialize)]
pub struct SensitivityReport {
    /// The calibration method whose ranges were used (the first `--method`).
    pub method: String,
    /// The calibration images run, relative to the dataset root.
    pub images: Vec<PathBuf>,
    pub seconds: f64,
    /// `--auto-keep-float`.
    pub auto_keep_float: usize,
    /// The convolutions (output names) kept float because they ranked most damaging.
    pub auto_kept_float: Vec<String>,
    /// Every quantisable Conv, most damaging first.
    pub ranking: Vec<LayerSensitivity>,
}

/// The whole report (`calibration-report.json`).
#[derive(Debug, Clone, Serialize)]
pub struct CalibrationReport {
    pub bundle: PathBuf,
    pub bundle_sha256_before: String,
    /// After writing the INT8 files (`None` when nothing was written).
    pub bundle_sha256: Option<String>,
    pub eval_split: String,
    pub calibration_images: usize,
    pub calibration_fractured: usize,
    /// SHA-256 of the calibration-image manifest (`calibration.json`).
    pub calibration_manifest_sha256: String,
    pub warnings: Vec<String>,
    pub max_drop: f64,
    pub fp32: SplitScore,
    /// `None` for Faster R-CNN: ONNX Runtime's CPU kernels for its detection ops (anchor
    /// arithmetic, NonMaxSuppression, RoiAlign) take float32 only, so a float16 copy of the
    /// graph does not load (TensorRT's `--fp16` keeps those layers in float32 itself).
    pub fp16: Option<SplitScore>,
    pub int8: Vec<MethodScore>,
    /// Index into `int8` of the model chosen (best mAP50).
    pub chosen: Option<usize>,
    /// The sensitivity analysis, when `--auto-keep-float` asked for one.
    pub sensitivity: Option<SensitivityReport>,
    /// Files written into the bundle.
    pub written: Vec<String>,
}

impl CalibrationReport {
    /// A Markdown table for people (also printed).
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "# INT8 calibration of {}\n", self.bundle.display());
        let _ = writeln!(
            s,
            "Calibration set: {} image(s), {} fractured (manifest sha256 {}). Scored on the {} split with ONNX Runtime.\n",
            self.calibration_images,
            self.calibration_fractured,
            &self.calibration_manifest_sha256[..12.min(self.calibration_manifest_sha256.len())],
            self.eval_split
        );
        for w in &self.warnings {
            let _ = writeln!(s, "> warning: {w}\n");
        }
        let _ = writeln!(s, "| model | mAP50 | mAP50-95 | Δ mAP50 vs FP32 | ms/image | verdict |");
        let _ = writeln!(s, "|---|---:|---:|---:|---:|---|");
        let row = |s: &mut String, name: &str, sc: &SplitScore, verdict: &str| {
            let _ = writeln!(
                s,
                "| {name} | {:.4} | {:.4} | {:+.4} | {:.1} | {verdict} |",
                sc.map50,
                sc.map50_95,
                sc.map50 - self.fp32.map50,
                sc.latency_ms
            );
        };
        row(&mut s, "FP32", &self.fp32, "reference");
        match &self.fp16 {
            Some(fp16) => row(&mut s, "FP16", fp16, ""),
            None => {
                let _ =
                    writeln!(s, "| FP16 | – | – | – | – | not measured for this architecture |");
            }
        }
        for (i, m) in self.int8.iter().enumerate() {
            let mut verdict = if m.passed { "within" } else { "over" }.to_string();
            verdict.push_str(&format!(" the {:.3} allowed drop", self.max_drop));
            if self.chosen == Some(i) {
                verdict.push_str(" (chosen)");
            }
            row(&mut s, &format!("INT8 {}", m.method), &m.score, &verdict);
        }
        if let Some(kept) = self.int8.first().map(|m| &m.kept_float).filter(|k| !k.is_empty()) {
            let _ = writeln!(
                s,
                "\nKept float in the INT8 models ({}): {}.",
                kept.len(),
                kept.join(", ")
            );
        }
        if let Some(sens) = &self.sensitivity {
            let _ = writeln!(
                s,
                "\n## INT8 sensitivity\n\nEach convolution quantised alone ({} ranges) on {} \
                 calibration image(s), its output compared with FP32's ({:.1} s): damage = \
                 background score error + confident-anchor score error + size-relative box \
                 error. Kept float automatically (--auto-keep-float {}): {}.\n",
                sens.method,
                sens.images.len(),
                sens.seconds,
                sens.auto_keep_float,
                if sens.auto_kept_float.is_empty() {
                    "none".to_string()
                } else {
                    sens.auto_kept_float.join(", ")
                }
            );
            let _ = writeln!(s, "| rank | conv | damage | background | score | boxes | kept |");
            let _ = writeln!(s, "|---:|---|---:|---:|---:|---:|---|");
            for (i, l) in sens.ranking.iter().take(RANKING_ROWS).enumerate() {
                let kept = if sens.auto_kept_float.contains(&l.conv) { "float" } else { "" };
                let _ = writeln!(
                    s,
                    "| {} | {} | {:.5} | {:.5} | {:.5} | {:.5} | {kept} |",
                    i + 1,
                    l.conv,
                    l.damage,
                    l.background,
                    l.score,
                    l.boxes
                );
            }
            if sens.ranking.len() > RANKING_ROWS {
                let _ = writeln!(
                    s,
                    "\n({} more in calibration-report.json.)",
                    sens.ranking.len() - RANKING_ROWS
                );
            }
        }
        if !self.written.is_empty() {
            let _ = writeln!(
                s,
                "\nWritten into the bundle: {}; sha256 now {}.",
                self.written.join(", "),
                self.bundle_sha256.as_deref().unwrap_or("-")
            );
        }
        s
    }
}
