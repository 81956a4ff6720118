//! Precision, recall and F1 at the best-F1 confidence, and mAP50 / mAP50-95, as ultralytics'
//! validator reports them (the numbers of the study's results table).
//!
//! Per image, predictions are matched to same-class labels at each IoU threshold 0.50:0.95
//! (pairs above the threshold sorted by IoU, one label per prediction, then one prediction per
//! label). Per class, predictions sorted by confidence give cumulative TP/FP; recall and
//! precision are interpolated on 1,000 confidence points, AP is the 101-point integral of the
//! precision envelope; the class-mean F1 curve is box-filtered (10% window) and its maximum
//! picks the operating confidence.

use std::collections::BTreeMap;

use crate::boxes::Xyxy;

/// Number of points of the confidence axis of the curves.
pub const CURVE_POINTS: usize = 1000;

/// One image: labels and (post-NMS) predictions, boxes in the same pixel frame.
#[derive(Debug, Clone, Default)]
pub struct ImagePredictions {
    pub gt_boxes: Vec<Xyxy>,
    pub gt_classes: Vec<i64>,
    pub pred_boxes: Vec<Xyxy>,
    pub pred_scores: Vec<f32>,
    pub pred_classes: Vec<i64>,
}

/// Per-class curves over the confidence axis `px` (0..1), for plots.
#[derive(Debug, Clone, Default)]
pub struct PrfCurves {
    pub px: Vec<f64>,
    pub classes: Vec<i64>,
    /// `[class][CURVE_POINTS]`
    pub precision: Vec<Vec<f64>>,
    pub recall: Vec<Vec<f64>>,
    pub f1: Vec<Vec<f64>>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct PrfSummary {
    /// Class means at the best-F1 confidence.
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub confidence: f64,
    pub map50: f64,
    pub map50_95: f64,
    /// `[class][10]` AP per IoU threshold.
    pub ap: Vec<[f64; 10]>,
    pub classes: Vec<i64>,
    #[serde(skip)]
    pub curves: PrfCurves,
}

/// ultralytics' IoU thresholds: `torch.linspace(0.5, 0.95, 10)` in float32 (torch fills the
/// second half from the end).
pub fn iou_thresholds_f32() -> [f32; 10] {
    let (start, end, steps) = (0.5f32, 0.95f32, 10usize);
    let step = (end - start) / (steps - 1) as f32;
    std::array::from_fn(|i| {
        if i < steps / 2 { start + step * i as f32 } else { end - step * (steps - i - 1) as f32 }
    })
}

/// IoU in float32 as ultralytics' `box_iou` (with its 1e-7 in the union).
fn box_iou_f32(a: &Xyxy, b: &Xyxy) -> f32 {
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    let area_a = (a[2] - a[0]) * (a[3] - a[1]);
    let area_b = (b[2] - b[0]) * (b[3] - b[1]);
    inter / (area_a + area_b - inter + 1e-7)
}

/// `[n_pred][10]` true-positive flags for one image (ultralytics' `match_predictions`).
pub fn match_predictions(img: &ImagePredictions) -> Vec<[bool; 10]> {
    let np = img.pred_boxes.len();
    let nl = img.gt_boxes.len();
    let mut correct = vec![[false; 10]; np];
    if np == 0 || nl == 0 {
        return correct;
    }
    // iou[l][p], zero across classes
    let iou: Vec<f32> = (0..nl)
        .flat_map(|l| {
            (0..np).map(move |p| {
                if img.gt_classes[l] == img.pred_classes[p] {
                    box_iou_f32(&img.gt_boxes[l], &img.pred_boxes[p])
                } else {
                    0.0
                }
            })
        })
        .collect();
    for (t, thr) in iou_thresholds_f32().into_iter().enumerate() {
        let mut pairs: Vec<(usize, usize)> = (0..nl)
            .flat_map(|l| (0..np).map(move |p| (l, p)))
            .filter(|&(l, p)| iou[l * np + p] >= thr)
            .collect();
        if pairs.len() > 1 {
            // by IoU descending; then keep the first pair of each prediction (the result comes
            // out ordered by prediction index, as np.unique returns it), then the first pair of
            // each label in that order.
            pairs.sort_by(|x, y| iou[y.0 * np + y.1].total_cmp(&iou[x.0 * np + x.1]));
            let mut by_pred: BTreeMap<usize, (usize, usize)> = BTreeMap::new();
            for &pair in &pairs {
                by_pred.entry(pair.1).or_insert(pair);
            }
            let mut by_label: BTreeMap<usize, (usize, usize)> = BTreeMap::new();
            for &pair in by_pred.values() {
                by_label.entry(pair.0).or_insert(pair);
            }
            pairs = by_label.into_values().collect();
        }
        for (_, p) in pairs {
            correct[p][t] = true;
        }
    }
    correct
}

/// numpy's `interp(x, xp, fp, left, right)` for increasing `xp` (ties: the last of a run).
fn interp(x: f64, xp: &[f64], fp: &[f64], left: f64) -> f64 {
    let n = xp.len();
    if x < xp[0] {
        return left;
    }
    if x >= xp[n - 1] {
        return fp[n - 1];
    }
    // largest j with xp[j] <= x
    let j = xp.partition_point(|&v| v <= x) - 1;
    if xp[j] == x {
        return fp[j];
    }
    let slope = (fp[j + 1] - fp[j]) / (xp[j + 1] - xp[j]);
    slope * (x - xp[j]) + fp[j]
}

/// ultralytics' `compute_ap`: 101-point trapezoid integral of the precision envelope. The
/// curve ends at the last recall reached (precision drops to 0 there), so AP is not
/// extrapolated to recall points that were never reached.
fn compute_ap(recall: &[f64], precision: &[f64]) -> f64 {
    let mut mrec = Vec::with_capacity(recall.len() + 3);
    mrec.push(0.0);
    mrec.extend_from_slice(recall);
    mrec.push(recall.last().copied().unwrap_or(1.0));
    mrec.push(1.0);
    let mut mpre = Vec::with_capacity(precision.len() + 3);
    mpre.push(1.0);
    mpre.extend_from_slice(precision);
    mpre.extend([0.0, 0.0]);
    for i in (0..mpre.len() - 1).rev() {
        mpre[i] = mpre[i].max(mpre[i + 1]);
    }
    let mut x: Vec<f64> = (0..101).map(|i| i as f64 * (1.0 / 100.0)).collect();
    x[100] = 1.0;
    let y: Vec<f64> = x.iter().map(|&xi| interp(xi, &mrec, &mpre, mpre[0])).collect();
    (1..101).map(|i| (x[i] - x[i - 1]) * (y[i] + y[i - 1]) / 2.0).sum()
}

/// ultralytics' `smooth`: box filter of `2 * round(n * f) / 2 + 1` points, edges padded.
fn smooth(y: &[f64], f: f64) -> Vec<f64> {
    let nf = ((y.len() as f64 * f * 2.0).round_ties_even() as usize) / 2 + 1;
    let half = nf / 2;
    let (first, last) = (y[0], y[y.len() - 1]);
    let padded: Vec<f64> = std::iter::repeat_n(first, half)
        .chain(y.iter().copied())
        .chain(std::iter::repeat_n(last, half))
        .collect();
    padded.windows(nf).map(|w| w.iter().map(|v| v / nf as f64).sum()).collect()
}

/// The whole computation over a data set.
pub fn precision_recall_f1(images: &[ImagePredictions]) -> PrfSummary {
    const EPS: f64 = 1e-16;
    // Flatten (tp flags, conf, class) over all images; count labels per class.
    let mut tp: Vec<[bool; 10]> = Vec::new();
    let mut conf: Vec<f64> = Vec::new();
    let mut cls: Vec<i64> = Vec::new();
    let mut n_labels: BTreeMap<i64, usize> = BTreeMap::new();
    for img in images {
        tp.extend(match_predictions(img));
        conf.extend(img.pred_scores.iter().map(|&s| f64::from(s)));
        cls.extend(&img.pred_classes);
        for &c in &img.gt_classes {
            *n_labels.entry(c).or_default() += 1;
        }
    }
    let mut order: Vec<usize> = (0..conf.len()).collect();
    order.sort_by(|&a, &b| conf[b].total_cmp(&conf[a]));

    let px: Vec<f64> = {
        let step = 1.0 / (CURVE_POINTS - 1) as f64;
        let mut v: Vec<f64> = (0..CURVE_POINTS).map(|i| i as f64 * step).collect();
        v[CURVE_POINTS - 1] = 1.0;
        v
    };
    let classes: Vec<i64> = n_labels.keys().copied().collect();
    let nc = classes.len();
    let mut ap = vec![[0.0; 10]; nc];
    let mut p_curve = vec![vec![0.0; CURVE_POINTS]; nc];
    let mut r_curve = vec![vec![0.0; CURVE_POINTS]; nc];
    for (ci, c) in classes.iter().enumerate() {
        let idx: Vec<usize> = order.iter().copied().filter(|&i| cls[i] == *c).collect();
        let n_l = n_labels[c] as f64;
        if idx.is_empty() {
            continue;
        }
        let neg_conf: Vec<f64> = idx.iter().map(|&i| -conf[i]).collect();
        let mut recall = vec![vec![0.0; idx.len()]; 10];
        let mut precision = vec![vec![0.0; idx.len()]; 10];
        for t in 0..10 {
            let (mut tpc, mut fpc) = (0.0, 0.0);
            for (j, &i) in idx.iter().enumerate() {
                if tp[i][t] {
                    tpc += 1.0;
                } else {
                    fpc += 1.0;
                }
                recall[t][j] = tpc / (n_l + EPS);
                precision[t][j] = tpc / (tpc + fpc);
            }
            ap[ci][t] = compute_ap(&recall[t], &precision[t]);
        }
        for (k, &x) in px.iter().enumerate() {
            r_curve[ci][k] = interp(-x, &neg_conf, &recall[0], 0.0);
            p_curve[ci][k] = interp(-x, &neg_conf, &precision[0], 1.0);
        }
    }
    let f1_curve: Vec<Vec<f64>> = (0..nc)
        .map(|ci| {
            (0..CURVE_POINTS)
                .map(|k| {
                    let (p, r) = (p_curve[ci][k], r_curve[ci][k]);
                    2.0 * p * r / (p + r + EPS)
                })
                .collect()
        })
        .collect();
    let mean = |v: &mut dyn Iterator<Item = f64>, n: usize| {
        if n == 0 { 0.0 } else { v.sum::<f64>() / n as f64 }
    };
    let best = if nc == 0 {
        0
    } else {
        let mean_f1: Vec<f64> = (0..CURVE_POINTS)
            .map(|k| f1_curve.iter().map(|c| c[k]).sum::<f64>() / nc as f64)
            .collect();
        let s = smooth(&mean_f1, 0.1);
        // argmax: the first maximum
        let mut bi = 0;
        for (i, &v) in s.iter().enumerate() {
            if v > s[bi] {
                bi = i;
            }
        }
        bi
    };
    PrfSummary {
        precision: mean(&mut p_curve.iter().map(|c| c[best]), nc),
        recall: mean(&mut r_curve.iter().map(|c| c[best]), nc),
        f1: mean(&mut f1_curve.iter().map(|c| c[best]), nc),
        confidence: px[best],
        map50: mean(&mut ap.iter().map(|a| a[0]), nc),
        map50_95: mean(&mut ap.iter().map(|a| a.iter().sum::<f64>() / 10.0), nc),
        ap,
        classes: classes.clone(),
        curves: PrfCurves { px, classes, precision: p_curve, recall: r_curve, f1: f1_curve },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interp_matches_numpy_semantics() {
        let xp = [0.0, 1.0, 1.0, 2.0];
        let fp = [0.0, 1.0, 5.0, 6.0];
        assert_eq!(interp(-1.0, &xp, &fp, 9.0), 9.0);
        assert_eq!(interp(0.5, &xp, &fp, 9.0), 0.5);
        assert_eq!(interp(1.0, &xp, &fp, 9.0), 5.0); // last of the tied run
        assert_eq!(interp(1.5, &xp, &fp, 9.0), 5.5);
        assert_eq!(interp(3.0, &xp, &fp, 9.0), 6.0);
    }

    #[test]
    fn perfect_predictions() {
        let img = ImagePredictions {
            gt_boxes: vec![[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 40.0, 40.0]],
            gt_classes: vec![0, 0],
            pred_boxes: vec![[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 40.0, 40.0]],
            pred_scores: vec![0.9, 0.8],
            pred_classes: vec![0, 0],
        };
        let s = precision_recall_f1(&[img]);
        // ultralytics closes the curve with precision 0 at the last recall reached, so the
        // last 1/100 of the trapezoid halves: a perfect detector scores 0.995.
        assert!((s.map50 - 0.995).abs() < 1e-9, "{}", s.map50);
        assert!((s.precision - 1.0).abs() < 1e-9);
        assert!((s.recall - 1.0).abs() < 1e-6);
    }

    #[test]
    fn one_prediction_per_label() {
        let img = ImagePredictions {
            gt_boxes: vec![[0.0, 0.0, 10.0, 10.0]],
            gt_classes: vec![0],
            pred_boxes: vec![[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 9.0]],
            pred_scores: vec![0.9, 0.8],
            pred_classes: vec![0, 0],
        };
        let m = match_predictions(&img);
        assert!(m[0][0]);
        assert!(!m[1][0]);
    }
}
