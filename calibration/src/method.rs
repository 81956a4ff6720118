//! Calibration methods and the [`Calibrator`] that applies one to a calibration set.
//!
//! The calibrator is fed `(tensor name, &[f32])` observations — the named activations of
//! each calibration image, names equal to the ONNX tensor names — and finalises to the amax
//! of every tensor (`scale = amax / 127`, [`crate::scale_from_amax`]).
//!
//! Passes: [`Method::Max`] needs one pass over the set (the exact running max |x|).
//! [`Method::Entropy`] and [`Method::Percentile`] need two: the first records each tensor's max
//! |x|, the second fills a 2048-bin |x| histogram over `[0, max]` (see [`crate::histogram`]
//! for why). The same images must be replayed in the second pass; the calibrator checks
//! that every tensor comes back with the same number of values.
//!
//! ```
//! use fracture_calibration::{Calibrator, Method};
//! let images: Vec<Vec<f32>> = vec![vec![0.5, -1.0, 2.0], vec![0.1, -3.0]];
//! let mut cal = Calibrator::new(Method::Max)?;
//! while !cal.is_complete() {
//!     for act in &images {
//!         cal.observe("/model.0/conv/Conv_output_0", act)?;
//!     }
//!     cal.end_pass()?;
//! }
//! let amax = cal.finish()?;
//! assert_eq!(amax["/model.0/conv/Conv_output_0"], 3.0);
//! # Ok::<(), fracture_calibration::CalibrationError>(())
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use crate::entropy::entropy_amax;
use crate::histogram::{AbsHistogram, HistogramError, max_abs};
use crate::percentile::{DEFAULT_PERCENTILE, percentile_amax, valid_percentile};

/// How a tensor's amax is chosen from its activations.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Method {
    /// TensorRT's KL-divergence search (2048 bins folded into 128 levels); the default.
    #[default]
    Entropy,
    /// The given percentile of |x| (in `(0, 100]`; [`DEFAULT_PERCENTILE`] by default).
    Percentile(f64),
    /// The largest |x| seen.
    Max,
}

impl Method {
    /// Percentile calibration at [`DEFAULT_PERCENTILE`] (99.99).
    pub fn percentile() -> Self {
        Method::Percentile(DEFAULT_PERCENTILE)
    }

    /// Passes over the calibration set this method needs.
    pub fn passes(&self) -> usize {
        match self {
            Method::Max => 1,
            Method::Entropy | Method::Percentile(_) => 2,
        }
    }
}

/// `entropy`, `max`, `percentile` (99.99) or `percentile:P`.
impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Method::Entropy => f.write_str("entropy"),
            Method::Max => f.write_str("max"),
            Method::Percentile(p) => write!(f, "percentile:{p}"),
        }
    }
}

impl FromStr for Method {
    type Err = CalibrationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || CalibrationError::BadMethod(s.to_string());
        match s {
            "entropy" => Ok(Method::Entropy),
            "max" => Ok(Method::Max),
            "percentile" => Ok(Method::percentile()),
            _ => {
                let p = s.strip_prefix("percentile:").ok_or_else(bad)?;
                let p: f64 = p.parse().map_err(|_| bad())?;
                if valid_percentile(p) { Ok(Method::Percentile(p)) } else { Err(bad()) }
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CalibrationError {
    #[error(
        "unknown calibration method `{0}` (entropy, max, percentile, or percentile:P with 0 < P <= 100)"
    )]
    BadMethod(String),
    #[error("tensor `{tensor}`: {source}")]
    Values { tensor: String, source: HistogramError },
    #[error("tensor `{tensor}` appears in pass {pass} but was not seen in pass 1")]
    NewTensor { tensor: String, pass: usize },
    #[error(
        "tensor `{tensor}`: pass 1 saw {first} values, pass {pass} saw {now}: the calibration set must be replayed unchanged"
    )]
    CountMismatch { tensor: String, pass: usize, first: u64, now: u64 },
    #[error("all {passes} pass(es) are done; observe() after the last pass")]
    PassesDone { passes: usize },
    #[error("calibration needs {needed} pass(es), {done} done")]
    Incomplete { needed: usize, done: usize },
}

/// What is known about one tensor so far.
#[derive(Debug, Clone)]
struct TensorStats {
    /// Max |x| of pass 1.
    max_abs: f32,
    /// Values seen in pass 1.
    count: u64,
    /// Pass-2 histogram (two-pass methods).
    hist: Option<AbsHistogram>,
}

