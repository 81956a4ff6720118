//! Precision, recall and F1 at the best-F1 confidence, and mAP50 / mAP50-95, as ultralytics'
//! validator reports them (the numbers of the study's results table).
//!
//! Per image, predictions are matched to same-class labels at each IoU threshold 0.50:0.95
//! ([`Matching`]: ultralytics ≥ 8.4 lets each prediction, in descending confidence, take the
//! best-IoU label still free; earlier releases sorted all pairs by IoU). Per class, predictions
//! sorted by confidence give cumulative TP/FP; recall and precision are interpolated on 1,000
//! confidence points, AP is the 101-point trapezoid integral of the precision envelope; the
//! class-mean F1 curve is box-filtered (10% window) and its maximum picks the operating
//! confidence, where P, R and F1 are read. Classes are those that have labels; predictions of
//! other classes count nowhere.
//!
//! Numerics follow numpy (float32 IoU and thresholds as ultralytics computes them, numpy's
//! `interp` and pairwise sums), so results agree with ultralytics to ~1e-15; only the box
//! filter (numpy's `convolve`, BLAS order) is summed differently.

use std::collections::BTreeMap;

use super::coco::pairwise_sum;
use super::coco_json::{CocoDataset, Detection};
use crate::boxes::Xyxy;

/// Number of points of the confidence axis of the curves.
pub const CURVE_POINTS: usize = 1000;
/// IoU thresholds 0.50:0.05:0.95.
pub const N_IOU: usize = 10;

/// One image: labels and (post-NMS) predictions, boxes in the same pixel frame.
#[derive(Debug, Clone, Default)]
pub struct ImagePredictions {
    pub gt_boxes: Vec<Xyxy>,
    pub gt_classes: Vec<i64>,
    pub pred_boxes: Vec<Xyxy>,
    pub pred_scores: Vec<f32>,
    pub pred_classes: Vec<i64>,
}

/// How predictions are paired with labels at one IoU threshold (ultralytics' validator
/// `match_predictions`, `use_scipy=False`; the algorithm changed between releases).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Matching {
    /// ultralytics ≥ 8.4: predictions in descending confidence (the NMS output order; ties
    /// keep input order) each take the free label with the highest IoU (the first on ties),
    /// if that IoU reaches the threshold.
    #[default]
    Greedy,
    /// ultralytics ≤ 8.3 (the YOLO11 release line): every (label, prediction) pair at or above
    /// the threshold, by IoU descending, keeping the first pair of each prediction and then the
    /// first of each label.
    IouSorted,
}

