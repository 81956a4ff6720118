//! Finding and opening the shim library at run time (dlopen through `libloading`), resolving
//! every symbol of the ABI up front and checking its version. Search order: an explicit path,
//! `$FRACTURE_TRT_SHIM`, next to the running executable, the standard library folders, then
//! the dynamic linker's own search (`LD_LIBRARY_PATH`, `ld.so.cache`). A failure lists every
//! place tried and why each did not work.

#![allow(unsafe_code)]

use std::ffi::{c_char, c_int};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use libloading::Library;

use crate::error::{LoadAttempt, Result, ShimErrorKind, TrtError};
use crate::ffi::{ABI_VERSION, Api, RawError};

/// File name of the real shim.
pub const SHIM_FILE: &str = "libfracture_trt_shim.so";
/// Environment variable naming the shim's path.
pub const SHIM_ENV: &str = "FRACTURE_TRT_SHIM";

/// Standard library folders searched after the executable's own folder.
pub const STANDARD_DIRS: [&str; 5] = [
    "/usr/local/lib",
    "/usr/lib/fracture",
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/usr/lib",
];

pub(crate) struct ShimInner {
    pub(crate) api: Api,
    pub(crate) path: PathBuf,
    // Kept last: dropped after everything that uses `api`.
    _library: Library,
}

/// A loaded shim (real or fake): the entry to the runtime, builder and CUDA helpers.
/// Cheap to clone; everything made from it keeps the library loaded.
#[derive(Clone)]
pub struct Shim {
    pub(crate) inner: Arc<ShimInner>,
}

impl std::fmt::Debug for Shim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shim").field("path", &self.inner.path).finish()
    }
}

