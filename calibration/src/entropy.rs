//! TensorRT's entropy calibration: choose the clipping threshold whose INT8 quantisation
//! loses the least information, measured as the KL divergence between the clipped
//! distribution and its quantised version (NVIDIA, GTC 2017, "8-bit Inference with
//! TensorRT"). Written from that description.
//!
//! For a histogram of |x| with bins `c[0..n)` of width `w` (n = 2048), each candidate
//! `i ∈ 128..=n` keeps the first `i` bins:
//!
//! - reference `P`: `c[0..i)` with the outlier mass `Σ c[i..n)` added to `P[i-1]`
//!   (clipping moves every larger value to the threshold);
//! - candidate `Q`: `c[0..i)` (without the outliers) quantised into 128 levels and expanded
//!   back — bin `j` belongs to level `⌊j·128 / i⌋` (levels as even as integer bins allow,
//!   every level ≥ 1 bin), a level's total is shared equally among its bins where `P_j > 0`,
//!   and bins where `P_j = 0` stay 0 in `Q` (the published "expand over the non-zero bins";
//!   the mask is taken from `P`, as MXNet's and onnxruntime's implementations of the same
//!   method do, so an empty bin `i-1` that receives the outliers still gets its level's
//!   share);
//! - `P` and `Q` are normalised and `KL(P‖Q) = Σ_{P_j>0} P_j ln(P_j / Q_j)`. It is `+∞` when
//!   `P_j > 0 = Q_j`, which happens only when the last level holds no value but outliers
//!   exist: such a candidate is never chosen. No smoothing is applied (onnxruntime adds
//!   `1e-4` counts to empty bins instead; that only matters for these infinite candidates).
//!
//! Exact zeros are left out of the search (bin 0 holds only the non-zero values below `w`):
//! zero is represented exactly by any symmetric INT8 scale, so it says nothing about the
//! range, and after a ReLU it is often half of all values — a spike in bin 0 that the
//! level averaging can only match with one bin per level, which drags every ReLU tensor to
//! the smallest candidate (`max/16`). NVIDIA's pytorch-quantization tames the same spike by
//! setting bin 0 to bin 1's count; dropping the exact zeros is the principled version.
//!
//! The smallest `i` with the minimum divergence wins (first minimum, a fixed tie-break), and
//! the threshold is the published `(i + 0.5)·w`, clamped to the observed max |x| (a range past
//! the largest value seen would only waste levels).

use crate::histogram::AbsHistogram;

/// Quantised levels on one side of zero (INT8: 127 steps and zero, 128 as published).
pub const LEVELS: usize = 128;

/// The candidate TensorRT's entropy search settled on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EntropyChoice {
    /// Number of histogram bins kept (`i`).
    pub bins: usize,
    /// `KL(P‖Q)` in nats at that candidate.
    pub divergence: f64,
}

/// Reusable buffers of one search.
struct Scratch {
    level_sum: Vec<u64>,
    level_nonzero: Vec<u64>,
}

/// `KL(P‖Q)` of candidate `i` (bins kept) with `levels` quantised levels, as the module docs
/// define it; `outliers` is `Σ counts[i..]`.
fn divergence_with(
    counts: &[u64],
    i: usize,
    levels: usize,
    outliers: u64,
    total: u64,
    s: &mut Scratch,
) -> f64 {
    s.level_sum.clear();
    s.level_sum.resize(levels, 0);
    s.level_nonzero.clear();
    s.level_nonzero.resize(levels, 0);
    for (j, &c) in counts[..i].iter().enumerate() {
        let l = j * levels / i;
        let p = if j + 1 == i { c + outliers } else { c };
        s.level_sum[l] += c;
        s.level_nonzero[l] += u64::from(p > 0);
    }
    let kept = total - outliers;
    if kept == 0 {
        return f64::INFINITY;
    }
    let (total, kept) = (total as f64, kept as f64);
    let mut kl = 0.0f64;
    for (j, &c) in counts[..i].iter().enumerate() {
        let p = if j + 1 == i { c + outliers } else { c };
        if p == 0 {
            continue;
        }
        let l = j * levels / i;
        if s.level_sum[l] == 0 {
            return f64::INFINITY;
        }
        let q = s.level_sum[l] as f64 / s.level_nonzero[l] as f64 / kept;
        let p = p as f64 / total;
        kl += p * (p / q).ln();
    }
    kl
}

/// `KL(P‖Q)` for one candidate `i` (`levels <= i <= counts.len()`); `None` outside that
/// range or for an empty histogram.
pub fn divergence(counts: &[u64], i: usize, levels: usize) -> Option<f64> {
    let total: u64 = counts.iter().sum();
    if levels == 0 || i < levels || i > counts.len() || total == 0 {
        return None;
    }
    let outliers = counts[i..].iter().sum();
    let mut s = Scratch { level_sum: Vec::new(), level_nonzero: Vec::new() };
    Some(divergence_with(counts, i, levels, outliers, total, &mut s))
}