/// Per-class curves over the confidence axis `px` (0..1), for plots.
#[derive(Debug, Clone, Default)]
pub struct PrfCurves {
    /// `[CURVE_POINTS]` confidence axis, `linspace(0, 1, 1000)`.
    pub px: Vec<f64>,
    pub classes: Vec<i64>,
    /// `[class][CURVE_POINTS]` precision, recall and F1 at confidence `px`.
    pub precision: Vec<Vec<f64>>,
    pub recall: Vec<Vec<f64>>,
    pub f1: Vec<Vec<f64>>,
    /// `[class][CURVE_POINTS]` precision envelope at recall `px`, IoU 0.5 (the PR curve).
    pub pr_curve: Vec<Vec<f64>>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct PrfSummary {
    /// Class means at the best-F1 confidence.
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// The operating confidence: `px` at the maximum of the smoothed mean F1 curve.
    pub confidence: f64,
    pub map50: f64,
    pub map50_95: f64,
    /// `[class][10]` AP per IoU threshold.
    pub ap: Vec<[f64; N_IOU]>,
    /// Classes that have labels, ascending (ultralytics' `unique_classes`).
    pub classes: Vec<i64>,
    /// Labels per class.
    pub n_labels: Vec<usize>,
    #[serde(skip)]
    pub curves: PrfCurves,
}

/// ultralytics' IoU thresholds: `torch.linspace(0.5, 0.95, 10)` in float32 (torch fills the
/// second half from the end).
pub fn iou_thresholds_f32() -> [f32; N_IOU] {
    let (start, end, steps) = (0.5f32, 0.95f32, N_IOU);
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

/// `[n_pred][10]` true-positive flags for one image, predictions in input order.
pub fn match_predictions(img: &ImagePredictions, matching: Matching) -> Vec<[bool; N_IOU]> {
    let np = img.pred_boxes.len();
    let nl = img.gt_boxes.len();
    let mut correct = vec![[false; N_IOU]; np];
    if np == 0 || nl == 0 {
        return correct;
    }
    // iou[l * np + p], zero across classes
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
    let thresholds = iou_thresholds_f32();
    match matching {
        Matching::Greedy => {
            let mut order: Vec<usize> = (0..np).collect();
            order.sort_by(|&a, &b| img.pred_scores[b].total_cmp(&img.pred_scores[a]));
            // matched[l * N_IOU + t]: label l claimed at threshold t
            let mut matched = vec![false; nl * N_IOU];
            for p in order {
                if !(0..nl).any(|l| iou[l * np + p] >= thresholds[0]) {
                    continue;
                }
                for (t, &thr) in thresholds.iter().enumerate() {
                    // argmax over the free labels (claimed ones count as IoU 0), first on ties
                    let mut best = (0, if matched[t] { 0.0 } else { iou[p] });
                    for l in 1..nl {
                        let v = if matched[l * N_IOU + t] { 0.0 } else { iou[l * np + p] };
                        if v > best.1 {
                            best = (l, v);
                        }
                    }
                    if best.1 >= thr {
                        correct[p][t] = true;
                        matched[best.0 * N_IOU + t] = true;
                    }
                }
            }
        }
        Matching::IouSorted => {
            for (t, &thr) in thresholds.iter().enumerate() {
                let mut pairs: Vec<(usize, usize)> = (0..nl)
                    .flat_map(|l| (0..np).map(move |p| (l, p)))
                    .filter(|&(l, p)| iou[l * np + p] >= thr)
                    .collect();
                if pairs.len() > 1 {
                    // by IoU descending; then the first pair of each prediction (np.unique
                    // returns them ordered by prediction index), then the first of each label.
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
        }
    }
    correct
}

/// numpy's `interp(x, xp, fp, left)` for non-decreasing `xp` (right = the last `fp`; on a run
/// of equal `xp` the last one counts).
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

/// `linspace(0, 1, n)`.
fn unit_axis(n: usize) -> Vec<f64> {
    let step = 1.0 / (n - 1) as f64;
    let mut v: Vec<f64> = (0..n).map(|i| i as f64 * step).collect();
    v[n - 1] = 1.0;
    v
}

/// ultralytics' `compute_ap`: 101-point trapezoid integral of the precision envelope, plus the
/// envelope and its recall axis (with the sentinels). The curve ends at the last recall reached
/// (precision drops to 0 there), so AP is not extrapolated to recall never reached.
fn compute_ap(recall: &[f64], precision: &[f64], ap_x: &[f64]) -> (f64, Vec<f64>, Vec<f64>) {
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
    let y: Vec<f64> = ap_x.iter().map(|&xi| interp(xi, &mrec, &mpre, mpre[0])).collect();
    // np.trapezoid: add.reduce(diff(x) * (y[1:] + y[:-1]) / 2)
    let terms: Vec<f64> =
        (1..ap_x.len()).map(|i| (ap_x[i] - ap_x[i - 1]) * (y[i] + y[i - 1]) / 2.0).collect();
    (pairwise_sum(&terms), mpre, mrec)
}

/// ultralytics' `smooth`: box filter of `round(2 n f) // 2 + 1` points, edges padded with the
/// end values.
fn smooth(y: &[f64], f: f64) -> Vec<f64> {
    let nf = ((y.len() as f64 * f * 2.0).round_ties_even() as usize) / 2 + 1;
    let half = nf / 2;
    let (first, last) = (y[0], y[y.len() - 1]);
    let padded: Vec<f64> = std::iter::repeat_n(first, half)
        .chain(y.iter().copied())
        .chain(std::iter::repeat_n(last, half))
        .collect();
    let w = 1.0 / nf as f64;
    padded.windows(nf).map(|win| win.iter().map(|v| v * w).sum()).collect()
}

/// Mean as `np.mean` (pairwise sum / n); 0 for no values (ultralytics' empty case).
fn np_mean(v: &[f64]) -> f64 {
    if v.is_empty() { 0.0 } else { pairwise_sum(v) / v.len() as f64 }
}

/// The whole computation over a data set with ultralytics ≥ 8.4 matching.
pub fn precision_recall_f1(images: &[ImagePredictions]) -> PrfSummary {
    precision_recall_f1_with(images, Matching::default())
}

/// The whole computation over a data set.
pub fn precision_recall_f1_with(images: &[ImagePredictions], matching: Matching) -> PrfSummary {
    const EPS: f64 = 1e-16;
    // Flatten (tp flags, conf, class) over all images; count labels per class.
    let mut tp: Vec<[bool; N_IOU]> = Vec::new();
    let mut conf: Vec<f64> = Vec::new();
    let mut cls: Vec<i64> = Vec::new();
    let mut n_labels: BTreeMap<i64, usize> = BTreeMap::new();
    for img in images {
        tp.extend(match_predictions(img, matching));
        conf.extend(img.pred_scores.iter().map(|&s| f64::from(s)));
        cls.extend(&img.pred_classes);
        for &c in &img.gt_classes {
            *n_labels.entry(c).or_default() += 1;
        }
    }
    // ultralytics sorts with numpy's default (unstable) sort: tied confidences have no defined
    // order there; ours is stable.
    let mut order: Vec<usize> = (0..conf.len()).collect();
    order.sort_by(|&a, &b| conf[b].total_cmp(&conf[a]));

    let px = unit_axis(CURVE_POINTS);
    let ap_x = unit_axis(101);
    let classes: Vec<i64> = n_labels.keys().copied().collect();
    let n_l_per_class: Vec<usize> = n_labels.values().copied().collect();
    let nc = classes.len();
    let mut ap = vec![[0.0; N_IOU]; nc];
    let mut p_curve = vec![vec![0.0; CURVE_POINTS]; nc];
    let mut r_curve = vec![vec![0.0; CURVE_POINTS]; nc];
    let mut pr_curve = vec![vec![0.0; CURVE_POINTS]; nc];
    for (ci, c) in classes.iter().enumerate() {
        let idx: Vec<usize> = order.iter().copied().filter(|&i| cls[i] == *c).collect();
        if idx.is_empty() {
            continue;
        }
        let n_l = n_l_per_class[ci] as f64;
        let neg_conf: Vec<f64> = idx.iter().map(|&i| -conf[i]).collect();
        let mut recall = vec![0.0; idx.len()];
        let mut precision = vec![0.0; idx.len()];
        for t in 0..N_IOU {
            let (mut tpc, mut fpc) = (0.0, 0.0);
            for (j, &i) in idx.iter().enumerate() {
                if tp[i][t] {
                    tpc += 1.0;
                } else {
                    fpc += 1.0;
                }
                recall[j] = tpc / (n_l + EPS);
                precision[j] = tpc / (tpc + fpc);
            }
            let (a, mpre, mrec) = compute_ap(&recall, &precision, &ap_x);
            ap[ci][t] = a;
            if t == 0 {
                for (k, &x) in px.iter().enumerate() {
                    r_curve[ci][k] = interp(-x, &neg_conf, &recall, 0.0);
                    p_curve[ci][k] = interp(-x, &neg_conf, &precision, 1.0);
                    pr_curve[ci][k] = interp(x, &mrec, &mpre, mpre[0]);
                }
            }
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
    let best = if nc == 0 {
        0
    } else {
        // f1_curve.mean(0): a strided reduction, summed class after class
        let mean_f1: Vec<f64> = (0..CURVE_POINTS)
            .map(|k| f1_curve.iter().fold(0.0, |s, c| s + c[k]) / nc as f64)
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
    let at_best =
        |curves: &[Vec<f64>]| np_mean(&curves.iter().map(|c| c[best]).collect::<Vec<_>>());
    let ap_flat: Vec<f64> = ap.iter().flatten().copied().collect();
    PrfSummary {
        precision: at_best(&p_curve),
        recall: at_best(&r_curve),
        f1: at_best(&f1_curve),
        confidence: px[best],
        map50: np_mean(&ap.iter().map(|a| a[0]).collect::<Vec<_>>()),
        map50_95: np_mean(&ap_flat),
        ap,
        classes: classes.clone(),
        n_labels: n_l_per_class,
        curves: PrfCurves {
            px,
            classes,
            precision: p_curve,
            recall: r_curve,
            f1: f1_curve,
            pr_curve,
        },
    }
}

/// The ultralytics inputs from COCO json: one entry per ground-truth image in id order, boxes
/// converted to corners in float32, crowd annotations left out (they are not labels there).
/// Detections for images the ground truth lacks are skipped.
pub fn images_from_coco(gt: &CocoDataset, dets: &[Detection]) -> Vec<ImagePredictions> {
    let xyxy = |b: &[f64; 4]| [b[0], b[1], b[0] + b[2], b[1] + b[3]].map(|v| v as f32);
    let mut ids: Vec<i64> = gt.images.iter().map(|i| i.id).collect();
    ids.sort_unstable();
    ids.dedup();
    let mut images = vec![ImagePredictions::default(); ids.len()];
    let slot = |id: i64| ids.binary_search(&id).ok();
    for a in gt.annotations.iter().filter(|a| a.iscrowd == 0) {
        if let Some(i) = slot(a.image_id) {
            images[i].gt_boxes.push(xyxy(&a.bbox));
            images[i].gt_classes.push(a.category_id);
        }
    }
    for d in dets {
        if let Some(i) = slot(d.image_id) {
            images[i].pred_boxes.push(xyxy(&d.bbox));
            images[i].pred_scores.push(d.score as f32);
            images[i].pred_classes.push(d.category_id);
        }
    }
    images
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
        // ultralytics' AP tops out at 0.995: the envelope drops to 0 at recall 1 itself, so the
        // last trapezoid of the 101-point integral is half empty.
        assert!((s.map50 - 0.995).abs() < 1e-12, "{}", s.map50);
        assert!((s.precision - 1.0).abs() < 1e-9);
        assert!((s.recall - 1.0).abs() < 1e-6);
        assert_eq!(s.n_labels, vec![2]);
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
        for matching in [Matching::Greedy, Matching::IouSorted] {
            let m = match_predictions(&img, matching);
            assert!(m[0][0]);
            assert!(!m[1][0]);
        }
    }

    #[test]
    fn greedy_lets_the_confident_prediction_choose_first() {
        // Labels l0 and l1 side by side; p0 sits exactly on l0 (score 0.8), p1 slightly off l0
        // (score 0.9): IoU(l0,p0)=1, IoU(l0,p1)=0.905, IoU(l1,p1)=0.739, IoU(l1,p0)=0.667.
        let img = ImagePredictions {
            gt_boxes: vec![[0.0, 0.0, 10.0, 10.0], [2.0, 0.0, 12.0, 10.0]],
            gt_classes: vec![0, 0],
            pred_boxes: vec![[0.0, 0.0, 10.0, 10.0], [0.5, 0.0, 10.5, 10.0]],
            pred_scores: vec![0.8, 0.9],
            pred_classes: vec![0, 0],
        };
        let greedy = match_predictions(&img, Matching::Greedy);
        let sorted = match_predictions(&img, Matching::IouSorted);
        // IoU 0.5: greedy, p1 takes l0 and p0 falls back to l1; by pairs, both predictions'
        // best pair is on l0 and only one of them survives.
        assert_eq!((greedy[0][0], greedy[1][0]), (true, true));
        assert_eq!((sorted[0][0], sorted[1][0]), (true, false));
        // IoU 0.75: l1 is out of reach; greedy gives l0 to the more confident p1.
        assert_eq!((greedy[0][5], greedy[1][5]), (false, true));
        assert_eq!((sorted[0][5], sorted[1][5]), (true, false));
    }
}