/// The places [`Shim::load`] tries, in order, for an optional explicit path.
pub fn search_paths(explicit: Option<&Path>) -> Vec<PathBuf> {
    let mut places = Vec::new();
    if let Some(p) = explicit {
        places.push(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os(SHIM_ENV).filter(|p| !p.is_empty()) {
        places.push(PathBuf::from(p));
    }
    if let Some(dir) = std::env::current_exe().ok().as_deref().and_then(Path::parent) {
        places.push(dir.join(SHIM_FILE));
        // Test and example binaries live one folder below target/<profile>/.
        if dir.file_name().is_some_and(|n| n == "deps" || n == "examples")
            && let Some(up) = dir.parent()
        {
            places.push(up.join(SHIM_FILE));
        }
    }
    for d in STANDARD_DIRS {
        places.push(Path::new(d).join(SHIM_FILE));
    }
    places
}

impl Shim {
    /// Finds and opens the shim (see the module docs for the order), then runs
    /// `trt_shim_init` (TensorRT's plugins).
    pub fn load(explicit: Option<&Path>) -> Result<Self> {
        let mut attempts = Vec::new();
        if std::env::var_os(SHIM_ENV).is_none_or(|v| v.is_empty()) {
            attempts.push(LoadAttempt { place: format!("${SHIM_ENV}"), reason: "not set".into() });
        }
        for place in search_paths(explicit) {
            if !place.exists() {
                attempts.push(LoadAttempt {
                    place: place.display().to_string(),
                    reason: "not found".into(),
                });
                continue;
            }
            match open(&place) {
                Ok(lib) => return Self::from_library(lib, place),
                Err(reason) => {
                    attempts.push(LoadAttempt { place: place.display().to_string(), reason })
                }
            }
        }
        // The dynamic linker's own search, by bare name.
        match open(Path::new(SHIM_FILE)) {
            Ok(lib) => Self::from_library(lib, PathBuf::from(SHIM_FILE)),
            Err(reason) => {
                attempts.push(LoadAttempt {
                    place: format!(
                        "{SHIM_FILE} through the dynamic linker (LD_LIBRARY_PATH, ld.so.cache)"
                    ),
                    reason,
                });
                Err(TrtError::NotFound { library: SHIM_FILE.into(), attempts })
            }
        }
    }

    /// Opens exactly `path` (no search): for tests and tools that know where the shim is.
    pub fn load_exact(path: &Path) -> Result<Self> {
        match open(path) {
            Ok(lib) => Self::from_library(lib, path.to_path_buf()),
            Err(reason) => Err(TrtError::NotFound {
                library: path.display().to_string(),
                attempts: vec![LoadAttempt { place: path.display().to_string(), reason }],
            }),
        }
    }

    fn from_library(library: Library, path: PathBuf) -> Result<Self> {
        let api = resolve(&library, &path)?;
        // SAFETY: `abi_version` was resolved from this library with the ABI's signature
        // (no arguments, returns u32) and has no preconditions.
        let found = unsafe { (api.abi_version)() };
        if found != ABI_VERSION {
            return Err(TrtError::AbiMismatch { path, found, expected: ABI_VERSION });
        }
        let shim = Self { inner: Arc::new(ShimInner { api, path, _library: library }) };
        // SAFETY: `init` takes a valid error out-pointer, which `call` provides.
        shim.call("trt_shim_init", |err| unsafe { (shim.inner.api.init)(err) })?;
        Ok(shim)
    }

    /// Where the library was loaded from.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs one fallible ABI call with a fresh error struct and turns a failure into
    /// [`TrtError::Shim`].
    pub(crate) fn call(
        &self,
        function: &'static str,
        f: impl FnOnce(*mut RawError) -> c_int,
    ) -> Result<()> {
        let mut err = RawError::new();
        let rc = f(&mut *err);
        if rc == 0 {
            return Ok(());
        }
        let code = if err.code != 0 { err.code } else { rc };
        let mut message = err.message();
        if message.is_empty() {
            message = "(no message)".into();
        }
        Err(TrtError::Shim { function, kind: ShimErrorKind::from_code(code), message })
    }

    /// The TensorRT version of the loaded libnvinfer, e.g. `10.3.0`.
    pub fn trt_version(&self) -> Result<String> {
        let mut buf = [0 as c_char; 64];
        self.call("trt_shim_trt_version", |err| {
            // SAFETY: `buf` is a writable buffer of the length passed; `err` is valid.
            unsafe { (self.inner.api.trt_version)(buf.as_mut_ptr(), buf.len(), err) }
        })?;
        Ok(crate::ffi::c_chars_to_string(&buf))
    }

    /// Name and compute capability (`major.minor`) of CUDA device `device`.
    pub fn device_info(&self, device: i32) -> Result<DeviceInfo> {
        let mut name = [0 as c_char; 256];
        let (mut major, mut minor) = (0i32, 0i32);
        self.call("trt_shim_device_info", |err| {
            // SAFETY: every out-pointer points at a live local of the declared type; the
            // name buffer's length is passed.
            unsafe {
                (self.inner.api.device_info)(
                    device,
                    name.as_mut_ptr(),
                    name.len(),
                    &mut major,
                    &mut minor,
                    err,
                )
            }
        })?;
        Ok(DeviceInfo { name: crate::ffi::c_chars_to_string(&name), major, minor })
    }
}

/// A CUDA device as TensorRT sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    pub name: String,
    pub major: i32,
    pub minor: i32,
}

impl DeviceInfo {
    /// `major.minor`, e.g. `8.7` for Jetson Orin.
    pub fn compute_capability(&self) -> String {
        format!("{}.{}", self.major, self.minor)
    }
}

fn open(path: &Path) -> std::result::Result<Library, String> {
    // SAFETY: loading a shared library runs its initialisers. The shim's (and TensorRT's) are
    // trusted code of this product; the path comes from the search above or the operator.
    unsafe { Library::new(path) }.map_err(|e| e.to_string())
}

fn resolve(lib: &Library, path: &Path) -> Result<Api> {
    macro_rules! sym {
        ($name:literal) => {{
            // SAFETY: the symbol's type is the one `trt_shim.h` declares for it; the pointer
            // is copied out and only used while `lib` stays loaded (ShimInner keeps it).
            let s = unsafe { lib.get::<_>(concat!($name, "\0").as_bytes()) };
            match s {
                Ok(s) => *s,
                Err(e) => {
                    return Err(TrtError::MissingSymbol {
                        path: path.to_path_buf(),
                        symbol: $name.to_string(),
                        message: e.to_string(),
                    });
                }
            }
        }};
    }
    Ok(Api {
        abi_version: sym!("trt_shim_abi_version"),
        init: sym!("trt_shim_init"),
        trt_version: sym!("trt_shim_trt_version"),
        device_info: sym!("trt_shim_device_info"),
        stream_create: sym!("trt_stream_create"),
        stream_synchronize: sym!("trt_stream_synchronize"),
        stream_destroy: sym!("trt_stream_destroy"),
        device_malloc: sym!("trt_device_malloc"),
        device_free: sym!("trt_device_free"),
        memcpy_htod: sym!("trt_memcpy_htod"),
        memcpy_dtoh: sym!("trt_memcpy_dtoh"),
        runtime_create: sym!("trt_runtime_create"),
        runtime_destroy: sym!("trt_runtime_destroy"),
        engine_deserialize: sym!("trt_engine_deserialize"),
        engine_destroy: sym!("trt_engine_destroy"),
        engine_num_io_tensors: sym!("trt_engine_num_io_tensors"),
        engine_io_tensor: sym!("trt_engine_io_tensor"),
        context_create: sym!("trt_context_create"),
        context_destroy: sym!("trt_context_destroy"),
        context_set_input_shape: sym!("trt_context_set_input_shape"),
        context_tensor_shape: sym!("trt_context_tensor_shape"),
        context_set_tensor_address: sym!("trt_context_set_tensor_address"),
        context_enqueue_v3: sym!("trt_context_enqueue_v3"),
        build_serialized: sym!("trt_build_serialized"),
        blob_data: sym!("trt_blob_data"),
        blob_size: sym!("trt_blob_size"),
        blob_destroy: sym!("trt_blob_destroy"),
    })
}