/// Searches `i ∈ levels..=counts.len()` for the minimum divergence. `None` when the histogram
/// is empty or has fewer than `levels` bins.
pub fn search(counts: &[u64], levels: usize) -> Option<EntropyChoice> {
    let n = counts.len();
    let total: u64 = counts.iter().sum();
    if levels == 0 || n < levels || total == 0 {
        return None;
    }
    // outliers[i] = Σ counts[i..n)
    let mut outliers = vec![0u64; n + 1];
    for j in (0..n).rev() {
        outliers[j] = outliers[j + 1] + counts[j];
    }
    let mut s = Scratch { level_sum: Vec::with_capacity(levels), level_nonzero: Vec::new() };
    let mut best: Option<EntropyChoice> = None;
    for (i, &out) in outliers.iter().enumerate().skip(levels) {
        let d = divergence_with(counts, i, levels, out, total, &mut s);
        if best.is_none_or(|b| d < b.divergence) {
            best = Some(EntropyChoice { bins: i, divergence: d });
        }
    }
    best
}

/// The counts the search runs on: the histogram without its exact zeros.
pub fn search_counts(h: &AbsHistogram) -> Vec<u64> {
    let mut c = h.counts().to_vec();
    c[0] -= h.zeros();
    c
}

/// The entropy-calibrated amax of a histogram: `(i + 0.5)·w` of the best candidate over
/// [`search_counts`], clamped to the observed max |x|. An all-zero tensor gives 0. A
/// histogram with fewer than [`LEVELS`] bins cannot be searched and gives its max |x|.
pub fn entropy_amax(h: &AbsHistogram) -> f32 {
    match search(&search_counts(h), LEVELS) {
        Some(choice) if choice.divergence.is_finite() => {
            let t = (choice.bins as f64 + 0.5) * h.bin_width();
            (t as f32).min(h.max_abs())
        }
        _ => h.max_abs(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The published expansion example: bins [1 0 2 3 5 3 1 7] into 2 levels →
    /// Q = [2 0 2 2 4 4 4 4] (before normalising); no outliers at i = 8.
    #[test]
    fn published_example() {
        let c = [1u64, 0, 2, 3, 5, 3, 1, 7];
        let p = [1.0, 0.0, 2.0, 3.0, 5.0, 3.0, 1.0, 7.0].map(|v: f64| v / 22.0);
        let q = [2.0, 0.0, 2.0, 2.0, 4.0, 4.0, 4.0, 4.0].map(|v: f64| v / 22.0);
        let want: f64 =
            p.iter().zip(&q).filter(|(p, _)| **p > 0.0).map(|(p, q)| p * (p / q).ln()).sum();
        let got = divergence(&c, 8, 2).unwrap();
        assert!((got - want).abs() < 1e-15, "{got} vs {want}");
        assert!(want > 0.1, "the example is not trivially zero: {want}");
    }

    /// Outliers pile onto the last kept bin; Q spreads its level evenly.
    #[test]
    fn outliers_and_infinite_candidates() {
        // i = 2 of [4 4 | 0 8], 1 level: P = [4, 12]/16, Q = [4, 4]/8.
        let c = [4u64, 4, 0, 8];
        let want = 0.25f64 * (0.25f64 / 0.5).ln() + 0.75 * (0.75f64 / 0.5).ln();
        assert!((divergence(&c, 2, 1).unwrap() - want).abs() < 1e-15);
        // i = 3: c[2] = 0 but the 8 outliers land there, so P = [4 4 8]/16 and the level's
        // 8 counts are shared by all three bins: Q = [1 1 1]/3.
        let want = 2.0 * 0.25 * (0.25f64 * 3.0).ln() + 0.5 * (0.5f64 * 3.0).ln();
        assert!((divergence(&c, 3, 1).unwrap() - want).abs() < 1e-15);
        // [4 0 | 0 8], i = 3, 2 levels (bins {0,1} and {2}): the last level holds nothing
        // but receives the outliers → Q is 0 where P is not.
        assert_eq!(divergence(&[4, 0, 0, 8], 3, 2).unwrap(), f64::INFINITY);
        assert!(divergence(&c, 5, 1).is_none());
        assert!(divergence(&[0, 0], 2, 1).is_none());
    }

    /// A flat histogram keeps everything: every shorter candidate piles outliers on one bin.
    #[test]
    fn flat_histogram_keeps_all_bins() {
        let c = vec![1000u64; 2048];
        let best = search(&c, LEVELS).unwrap();
        assert_eq!(best.bins, 2048);
        assert!(best.divergence.abs() < 1e-12);
    }

    #[test]
    fn zero_tensor_and_tiny_histogram() {
        let mut h = AbsHistogram::new(0.0).unwrap();
        h.add(&[0.0; 10]).unwrap();
        assert_eq!(entropy_amax(&h), 0.0);
        assert_eq!(search_counts(&h)[0], 0);
        let mut h = AbsHistogram::with_bins(2.0, 16).unwrap();
        h.add(&[0.5, 2.0]).unwrap();
        assert_eq!(entropy_amax(&h), 2.0);
    }
}
