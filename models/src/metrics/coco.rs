//! COCO bounding-box evaluation, number for number what pycocotools' `COCOeval` computes:
//! IoU thresholds 0.50:0.05:0.95, 101 recall points, area ranges all/small/medium/large,
//! maxDets 1/10/100, crowd handling, and the 12 summary stats.
//!
//! The procedure, per category k and image i (only images and categories of the ground truth):
//! detections sorted by score (stable on input order) and cut to 100; ground truths outside the
//! area range (by their `area` field) or crowd are "ignored" and sorted last; each detection
//! greedily takes the best-IoU free ground truth at each threshold (a crowd one may be taken
//! many times; an ignored one only when no regular one qualifies). Accumulation concatenates
//! the images in id order, sorts by score (stable), and turns cumulative TP/FP into a
//! monotone precision envelope sampled at the 101 recall points.

use std::collections::HashMap;

use super::coco_json::{CocoDataset, Detection};

pub const N_IOU: usize = 10;
pub const N_REC: usize = 101;
pub const AREA_NAMES: [&str; 4] = ["all", "small", "medium", "large"];
pub const AREA_RANGES: [[f64; 2]; 4] =
    [[0.0, 1e5 * 1e5], [0.0, 32.0 * 32.0], [32.0 * 32.0, 96.0 * 96.0], [96.0 * 96.0, 1e5 * 1e5]];
pub const MAX_DETS: [usize; 3] = [1, 10, 100];

/// numpy's `linspace(start, stop, num)`: `i * step + start`, the last value exactly `stop`.
fn linspace<const N: usize>(start: f64, stop: f64) -> [f64; N] {
    let step = (stop - start) / (N - 1) as f64;
    let mut out = [0.0; N];
    for (i, v) in out.iter_mut().enumerate() {
        *v = i as f64 * step + start;
    }
    out[N - 1] = stop;
    out
}

pub fn iou_thresholds() -> [f64; N_IOU] {
    linspace::<N_IOU>(0.5, 0.95)
}

pub fn recall_thresholds() -> [f64; N_REC] {
    linspace::<N_REC>(0.0, 1.0)
}

/// The 12 standard COCO numbers (-1 where undefined, as pycocotools).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
#[allow(non_snake_case)]
pub struct CocoStats {
    pub AP: f64,
    pub AP50: f64,
    pub AP75: f64,
    pub APs: f64,
    pub APm: f64,
    pub APl: f64,
    pub AR1: f64,
    pub AR10: f64,
    pub AR100: f64,
    pub ARs: f64,
    pub ARm: f64,
    pub ARl: f64,
}