/// Collects activation statistics over a calibration set and finalises them to amax per
/// tensor; see the module docs for the passes.
#[derive(Debug, Clone)]
pub struct Calibrator {
    method: Method,
    /// Passes finished so far.
    done: usize,
    tensors: BTreeMap<String, TensorStats>,
}

impl Calibrator {
    /// A calibrator for `method`; an invalid percentile is an error.
    pub fn new(method: Method) -> Result<Self, CalibrationError> {
        if let Method::Percentile(p) = method
            && !valid_percentile(p)
        {
            return Err(CalibrationError::BadMethod(method.to_string()));
        }
        Ok(Self { method, done: 0, tensors: BTreeMap::new() })
    }

    pub fn method(&self) -> Method {
        self.method
    }

    /// Passes over the calibration set [`Self::method`] needs.
    pub fn passes(&self) -> usize {
        self.method.passes()
    }

    /// The pass now being fed, counting from 1.
    pub fn pass(&self) -> usize {
        self.done + 1
    }

    /// Whether every pass is done and [`Self::finish`] may be called.
    pub fn is_complete(&self) -> bool {
        self.done >= self.passes()
    }

    /// Adds one observation of `tensor` (any shape, flattened). NaN or infinite values are an
    /// error naming the tensor, and nothing of that slice is recorded.
    pub fn observe(&mut self, tensor: &str, values: &[f32]) -> Result<(), CalibrationError> {
        let pass = self.pass();
        if self.is_complete() {
            return Err(CalibrationError::PassesDone { passes: self.passes() });
        }
        let values_err = |source| CalibrationError::Values { tensor: tensor.to_string(), source };
        if pass == 1 {
            let m = max_abs(values).map_err(values_err)?;
            let s = self.tensors.entry(tensor.to_string()).or_insert(TensorStats {
                max_abs: 0.0,
                count: 0,
                hist: None,
            });
            s.max_abs = s.max_abs.max(m);
            s.count += values.len() as u64;
            return Ok(());
        }
        let s = self
            .tensors
            .get_mut(tensor)
            .ok_or_else(|| CalibrationError::NewTensor { tensor: tensor.to_string(), pass })?;
        let hist = match &mut s.hist {
            Some(h) => h,
            None => s.hist.insert(AbsHistogram::new(s.max_abs).map_err(values_err)?),
        };
        hist.add(values).map_err(values_err)
    }

    /// Ends the current pass. After the second pass every tensor must have come back with
    /// exactly the values count of the first.
    pub fn end_pass(&mut self) -> Result<(), CalibrationError> {
        if self.is_complete() {
            return Err(CalibrationError::PassesDone { passes: self.passes() });
        }
        if self.done == 1 {
            for (name, s) in &self.tensors {
                let now = s.hist.as_ref().map_or(0, AbsHistogram::total);
                if now != s.count {
                    return Err(CalibrationError::CountMismatch {
                        tensor: name.clone(),
                        pass: 2,
                        first: s.count,
                        now,
                    });
                }
            }
        }
        self.done += 1;
        Ok(())
    }

