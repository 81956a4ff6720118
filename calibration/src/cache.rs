//! TensorRT's INT8 calibration cache: the text file an `IInt8EntropyCalibrator2` writes and
//! reads back so that calibration can be skipped.
//!
//! ```text
//! TRT-100300-EntropyCalibration2
//! images: 3c010204
//! /model.0/conv/Conv_output_0: 3d0b7086
//! ```
//!
//! The header is `TRT-<version>-<algorithm>`; `<version>` is TensorRT's `NV_TENSORRT_VERSION`:
//! `major·10000 + minor·100 + patch` since TensorRT 10 (10.3.0 → `100300`, JetPack 6.1+),
//! `major·1000 + minor·100 + patch` before (8.6.1 → `8601`). A TensorRT build ignores a cache
//! whose version it does not expect. Each further line is `<tensor name>: <scale>`, the scale
//! (`amax / 127`) as 8 lowercase hex digits of its `f32` bit pattern, most significant first
//! (`1/127` → `3c010204`). Names are the ONNX tensor names and may themselves contain `: `
//! (TensorFlow-style `input_1:0`), so a line splits at its last `": "`.
//!
//! Lines are written in name order, each ending in `\n`. The reader accepts `\r\n` and a
//! missing final newline; anything else malformed is an error naming the line.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// The algorithm name TensorRT's entropy calibrator (v2) writes.
pub const ENTROPY_CALIBRATION_2: &str = "EntropyCalibration2";

/// A TensorRT version as it appears in a cache header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TrtVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl Default for TrtVersion {
    /// 10.3.0, TensorRT of JetPack 6.1 and later.
    fn default() -> Self {
        TrtVersion { major: 10, minor: 3, patch: 0 }
    }
}

impl TrtVersion {
    /// `None` when the parts cannot be encoded unambiguously (minor or patch over 99; minor
    /// over 9 before TensorRT 10).
    pub fn new(major: u32, minor: u32, patch: u32) -> Option<Self> {
        let minor_ok = if major >= 10 { minor <= 99 } else { minor <= 9 };
        (minor_ok && patch <= 99 && major <= 42_000).then_some(TrtVersion { major, minor, patch })
    }

    /// `NV_TENSORRT_VERSION`: `major·10000 + minor·100 + patch` from TensorRT 10 on,
    /// `major·1000 + minor·100 + patch` before.
    pub fn code(&self) -> u32 {
        let m = if self.major >= 10 { 10_000 } else { 1_000 };
        self.major * m + self.minor * 100 + self.patch
    }

    /// Inverse of [`Self::code`]: six digits or more are the TensorRT 10 scheme.
    pub fn from_code(code: u32) -> Option<Self> {
        let v = if code >= 100_000 {
            TrtVersion { major: code / 10_000, minor: code / 100 % 100, patch: code % 100 }
        } else {
            TrtVersion { major: code / 1_000, minor: code / 100 % 10, patch: code % 100 }
        };
        (v.code() == code).then_some(v)
    }
}

impl fmt::Display for TrtVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {source}")]
    InFile { path: PathBuf, source: Box<CacheError> },
    #[error("line {line}: {problem}")]
    Parse { line: usize, problem: String },
    #[error("tensor name {name:?} cannot be written: {problem}")]
    BadName { name: String, problem: &'static str },
    #[error("tensor `{name}`: scale {scale} is not a finite number >= 0")]
    BadScale { name: String, scale: f32 },
    #[error("algorithm name {0:?} cannot be written: letters and digits only")]
    BadAlgorithm(String),
}

fn parse_err(line: usize, problem: impl Into<String>) -> CacheError {
    CacheError::Parse { line, problem: problem.into() }
}

/// The contents of a calibration cache: scale (`amax / 127`) per tensor name.
#[derive(Debug, Clone, PartialEq)]
pub struct CalibrationCache {
    pub version: TrtVersion,
    /// `EntropyCalibration2` for what this crate writes; others are read as found.
    pub algorithm: String,
    pub scales: BTreeMap<String, f32>,
}

fn scale_ok(s: f32) -> bool {
    s.is_finite() && s.is_sign_positive()
}

