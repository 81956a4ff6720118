//! Errors of the binding: where the shim was looked for, what the shim (TensorRT, CUDA, a
//! caught C++ exception) reported, misuse caught on the Rust side before it reaches TensorRT
//! (wrong shape, dtype or buffer size), and engine files that do not fit this machine.

use std::fmt;
use std::path::PathBuf;

use crate::identity::IdentityMismatch;
use crate::runtime::DataType;

/// One place the loader tried and why it did not work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadAttempt {
    /// The path (or bare library name for the dynamic linker's own search).
    pub place: String,
    /// Why: `not found`, or the dynamic linker's message (e.g. a missing `libnvinfer.so.10`).
    pub reason: String,
}

/// What kind of failure the shim reported (`TRT_ERR_*` in `trt_shim.h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShimErrorKind {
    InvalidArgument,
    TensorRt,
    Cuda,
    /// A C++ exception, caught at the C boundary.
    CppException,
    Io,
    Onnx,
    Unknown(i32),
}

impl ShimErrorKind {
    pub fn from_code(code: i32) -> Self {
        match code {
            1 => Self::InvalidArgument,
            2 => Self::TensorRt,
            3 => Self::Cuda,
            4 => Self::CppException,
            5 => Self::Io,
            6 => Self::Onnx,
            c => Self::Unknown(c),
        }
    }
}

impl fmt::Display for ShimErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidArgument => f.write_str("invalid argument"),
            Self::TensorRt => f.write_str("TensorRT error"),
            Self::Cuda => f.write_str("CUDA error"),
            Self::CppException => f.write_str("C++ exception"),
            Self::Io => f.write_str("I/O error"),
            Self::Onnx => f.write_str("ONNX parser error"),
            Self::Unknown(c) => write!(f, "error code {c}"),
        }
    }
}

fn attempts_list(attempts: &[LoadAttempt]) -> String {
    attempts.iter().map(|a| format!("\n  {}: {}", a.place, a.reason)).collect()
}

#[derive(Debug, thiserror::Error)]
pub enum TrtError {
    #[error(
        "TensorRT is not available: the shim library {library} could not be loaded; looked in:{}\n\
         (build on a machine with TensorRT 10 headers so build.rs compiles the shim, or set \
         FRACTURE_TRT_SHIM to its path; see models/tensorrt/README.md)",
        attempts_list(.attempts)
    )]
    NotFound { library: String, attempts: Vec<LoadAttempt> },
    #[error("{path}: symbol {symbol} is missing (a shim of another version?): {message}")]
    MissingSymbol { path: PathBuf, symbol: String, message: String },
    #[error("{path}: shim ABI version {found}, this build needs {expected}; rebuild the shim")]
    AbiMismatch { path: PathBuf, found: u32, expected: u32 },
    #[error("{function}: {kind}: {message}")]
    Shim { function: &'static str, kind: ShimErrorKind, message: String },
    #[error("no IO tensor named {name:?}; the engine has {known}")]
    UnknownTensor { name: String, known: String },
    #[error("tensor {name} is an {actual}, not an {wanted}")]
    WrongMode { name: String, actual: &'static str, wanted: &'static str },
    #[error("tensor {name}: {message}")]
    WrongShape { name: String, message: String },
    #[error("tensor {name} holds {actual}, not {requested}")]
    WrongDtype { name: String, actual: DataType, requested: DataType },
    #[error("tensor {name}: buffer of {actual} bytes, its shape needs {needed}")]
    WrongBufferSize { name: String, needed: usize, actual: usize },
    #[error("tensor {name} has no buffer bound")]
    Unbound { name: String },
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    IdentityFile { path: PathBuf, message: String },
    #[error(
        "engine {path} does not fit: {}; rebuild it (`fracture engine build`)",
        .mismatches.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
    )]
    IdentityMismatch { path: PathBuf, mismatches: Vec<IdentityMismatch> },
}

pub type Result<T> = std::result::Result<T, TrtError>;
