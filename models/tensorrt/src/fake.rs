//! Safe handles on the test double's extra switches (`trt_fake_*` in `shim/fake_shim.c`), so
//! crates that test through the fake (the runtime's engine cache, the daemon) need no
//! `unsafe` of their own. Opening a library that is not the fake fails: the switches are
//! resolved by name and only the fake exports them.
//!
//! The fake keeps its switches in globals, one set per loaded copy: give each test its own
//! copy ([`FakeShim::private_copy`]) when tests run in parallel.

#![allow(unsafe_code)]

use std::ffi::{CString, c_char};
use std::path::{Path, PathBuf};

use libloading::Library;

use crate::error::{Result, TrtError};

/// The fake shim's control symbols, in the same dlopen instance as a [`crate::Shim`] loaded
/// from the same path.
#[derive(Debug)]
pub struct FakeShim {
    path: PathBuf,
    lib: Library,
}

fn invalid(msg: String) -> TrtError {
    TrtError::InvalidArgument(msg)
}

impl FakeShim {
    /// Copies the fake built for tests ([`crate::build_info::fake_shim`]) to `dir` (a
    /// private dlopen instance with its own switches) and returns the copy's path.
    pub fn private_copy(dir: &Path) -> Result<PathBuf> {
        let path = dir.join("libfracture_trt_shim.so");
        std::fs::copy(crate::build_info::fake_shim(), &path)
            .map_err(|source| TrtError::Io { path: path.clone(), source })?;
        Ok(path)
    }

    /// Opens the fake at `path` (refcounted with any [`crate::Shim`] loaded from it).
    pub fn open(path: &Path) -> Result<Self> {
        // SAFETY: the fake's initialisers do nothing; any other library is refused below
        // before anything of it is called (its initialisers are the only code that runs).
        let lib = unsafe { Library::new(path) }
            .map_err(|e| invalid(format!("cannot open {}: {e}", path.display())))?;
        // SAFETY: looking a symbol up calls nothing.
        let is_fake = unsafe { lib.get::<unsafe extern "C" fn()>(b"trt_fake_live_handles\0") };
        if is_fake.is_err() {
            return Err(invalid(format!("{} is not the fake shim", path.display())));
        }
        Ok(Self { path: path.to_path_buf(), lib })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn cstr(s: &str) -> Result<CString> {
        CString::new(s).map_err(|_| invalid(format!("{s:?} contains a NUL byte")))
    }

    fn get<T>(&self, name: &[u8]) -> Result<libloading::Symbol<'_, T>> {
        // SAFETY: every caller names a `trt_fake_*` symbol with its C signature as `T`.
        unsafe { self.lib.get::<T>(name) }
            .map_err(|e| invalid(format!("{}: {e}", self.path.display())))
    }

    /// Makes the fake's `function` fail with `code` (a `TRT_ERR_*` value); `None` heals it.
    pub fn set_failure(&self, function: Option<&str>, code: i32) -> Result<()> {
        let name = function.map(Self::cstr).transpose()?;
        let f = self.get::<unsafe extern "C" fn(*const c_char, i32)>(b"trt_fake_set_failure\0")?;
        // SAFETY: `void trt_fake_set_failure(const char *, int32_t)`; the fake copies the
        // string, which lives across the call.
        unsafe { f(name.as_ref().map_or(std::ptr::null(), |n| n.as_ptr()), code) };
        Ok(())
    }

    /// The TensorRT version the fake reports from now on.
    pub fn set_trt_version(&self, version: &str) -> Result<()> {
        let v = Self::cstr(version)?;
        let f = self.get::<unsafe extern "C" fn(*const c_char)>(b"trt_fake_set_trt_version\0")?;
        // SAFETY: `void trt_fake_set_trt_version(const char *)`; the fake copies the string.
        unsafe { f(v.as_ptr()) };
        Ok(())
    }

    /// The GPU name and compute capability the fake reports from now on.
    pub fn set_device(&self, name: &str, major: i32, minor: i32) -> Result<()> {
        let n = Self::cstr(name)?;
        let f =
            self.get::<unsafe extern "C" fn(*const c_char, i32, i32)>(b"trt_fake_set_device\0")?;
        // SAFETY: `void trt_fake_set_device(const char *, int32_t, int32_t)`; copied.
        unsafe { f(n.as_ptr(), major, minor) };
        Ok(())
    }

    /// Handles the fake has handed out and not yet had destroyed.
    pub fn live_handles(&self) -> Result<i64> {
        let f = self.get::<unsafe extern "C" fn() -> i64>(b"trt_fake_live_handles\0")?;
        // SAFETY: `int64_t trt_fake_live_handles(void)`.
        Ok(unsafe { f() })
    }
}

/// The first line of an "ONNX" file from which the fake builds its YOLO-shaped engine
/// (`output0` `[n, 4 + nc, anchors]`; see `shim/fake_shim.c`). The real shim's ONNX parser
/// refuses such a file.
pub fn yolo_marker(nc: usize, anchors: usize) -> String {
    format!("FRACTURE-FAKE-YOLO nc={nc} anchors={anchors}\n")
}

/// What the fake's YOLO-shaped engine writes to `output0` for one image `[3, h, w]` (flat
/// CHW): `[4 + nc, anchors]` row-major, the same formula as the C code, in f32.
pub fn yolo_output(image_chw: &[f32], h: usize, w: usize, nc: usize, anchors: usize) -> Vec<f32> {
    let sum: f64 = image_chw.iter().map(|&v| f64::from(v)).sum();
    let mean = (sum / (3 * h * w).max(1) as f64) as f32;
    let (hf, wf, k1) = (h as f32, w as f32, (anchors + 1) as f32);
    let mut out = vec![0f32; (4 + nc) * anchors];
    for a in 0..anchors {
        let step = (a + 1) as f32 / k1;
        out[a] = wf * step;
        out[anchors + a] = hf * step;
        out[2 * anchors + a] = wf / (2.0 * k1);
        out[3 * anchors + a] = hf / (2.0 * k1);
        for c in 0..nc {
            out[(4 + c) * anchors + a] = mean * (a + 1) as f32 / (anchors as f32 * (c + 1) as f32);
        }
    }
    out
}