impl CalibrationCache {
    /// An `EntropyCalibration2` cache for TensorRT `version` from scales.
    pub fn new(version: TrtVersion, scales: BTreeMap<String, f32>) -> Self {
        Self { version, algorithm: ENTROPY_CALIBRATION_2.to_string(), scales }
    }

    /// From amax per tensor (what [`crate::Calibrator::finish`] returns): scale = amax / 127.
    pub fn from_amax(version: TrtVersion, amax: &BTreeMap<String, f32>) -> Self {
        Self::new(
            version,
            amax.iter().map(|(n, a)| (n.clone(), crate::scale_from_amax(*a))).collect(),
        )
    }

    /// amax per tensor: scale · 127.
    pub fn amax(&self) -> BTreeMap<String, f32> {
        self.scales.iter().map(|(n, s)| (n.clone(), s * crate::INT8_MAX)).collect()
    }

    /// The cache text. Names must be non-empty without line breaks; scales finite and >= 0.
    pub fn to_text(&self) -> Result<String, CacheError> {
        if self.algorithm.is_empty() || !self.algorithm.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(CacheError::BadAlgorithm(self.algorithm.clone()));
        }
        let mut out = format!("TRT-{}-{}\n", self.version.code(), self.algorithm);
        for (name, &scale) in &self.scales {
            let bad = |problem| CacheError::BadName { name: name.clone(), problem };
            if name.is_empty() {
                return Err(bad("empty"));
            }
            if name.contains(['\n', '\r']) {
                return Err(bad("contains a line break"));
            }
            if !scale_ok(scale) {
                return Err(CacheError::BadScale { name: name.clone(), scale });
            }
            out.push_str(&format!("{name}: {:08x}\n", scale.to_bits()));
        }
        Ok(out)
    }

    /// Parses cache text; errors name the 1-based line.
    pub fn parse(text: &str) -> Result<Self, CacheError> {
        let body = text.strip_suffix('\n').unwrap_or(text);
        let mut lines = body.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
        let header = lines.next().unwrap_or_default();
        let expected = "expected `TRT-<version>-<algorithm>`";
        let rest = header
            .strip_prefix("TRT-")
            .ok_or_else(|| parse_err(1, format!("{expected}, found {header:?}")))?;
        let (code, algorithm) = rest
            .split_once('-')
            .ok_or_else(|| parse_err(1, format!("{expected}, found {header:?}")))?;
        let version = code
            .parse::<u32>()
            .ok()
            .filter(|_| code.bytes().all(|b| b.is_ascii_digit()))
            .and_then(TrtVersion::from_code)
            .ok_or_else(|| parse_err(1, format!("`{code}` is not a TensorRT version code")))?;
        if algorithm.is_empty() || !algorithm.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(parse_err(1, format!("`{algorithm}` is not a calibration algorithm name")));
        }
        let mut scales = BTreeMap::new();
        let mut first_line: BTreeMap<String, usize> = BTreeMap::new();
        for (k, line) in lines.enumerate() {
            let n = k + 2;
            let (name, hex) = line.rsplit_once(": ").ok_or_else(|| {
                parse_err(n, format!("expected `<tensor name>: <8 hex digits>`, found {line:?}"))
            })?;
            if name.is_empty() {
                return Err(parse_err(n, "empty tensor name"));
            }
            if hex.len() != 8 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(parse_err(n, format!("scale `{hex}` is not 8 hex digits")));
            }
            let bits = u32::from_str_radix(hex, 16)
                .map_err(|e| parse_err(n, format!("scale `{hex}`: {e}")))?;
            let scale = f32::from_bits(bits);
            if !scale_ok(scale) {
                return Err(parse_err(
                    n,
                    format!("scale `{hex}` = {scale} is not a finite number >= 0"),
                ));
            }
            if let Some(first) = first_line.insert(name.to_string(), n) {
                return Err(parse_err(n, format!("tensor `{name}` already given on line {first}")));
            }
            scales.insert(name.to_string(), scale);
        }
        Ok(Self { version, algorithm: algorithm.to_string(), scales })
    }

    pub fn write(&self, path: &Path) -> Result<(), CacheError> {
        std::fs::write(path, self.to_text()?)
            .map_err(|source| CacheError::Io { path: path.to_path_buf(), source })
    }

    pub fn read(path: &Path) -> Result<Self, CacheError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| CacheError::Io { path: path.to_path_buf(), source })?;
        Self::parse(&text)
            .map_err(|e| CacheError::InFile { path: path.to_path_buf(), source: Box::new(e) })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(TrtVersion::default().code(), 100_300);
        assert_eq!(TrtVersion::from_code(100_300), Some(TrtVersion::default()));
        let v8 = TrtVersion::new(8, 6, 1).unwrap();
        assert_eq!(v8.code(), 8601);
        assert_eq!(TrtVersion::from_code(8601), Some(v8));
        assert_eq!(TrtVersion::from_code(7103).unwrap().to_string(), "7.1.3");
        assert_eq!(TrtVersion::from_code(101_012).unwrap().to_string(), "10.10.12");
        assert!(TrtVersion::new(10, 100, 0).is_none());
        assert!(TrtVersion::new(8, 10, 0).is_none());
    }

    #[test]
    fn known_text() {
        let mut amax = BTreeMap::new();
        amax.insert("images".to_string(), 1.0f32);
        amax.insert("input_1:0".to_string(), 0.0f32);
        let cache = CalibrationCache::from_amax(TrtVersion::default(), &amax);
        let text = cache.to_text().unwrap();
        assert_eq!(text, "TRT-100300-EntropyCalibration2\nimages: 3c010204\ninput_1:0: 00000000\n");
        let back = CalibrationCache::parse(&text).unwrap();
        assert_eq!(back, cache);
        assert_eq!(back.amax()["images"], 1.0);
        // TensorRT 8 header, CRLF, no final newline, another algorithm.
        let old = CalibrationCache::parse("TRT-8601-MinMaxCalibration\r\nx: 3F800000").unwrap();
        assert_eq!(old.version, TrtVersion::new(8, 6, 1).unwrap());
        assert_eq!(old.algorithm, "MinMaxCalibration");
        assert_eq!(old.scales["x"], 1.0);
    }

    #[test]
    fn parse_errors_name_the_line() {
        let cases = [
            ("", 1, "expected `TRT-"),
            ("TRT-abc-EntropyCalibration2\n", 1, "not a TensorRT version"),
            ("TRT-100300-\n", 1, "algorithm"),
            ("TRT-100300-EntropyCalibration2\na: 3c010204\nb 3c010204\n", 3, "expected `<tensor"),
            ("TRT-100300-EntropyCalibration2\na: 3c01020\n", 2, "8 hex digits"),
            ("TRT-100300-EntropyCalibration2\na: +c010204\n", 2, "8 hex digits"),
            ("TRT-100300-EntropyCalibration2\na: 7fc00000\n", 2, "finite"),
            ("TRT-100300-EntropyCalibration2\na: bf800000\n", 2, "finite"),
            ("TRT-100300-EntropyCalibration2\na: 3c010204\n\n", 3, "expected `<tensor"),
            ("TRT-100300-EntropyCalibration2\na: 3c010204\na: 3c010204\n", 3, "line 2"),
            ("TRT-100300-EntropyCalibration2\n: 3c010204\n", 2, "empty tensor name"),
        ];
        for (text, want_line, want) in cases {
            match CalibrationCache::parse(text) {
                Err(CacheError::Parse { line, problem }) => {
                    assert_eq!(line, want_line, "{text:?}: {problem}");
                    assert!(problem.contains(want), "{text:?}: {problem}");
                }
                other => panic!("{text:?}: expected a parse error, got {other:?}"),
            }
        }
    }

    #[test]
    fn writer_rejects_what_cannot_round_trip() {
        let v = TrtVersion::default();
        let one = |name: &str, s: f32| {
            CalibrationCache::new(v, [(name.to_string(), s)].into_iter().collect()).to_text()
        };
        assert!(matches!(one("a\nb", 1.0), Err(CacheError::BadName { .. })));
        assert!(matches!(one("", 1.0), Err(CacheError::BadName { .. })));
        assert!(matches!(one("a", f32::NAN), Err(CacheError::BadScale { .. })));
        assert!(matches!(one("a", -1.0), Err(CacheError::BadScale { .. })));
        assert!(matches!(one("a", f32::INFINITY), Err(CacheError::BadScale { .. })));
    }
}
