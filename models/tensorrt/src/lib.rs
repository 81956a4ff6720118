//! `fracture-tensorrt`: our own small binding for TensorRT 10.x.
//!
//! A thin C ABI shim (`shim/trt_shim.h`, implemented over TensorRT's C++ API in
//! `shim/trt_shim.cpp`) is compiled only where TensorRT's headers exist and is loaded at run
//! time ([`Shim::load`]); nothing links TensorRT or CUDA at build time, so the workspace builds
//! and tests everywhere, and asking for TensorRT without it is an error that lists every
//! place the loader looked. Tests run the Rust side against `shim/fake_shim.c`, a
//! deterministic implementation of the same ABI.
//!
//! Why not `tensorrt-rs`: it binds TensorRT 5–7 through APIs that TensorRT 10 removed
//! (implicit-batch `execute`, binding indices); see README.md.
//!
//! Typical use (the daemon's TensorRT backend):
//! ```no_run
//! # fn main() -> Result<(), fracture_tensorrt::TrtError> {
//! use fracture_tensorrt::{EngineIdentity, Precision, Shim, load_engine_checked};
//! let shim = Shim::load(None)?;
//! let want = EngineIdentity::current(&shim, 0, "bundle-sha256", Precision::Fp16)?;
//! let engine = load_engine_checked(&shim, "model.fp16.engine".as_ref(), &want)?;
//! let mut ctx = engine.create_context()?;
//! let stream = shim.create_stream()?;
//! let image = vec![0.5f32; 3 * 416 * 416]; // [1, 3, 416, 416]
//! ctx.write_input("images", &[1, 3, 416, 416], &image)?;
//! ctx.run(&stream)?;
//! let out = ctx.read_tensor::<f32>("output0")?;
//! # Ok(()) }
//! ```

pub mod bench;
pub mod builder;
pub mod error;
pub mod fake;
mod ffi;
pub mod identity;
pub mod loader;
pub mod runtime;

pub use bench::{BenchConfig, BenchReport, LatencyStats, bench};
pub use builder::{BuildConfig, Precision, Profile};
pub use error::{LoadAttempt, Result, ShimErrorKind, TrtError};
pub use fake::FakeShim;
pub use identity::{
    EngineIdentity, IdentityField, IdentityMismatch, build_and_write, identity_path,
    load_engine_checked, read_engine, write_engine,
};
pub use loader::{DeviceInfo, SHIM_ENV, SHIM_FILE, Shim, search_paths};
pub use runtime::{
    DataType, DeviceBuffer, Element, Engine, ExecutionContext, HostTensor, Stream, TensorDesc,
    TensorMode, volume,
};

pub mod build_info {
    //! What the build script did, recorded at compile time: for tests, diagnostics and
    //! `fracture engine` messages.

    use std::path::PathBuf;

    /// `built: ...`, `skipped: ...` or `failed: ...`: what became of the real shim.
    pub const REAL_SHIM_STATUS: &str = env!("FRACTURE_TRT_REAL_SHIM_STATUS");

    const FAKE_DIR: &str = env!("FRACTURE_TRT_FAKE_DIR");

    /// The fake shim built for tests (never searched by [`crate::Shim::load`]).
    pub fn fake_shim() -> PathBuf {
        PathBuf::from(FAKE_DIR).join("libfracture_trt_fake.so")
    }

    /// A fake lacking `trt_context_enqueue_v3` (missing-symbol tests).
    pub fn fake_shim_without_enqueue() -> PathBuf {
        PathBuf::from(FAKE_DIR).join("libfracture_trt_fake_noenqueue.so")
    }

    /// A fake reporting ABI version 99 (version-mismatch tests).
    pub fn fake_shim_wrong_abi() -> PathBuf {
        PathBuf::from(FAKE_DIR).join("libfracture_trt_fake_abi99.so")
    }
}
