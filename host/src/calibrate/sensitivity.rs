//! Per-layer INT8 sensitivity: which convolutions cost the most accuracy when quantised, so
//! `fracture calibrate --auto-keep-float N` can keep the N worst in float.
//!
//! For every quantisable Conv (not already kept float), the graph is rewritten with *only that
//! Conv* quantised ([`QdqOptions::only`]: its activation input, per-channel weight and output,
//! with the calibration's ranges) and run with ONNX Runtime on a small fixed batch of
//! calibration images, letterboxed as calibration sees them; its raw `output0` (`[B, 4 + nc,
//! N]`, boxes cx, cy, w, h in input pixels, class scores after sigmoid) is compared with the
//! FP32 graph's on the same batch. One layer at a time is the usual first-order sensitivity
//! analysis: it ignores how the errors of several quantised layers compound, and a Conv whose
//! input is shared with another quantised Conv keeps that input's Q/DQ when kept float.
//!
//! # The damage metric
//!
//! Fractures are small objects: a few pixels of box error or a confident anchor losing its
//! score is what costs their mAP, while most anchors are background. Per image, with `s` the
//! FP32 scores and `s'` the one-layer-INT8 ones:
//!
//! * **background** — mean `|s' − s|` over every anchor and class: scores appearing (false
//!   positives) or wobbling anywhere in the image;
//! * **score** — over the *confident* anchors `A` (FP32 best-class score ≥ [`SCORE_FLOOR`], and
//!   always the [`TOP_ANCHORS`] most confident, so an image without a confident detection still
//!   counts where the model looks hardest), the mean of the best-class `|s' − s|` weighted by
//!   the FP32 score: detections lost or weakened;
//! * **boxes** — over the same anchors with the same weights, the size-relative box error
//!   `(|Δcx| / w + |Δcy| / h + |Δw| / w + |Δh| / h) / 4` (FP32 width and height, at least one
//!   pixel; each term capped at 1, a whole box off). Relative to the box's own size, a two-pixel
//!   shift costs a 10-pixel fracture far more than a 100-pixel one, as IoU does.
//!
//! A layer's damage is the mean over images of `background + score + boxes`; layers are
//! ranked by it, most damaging first (graph order on ties).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Instant;

use fracture_models::onnx::proto::ModelProto;
use fracture_models::onnx::qdq::{QdqError, QdqOptions, quantize};
use fracture_runtime::OrtOptions;
use fracture_runtime::ort_model::{OrtModel, OrtModelError, OutputData};
use fracture_runtime::yolo_ort::OUTPUT_NAME;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

/// Calibration images the analysis runs by default (`--sensitivity-images`).
pub const DEFAULT_IMAGES: usize = 8;
/// The FP32 score from which an anchor counts as a detection in the score and box terms.
pub const SCORE_FLOOR: f32 = 0.05;
/// The most confident anchors of an image always count in the score and box terms.
pub const TOP_ANCHORS: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum SensitivityError {
    #[error("sensitivity analysis needs at least one input image")]
    NoInputs,
    #[error("input batch holds {got} values, not a multiple of {batch} images")]
    Batch { got: usize, batch: usize },
    #[error(transparent)]
    Qdq(#[from] QdqError),
    #[error(transparent)]
    Ort(#[from] OrtModelError),
    #[error("{model}: `{OUTPUT_NAME}` is {found}; expected float32 [{batch}, 4 + classes, N]")]
    Output { model: String, found: String, batch: usize },
    #[error("Conv `{conv}` alone: the Q/DQ rewrite quantised {quantized:?}")]
    NotAlone { conv: String, quantized: Vec<String> },
}

/// Letterboxed images as one flat float32 batch `[batch, 3, H, W]` (the graph's input).
#[derive(Debug, Clone)]
pub struct Batch {
    pub data: Vec<f32>,
    pub batch: usize,
}

/// How far one layer quantised alone moves `output0` (see the module doc).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LayerSensitivity {
    /// The Conv's output name (what `--keep-float` takes; the node name works too).
    pub conv: String,
    /// The Conv's node name.
    pub node: String,
    /// `background + score + boxes`, mean over images: what the ranking sorts on.
    pub damage: f64,
    pub background: f64,
    pub score: f64,
    pub boxes: f64,
}

/// [`analyse`]'s result.
#[derive(Debug, Clone, Serialize)]
pub struct Sensitivity {
    /// Images in the batch.
    pub images: usize,
    /// Wall time of the analysis.
    pub seconds: f64,
    /// Every quantisable Conv, most damaging first.
    pub ranking: Vec<LayerSensitivity>,
}

impl Sensitivity {
    /// The output names of the `n` most damaging convolutions.
    pub fn top(&self, n: usize) -> Vec<String> {
        self.ranking.iter().take(n).map(|l| l.conv.clone()).collect()
    }
}

/// The terms of the damage of `got` against `reference` (see the module doc).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Damage {
    pub background: f64,
    pub score: f64,
    pub boxes: f64,
}

impl Damage {
    pub fn total(&self) -> f64 {
        self.background + self.score + self.boxes
    }
}

