//! Running a detector over the images of a split, one at a time, with a progress bar: each
//! image's findings (original pixels) and the wall time of decoding plus detection, which is
//! what `fracture predict` reports per image.

use std::time::Instant;

use fracture_models::detector::{Detector, Finding};
use fracture_models::pixels::read_gray;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::dataset::Dataset;

use super::EvalError;

/// One image's result.
#[derive(Debug, Clone)]
pub struct ImageRun {
    pub findings: Vec<Finding>,
    /// Decode + preprocessing + forward + NMS, milliseconds.
    pub ms: f64,
}

/// Runs `detector` over `ds.images[i]` for every `i` of `indices`, in that order. Any image
/// that cannot be read or run stops the evaluation (its metrics would be wrong without it).
/// The first image is run once more beforehand, untimed, so that one-off start-up costs
/// (allocations, kernel selection) stay out of the latency.
pub fn run_detector<D: Detector>(
    detector: &D,
    ds: &Dataset,
    indices: &[usize],
    label: &str,
) -> Result<Vec<ImageRun>, EvalError> {
    let bar = ProgressBar::new(indices.len() as u64);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{{spinner}} eval {label} [{{elapsed_precise}}] {{wide_bar}} {{pos}}/{{len}} \
             ({{per_sec}}, ETA {{eta}})"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    if let Some(&first) = indices.first() {
        let path = &ds.images[first].path;
        let image = read_gray(path)
            .map_err(|e| EvalError::Image { path: path.clone(), source: Box::new(e) })?;
        detector
            .detect(&image)
            .map_err(|e| EvalError::Image { path: path.clone(), source: Box::new(e) })?;
    }
    let mut runs = Vec::with_capacity(indices.len());
    for &i in indices {
        let path = &ds.images[i].path;
        let start = Instant::now();
        let image = read_gray(path)
            .map_err(|e| EvalError::Image { path: path.clone(), source: Box::new(e) })?;
        let findings = detector
            .detect(&image)
            .map_err(|e| EvalError::Image { path: path.clone(), source: Box::new(e) })?;
        runs.push(ImageRun { findings, ms: start.elapsed().as_secs_f64() * 1e3 });
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(runs)
}

/// Time per image.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Latency {
    pub mean: f64,
    pub median: f64,
    /// Images timed.
    pub images: usize,
}

pub fn latency(runs: &[ImageRun]) -> Latency {
    let mut ms: Vec<f64> = runs.iter().map(|r| r.ms).collect();
    ms.sort_by(f64::total_cmp);
    let n = ms.len();
    let median = match n {
        0 => 0.0,
        _ if n % 2 == 1 => ms[n / 2],
        _ => (ms[n / 2 - 1] + ms[n / 2]) / 2.0,
    };
    let mean = if n == 0 { 0.0 } else { ms.iter().sum::<f64>() / n as f64 };
    Latency { mean, median, images: n }
}
