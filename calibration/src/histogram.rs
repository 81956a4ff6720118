//! Per-tensor histograms of |x|: 2048 equal bins over `[0, range]`, fed incrementally with
//! `f32` slices (one per image or batch).
//!
//! Range policy — two passes: the first pass over the calibration set only records the exact
//! max |x| of each tensor ([`max_abs`]); the second pass fills a histogram whose range is that
//! max, so the 2048 bins span exactly `[0, max |x|]` as the entropy search assumes. Bin `k` holds `|x|` in
//! `[k·w, (k+1)·w)` with `w = range / bins` (computed in `f64`), and the value equal to the
//! range lands in the last bin. The result depends only on the multiset of values seen, not
//! on their order or on how they were split into slices: deterministic and reproducible.
//!
//! A value above the range in the second pass (the same images gave a different activation,
//! e.g. a nondeterministic GPU kernel) is counted in the last bin, and [`AbsHistogram::clamped`]
//! says how many were; [`AbsHistogram::max_abs`] keeps tracking the true running max.
//!
//! The alternative — one pass, growing the range by merging bins when a larger value
//! arrives — was rejected: it either depends on the order of the images or leaves only
//! 1024..2048 bins holding data, halving the resolution the entropy search works with.

/// Number of bins TensorRT's entropy calibration uses.
pub const BINS: usize = 2048;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HistogramError {
    #[error("{count} non-finite value(s) (NaN or infinite), first {first}")]
    NonFinite { count: usize, first: f32 },
    #[error("histogram range {0} is not a finite number >= 0")]
    BadRange(f32),
    #[error("a histogram needs at least one bin")]
    NoBins,
}

/// Max |x| of a slice (0 for an empty slice); an error if any value is NaN or infinite.
pub fn max_abs(values: &[f32]) -> Result<f32, HistogramError> {
    let mut max = 0.0f32;
    let mut bad = 0usize;
    let mut first = 0.0f32;
    for &v in values {
        if v.is_finite() {
            max = max.max(v.abs());
        } else {
            if bad == 0 {
                first = v;
            }
            bad += 1;
        }
    }
    if bad > 0 {
        return Err(HistogramError::NonFinite { count: bad, first });
    }
    Ok(max)
}

/// Histogram of |x| over `[0, range]` with equal bins.
#[derive(Debug, Clone, PartialEq)]
pub struct AbsHistogram {
    counts: Vec<u64>,
    range: f32,
    bin_width: f64,
    max_abs: f32,
    clamped: u64,
    zeros: u64,
}

impl AbsHistogram {
    /// [`BINS`] bins over `[0, range]`; `range` is normally the max |x| of a first pass.
    pub fn new(range: f32) -> Result<Self, HistogramError> {
        Self::with_bins(range, BINS)
    }

    /// `bins` bins over `[0, range]`.
    pub fn with_bins(range: f32, bins: usize) -> Result<Self, HistogramError> {
        if !(range.is_finite() && range >= 0.0) {
            return Err(HistogramError::BadRange(range));
        }
        if bins == 0 {
            return Err(HistogramError::NoBins);
        }
        Ok(Self {
            counts: vec![0; bins],
            range,
            bin_width: f64::from(range) / bins as f64,
            max_abs: 0.0,
            clamped: 0,
            zeros: 0,
        })
    }

    /// Adds every |x| of `values`. Nothing is added when a value is NaN or infinite.
    pub fn add(&mut self, values: &[f32]) -> Result<(), HistogramError> {
        let batch_max = max_abs(values)?;
        let last = self.counts.len() - 1;
        for &v in values {
            let a = f64::from(v.abs());
            self.zeros += u64::from(a == 0.0);
            let k = if self.bin_width > 0.0 {
                // `as usize` saturates; a / w >= 0 here.
                (a / self.bin_width) as usize
            } else if a == 0.0 {
                0
            } else {
                usize::MAX
            };
            if k > last && a > f64::from(self.range) {
                self.clamped += 1;
            }
            self.counts[k.min(last)] += 1;
        }
        self.max_abs = self.max_abs.max(batch_max);
        Ok(())
    }

    /// Count per bin; bin `k` is `[k·w, (k+1)·w)`.
    pub fn counts(&self) -> &[u64] {
        &self.counts
    }

    /// Bin width `w = range / bins` (0 when the range is 0).
    pub fn bin_width(&self) -> f64 {
        self.bin_width
    }

    pub fn range(&self) -> f32 {
        self.range
    }

    /// Running max |x| of everything added (may exceed [`Self::range`], see [`Self::clamped`]).
    pub fn max_abs(&self) -> f32 {
        self.max_abs
    }

    /// Number of values counted.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Number of exact zeros (±0), all counted in bin 0.
    pub fn zeros(&self) -> u64 {
        self.zeros
    }

    /// Number of values above the range, counted in the last bin.
    pub fn clamped(&self) -> u64 {
        self.clamped
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn bins_edges_and_range_end() {
        let mut h = AbsHistogram::with_bins(4.0, 4).unwrap();
        h.add(&[0.0, -0.5, 1.0, 1.999, -2.0, 3.5, 4.0, -4.0]).unwrap();
        assert_eq!(h.counts(), &[2, 2, 1, 3]);
        assert_eq!(h.max_abs(), 4.0);
        assert_eq!(h.total(), 8);
        assert_eq!(h.clamped(), 0);
        assert_eq!(h.zeros(), 1);
        h.add(&[5.0]).unwrap();
        assert_eq!(h.counts(), &[2, 2, 1, 4]);
        assert_eq!(h.clamped(), 1);
        assert_eq!(h.max_abs(), 5.0);
    }

    #[test]
    fn order_and_split_do_not_matter() {
        let values: Vec<f32> =
            (0..1000).map(|i| ((i * 7919) % 1000) as f32 * 0.013 - 6.0).collect();
        let range = max_abs(&values).unwrap();
        let mut a = AbsHistogram::new(range).unwrap();
        a.add(&values).unwrap();
        let mut b = AbsHistogram::new(range).unwrap();
        let mut rev = values.clone();
        rev.reverse();
        for chunk in rev.chunks(37) {
            b.add(chunk).unwrap();
        }
        assert_eq!(a, b);
    }

    #[test]
    fn zero_range_and_non_finite() {
        let mut h = AbsHistogram::new(0.0).unwrap();
        h.add(&[0.0, -0.0]).unwrap();
        assert_eq!(h.counts()[0], 2);
        match h.add(&[1.0, f32::NAN, f32::INFINITY]) {
            Err(HistogramError::NonFinite { count: 2, first }) => assert!(first.is_nan()),
            other => panic!("expected NonFinite, got {other:?}"),
        }
        assert_eq!(h.total(), 2, "a rejected slice adds nothing");
        assert!(AbsHistogram::new(f32::NAN).is_err());
        assert!(AbsHistogram::new(-1.0).is_err());
        assert!(AbsHistogram::with_bins(1.0, 0).is_err());
    }
}