/// The damage of `got` against `reference`, both `output0` as flat `[batch, rows, anchors]`
/// (`rows` = 4 + classes), averaged over the batch. Non-finite values count as the largest
/// damage.
pub fn damage(reference: &[f32], got: &[f32], batch: usize, rows: usize) -> Damage {
    let per_image = reference.len() / batch.max(1);
    let anchors = per_image / rows.max(1);
    if batch == 0 || rows <= 4 || anchors == 0 || got.len() != reference.len() {
        return Damage::default();
    }
    let nc = rows - 4;
    let mut sum = Damage::default();
    for b in 0..batch {
        let f = &reference[b * per_image..(b + 1) * per_image];
        let q = &got[b * per_image..(b + 1) * per_image];
        let at = |t: &[f32], row: usize, a: usize| t[row * anchors + a];
        // Background: every anchor and class.
        let mut background = 0.0f64;
        for i in 4 * anchors..rows * anchors {
            background += abs_diff(f[i], q[i]);
        }
        background /= (nc * anchors) as f64;
        // The confident anchors: best-class FP32 score and that class.
        let best: Vec<(f32, usize)> = (0..anchors)
            .map(|a| {
                (0..nc).fold((f32::NEG_INFINITY, 0), |(s, k), c| {
                    let v = at(f, 4 + c, a);
                    if v > s { (v, c) } else { (s, k) }
                })
            })
            .collect();
        let mut order: Vec<usize> = (0..anchors).collect();
        order.sort_by(|&x, &y| best[y].0.total_cmp(&best[x].0));
        let confident = order
            .iter()
            .enumerate()
            .take_while(|&(rank, &a)| rank < TOP_ANCHORS || best[a].0 >= SCORE_FLOOR)
            .map(|(_, &a)| a);
        let (mut wsum, mut score, mut boxes) = (0.0f64, 0.0f64, 0.0f64);
        for a in confident {
            let (s, c) = best[a];
            // Weights stay positive so an all-zero-score image still averages its anchors.
            let w = f64::from(s.max(0.0)) + 1e-6;
            score += w * abs_diff(at(f, 4 + c, a), at(q, 4 + c, a));
            let (bw, bh) = (at(f, 2, a).max(1.0), at(f, 3, a).max(1.0));
            let rel = |row: usize, size: f32| {
                (abs_diff(at(f, row, a), at(q, row, a)) / f64::from(size)).min(1.0)
            };
            boxes += w * (rel(0, bw) + rel(1, bh) + rel(2, bw) + rel(3, bh)) / 4.0;
            wsum += w;
        }
        sum.background += background;
        if wsum > 0.0 {
            sum.score += score / wsum;
            sum.boxes += boxes / wsum;
        }
    }
    let n = batch as f64;
    Damage { background: sum.background / n, score: sum.score / n, boxes: sum.boxes / n }
}

/// `|a − b|`, with anything non-finite as a full unit of error (the scores' whole range).
fn abs_diff(a: f32, b: f32) -> f64 {
    let d = (f64::from(a) - f64::from(b)).abs();
    if d.is_finite() { d } else { 1.0 }
}

/// The quantisable convolutions of `model` not kept float: `(node name, output name)`, in
/// graph order.
pub fn candidates(model: &ModelProto, keep_float: &BTreeSet<String>) -> Vec<(String, String)> {
    model
        .graph
        .iter()
        .flat_map(|g| &g.node)
        .filter(|n| n.op_type.as_deref() == Some("Conv") && n.input.len() >= 2)
        .filter_map(|n| Some((n.name.clone().unwrap_or_default(), n.output.first()?.clone())))
        .filter(|(node, out)| !keep_float.contains(node) && !keep_float.contains(out))
        .collect()
}

/// Runs `batch` through `model` and returns its `output0` (flat) and its row count.
fn run(model: &OrtModel, batch: &Batch) -> Result<(Vec<f32>, usize), SensitivityError> {
    let mut outs = model.run(&batch.data, batch.batch, &[OUTPUT_NAME])?;
    let out = outs.remove(0);
    match (out.data, out.shape.as_slice()) {
        (OutputData::F32(data), &[b, rows, _]) if b as usize == batch.batch && rows > 4 => {
            Ok((data, rows as usize))
        }
        (data, shape) => Err(SensitivityError::Output {
            model: model.path().display().to_string(),
            found: format!(
                "{} {shape:?}",
                if matches!(data, OutputData::F32(_)) { "float32" } else { "int64" }
            ),
            batch: batch.batch,
        }),
    }
}

