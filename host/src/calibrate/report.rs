//! What `fracture calibrate` found: the accuracy of FP32, FP16 and each INT8 method on the
//! evaluation split, the calibration set, and what was written — as JSON and as a table.

use std::fmt::Write as _;
use std::path::PathBuf;

use serde::Serialize;

use crate::eval::SplitScore;

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
    /// Conv outputs left in float (by name, or the DFL projection).
    pub kept_float: Vec<String>,
    /// The Q/DQ model scored (in the report folder).
    pub model: PathBuf,
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
    pub fp16: SplitScore,
    pub int8: Vec<MethodScore>,
    /// Index into `int8` of the model chosen (best mAP50).
    pub chosen: Option<usize>,
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
        row(&mut s, "FP16", &self.fp16, "");
        for (i, m) in self.int8.iter().enumerate() {
            let mut verdict = if m.passed { "within" } else { "over" }.to_string();
            verdict.push_str(&format!(" the {:.3} allowed drop", self.max_drop));
            if self.chosen == Some(i) {
                verdict.push_str(" (chosen)");
            }
            row(&mut s, &format!("INT8 {}", m.method), &m.score, &verdict);
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
