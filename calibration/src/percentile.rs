//! Percentile calibration: amax is the value below which a given share of |x| lies, read off
//! the |x| histogram (default 99.99 %).
//!
//! Convention: the smallest bin `k` whose cumulative count reaches `p/100` of the total is
//! found and amax is its right edge `(k+1)·w`, clamped to the observed max |x|. So at least
//! `p %` of the values satisfy `|x| <= amax` (the guarantee the name promises), and amax is at
//! most one bin width above the exact sample percentile. (onnxruntime reports that bin's left
//! edge instead, one bin lower.)

use crate::histogram::AbsHistogram;

/// The default percentile.
pub const DEFAULT_PERCENTILE: f64 = 99.99;

/// Whether `p` is a usable percentile: finite and in `(0, 100]`.
pub fn valid_percentile(p: f64) -> bool {
    p.is_finite() && p > 0.0 && p <= 100.0
}

/// Bin index `k` holding the `p`-th percentile of the counts; `None` for an empty histogram or
/// an invalid `p`.
pub fn percentile_bin(counts: &[u64], p: f64) -> Option<usize> {
    let total: u64 = counts.iter().sum();
    if total == 0 || !valid_percentile(p) {
        return None;
    }
    // Smallest cumulative count that is >= p% of total, in integers where it matters:
    // need = ceil(total · p / 100), at least 1.
    let need = ((total as f64) * p / 100.0).ceil().clamp(1.0, total as f64) as u64;
    let mut cum = 0u64;
    for (k, &c) in counts.iter().enumerate() {
        cum += c;
        if cum >= need {
            return Some(k);
        }
    }
    Some(counts.len() - 1)
}

/// Percentile amax of a histogram (0 for an empty or all-zero one).
pub fn percentile_amax(h: &AbsHistogram, p: f64) -> f32 {
    match percentile_bin(h.counts(), p) {
        Some(k) => (((k + 1) as f64 * h.bin_width()) as f32).min(h.max_abs()),
        None => 0.0,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn cumulative_share() {
        let c = [10u64, 0, 80, 9, 1];
        assert_eq!(percentile_bin(&c, 10.0), Some(0));
        assert_eq!(percentile_bin(&c, 10.01), Some(2));
        assert_eq!(percentile_bin(&c, 90.0), Some(2));
        assert_eq!(percentile_bin(&c, 99.0), Some(3));
        assert_eq!(percentile_bin(&c, 99.5), Some(4));
        assert_eq!(percentile_bin(&c, 100.0), Some(4));
        assert_eq!(percentile_bin(&c, 0.0), None);
        assert_eq!(percentile_bin(&c, 100.5), None);
        assert_eq!(percentile_bin(&[0, 0], 50.0), None);
    }

    #[test]
    fn known_data() {
        // |x| = 1, 2, ..., 10000; 99.99 % of them are <= 9999.
        let v: Vec<f32> =
            (1..=10_000).map(|i| if i % 2 == 0 { i as f32 } else { -(i as f32) }).collect();
        let mut h = AbsHistogram::new(10_000.0).unwrap();
        h.add(&v).unwrap();
        let amax = percentile_amax(&h, DEFAULT_PERCENTILE);
        let w = h.bin_width() as f32;
        assert!((9999.0..=9999.0 + w).contains(&amax), "amax {amax}, bin width {w}");
        let covered = v.iter().filter(|x| x.abs() <= amax).count();
        assert!(covered >= 9999, "{covered} of 10000 within amax");
        assert_eq!(percentile_amax(&h, 100.0), 10_000.0);
        let median = percentile_amax(&h, 50.0);
        assert!((5000.0..=5000.0 + w).contains(&median), "median {median}");
    }
}