impl CocoStats {
    pub const NAMES: [&'static str; 12] =
        ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"];

    pub fn as_array(&self) -> [f64; 12] {
        [
            self.AP, self.AP50, self.AP75, self.APs, self.APm, self.APl, self.AR1, self.AR10,
            self.AR100, self.ARs, self.ARm, self.ARl,
        ]
    }

    fn from_array(s: [f64; 12]) -> Self {
        Self {
            AP: s[0],
            AP50: s[1],
            AP75: s[2],
            APs: s[3],
            APm: s[4],
            APl: s[5],
            AR1: s[6],
            AR10: s[7],
            AR100: s[8],
            ARs: s[9],
            ARm: s[10],
            ARl: s[11],
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CocoError {
    #[error("detection #{index} is for image id {image_id}, which the ground truth does not have")]
    UnknownImage { index: usize, image_id: i64 },
}

/// Accumulated results: `precision[t][r][k][a][m]` and `recall[t][k][a][m]` flattened, -1 where
/// a category has no ground truth in that area range.
#[derive(Debug, Clone)]
pub struct CocoEval {
    pub category_ids: Vec<i64>,
    /// `[T=10, R=101, K, A=4, M=3]` row-major.
    pub precision: Vec<f64>,
    /// `[T=10, K, A=4, M=3]` row-major.
    pub recall: Vec<f64>,
    pub stats: CocoStats,
}

impl CocoEval {
    fn k(&self) -> usize {
        self.category_ids.len()
    }
    pub fn precision_at(&self, t: usize, r: usize, k: usize, a: usize, m: usize) -> f64 {
        self.precision[(((t * N_REC + r) * self.k() + k) * 4 + a) * 3 + m]
    }
    pub fn recall_at(&self, t: usize, k: usize, a: usize, m: usize) -> f64 {
        self.recall[((t * self.k() + k) * 4 + a) * 3 + m]
    }
}

/// Per (image, category, area range) outcome: the image's detections in score order (at most
/// 100) with their match state per threshold.
struct ImageEval {
    scores: Vec<f64>,
    /// `[T][nd]`: matched to a non-ignored or ignored ground truth.
    matched: Vec<bool>,
    /// `[T][nd]`: left out of TP/FP (matched an ignored gt, or unmatched and outside the range).
    ignored: Vec<bool>,
    /// Ground truths that count (not crowd, inside the range).
    n_positive: usize,
}

/// IoU as pycocotools' `bbIou` (boxes `[x, y, w, h]`, crowd gts use the detection's area as
/// the union).
fn bb_iou(d: &[f64; 4], g: &[f64; 4], crowd: bool) -> f64 {
    let w = (d[0] + d[2]).min(g[0] + g[2]) - d[0].max(g[0]);
    if w <= 0.0 {
        return 0.0;
    }
    let h = (d[1] + d[3]).min(g[1] + g[3]) - d[1].max(g[1]);
    if h <= 0.0 {
        return 0.0;
    }
    let i = w * h;
    let da = d[2] * d[3];
    let u = if crowd { da } else { da + g[2] * g[3] - i };
    i / u
}

struct Gt<'a> {
    bbox: &'a [f64; 4],
    area: f64,
    crowd: bool,
}

/// Evaluates one (image, category) for every area range. `dts` are already in score order and
/// cut to 100.
fn evaluate_image(gts: &[Gt], dts: &[&Detection], thr: &[f64; N_IOU]) -> [ImageEval; 4] {
    let nd = dts.len();
    let ng = gts.len();
    // ious[d * ng + g] in the gts' input order
    let mut ious = vec![0.0; nd * ng];
    for (di, d) in dts.iter().enumerate() {
        for (gi, g) in gts.iter().enumerate() {
            ious[di * ng + gi] = bb_iou(&d.bbox, g.bbox, g.crowd);
        }
    }
    let scores: Vec<f64> = dts.iter().map(|d| d.score).collect();
    std::array::from_fn(|a| {
        let [lo, hi] = AREA_RANGES[a];
        let ignore: Vec<bool> = gts.iter().map(|g| g.crowd || g.area < lo || g.area > hi).collect();
        // Regular gts first, ignored last, each group in input order (a stable sort).
        let order: Vec<usize> =
            (0..ng).filter(|&g| !ignore[g]).chain((0..ng).filter(|&g| ignore[g])).collect();
        let n_positive = ignore.iter().filter(|&&x| !x).count();
        let mut matched = vec![false; N_IOU * nd];
        let mut ignored = vec![false; N_IOU * nd];
        let mut gt_taken = vec![false; ng];
        for (t, &threshold) in thr.iter().enumerate() {
            gt_taken.iter_mut().for_each(|x| *x = false);
            for di in 0..nd {
                let mut best_iou = threshold.min(1.0 - 1e-10);
                let mut m: Option<usize> = None;
                for &g in &order {
                    if gt_taken[g] && !gts[g].crowd {
                        continue;
                    }
                    // Once a regular gt matched, stop at the first ignored one.
                    if m.is_some_and(|mg| !ignore[mg] && ignore[g]) {
                        break;
                    }
                    let iou = ious[di * ng + g];
                    if iou < best_iou {
                        continue;
                    }
                    best_iou = iou;
                    m = Some(g);
                }
                if let Some(g) = m {
                    matched[t * nd + di] = true;
                    ignored[t * nd + di] = ignore[g];
                    gt_taken[g] = true;
                }
            }
        }
        // Unmatched detections outside the area range are ignored too.
        for (di, d) in dts.iter().enumerate() {
            let area = d.bbox[2] * d.bbox[3];
            if area < lo || area > hi {
                for t in 0..N_IOU {
                    if !matched[t * nd + di] {
                        ignored[t * nd + di] = true;
                    }
                }
            }
        }
        ImageEval { scores: scores.clone(), matched, ignored, n_positive }
    })
}

/// Runs the whole evaluation (pycocotools' evaluate + accumulate + summarize).
pub fn evaluate(gt: &CocoDataset, dets: &[Detection]) -> Result<CocoEval, CocoError> {
    let mut image_ids: Vec<i64> = gt.images.iter().map(|i| i.id).collect();
    image_ids.sort_unstable();
    image_ids.dedup();
    let mut category_ids: Vec<i64> = gt.categories.iter().map(|c| c.id).collect();
    category_ids.sort_unstable();
    category_ids.dedup();
    let img_index: HashMap<i64, usize> =
        image_ids.iter().enumerate().map(|(i, &id)| (id, i)).collect();
    let cat_index: HashMap<i64, usize> =
        category_ids.iter().enumerate().map(|(k, &id)| (id, k)).collect();
    let (n_img, n_cat) = (image_ids.len(), category_ids.len());

    for (index, d) in dets.iter().enumerate() {
        if !img_index.contains_key(&d.image_id) {
            return Err(CocoError::UnknownImage { index, image_id: d.image_id });
        }
    }

    // Bucket ground truths and detections by (category, image), keeping input order.
    let mut gt_cells: Vec<Vec<Gt>> = (0..n_cat * n_img).map(|_| Vec::new()).collect();
    for a in &gt.annotations {
        if let (Some(&k), Some(&i)) = (cat_index.get(&a.category_id), img_index.get(&a.image_id)) {
            gt_cells[k * n_img + i].push(Gt { bbox: &a.bbox, area: a.area, crowd: a.iscrowd != 0 });
        }
    }
    let mut dt_cells: Vec<Vec<&Detection>> = (0..n_cat * n_img).map(|_| Vec::new()).collect();
    for d in dets {
        if let (Some(&k), Some(&i)) = (cat_index.get(&d.category_id), img_index.get(&d.image_id)) {
            dt_cells[k * n_img + i].push(d);
        }
    }

    let thr = iou_thresholds();
    let rec_thr = recall_thresholds();
    let max_det = MAX_DETS[MAX_DETS.len() - 1];
    let mut precision = vec![-1.0; N_IOU * N_REC * n_cat * 4 * 3];
    let mut recall = vec![-1.0; N_IOU * n_cat * 4 * 3];

    for k in 0..n_cat {
        // evals[i] = None when the image has neither gts nor dts of this category.
        let evals: Vec<Option<[ImageEval; 4]>> = (0..n_img)
            .map(|i| {
                let cell = k * n_img + i;
                let gts = &gt_cells[cell];
                let mut dts = dt_cells[cell].clone();
                if gts.is_empty() && dts.is_empty() {
                    return None;
                }
                // Stable: ties keep input order, as numpy's mergesort.
                dts.sort_by(|a, b| b.score.total_cmp(&a.score));
                dts.truncate(max_det);
                Some(evaluate_image(gts, &dts, &thr))
            })
            .collect();
        if evals.iter().all(Option::is_none) {
            continue;
        }
        for a in 0..4 {
            let n_positive: usize = evals.iter().flatten().map(|e| e[a].n_positive).sum();
            for (m, &md) in MAX_DETS.iter().enumerate() {
                if n_positive == 0 {
                    continue;
                }
                // (score, image eval, position) of every detection within maxDet of its image.
                let mut pool: Vec<(f64, &ImageEval, usize)> = Vec::new();
                for e in evals.iter().flatten() {
                    let e = &e[a];
                    let n = e.scores.len().min(md);
                    pool.extend((0..n).map(|j| (e.scores[j], e, j)));
                }
                pool.sort_by(|x, y| y.0.total_cmp(&x.0));
                let nd = pool.len();
                for t in 0..N_IOU {
                    let (mut tp, mut fp) = (0.0f64, 0.0f64);
                    let mut rc = Vec::with_capacity(nd);
                    let mut pr = Vec::with_capacity(nd);
                    for &(_, e, j) in &pool {
                        let len = e.scores.len();
                        if !e.ignored[t * len + j] {
                            if e.matched[t * len + j] {
                                tp += 1.0;
                            } else {
                                fp += 1.0;
                            }
                        }
                        rc.push(tp / n_positive as f64);
                        pr.push(tp / (fp + tp + f64::EPSILON));
                    }
                    recall[((t * n_cat + k) * 4 + a) * 3 + m] = rc.last().copied().unwrap_or(0.0);
                    for i in (1..nd).rev() {
                        if pr[i] > pr[i - 1] {
                            pr[i - 1] = pr[i];
                        }
                    }
                    // searchsorted(rc, recThrs, side='left'); points past the end stay 0.
                    let mut pi = 0;
                    for (r, &rt) in rec_thr.iter().enumerate() {
                        while pi < nd && rc[pi] < rt {
                            pi += 1;
                        }
                        let v = if pi < nd { pr[pi] } else { 0.0 };
                        precision[(((t * N_REC + r) * n_cat + k) * 4 + a) * 3 + m] = v;
                        if pi >= nd {
                            // pycocotools stops filling at the first index past the end.
                            for r2 in r + 1..N_REC {
                                precision[(((t * N_REC + r2) * n_cat + k) * 4 + a) * 3 + m] = 0.0;
                            }
                            break;
                        }
                    }
                }
            }
        }
    }

    let mut eval =
        CocoEval { category_ids, precision, recall, stats: CocoStats::from_array([0.0; 12]) };
    eval.stats = summarize(&eval, &thr);
    Ok(eval)
}

/// Mean of the defined (> -1) entries, -1 when there are none.
fn mean_defined(values: impl Iterator<Item = f64>) -> f64 {
    let (mut sum, mut n) = (0.0, 0usize);
    for v in values.filter(|&v| v > -1.0) {
        sum += v;
        n += 1;
    }
    if n == 0 { -1.0 } else { sum / n as f64 }
}

fn summarize(e: &CocoEval, thr: &[f64; N_IOU]) -> CocoStats {
    let k = e.k();
    let ts = |iou: Option<f64>| -> Vec<usize> {
        (0..N_IOU).filter(|&t| iou.is_none_or(|x| thr[t] == x)).collect()
    };
    let ap = |iou: Option<f64>, a: usize, m: usize| {
        let ts = ts(iou);
        mean_defined(ts.into_iter().flat_map(move |t| {
            (0..N_REC).flat_map(move |r| (0..k).map(move |kk| e.precision_at(t, r, kk, a, m)))
        }))
    };
    let ar = |a: usize, m: usize| {
        mean_defined((0..N_IOU).flat_map(move |t| (0..k).map(move |kk| e.recall_at(t, kk, a, m))))
    };
    CocoStats::from_array([
        ap(None, 0, 2),
        ap(Some(0.5), 0, 2),
        ap(Some(0.75), 0, 2),
        ap(None, 1, 2),
        ap(None, 2, 2),
        ap(None, 3, 2),
        ar(0, 0),
        ar(0, 1),
        ar(0, 2),
        ar(1, 2),
        ar(2, 2),
        ar(3, 2),
    ])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::metrics::coco_json::{CocoAnnotation, CocoCategory, CocoImage};

    fn gt(boxes: &[(i64, [f64; 4])]) -> CocoDataset {
        let mut images: Vec<CocoImage> = boxes
            .iter()
            .map(|b| CocoImage { id: b.0, file_name: String::new(), width: 0, height: 0 })
            .collect();
        images.dedup_by_key(|i| i.id);
        CocoDataset {
            images,
            annotations: boxes
                .iter()
                .enumerate()
                .map(|(n, &(image_id, bbox))| CocoAnnotation {
                    id: n as i64 + 1,
                    image_id,
                    category_id: 1,
                    bbox,
                    area: bbox[2] * bbox[3],
                    iscrowd: 0,
                })
                .collect(),
            categories: vec![CocoCategory { id: 1, name: "fracture".into() }],
        }
    }

    #[test]
    fn perfect_detections_score_one() {
        let g = gt(&[(1, [10.0, 10.0, 50.0, 50.0]), (2, [0.0, 0.0, 200.0, 120.0])]);
        let d: Vec<Detection> = g
            .annotations
            .iter()
            .map(|a| Detection { image_id: a.image_id, category_id: 1, bbox: a.bbox, score: 0.9 })
            .collect();
        let s = evaluate(&g, &d).unwrap().stats;
        // Precision is tp / (tp + fp + spacing(1)): 1 - 2.2e-16 at best, as in pycocotools.
        let one = |v: f64| (v - 1.0).abs() < 1e-12;
        assert!(one(s.AP) && one(s.AP50) && one(s.APm), "{s:?}");
        assert_eq!(s.APs, -1.0); // no small gts
        assert_eq!(s.AR1, 1.0);
    }

    #[test]
    fn a_false_positive_above_the_hit_halves_early_precision() {
        let g = gt(&[(1, [10.0, 10.0, 50.0, 50.0])]);
        let d = vec![
            Detection { image_id: 1, category_id: 1, bbox: [100.0, 100.0, 20.0, 20.0], score: 0.9 },
            Detection { image_id: 1, category_id: 1, bbox: [10.0, 10.0, 50.0, 50.0], score: 0.8 },
        ];
        let s = evaluate(&g, &d).unwrap().stats;
        assert!((s.AP50 - 0.5).abs() < 1e-12, "{}", s.AP50);
        assert_eq!(s.AR1, 0.0);
        assert_eq!(s.AR10, 1.0);
    }

    #[test]
    fn unknown_image_is_an_error() {
        let g = gt(&[(1, [10.0, 10.0, 50.0, 50.0])]);
        let d = vec![Detection { image_id: 7, category_id: 1, bbox: [0.0; 4], score: 0.5 }];
        assert!(matches!(evaluate(&g, &d), Err(CocoError::UnknownImage { image_id: 7, .. })));
    }

    #[test]
    fn thresholds_are_numpy_linspace() {
        let t = iou_thresholds();
        assert_eq!(t[0], 0.5);
        assert_eq!(t[9], 0.95);
        assert!(t.contains(&0.75), "AP75 needs 0.75 to be one of the thresholds exactly");
        assert_eq!(recall_thresholds()[100], 1.0);
    }
}
