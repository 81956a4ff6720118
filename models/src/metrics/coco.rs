//! COCO bounding-box evaluation, number for number what pycocotools' `COCOeval` computes
//! (evaluate + accumulate + summarize): IoU thresholds 0.50:0.05:0.95, 101 recall points, area
//! ranges all/small/medium/large, maxDets 1/10/100, crowd handling, and the 12 summary stats.
//!
//! The procedure, per category k and image i (only the images and categories of the ground
//! truth, both in id order):
//! - detections sorted by score, highest first, ties kept in input order (numpy's mergesort),
//!   and cut to the 100 best;
//! - a ground truth is "ignored" in an area range when it is crowd or its `area` field lies
//!   outside the range; ignored ones are tried after the regular ones (a stable sort);
//! - at each IoU threshold every detection in turn takes the free ground truth with the highest
//!   IoU ≥ threshold (the last one on equal IoU), preferring regular over ignored; a crowd
//!   ground truth stays free (it may absorb many detections) and its IoU divides by the
//!   detection's area instead of the union;
//! - a detection matched to an ignored ground truth, or unmatched with its own area (w·h)
//!   outside the range, counts neither as TP nor as FP.
//!
//! Accumulation per (category, area range, maxDets) concatenates the images in id order, sorts
//! the detections by score (stable), turns cumulative TP/FP into recall and precision
//! (`tp / (tp + fp + np.spacing(1))`), makes precision monotone from the right and samples it
//! at the 101 recall thresholds with `searchsorted(side='left')` (0 past the last recall
//! reached). Categories without regular ground truth in an area range are -1 there, and the
//! summary means skip the -1 entries, summing in numpy's pairwise order.
//!
//! Speed (single thread; `fracture-bench coco` compares it with pycocotools): ground truths
//! and detections are bucketed by (category, image) with one counting sort; each detection
//! only visits the ground truths it overlaps with IoU ≥ 0.5 (no other can match at any
//! threshold); outcomes are one byte per (area range, threshold, detection); one score sort per
//! category serves all area ranges and maxDets (the order does not depend on them, and keeping
//! ranks < maxDets of a stable order keeps it stable); and the precision/recall curves are
//! built at true positives only (see `Curve`).

use super::coco_json::{CocoDataset, Detection};

/// IoU thresholds 0.50:0.05:0.95.
pub const N_IOU: usize = 10;
/// Recall thresholds 0.00:0.01:1.00.
pub const N_REC: usize = 101;
pub const N_AREA: usize = 4;
pub const N_MAX_DETS: usize = 3;
pub const AREA_NAMES: [&str; N_AREA] = ["all", "small", "medium", "large"];
/// `[lo, hi]` in square pixels, inclusive at both ends (as pycocotools' `<` / `>` tests).
pub const AREA_RANGES: [[f64; 2]; N_AREA] =
    [[0.0, 1e5 * 1e5], [0.0, 32.0 * 32.0], [32.0 * 32.0, 96.0 * 96.0], [96.0 * 96.0, 1e5 * 1e5]];
pub const MAX_DETS: [usize; N_MAX_DETS] = [1, 10, 100];

/// numpy's `linspace(start, stop, num)`: `i * step + start`, the last value exactly `stop`.
pub(crate) fn linspace<const N: usize>(start: f64, stop: f64) -> [f64; N] {
    let step = (stop - start) / (N - 1) as f64;
    let mut out = [0.0; N];
    for (i, v) in out.iter_mut().enumerate() {
        *v = i as f64 * step + start;
    }
    out[N - 1] = stop;
    out
}

