//! fracture-calibration: what INT8 calibration needs to be reproducible and portable.
//!
//! - [`histogram`]: per-tensor histograms of |x| (2048 bins over `[0, max |x|]`).
//! - [`entropy`], [`percentile`]: threshold (amax) selection from such a histogram; the
//!   exact running max is the third method.
//! - [`method`]: [`Method`] and the [`Calibrator`] that turns `(tensor name, &[f32])`
//!   observations over a calibration set into per-tensor amax (scale = amax / 127).
//! - [`cache`]: TensorRT's calibration cache (`TRT-<version>-EntropyCalibration2`), written
//!   and read back bit-exactly.
//! - [`manifest`]: the calibration images (paths + SHA-256) and warnings about the set.
//!
//! Pure `f32` slices in, no tensor library: the crate builds in seconds.

pub mod cache;
pub mod entropy;
pub mod histogram;
pub mod manifest;
pub mod method;
pub mod percentile;

pub use cache::{CacheError, CalibrationCache, TrtVersion};
pub use histogram::{AbsHistogram, HistogramError};
pub use method::{CalibrationError, Calibrator, Method};

/// Largest magnitude a symmetric INT8 quantiser maps to: scale = amax / 127.
pub const INT8_MAX: f32 = 127.0;

/// The INT8 scale TensorRT stores for a tensor whose calibrated range is `[-amax, amax]`.
pub fn scale_from_amax(amax: f32) -> f32 {
    amax / INT8_MAX
}
