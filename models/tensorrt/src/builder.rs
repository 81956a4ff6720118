//! Building an engine from ONNX: precision (FP16, or INT8 with FP16 fallback from a
//! calibration cache or a Q/DQ model), one optimisation profile for the input, the workspace
//! limit and a timing cache. The shim runs TensorRT's ONNX parser and
//! `buildSerializedNetwork`; this side validates the configuration first.

#![allow(unsafe_code)]

use std::ffi::CString;
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Result, TrtError};
use crate::ffi::{MAX_DIMS, RawBlob, RawBuildConfig};
use crate::loader::Shim;

/// Engine precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// FP16 kernels where faster, FP32 elsewhere (`trtexec --fp16`).
    Fp16,
    /// INT8 kernels with FP16/FP32 fallback (`trtexec --int8 --fp16`); scales from a
    /// calibration cache, or from the Q/DQ nodes of a quantised ONNX model.
    Int8,
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Fp16 => "fp16",
            Self::Int8 => "int8",
        })
    }
}

impl FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "fp16" => Ok(Self::Fp16),
            "int8" => Ok(Self::Int8),
            other => Err(format!("unknown precision {other:?} (fp16 or int8)")),
        }
    }
}

/// One optimisation profile: the smallest, typical and largest input shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub min: Vec<i64>,
    pub opt: Vec<i64>,
    pub max: Vec<i64>,
}

impl Profile {
    /// Square `imgsz` inputs `[N, 3, imgsz, imgsz]`, batch 1 typical, up to `max_batch`.
    pub fn square(imgsz: u32, max_batch: u32) -> Self {
        let s = i64::from(imgsz);
        Self {
            min: vec![1, 3, s, s],
            opt: vec![1, 3, s, s],
            max: vec![i64::from(max_batch.max(1)), 3, s, s],
        }
    }

    fn validate(&self) -> Result<()> {
        let rank = self.min.len();
        if rank == 0 || rank > MAX_DIMS || self.opt.len() != rank || self.max.len() != rank {
            return Err(TrtError::InvalidArgument(format!(
                "optimisation profile ranks {}/{}/{} must be equal and 1..={MAX_DIMS}",
                self.min.len(),
                self.opt.len(),
                self.max.len()
            )));
        }
        for i in 0..rank {
            if !(1 <= self.min[i] && self.min[i] <= self.opt[i] && self.opt[i] <= self.max[i]) {
                return Err(TrtError::InvalidArgument(format!(
                    "optimisation profile dimension {i}: need 1 <= min <= opt <= max, got {} {} {}",
                    self.min[i], self.opt[i], self.max[i]
                )));
            }
        }
        Ok(())
    }
}

/// What to build.
#[derive(Debug, Clone, PartialEq)]
pub struct BuildConfig {
    pub onnx: PathBuf,
    pub precision: Precision,
    /// INT8 only: a TensorRT calibration cache (`fracture calibrate`). Without one, INT8
    /// needs a Q/DQ model.
    pub calibration_cache: Option<PathBuf>,
    /// The network input the profile applies to.
    pub input_name: String,
    /// `None` for a model with static shapes.
    pub profile: Option<Profile>,
    /// Workspace memory-pool limit; 0 leaves TensorRT's default (the device's memory).
    pub workspace_bytes: u64,
    /// Read when it exists and written back after the build: later builds are faster.
    pub timing_cache: Option<PathBuf>,
}

impl BuildConfig {
    pub fn new(onnx: impl Into<PathBuf>, precision: Precision) -> Self {
        Self {
            onnx: onnx.into(),
            precision,
            calibration_cache: None,
            input_name: "images".into(),
            profile: None,
            workspace_bytes: 0,
            timing_cache: None,
        }
    }
}

fn c_path(p: &Path) -> Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| TrtError::InvalidArgument(format!("path {} contains a NUL byte", p.display())))
}

impl Shim {
    /// Builds a serialised engine (plan) as configured.
    pub fn build_serialized(&self, config: &BuildConfig) -> Result<Vec<u8>> {
        if !config.onnx.is_file() {
            return Err(TrtError::Io {
                path: config.onnx.clone(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "ONNX model not found"),
            });
        }
        if config.calibration_cache.is_some() && config.precision != Precision::Int8 {
            return Err(TrtError::InvalidArgument(
                "a calibration cache is only used for INT8 builds".into(),
            ));
        }
        if let Some(c) = &config.calibration_cache
            && !c.is_file()
        {
            return Err(TrtError::Io {
                path: c.clone(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "calibration cache not found",
                ),
            });
        }
        let onnx = c_path(&config.onnx)?;
        let calib = config.calibration_cache.as_deref().map(c_path).transpose()?;
        let timing = config.timing_cache.as_deref().map(c_path).transpose()?;
        let input = CString::new(config.input_name.as_str())
            .map_err(|_| TrtError::InvalidArgument("input name contains a NUL byte".into()))?;
        let mut raw = RawBuildConfig {
            onnx_path: onnx.as_ptr(),
            fp16: 1, // also the fallback of INT8 builds
            int8: i32::from(config.precision == Precision::Int8),
            calibration_cache_path: calib.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
            input_name: std::ptr::null(),
            nb_dims: 0,
            min_dims: [0; MAX_DIMS],
            opt_dims: [0; MAX_DIMS],
            max_dims: [0; MAX_DIMS],
            workspace_bytes: config.workspace_bytes,
            timing_cache_path: timing.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
        };
        if let Some(p) = &config.profile {
            p.validate()?;
            let rank = p.min.len();
            raw.input_name = input.as_ptr();
            raw.nb_dims = i32::try_from(rank).unwrap_or(0);
            raw.min_dims[..rank].copy_from_slice(&p.min);
            raw.opt_dims[..rank].copy_from_slice(&p.opt);
            raw.max_dims[..rank].copy_from_slice(&p.max);
        }
        let mut blob: *mut RawBlob = std::ptr::null_mut();
        self.call("trt_build_serialized", |err| {
            // SAFETY: every pointer in `raw` points at a CString alive for this call;
            // `blob` is a live out-pointer.
            unsafe { (self.inner.api.build_serialized)(&raw, &mut blob, err) }
        })?;
        // SAFETY: `blob` is a live blob from the shim: its data pointer is valid for `size`
        // bytes until `blob_destroy`, which runs after the copy.
        let plan = unsafe {
            let data = (self.inner.api.blob_data)(blob);
            let size = (self.inner.api.blob_size)(blob);
            let plan = if data.is_null() {
                Vec::new()
            } else {
                std::slice::from_raw_parts(data.cast::<u8>(), size).to_vec()
            };
            (self.inner.api.blob_destroy)(blob);
            plan
        };
        if plan.is_empty() {
            return Err(TrtError::InvalidArgument("the shim returned an empty engine".into()));
        }
        Ok(plan)
    }
}