/// numpy's float64 `add.reduce` (pairwise summation, 8-way unrolled below 128 elements), so
/// that means come out bit for bit as `np.mean` gives them.
pub(crate) fn pairwise_sum(a: &[f64]) -> f64 {
    let n = a.len();
    if n < 8 {
        let mut res = 0.0;
        for &v in a {
            res += v;
        }
        res
    } else if n <= 128 {
        let mut r = [0.0; 8];
        r.copy_from_slice(&a[..8]);
        let mut i = 8;
        while i < n - n % 8 {
            for (j, rj) in r.iter_mut().enumerate() {
                *rj += a[i + j];
            }
            i += 8;
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for &v in &a[i..] {
            res += v;
        }
        res
    } else {
        let mut n2 = n / 2;
        n2 -= n2 % 8;
        pairwise_sum(&a[..n2]) + pairwise_sum(&a[n2..])
    }
}

pub fn iou_thresholds() -> [f64; N_IOU] {
    linspace::<N_IOU>(0.5, 0.95)
}

pub fn recall_thresholds() -> [f64; N_REC] {
    linspace::<N_REC>(0.0, 1.0)
}

/// The 12 standard COCO numbers, named as pycocotools prints them (-1 where undefined).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[allow(non_snake_case)]
pub struct CocoStats {
    /// AP at IoU 0.50:0.95, all areas, 100 detections.
    pub AP: f64,
    pub AP50: f64,
    pub AP75: f64,
    /// AP for small (area < 32²), medium and large (> 96²) ground truths.
    pub APs: f64,
    pub APm: f64,
    pub APl: f64,
    /// AR with at most 1, 10 and 100 detections per image.
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

    /// In pycocotools' `stats` order.
    pub fn as_array(&self) -> [f64; 12] {
        [
            self.AP, self.AP50, self.AP75, self.APs, self.APm, self.APl, self.AR1, self.AR10,
            self.AR100, self.ARs, self.ARm, self.ARl,
        ]
    }

    pub fn from_array(s: [f64; 12]) -> Self {
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

    /// `(name, value)` pairs in pycocotools' order.
    pub fn named(&self) -> impl Iterator<Item = (&'static str, f64)> {
        Self::NAMES.into_iter().zip(self.as_array())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CocoError {
    #[error("detection #{index} is for image id {image_id}, which the ground truth does not have")]
    UnknownImage { index: usize, image_id: i64 },
    #[error("detection #{index} has a non-finite score or box")]
    NonFiniteDetection { index: usize },
    #[error("annotation id {id} has a non-finite box or area")]
    NonFiniteAnnotation { id: i64 },
}

/// Accumulated results (pycocotools' `eval` dict) and the summary.
#[derive(Debug, Clone)]
pub struct CocoEval {
    /// The evaluated images (the ground truth's), ascending.
    pub image_ids: Vec<i64>,
    /// The evaluated categories (the ground truth's), ascending; `k` indexes this.
    pub category_ids: Vec<i64>,
    /// `[T=10, R=101, K, A=4, M=3]` row-major: interpolated precision at each recall
    /// threshold, -1 where category k has no regular ground truth in area range a.
    pub precision: Vec<f64>,
    /// `[T=10, K, A=4, M=3]` row-major: the recall reached, -1 as above.
    pub recall: Vec<f64>,
    /// `[T=10, R=101, K, A=4, M=3]`: the score of the detection where each recall threshold is
    /// first reached (0 past the end, -1 as above) — the confidence axis of PR curves.
    pub scores: Vec<f64>,
    pub stats: CocoStats,
}

impl CocoEval {
    fn k(&self) -> usize {
        self.category_ids.len()
    }

    pub fn precision_at(&self, t: usize, r: usize, k: usize, a: usize, m: usize) -> f64 {
        self.precision[(((t * N_REC + r) * self.k() + k) * N_AREA + a) * N_MAX_DETS + m]
    }

    pub fn recall_at(&self, t: usize, k: usize, a: usize, m: usize) -> f64 {
        self.recall[((t * self.k() + k) * N_AREA + a) * N_MAX_DETS + m]
    }

    pub fn score_at(&self, t: usize, r: usize, k: usize, a: usize, m: usize) -> f64 {
        self.scores[(((t * N_REC + r) * self.k() + k) * N_AREA + a) * N_MAX_DETS + m]
    }
}

/// IoU as pycocotools' `bbIou` (boxes `[x, y, w, h]`; a crowd ground truth uses the
/// detection's area as the union).
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

#[derive(Clone, Copy)]
struct GtBox {
    bbox: [f64; 4],
    area: f64,
    crowd: bool,
}

#[derive(Clone, Copy)]
struct DtBox {
    bbox: [f64; 4],
    score: f64,
}

/// Items grouped by cell (`k * n_img + i`), each group in input order:
/// `items[start[c]..start[c + 1]]`.
struct Buckets<T> {
    start: Vec<usize>,
    items: Vec<T>,
}

impl<T: Copy> Buckets<T> {
    /// A stable counting sort of `(cell, item)` pairs.
    fn new(n_cells: usize, entries: Vec<(usize, T)>) -> Self {
        let mut start = vec![0usize; n_cells + 1];
        for &(c, _) in &entries {
            start[c + 1] += 1;
        }
        for c in 0..n_cells {
            start[c + 1] += start[c];
        }
        let mut fill = start.clone();
        let mut items: Vec<Option<T>> = vec![None; entries.len()];
        for (c, t) in entries {
            items[fill[c]] = Some(t);
            fill[c] += 1;
        }
        Self { start, items: items.into_iter().flatten().collect() }
    }

    fn cell(&self, c: usize) -> &[T] {
        &self.items[self.start[c]..self.start[c + 1]]
    }
}

/// Position of an id in a sorted, deduplicated id list: arithmetic when the ids are
/// consecutive (the usual 1..=n), a binary search otherwise.
struct IdIndex<'a> {
    ids: &'a [i64],
    consecutive: bool,
}

impl<'a> IdIndex<'a> {
    fn new(ids: &'a [i64]) -> Self {
        let consecutive = match (ids.first(), ids.last()) {
            (Some(&a), Some(&b)) => b.checked_sub(a) == Some(ids.len() as i64 - 1),
            _ => false,
        };
        Self { ids, consecutive }
    }

    fn get(&self, id: i64) -> Option<usize> {
        if self.consecutive {
            let i = usize::try_from(id.checked_sub(*self.ids.first()?)?).ok()?;
            (i < self.ids.len()).then_some(i)
        } else {
            self.ids.binary_search(&id).ok()
        }
    }
}

/// Outcome of one detection at one (area range, threshold).
const FP: u8 = 0;
const TP: u8 = 1;
const IGNORED: u8 = 2;

/// Descending-score sort key; `+ 0.0` makes -0.0 and 0.0 equal as numpy compares them.
fn score_key(s: f64) -> f64 {
    -s + 0.0
}

/// Reused buffers of the per-image matching.
#[derive(Default)]
struct Scratch {
    order: Vec<usize>,
    /// `cands[cand_start[d]..cand_start[d + 1]]`: `(gt, iou)` with IoU ≥ 0.5, gts in input order.
    cand_start: Vec<usize>,
    cands: Vec<(usize, f64)>,
    ignore: Vec<bool>,
    taken: Vec<bool>,
    unmatched: Vec<u8>,
}

/// One category's per-image results, images concatenated in id order.
struct CategoryResults {
    /// Score of each kept detection.
    scores: Vec<f64>,
    /// Its rank in its image's score order (0..100).
    rank: Vec<u8>,
    /// `[A][T][nd]` outcomes.
    states: Vec<u8>,
    /// Regular (not ignored) ground truths per area range.
    n_positive: [usize; N_AREA],
}

/// Matches one (image, category) and appends its outcomes; `off` is where its detections
/// start in the category's concatenation, `nd_total` the category's detection count.
#[allow(clippy::too_many_arguments)]
fn evaluate_image(
    gts: &[GtBox],
    dts: &[DtBox],
    thr: &[f64; N_IOU],
    max_det: usize,
    off: usize,
    nd_total: usize,
    out: &mut CategoryResults,
    s: &mut Scratch,
) {
    s.order.clear();
    s.order.extend(0..dts.len());
    // Stable: ties keep input order, as numpy's mergesort.
    s.order.sort_by(|&x, &y| score_key(dts[x].score).total_cmp(&score_key(dts[y].score)));
    s.order.truncate(max_det);
    let ng = gts.len();

    s.cand_start.clear();
    s.cands.clear();
    s.cand_start.push(0);
    for (rank, &di) in s.order.iter().enumerate() {
        let d = &dts[di];
        out.scores.push(d.score);
        out.rank.push(rank as u8);
        for (gi, g) in gts.iter().enumerate() {
            let iou = bb_iou(&d.bbox, &g.bbox, g.crowd);
            // No match is possible below the lowest threshold.
            if iou >= thr[0] {
                s.cands.push((gi, iou));
            }
        }
        s.cand_start.push(s.cands.len());
    }

    for (a, &[lo, hi]) in AREA_RANGES.iter().enumerate() {
        s.ignore.clear();
        s.ignore.extend(gts.iter().map(|g| g.crowd || g.area < lo || g.area > hi));
        out.n_positive[a] += s.ignore.iter().filter(|&&x| !x).count();
        // The outcome when unmatched: ignored outside the area range (by the box's w·h), else FP.
        s.unmatched.clear();
        s.unmatched.extend(s.order.iter().map(|&di| {
            let b = &dts[di].bbox;
            let area = b[2] * b[3];
            if area < lo || area > hi { IGNORED } else { FP }
        }));
        for (t, &threshold) in thr.iter().enumerate() {
            let row = &mut out.states[(a * N_IOU + t) * nd_total + off..][..s.order.len()];
            row.copy_from_slice(&s.unmatched);
            if s.cands.is_empty() {
                continue;
            }
            s.taken.clear();
            s.taken.resize(ng, false);
            let best_start = threshold.min(1.0 - 1e-10);
            for (d, state) in row.iter_mut().enumerate() {
                let cands = &s.cands[s.cand_start[d]..s.cand_start[d + 1]];
                let mut best = best_start;
                let mut m: Option<usize> = None;
                // Regular gts first (a regular gt is never crowd, so taken means taken) ...
                for &(g, iou) in cands {
                    if s.ignore[g] || s.taken[g] || iou < best {
                        continue;
                    }
                    best = iou;
                    m = Some(g);
                }
                // ... and an ignored one only when no regular one matched (pycocotools breaks
                // at the first ignored gt once it holds a regular match).
                if m.is_none() {
                    for &(g, iou) in cands {
                        if !s.ignore[g] || (s.taken[g] && !gts[g].crowd) || iou < best {
                            continue;
                        }
                        best = iou;
                        m = Some(g);
                    }
                }
                if let Some(g) = m {
                    s.taken[g] = true;
                    *state = if s.ignore[g] { IGNORED } else { TP };
                }
            }
        }
    }
}

/// One category's detections in the accumulation's order (score descending, stable over the
/// images concatenated in id order), and the buffers of one precision/recall curve.
///
/// pycocotools builds recall `rc` and precision `pr` at every detection, makes `pr` monotone
/// from the right and reads it at `searchsorted(rc, recThrs, 'left')`. Recall only rises at a
/// true positive, so every index that search can return is a true positive (or index 0, for
/// recall threshold 0); precision after a false positive or an ignored detection is never
/// above the one at the preceding true positive, so the envelope at a true positive is the
/// running maximum over later true positives. Same numbers, with divisions only at true
/// positives and a branch-free pass over the detections.
#[derive(Default)]
struct Curve {
    /// Rank of each detection within its image (maxDets keeps rank < maxDets).
    rank: Vec<u8>,
    score: Vec<f64>,
    /// Outcomes of one (area range, threshold) in this order.
    state: Vec<u8>,
    /// Per true positive: its index in this order, and false positives before it.
    pos: Vec<u32>,
    fp_before: Vec<u32>,
    /// Precision at each true positive, then its envelope.
    pr: Vec<f64>,
}

impl Curve {
    /// Fills `q` (precision) and `ss` (score) at the 101 recall thresholds for the detections
    /// of rank < `max_det`, from `self.state`; returns the recall reached.
    fn sample(
        &mut self,
        max_det: usize,
        npig: f64,
        rec_thr: &[f64; N_REC],
        q: &mut [f64; N_REC],
        ss: &mut [f64; N_REC],
    ) -> f64 {
        let nd = self.state.len();
        if nd == 0 {
            return 0.0; // q and ss stay 0
        }
        self.pos.resize(nd, 0);
        self.fp_before.resize(nd, 0);
        let (mut n_tp, mut fp) = (0usize, 0u32);
        for (i, (&st, &rank)) in self.state.iter().zip(&self.rank).enumerate() {
            let kept = usize::from(rank) < max_det;
            fp += u32::from(kept & (st == FP));
            self.pos[n_tp] = i as u32;
            self.fp_before[n_tp] = fp;
            n_tp += usize::from(kept & (st == TP));
        }
        self.pr.clear();
        self.pr.extend((0..n_tp).map(|k| {
            let tp = f64::from(k as u32 + 1);
            tp / (f64::from(self.fp_before[k]) + tp + f64::EPSILON) // np.spacing(1)
        }));
        for i in (1..n_tp).rev() {
            if self.pr[i] > self.pr[i - 1] {
                self.pr[i - 1] = self.pr[i];
            }
        }
        // Past the last recall reached precision and score stay 0 (pycocotools stops filling
        // at the first index out of range).
        let mut k = 0;
        for (r, &rt) in rec_thr.iter().enumerate() {
            if rt <= 0.0 {
                // Index 0, the first detection whatever it is (rank 0 of its image, so kept
                // at every maxDets); the envelope there is the maximum of all.
                q[r] = self.pr.first().copied().unwrap_or(0.0);
                ss[r] = self.score[0];
                continue;
            }
            while k < n_tp && f64::from(k as u32 + 1) / npig < rt {
                k += 1;
            }
            if k == n_tp {
                break;
            }
            q[r] = self.pr[k];
            ss[r] = self.score[self.pos[k] as usize];
        }
        f64::from(n_tp as u32) / npig
    }
}

/// Runs the whole evaluation (pycocotools' evaluate + accumulate + summarize) over the ground
/// truth's images and categories. Detections of other categories are ignored; a detection for
/// an image the ground truth lacks is an error (pycocotools' `loadRes` asserts).
pub fn evaluate(gt: &CocoDataset, dets: &[Detection]) -> Result<CocoEval, CocoError> {
    let mut image_ids: Vec<i64> = gt.images.iter().map(|i| i.id).collect();
    image_ids.sort_unstable();
    image_ids.dedup();
    let mut category_ids: Vec<i64> = gt.categories.iter().map(|c| c.id).collect();
    category_ids.sort_unstable();
    category_ids.dedup();
    let img_index = IdIndex::new(&image_ids);
    let cat_index = IdIndex::new(&category_ids);
    let (n_img, n_cat) = (image_ids.len(), category_ids.len());
    let n_cells = n_img * n_cat;

    let mut dt_entries = Vec::with_capacity(dets.len());
    for (index, d) in dets.iter().enumerate() {
        let Some(i) = img_index.get(d.image_id) else {
            return Err(CocoError::UnknownImage { index, image_id: d.image_id });
        };
        if !d.score.is_finite() || d.bbox.iter().any(|v| !v.is_finite()) {
            return Err(CocoError::NonFiniteDetection { index });
        }
        if let Some(k) = cat_index.get(d.category_id) {
            dt_entries.push((k * n_img + i, DtBox { bbox: d.bbox, score: d.score }));
        }
    }
    let mut gt_entries = Vec::with_capacity(gt.annotations.len());
    for a in &gt.annotations {
        if let (Some(k), Some(i)) = (cat_index.get(a.category_id), img_index.get(a.image_id)) {
            if !a.area.is_finite() || a.bbox.iter().any(|v| !v.is_finite()) {
                return Err(CocoError::NonFiniteAnnotation { id: a.id });
            }
            let g = GtBox { bbox: a.bbox, area: a.area, crowd: a.iscrowd != 0 };
            gt_entries.push((k * n_img + i, g));
        }
    }
    let gts = Buckets::new(n_cells, gt_entries);
    let dts = Buckets::new(n_cells, dt_entries);

    let thr = iou_thresholds();
    let rec_thr = recall_thresholds();
    let max_det = MAX_DETS[N_MAX_DETS - 1];
    let mut precision = vec![-1.0; N_IOU * N_REC * n_cat * N_AREA * N_MAX_DETS];
    let mut scores = vec![-1.0; precision.len()];
    let mut recall = vec![-1.0; N_IOU * n_cat * N_AREA * N_MAX_DETS];

    let mut scratch = Scratch::default();
    let mut curve = Curve::default();
    let mut perm: Vec<usize> = Vec::new();
    for k in 0..n_cat {
        let cells = k * n_img..(k + 1) * n_img;
        let nd_total: usize = cells.clone().map(|c| dts.cell(c).len().min(max_det)).sum();
        let mut res = CategoryResults {
            scores: Vec::with_capacity(nd_total),
            rank: Vec::with_capacity(nd_total),
            states: vec![FP; N_AREA * N_IOU * nd_total],
            n_positive: [0; N_AREA],
        };
        for c in cells {
            let (g, d) = (gts.cell(c), dts.cell(c));
            if g.is_empty() && d.is_empty() {
                continue;
            }
            let off = res.scores.len();
            evaluate_image(g, d, &thr, max_det, off, nd_total, &mut res, &mut scratch);
        }
        if res.n_positive.iter().all(|&n| n == 0) {
            continue;
        }

        // One stable score order for the category; maxDets 1 and 10 filter it by rank.
        let keys: Vec<f64> = res.scores.iter().map(|&s| score_key(s)).collect();
        perm.clear();
        perm.extend(0..nd_total);
        perm.sort_unstable_by(|&x, &y| keys[x].total_cmp(&keys[y]).then(x.cmp(&y)));
        curve.rank.clear();
        curve.rank.extend(perm.iter().map(|&j| res.rank[j]));
        let max_rank = res.rank.iter().max().map_or(0, |&r| usize::from(r));
        curve.score.clear();
        curve.score.extend(perm.iter().map(|&j| res.scores[j]));

        for (a, &npig) in res.n_positive.iter().enumerate() {
            if npig == 0 {
                continue;
            }
            let npig = npig as f64;
            for t in 0..N_IOU {
                let states = &res.states[(a * N_IOU + t) * nd_total..][..nd_total];
                curve.state.clear();
                curve.state.extend(perm.iter().map(|&j| states[j]));
                // From 100 down; a maxDets that keeps every detection repeats the previous.
                let mut last: Option<(f64, [f64; N_REC], [f64; N_REC])> = None;
                for (m, &max_det) in MAX_DETS.iter().enumerate().rev() {
                    let (rc, q, ss) = match last {
                        Some(same) if max_rank < max_det => same,
                        _ => {
                            let (mut q, mut ss) = ([0.0; N_REC], [0.0; N_REC]);
                            let rc = curve.sample(max_det, npig, &rec_thr, &mut q, &mut ss);
                            (rc, q, ss)
                        }
                    };
                    last = Some((rc, q, ss));
                    recall[((t * n_cat + k) * N_AREA + a) * N_MAX_DETS + m] = rc;
                    for r in 0..N_REC {
                        let at = (((t * N_REC + r) * n_cat + k) * N_AREA + a) * N_MAX_DETS + m;
                        (precision[at], scores[at]) = (q[r], ss[r]);
                    }
                }
            }
        }
    }

    let mut eval = CocoEval {
        image_ids,
        category_ids,
        precision,
        recall,
        scores,
        stats: CocoStats::from_array([-1.0; 12]),
    };
    eval.stats = summarize(&eval, &thr);
    Ok(eval)
}

/// `np.mean(s[s > -1])`, -1 when nothing is defined.
fn mean_defined(values: impl Iterator<Item = f64>) -> f64 {
    let defined: Vec<f64> = values.filter(|&v| v > -1.0).collect();
    if defined.is_empty() { -1.0 } else { pairwise_sum(&defined) / defined.len() as f64 }
}

/// pycocotools' `summarize`; values are taken in its array order (t, r, k) for the sums.
fn summarize(e: &CocoEval, thr: &[f64; N_IOU]) -> CocoStats {
    let k = e.k();
    let ts = |iou: Option<f64>| -> Vec<usize> {
        (0..N_IOU).filter(|&t| iou.is_none_or(|x| thr[t] == x)).collect()
    };
    let ap = |iou: Option<f64>, a: usize, m: usize| {
        mean_defined(ts(iou).into_iter().flat_map(move |t| {
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

    /// Precision is `tp / (tp + fp + np.spacing(1))`, so a perfect AP is 1 - 2⁻⁵², as in
    /// pycocotools.
    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    fn det(image_id: i64, bbox: [f64; 4], score: f64) -> Detection {
        Detection { image_id, category_id: 1, bbox, score }
    }

    #[test]
    fn perfect_detections_score_one() {
        let g = gt(&[(1, [10.0, 10.0, 50.0, 50.0]), (2, [0.0, 0.0, 200.0, 120.0])]);
        let d: Vec<Detection> =
            g.annotations.iter().map(|a| det(a.image_id, a.bbox, 0.9)).collect();
        let s = evaluate(&g, &d).unwrap().stats;
        assert!(close(s.AP, 1.0) && close(s.AP50, 1.0) && close(s.APm, 1.0), "{s:?}");
        assert_eq!(s.APs, -1.0); // no small gts
        assert_eq!(s.AR1, 1.0);
    }

    #[test]
    fn a_false_positive_above_the_hit_halves_early_precision() {
        let g = gt(&[(1, [10.0, 10.0, 50.0, 50.0])]);
        let d =
            vec![det(1, [100.0, 100.0, 20.0, 20.0], 0.9), det(1, [10.0, 10.0, 50.0, 50.0], 0.8)];
        let e = evaluate(&g, &d).unwrap();
        let s = e.stats;
        assert!((s.AP50 - 0.5).abs() < 1e-12, "{}", s.AP50);
        assert_eq!(s.AR1, 0.0);
        assert_eq!(s.AR10, 1.0);
        // The PR curve's confidence axis: recall 1 is first reached at the second detection.
        assert_eq!(e.score_at(0, 100, 0, 0, 2), 0.8);
    }

    #[test]
    fn a_crowd_region_absorbs_detections_without_counting() {
        let mut g = gt(&[(1, [0.0, 0.0, 100.0, 100.0]), (1, [200.0, 200.0, 50.0, 50.0])]);
        g.annotations[0].iscrowd = 1;
        // Three boxes inside the crowd region (IoU over their own area = 1), one hit.
        let d = vec![
            det(1, [0.0, 0.0, 20.0, 20.0], 0.9),
            det(1, [50.0, 50.0, 20.0, 20.0], 0.8),
            det(1, [10.0, 60.0, 20.0, 20.0], 0.7),
            det(1, [200.0, 200.0, 50.0, 50.0], 0.6),
        ];
        let s = evaluate(&g, &d).unwrap().stats;
        assert!(close(s.AP, 1.0), "{s:?}");
    }

    #[test]
    fn unknown_image_is_an_error_and_unknown_category_is_ignored() {
        let g = gt(&[(1, [10.0, 10.0, 50.0, 50.0])]);
        let d = vec![det(7, [0.0; 4], 0.5)];
        assert!(matches!(evaluate(&g, &d), Err(CocoError::UnknownImage { image_id: 7, .. })));
        let mut other = det(1, [10.0, 10.0, 50.0, 50.0], 0.99);
        other.category_id = 42;
        let d = vec![other, det(1, [10.0, 10.0, 50.0, 50.0], 0.5)];
        assert!(close(evaluate(&g, &d).unwrap().stats.AP, 1.0));
    }

    #[test]
    fn non_finite_input_is_an_error() {
        let g = gt(&[(1, [10.0, 10.0, 50.0, 50.0])]);
        let d = vec![det(1, [0.0; 4], f64::NAN)];
        assert!(matches!(evaluate(&g, &d), Err(CocoError::NonFiniteDetection { index: 0 })));
    }

    #[test]
    fn thresholds_are_numpy_linspace() {
        let t = iou_thresholds();
        assert_eq!(t[0], 0.5);
        assert_eq!(t[9], 0.95);
        assert!(t.contains(&0.75), "AP75 needs 0.75 to be one of the thresholds exactly");
        assert_eq!(recall_thresholds()[100], 1.0);
    }

    #[test]
    fn pairwise_sum_is_exact_on_integers_and_blocks_like_numpy() {
        let v: Vec<f64> = (1..=1000).map(f64::from).collect();
        assert_eq!(pairwise_sum(&v), 500_500.0);
        assert_eq!(pairwise_sum(&[]), 0.0);
        // 0.1 summed 10 times: sequentially 0.9999999999999999, numpy's unrolled blocks 1.0.
        assert_eq!(pairwise_sum(&[0.1; 10]), 1.0);
    }
}
