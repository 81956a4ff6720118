//! The C ABI of `shim/trt_shim.h` as Rust types: `#[repr(C)]` structs, opaque handles and the
//! table of function pointers the loader resolves. Kept in step with the header by
//! [`ABI_VERSION`]; nothing here calls anything.

use std::ffi::{c_char, c_int, c_void};

/// `TRT_SHIM_ABI_VERSION`: the loader refuses a shim reporting another.
pub const ABI_VERSION: u32 = 1;
/// `TRT_SHIM_MAX_DIMS`.
pub const MAX_DIMS: usize = 8;
const MAX_NAME: usize = 256;
const MAX_MESSAGE: usize = 2048;

/// `trt_error`: a code and a NUL-terminated message, filled by every fallible call.
#[repr(C)]
pub struct RawError {
    pub code: i32,
    pub message: [c_char; MAX_MESSAGE],
}

impl RawError {
    pub fn new() -> Box<Self> {
        Box::new(Self { code: 0, message: [0; MAX_MESSAGE] })
    }

    /// The message up to its NUL (lossy UTF-8).
    pub fn message(&self) -> String {
        c_chars_to_string(&self.message)
    }
}

/// `trt_tensor_desc`.
#[repr(C)]
pub struct RawTensorDesc {
    pub name: [c_char; MAX_NAME],
    pub mode: i32,
    pub dtype: i32,
    pub nb_dims: i32,
    pub dims: [i64; MAX_DIMS],
}

impl RawTensorDesc {
    pub fn zeroed() -> Self {
        Self { name: [0; MAX_NAME], mode: 0, dtype: 0, nb_dims: 0, dims: [0; MAX_DIMS] }
    }
}

/// `trt_build_config`.
#[repr(C)]
pub struct RawBuildConfig {
    pub onnx_path: *const c_char,
    pub fp16: i32,
    pub int8: i32,
    pub calibration_cache_path: *const c_char,
    pub input_name: *const c_char,
    pub nb_dims: i32,
    pub min_dims: [i64; MAX_DIMS],
    pub opt_dims: [i64; MAX_DIMS],
    pub max_dims: [i64; MAX_DIMS],
    pub workspace_bytes: u64,
    pub timing_cache_path: *const c_char,
}

/// Reads a fixed C char buffer up to its first NUL.
pub fn c_chars_to_string(chars: &[c_char]) -> String {
    let bytes: Vec<u8> = chars.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Opaque handles.
#[repr(C)]
pub struct RawRuntime {
    _private: [u8; 0],
}
#[repr(C)]
pub struct RawEngine {
    _private: [u8; 0],
}
#[repr(C)]
pub struct RawContext {
    _private: [u8; 0],
}
#[repr(C)]
pub struct RawBlob {
    _private: [u8; 0],
}

type E = *mut RawError;

/// Every entry point of the ABI, resolved once at load time.
#[derive(Clone, Copy)]
pub struct Api {
    pub abi_version: unsafe extern "C" fn() -> u32,
    pub init: unsafe extern "C" fn(E) -> c_int,
    pub trt_version: unsafe extern "C" fn(*mut c_char, usize, E) -> c_int,
    pub device_info: unsafe extern "C" fn(i32, *mut c_char, usize, *mut i32, *mut i32, E) -> c_int,
    pub stream_create: unsafe extern "C" fn(*mut *mut c_void, E) -> c_int,
    pub stream_synchronize: unsafe extern "C" fn(*mut c_void, E) -> c_int,
    pub stream_destroy: unsafe extern "C" fn(*mut c_void),
    pub device_malloc: unsafe extern "C" fn(usize, *mut *mut c_void, E) -> c_int,
    pub device_free: unsafe extern "C" fn(*mut c_void),
    pub memcpy_htod: unsafe extern "C" fn(*mut c_void, *const c_void, usize, E) -> c_int,
    pub memcpy_dtoh: unsafe extern "C" fn(*mut c_void, *const c_void, usize, E) -> c_int,
    pub runtime_create: unsafe extern "C" fn(*mut *mut RawRuntime, E) -> c_int,
    pub runtime_destroy: unsafe extern "C" fn(*mut RawRuntime),
    pub engine_deserialize: unsafe extern "C" fn(
        *mut RawRuntime,
        *const c_void,
        usize,
        *mut *mut RawEngine,
        E,
    ) -> c_int,
    pub engine_destroy: unsafe extern "C" fn(*mut RawEngine),
    pub engine_num_io_tensors: unsafe extern "C" fn(*const RawEngine, *mut i32, E) -> c_int,
    pub engine_io_tensor:
        unsafe extern "C" fn(*const RawEngine, i32, *mut RawTensorDesc, E) -> c_int,
    pub context_create: unsafe extern "C" fn(*mut RawEngine, *mut *mut RawContext, E) -> c_int,
    pub context_destroy: unsafe extern "C" fn(*mut RawContext),
    pub context_set_input_shape:
        unsafe extern "C" fn(*mut RawContext, *const c_char, i32, *const i64, E) -> c_int,
    pub context_tensor_shape:
        unsafe extern "C" fn(*const RawContext, *const c_char, *mut i32, *mut i64, E) -> c_int,
    pub context_set_tensor_address:
        unsafe extern "C" fn(*mut RawContext, *const c_char, *mut c_void, E) -> c_int,
    pub context_enqueue_v3: unsafe extern "C" fn(*mut RawContext, *mut c_void, E) -> c_int,
    pub build_serialized:
        unsafe extern "C" fn(*const RawBuildConfig, *mut *mut RawBlob, E) -> c_int,
    pub blob_data: unsafe extern "C" fn(*const RawBlob) -> *const c_void,
    pub blob_size: unsafe extern "C" fn(*const RawBlob) -> usize,
    pub blob_destroy: unsafe extern "C" fn(*mut RawBlob),
}