    /// Tensor names observed so far, sorted.
    pub fn tensors(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    /// The pass-2 histogram of a tensor (two-pass methods, once pass 2 has seen it).
    pub fn histogram(&self, tensor: &str) -> Option<&AbsHistogram> {
        self.tensors.get(tensor)?.hist.as_ref()
    }

    /// amax per tensor name (`scale = amax / 127`). Every pass must be done.
    pub fn finish(self) -> Result<BTreeMap<String, f32>, CalibrationError> {
        if !self.is_complete() {
            return Err(CalibrationError::Incomplete { needed: self.passes(), done: self.done });
        }
        let method = self.method;
        Ok(self
            .tensors
            .into_iter()
            .map(|(name, s)| {
                let amax = match (method, &s.hist) {
                    (Method::Max, _) | (_, None) => s.max_abs,
                    (Method::Entropy, Some(h)) => entropy_amax(h),
                    (Method::Percentile(p), Some(h)) => percentile_amax(h, p),
                };
                (name, amax)
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn run(method: Method, images: &[Vec<f32>]) -> Result<BTreeMap<String, f32>, CalibrationError> {
        let mut cal = Calibrator::new(method)?;
        while !cal.is_complete() {
            for img in images {
                cal.observe("t", img)?;
            }
            cal.end_pass()?;
        }
        cal.finish()
    }

    #[test]
    fn parse_and_display() {
        assert_eq!("entropy".parse::<Method>().unwrap(), Method::Entropy);
        assert_eq!("max".parse::<Method>().unwrap(), Method::Max);
        assert_eq!("percentile".parse::<Method>().unwrap(), Method::Percentile(99.99));
        assert_eq!("percentile:99.9".parse::<Method>().unwrap(), Method::Percentile(99.9));
        for bad in ["percentile:0", "percentile:101", "percentile:nan", "minmax", ""] {
            assert!(bad.parse::<Method>().is_err(), "{bad}");
        }
        for m in [Method::Entropy, Method::Max, Method::Percentile(99.9)] {
            assert_eq!(m.to_string().parse::<Method>().unwrap(), m);
        }
        assert!(Calibrator::new(Method::Percentile(-1.0)).is_err());
    }

    #[test]
    fn max_is_exact_and_one_pass() {
        let images = vec![vec![0.25, -7.5, 3.0], vec![], vec![7.25, -0.0]];
        let amax = run(Method::Max, &images).unwrap();
        assert_eq!(amax["t"], 7.5);
        assert_eq!(Method::Max.passes(), 1);
    }

    #[test]
    fn two_pass_checks() {
        let mut cal = Calibrator::new(Method::Entropy).unwrap();
        cal.observe("a", &[1.0, 2.0]).unwrap();
        cal.end_pass().unwrap();
        assert!(matches!(cal.observe("b", &[1.0]), Err(CalibrationError::NewTensor { .. })));
        cal.observe("a", &[1.0]).unwrap();
        assert!(matches!(
            cal.end_pass(),
            Err(CalibrationError::CountMismatch { first: 2, now: 1, .. })
        ));
        let mut cal = Calibrator::new(Method::Entropy).unwrap();
        cal.observe("a", &[1.0]).unwrap();
        assert!(matches!(cal.observe("a", &[f32::NAN]), Err(CalibrationError::Values { .. })));
        cal.end_pass().unwrap();
        assert!(matches!(cal.clone().finish(), Err(CalibrationError::Incomplete { .. })));
        cal.observe("a", &[-1.0]).unwrap();
        cal.end_pass().unwrap();
        assert!(matches!(cal.observe("a", &[1.0]), Err(CalibrationError::PassesDone { .. })));
        assert_eq!(cal.finish().unwrap()["a"], 1.0);
    }

    #[test]
    fn percentile_and_entropy_clip_outliers() {
        // An exponential bulk (|x| = -ln(1 - u) on an even grid of u: 100,000 values, largest
        // ~12.2) and 20 outliers at ±100.
        let n = 100_000;
        let mut v: Vec<f32> =
            (0..n).map(|i| -(1.0 - (i as f64 + 0.5) / n as f64).ln() as f32).collect();
        v.extend((0..20).map(|i| if i % 2 == 0 { 100.0 } else { -100.0 }));
        let images: Vec<Vec<f32>> = v.chunks(4096).map(<[f32]>::to_vec).collect();
        assert_eq!(run(Method::Max, &images).unwrap()["t"], 100.0);
        let w = 100.0 / 2048.0;
        // 99.99 % of 100,020 values leaves 10 of the outliers out; the 100,010th value is an
        // outlier, so percentile 99.99 keeps them...
        assert_eq!(run(Method::percentile(), &images).unwrap()["t"], 100.0);
        // ...while 99.9 clips them: ceil(0.999 · 100,020) = 99,920, and the 99,920th |x| is
        // bulk value i = 99,919: -ln(1 - 99,919.5 / 100,000) = 7.12; the amax is the right
        // edge of its bin.
        let p = run(Method::Percentile(99.9), &images).unwrap()["t"];
        let exact = -(1.0 - 99_919.5f64 / 100_000.0).ln() as f32;
        assert!(p >= exact && p <= exact + w, "{p} vs {exact}");
        // Entropy clips the outliers: keeping them spreads 128 levels over [0, 100] and blurs
        // the bulk (16 bins a level); clipping at the bulk's end (~12) costs only the 2e-4
        // outlier mass. It keeps the bulk: 99.3 % of it lies below 5.
        let e = run(Method::Entropy, &images).unwrap()["t"];
        assert!((5.0..=13.0).contains(&e), "{e}");
    }
}