/// Ranks every quantisable Conv of `model` (the FP32 export) not in `keep_float` by the damage
/// of quantising it alone with the ranges in `amax` (see the module doc). `progress` shows a
/// bar on a terminal.
pub fn analyse(
    model: &ModelProto,
    amax: &BTreeMap<String, f32>,
    batch: &Batch,
    keep_float: &BTreeSet<String>,
    ort: &OrtOptions,
    progress: bool,
) -> Result<Sensitivity, SensitivityError> {
    if batch.batch == 0 || batch.data.is_empty() {
        return Err(SensitivityError::NoInputs);
    }
    if !batch.data.len().is_multiple_of(batch.batch) {
        return Err(SensitivityError::Batch { got: batch.data.len(), batch: batch.batch });
    }
    let start = Instant::now();
    let (reference, rows) = {
        let fp32 = OrtModel::from_proto(model, Path::new("model.onnx (fp32)"), ort)?;
        run(&fp32, batch)?
    };
    let convs = candidates(model, keep_float);
    let bar = if progress { ProgressBar::new(convs.len() as u64) } else { ProgressBar::hidden() };
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} INT8 sensitivity [{elapsed_precise}] {wide_bar} {pos}/{len} layers \
             (ETA {eta}) {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut ranking = Vec::with_capacity(convs.len());
    for (node, conv) in convs {
        bar.set_message(conv.clone());
        let opts = QdqOptions { keep_float: keep_float.clone(), only: Some([conv.clone()].into()) };
        let (quantized, summary) = quantize(model, amax, &opts)?;
        if summary.quantized != [conv.as_str()] {
            return Err(SensitivityError::NotAlone { conv, quantized: summary.quantized });
        }
        let label = format!("model.onnx with only {conv} in int8");
        let session = OrtModel::from_proto(&quantized, Path::new(&label), ort)?;
        drop(quantized);
        let (got, got_rows) = run(&session, batch)?;
        if got.len() != reference.len() || got_rows != rows {
            return Err(SensitivityError::Output {
                model: label,
                found: format!("{} values in {got_rows} rows", got.len()),
                batch: batch.batch,
            });
        }
        let d = damage(&reference, &got, batch.batch, rows);
        let total = d.total();
        ranking.push(LayerSensitivity {
            conv,
            node,
            damage: if total.is_finite() { total } else { f64::INFINITY },
            background: d.background,
            score: d.score,
            boxes: d.boxes,
        });
        bar.inc(1);
    }
    bar.finish_and_clear();
    // Stable: graph order on ties.
    ranking.sort_by(|a, b| b.damage.total_cmp(&a.damage));
    Ok(Sensitivity { images: batch.batch, seconds: start.elapsed().as_secs_f64(), ranking })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One image, one class, `n` anchors: boxes (cx, cy, w, h) and scores.
    fn output(boxes: &[[f32; 4]], scores: &[f32]) -> Vec<f32> {
        let mut v = Vec::new();
        for row in 0..4 {
            v.extend(boxes.iter().map(|b| b[row]));
        }
        v.extend_from_slice(scores);
        v
    }

    #[test]
    fn identical_outputs_do_no_damage() {
        let f = output(&[[10.0, 10.0, 4.0, 4.0], [50.0, 50.0, 40.0, 40.0]], &[0.9, 0.01]);
        assert_eq!(damage(&f, &f, 1, 5), Damage::default());
    }

    #[test]
    fn the_same_pixel_shift_costs_a_small_box_more() {
        // A confident small box and a confident large one; the background anchor is far below.
        let boxes = [[10.0, 10.0, 4.0, 4.0], [50.0, 50.0, 40.0, 40.0], [0.0, 0.0, 1.0, 1.0]];
        let f = output(&boxes, &[0.9, 0.9, 0.001]);
        let mut small = boxes;
        small[0][0] += 2.0;
        let mut large = boxes;
        large[1][0] += 2.0;
        let ds = damage(&f, &output(&small, &[0.9, 0.9, 0.001]), 1, 5);
        let dl = damage(&f, &output(&large, &[0.9, 0.9, 0.001]), 1, 5);
        assert!(ds.boxes > 5.0 * dl.boxes, "{ds:?} vs {dl:?}");
        assert_eq!((ds.score, ds.background), (0.0, 0.0));
    }

    #[test]
    fn lost_detections_and_new_background_both_count() {
        let boxes = [[10.0, 10.0, 4.0, 4.0]; 40];
        let mut scores = [0.001f32; 40];
        scores[3] = 0.8;
        let f = output(&boxes, &scores);
        // The detection drops to 0.2.
        let mut lost = scores;
        lost[3] = 0.2;
        let d = damage(&f, &output(&boxes, &lost), 1, 5);
        // Anchor 3 dominates the weighted score term (the top-16 fill-ins weigh 0.001 each).
        assert!(d.score > 0.5 && d.score < 0.6, "{d:?}");
        assert!((d.background - 0.6 / 40.0).abs() < 1e-6, "{d:?}");
        // A background anchor beyond the top 16 rising to 0.5: background only.
        let mut noise = scores;
        noise[30] = 0.5;
        let d = damage(&f, &output(&boxes, &noise), 1, 5);
        assert!(d.score == 0.0 && d.boxes == 0.0, "{d:?}");
        assert!(d.background > 0.01, "{d:?}");
        // NaN is the worst, not a pass.
        let mut nan = scores;
        nan[3] = f32::NAN;
        assert!(damage(&f, &output(&boxes, &nan), 1, 5).total() > 0.9);
    }
}
