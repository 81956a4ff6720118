//! Test support: a private copy of the fake shim per test (the fake keeps its failure
//! switches in globals, and a copy at another path is a separate dlopen instance, so tests
//! running in parallel cannot see each other's switches), and those switches.

#![allow(unsafe_code, dead_code, clippy::unwrap_used)]

use std::ffi::{CString, c_char};
use std::path::{Path, PathBuf};

use fracture_tensorrt::{Shim, build_info};
use libloading::Library;

pub struct Fake {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
    pub shim: Shim,
    controls: Library,
}

/// A copy of `lib` at a fresh path.
pub fn private_copy(lib: &Path) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("libfracture_trt_shim.so");
    std::fs::copy(lib, &path).unwrap();
    (dir, path)
}

impl Fake {
    pub fn new() -> Self {
        let (dir, path) = private_copy(&build_info::fake_shim());
        let shim = Shim::load_exact(&path).unwrap();
        // SAFETY: the same file the shim loaded (same handle, refcounted); its initialisers
        // are the fake's, which do nothing.
        let controls = unsafe { Library::new(&path) }.unwrap();
        Self { dir, path, shim, controls }
    }

    /// Makes the fake's `function` fail with `code` (a `TRT_ERR_*` value); `None` heals it.
    pub fn fail(&self, function: Option<&str>, code: i32) {
        let name = function.map(|f| CString::new(f).unwrap());
        // SAFETY: the signature is `void trt_fake_set_failure(const char *, int32_t)`; the
        // string lives across the call (the fake copies it).
        unsafe {
            let f = self
                .controls
                .get::<unsafe extern "C" fn(*const c_char, i32)>(b"trt_fake_set_failure\0")
                .unwrap();
            f(name.as_ref().map_or(std::ptr::null(), |n| n.as_ptr()), code);
        }
    }

    pub fn set_trt_version(&self, version: &str) {
        let v = CString::new(version).unwrap();
        // SAFETY: `void trt_fake_set_trt_version(const char *)`; the fake copies the string.
        unsafe {
            let f = self
                .controls
                .get::<unsafe extern "C" fn(*const c_char)>(b"trt_fake_set_trt_version\0")
                .unwrap();
            f(v.as_ptr());
        }
    }

    pub fn set_device(&self, name: &str, major: i32, minor: i32) {
        let n = CString::new(name).unwrap();
        // SAFETY: `void trt_fake_set_device(const char *, int32_t, int32_t)`; copied.
        unsafe {
            let f = self
                .controls
                .get::<unsafe extern "C" fn(*const c_char, i32, i32)>(b"trt_fake_set_device\0")
                .unwrap();
            f(n.as_ptr(), major, minor);
        }
    }

    /// Handles the fake has handed out and not yet had destroyed.
    pub fn live_handles(&self) -> i64 {
        // SAFETY: `int64_t trt_fake_live_handles(void)`.
        unsafe {
            let f = self
                .controls
                .get::<unsafe extern "C" fn() -> i64>(b"trt_fake_live_handles\0")
                .unwrap();
            f()
        }
    }
}

/// A fake engine file's bytes.
pub const FAKE_PLAN: &[u8] = b"FRACTURE-FAKE-ENGINE\nfp16=1 int8=0\n";

impl Fake {
    /// A fresh copy whose `function` already fails with `code` when the shim loads (for
    /// `trt_shim_init`, which loading runs). Returns the load result and the guard.
    pub fn load_failing(
        function: &str,
        code: i32,
    ) -> (tempfile::TempDir, fracture_tensorrt::Result<Shim>) {
        let (dir, path) = private_copy(&build_info::fake_shim());
        // SAFETY: the fake's initialisers do nothing; the handle is dropped at the end.
        let controls = unsafe { Library::new(&path) }.unwrap();
        let name = CString::new(function).unwrap();
        // SAFETY: `void trt_fake_set_failure(const char *, int32_t)`; copied by the fake.
        unsafe {
            let f = controls
                .get::<unsafe extern "C" fn(*const c_char, i32)>(b"trt_fake_set_failure\0")
                .unwrap();
            f(name.as_ptr(), code);
        }
        let shim = Shim::load_exact(&path);
        (dir, shim)
    }
}
