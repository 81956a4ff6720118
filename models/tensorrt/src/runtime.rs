//! Running an engine: deserialising it, its IO tensors (name, shape, dtype, mode), execution
//! contexts (input shapes, tensor addresses, `enqueueV3` on a CUDA stream) and the device
//! buffers they read and write. Shapes, dtypes and buffer sizes are checked here, before
//! TensorRT sees them, so misuse is an error naming the tensor rather than a crash.

#![allow(unsafe_code)]

use std::collections::BTreeMap;
use std::ffi::{CString, c_void};
use std::fmt;
use std::sync::Arc;

use crate::error::{Result, TrtError};
use crate::ffi::{MAX_DIMS, RawContext, RawEngine, RawRuntime, RawTensorDesc};
use crate::loader::Shim;

/// TensorRT's `DataType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataType {
    Float,
    Half,
    Int8,
    Int32,
    Bool,
    Uint8,
    Fp8,
    Bf16,
    Int64,
    Int4,
    Other(i32),
}

impl DataType {
    pub fn from_raw(v: i32) -> Self {
        match v {
            0 => Self::Float,
            1 => Self::Half,
            2 => Self::Int8,
            3 => Self::Int32,
            4 => Self::Bool,
            5 => Self::Uint8,
            6 => Self::Fp8,
            7 => Self::Bf16,
            8 => Self::Int64,
            9 => Self::Int4,
            v => Self::Other(v),
        }
    }

    /// Bytes taken by `elements` values (INT4 packs two a byte); `None` for unknown types.
    pub fn bytes_for(self, elements: usize) -> Option<usize> {
        let size = match self {
            Self::Float | Self::Int32 => 4,
            Self::Half | Self::Bf16 => 2,
            Self::Int8 | Self::Bool | Self::Uint8 | Self::Fp8 => 1,
            Self::Int64 => 8,
            Self::Int4 => return Some(elements.div_ceil(2)),
            Self::Other(_) => return None,
        };
        elements.checked_mul(size)
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Float => f.write_str("float32"),
            Self::Half => f.write_str("float16"),
            Self::Int8 => f.write_str("int8"),
            Self::Int32 => f.write_str("int32"),
            Self::Bool => f.write_str("bool"),
            Self::Uint8 => f.write_str("uint8"),
            Self::Fp8 => f.write_str("fp8"),
            Self::Bf16 => f.write_str("bfloat16"),
            Self::Int64 => f.write_str("int64"),
            Self::Int4 => f.write_str("int4"),
            Self::Other(v) => write!(f, "dtype#{v}"),
        }
    }
}

/// Whether an IO tensor is read or written by the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TensorMode {
    Input,
    Output,
}

impl TensorMode {
    fn word(self) -> &'static str {
        match self {
            Self::Input => "input",
            Self::Output => "output",
        }
    }
}

/// One IO tensor of an engine as built: `-1` marks a dynamic dimension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorDesc {
    pub name: String,
    pub mode: TensorMode,
    pub dtype: DataType,
    pub shape: Vec<i64>,
}

/// Host element types that map onto a TensorRT dtype.
pub trait Element: Copy + Default + 'static + private::Sealed {
    const DTYPE: DataType;
}
impl Element for f32 {
    const DTYPE: DataType = DataType::Float;
}
impl Element for i32 {
    const DTYPE: DataType = DataType::Int32;
}
impl Element for i64 {
    const DTYPE: DataType = DataType::Int64;
}
impl Element for i8 {
    const DTYPE: DataType = DataType::Int8;
}
impl Element for u8 {
    const DTYPE: DataType = DataType::Uint8;
}
mod private {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for i32 {}
    impl Sealed for i64 {}
    impl Sealed for i8 {}
    impl Sealed for u8 {}
}

fn as_bytes<T: Element>(data: &[T]) -> &[u8] {
    // SAFETY: every `Element` is a plain number type without padding or invalid bit
    // patterns; the byte view covers exactly the slice's memory and borrows it.
    unsafe { std::slice::from_raw_parts(data.as_ptr().cast::<u8>(), std::mem::size_of_val(data)) }
}

fn as_bytes_mut<T: Element>(data: &mut [T]) -> &mut [u8] {
    // SAFETY: as in `as_bytes`; every byte pattern is a valid value of an `Element`.
    unsafe {
        std::slice::from_raw_parts_mut(data.as_mut_ptr().cast::<u8>(), std::mem::size_of_val(data))
    }
}

/// A tensor copied back to the host: row-major `data` of `shape`.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor<T> {
    pub shape: Vec<i64>,
    pub data: Vec<T>,
}

/// Number of elements of a fully specified shape; `None` while a dimension is dynamic.
pub fn volume(shape: &[i64]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| {
        if d < 0 { None } else { acc.checked_mul(usize::try_from(d).ok()?) }
    })
}

fn c_name(name: &str) -> Result<CString> {
    CString::new(name)
        .map_err(|_| TrtError::InvalidArgument(format!("tensor name {name:?} contains a NUL byte")))
}

/// A CUDA stream (a dummy handle in the fake shim).
pub struct Stream {
    shim: Shim,
    raw: *mut c_void,
}

// SAFETY: a CUDA stream handle may be used from any host thread; `Stream` is not `Sync`, so
// one thread at a time uses it.
unsafe impl Send for Stream {}

impl fmt::Debug for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stream").field("raw", &self.raw).finish()
    }
}

impl Stream {
    pub fn synchronize(&self) -> Result<()> {
        self.shim.call("trt_stream_synchronize", |err| {
            // SAFETY: `raw` is a live stream from `trt_stream_create`; `err` is valid.
            unsafe { (self.shim.inner.api.stream_synchronize)(self.raw, err) }
        })
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        // SAFETY: `raw` came from `trt_stream_create` and is destroyed once, here.
        unsafe { (self.shim.inner.api.stream_destroy)(self.raw) }
    }
}

/// Device memory of a fixed size in bytes.
pub struct DeviceBuffer {
    shim: Shim,
    ptr: *mut c_void,
    len: usize,
}

// SAFETY: device memory is not tied to a host thread; `&mut` guards writes.
unsafe impl Send for DeviceBuffer {}

impl fmt::Debug for DeviceBuffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceBuffer").field("ptr", &self.ptr).field("len", &self.len).finish()
    }
}

impl DeviceBuffer {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Copies `src` to the start of the buffer; `src` must fit.
    pub fn copy_from_host(&mut self, src: &[u8]) -> Result<()> {
        if src.len() > self.len {
            return Err(TrtError::WrongBufferSize {
                name: "(host copy)".into(),
                needed: src.len(),
                actual: self.len,
            });
        }
        self.shim.call("trt_memcpy_htod", |err| {
            // SAFETY: `ptr` holds `len >= src.len()` bytes of device memory; `src` is a live
            // host slice of the length passed.
            unsafe {
                (self.shim.inner.api.memcpy_htod)(self.ptr, src.as_ptr().cast(), src.len(), err)
            }
        })
    }

    /// Copies the start of the buffer into `dst`; `dst` must not be longer than the buffer.
    pub fn copy_to_host(&self, dst: &mut [u8]) -> Result<()> {
        if dst.len() > self.len {
            return Err(TrtError::WrongBufferSize {
                name: "(host copy)".into(),
                needed: dst.len(),
                actual: self.len,
            });
        }
        self.shim.call("trt_memcpy_dtoh", |err| {
            // SAFETY: `ptr` holds at least `dst.len()` bytes; `dst` is a live, writable host
            // slice of the length passed.
            unsafe {
                (self.shim.inner.api.memcpy_dtoh)(dst.as_mut_ptr().cast(), self.ptr, dst.len(), err)
            }
        })
    }
}

impl Drop for DeviceBuffer {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from `trt_device_malloc` and is freed once, here.
        unsafe { (self.shim.inner.api.device_free)(self.ptr) }
    }
}

impl Shim {
    pub fn create_stream(&self) -> Result<Stream> {
        let mut raw: *mut c_void = std::ptr::null_mut();
        self.call("trt_stream_create", |err| {
            // SAFETY: `raw` is a live out-pointer; `err` is valid.
            unsafe { (self.inner.api.stream_create)(&mut raw, err) }
        })?;
        Ok(Stream { shim: self.clone(), raw })
    }

    /// Allocates `bytes` of device memory (uninitialised in the real shim).
    pub fn alloc(&self, bytes: usize) -> Result<DeviceBuffer> {
        let mut ptr: *mut c_void = std::ptr::null_mut();
        self.call("trt_device_malloc", |err| {
            // SAFETY: `ptr` is a live out-pointer; `err` is valid.
            unsafe { (self.inner.api.device_malloc)(bytes, &mut ptr, err) }
        })?;
        Ok(DeviceBuffer { shim: self.clone(), ptr, len: bytes })
    }

    /// Deserialises an engine (plan) without identity checks; see
    /// [`crate::identity::load_engine_checked`] for the checked path.
    pub fn deserialize_engine(&self, plan: &[u8]) -> Result<Engine> {
        let mut runtime: *mut RawRuntime = std::ptr::null_mut();
        self.call("trt_runtime_create", |err| {
            // SAFETY: `runtime` is a live out-pointer; `err` is valid.
            unsafe { (self.inner.api.runtime_create)(&mut runtime, err) }
        })?;
        let mut engine: *mut RawEngine = std::ptr::null_mut();
        let made = self.call("trt_engine_deserialize", |err| {
            // SAFETY: `runtime` is live; `plan` is a live slice of the length passed.
            unsafe {
                (self.inner.api.engine_deserialize)(
                    runtime,
                    plan.as_ptr().cast(),
                    plan.len(),
                    &mut engine,
                    err,
                )
            }
        });
        let inner = EngineInner { shim: self.clone(), runtime, engine };
        made?; // `inner` drops here on failure and frees the runtime (engine is null).
        let mut count = 0i32;
        self.call("trt_engine_num_io_tensors", |err| {
            // SAFETY: `engine` is live; `count` is a live out-pointer.
            unsafe { (self.inner.api.engine_num_io_tensors)(inner.engine, &mut count, err) }
        })?;
        let mut tensors = Vec::new();
        for i in 0..count {
            let mut d = RawTensorDesc::zeroed();
            self.call("trt_engine_io_tensor", |err| {
                // SAFETY: `engine` is live; `d` is a live out-struct of the ABI's layout.
                unsafe { (self.inner.api.engine_io_tensor)(inner.engine, i, &mut d, err) }
            })?;
            let mode = match d.mode {
                1 => TensorMode::Input,
                2 => TensorMode::Output,
                m => {
                    return Err(TrtError::InvalidArgument(format!(
                        "IO tensor {i} has mode {m}, neither input nor output"
                    )));
                }
            };
            let rank = usize::try_from(d.nb_dims).unwrap_or(usize::MAX);
            if rank > MAX_DIMS {
                return Err(TrtError::InvalidArgument(format!(
                    "IO tensor {i} has {} dimensions",
                    d.nb_dims
                )));
            }
            tensors.push(TensorDesc {
                name: crate::ffi::c_chars_to_string(&d.name),
                mode,
                dtype: DataType::from_raw(d.dtype),
                shape: d.dims[..rank].to_vec(),
            });
        }
        Ok(Engine { inner: Arc::new(inner), tensors: Arc::new(tensors) })
    }
}

struct EngineInner {
    shim: Shim,
    runtime: *mut RawRuntime,
    engine: *mut RawEngine,
}

// SAFETY: TensorRT's ICudaEngine and IRuntime may be used from several threads for the
// calls made here (creating execution contexts, const queries); contexts are per-thread.
unsafe impl Send for EngineInner {}
// SAFETY: as above; the handles are never mutated through `&EngineInner`.
unsafe impl Sync for EngineInner {}

impl Drop for EngineInner {
    fn drop(&mut self) {
        // SAFETY: both handles came from the shim and are destroyed once, the engine before
        // the runtime that made it; destroy accepts null.
        unsafe {
            (self.shim.inner.api.engine_destroy)(self.engine);
            (self.shim.inner.api.runtime_destroy)(self.runtime);
        }
    }
}

/// A deserialised engine. Cheap to clone; contexts keep it alive.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<EngineInner>,
    tensors: Arc<Vec<TensorDesc>>,
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine").field("io_tensors", &self.tensors).finish()
    }
}

impl Engine {
    /// The IO tensors in the engine's order.
    pub fn io_tensors(&self) -> &[TensorDesc] {
        &self.tensors
    }

    pub fn tensor(&self, name: &str) -> Result<&TensorDesc> {
        self.tensors.iter().find(|t| t.name == name).ok_or_else(|| TrtError::UnknownTensor {
            name: name.to_string(),
            known: self.tensors.iter().map(|t| t.name.as_str()).collect::<Vec<_>>().join(", "),
        })
    }

    pub fn inputs(&self) -> impl Iterator<Item = &TensorDesc> {
        self.tensors.iter().filter(|t| t.mode == TensorMode::Input)
    }

    pub fn outputs(&self) -> impl Iterator<Item = &TensorDesc> {
        self.tensors.iter().filter(|t| t.mode == TensorMode::Output)
    }

    pub fn create_context(&self) -> Result<ExecutionContext> {
        let shim = &self.inner.shim;
        let mut raw: *mut RawContext = std::ptr::null_mut();
        shim.call("trt_context_create", |err| {
            // SAFETY: the engine handle is live (held by `self.inner`); `raw` is an out-pointer.
            unsafe { (shim.inner.api.context_create)(self.inner.engine, &mut raw, err) }
        })?;
        Ok(ExecutionContext { raw, engine: self.clone(), buffers: BTreeMap::new() })
    }
}

/// An execution context with the device buffers bound to its tensors (it owns them, so no
/// address it gave TensorRT can dangle).
pub struct ExecutionContext {
    raw: *mut RawContext,
    engine: Engine,
    buffers: BTreeMap<String, DeviceBuffer>,
}

// SAFETY: an IExecutionContext may move between threads; `&mut self` on every mutating call
// keeps its use single-threaded, as TensorRT requires.
unsafe impl Send for ExecutionContext {}

impl Drop for ExecutionContext {
    fn drop(&mut self) {
        // SAFETY: `raw` came from `trt_context_create` and is destroyed once, before the
        // buffers (dropped after this body) and the engine it belongs to.
        unsafe { (self.shim().inner.api.context_destroy)(self.raw) }
    }
}

impl fmt::Debug for ExecutionContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExecutionContext").field("bound", &self.buffers).finish()
    }
}

impl ExecutionContext {
    fn shim(&self) -> &Shim {
        &self.engine.inner.shim
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Sets the shape of input `name`. Checked against the engine first: rank and every
    /// static dimension must match; TensorRT then checks the optimisation profile.
    pub fn set_input_shape(&mut self, name: &str, shape: &[i64]) -> Result<()> {
        let desc = self.engine.tensor(name)?;
        if desc.mode != TensorMode::Input {
            return Err(TrtError::WrongMode {
                name: name.into(),
                actual: desc.mode.word(),
                wanted: TensorMode::Input.word(),
            });
        }
        if shape.len() != desc.shape.len() {
            return Err(TrtError::WrongShape {
                name: name.into(),
                message: format!(
                    "shape {shape:?} has rank {}, the engine's {:?} has rank {}",
                    shape.len(),
                    desc.shape,
                    desc.shape.len()
                ),
            });
        }
        for (i, (&want, &got)) in desc.shape.iter().zip(shape).enumerate() {
            if got < 0 || (want >= 0 && want != got) {
                return Err(TrtError::WrongShape {
                    name: name.into(),
                    message: format!(
                        "dimension {i} is {got}, the engine's shape is {:?}",
                        desc.shape
                    ),
                });
            }
        }
        let cname = c_name(name)?;
        let rank = i32::try_from(shape.len()).unwrap_or(i32::MAX);
        let raw = self.raw;
        self.shim().call("trt_context_set_input_shape", |err| {
            // SAFETY: `raw` is live; `cname` is NUL-terminated; `shape` holds `rank` dims.
            unsafe {
                (self.shim().inner.api.context_set_input_shape)(
                    raw,
                    cname.as_ptr(),
                    rank,
                    shape.as_ptr(),
                    err,
                )
            }
        })
    }

    /// The shape of `name` as the context resolves it now (`-1` while unknown).
    pub fn tensor_shape(&self, name: &str) -> Result<Vec<i64>> {
        self.engine.tensor(name)?;
        let cname = c_name(name)?;
        let mut rank = 0i32;
        let mut dims = [0i64; MAX_DIMS];
        self.shim().call("trt_context_tensor_shape", |err| {
            // SAFETY: `raw` is live; `dims` has room for MAX_DIMS, the ABI's limit.
            unsafe {
                (self.shim().inner.api.context_tensor_shape)(
                    self.raw,
                    cname.as_ptr(),
                    &mut rank,
                    dims.as_mut_ptr(),
                    err,
                )
            }
        })?;
        let rank = usize::try_from(rank).unwrap_or(usize::MAX).min(MAX_DIMS);
        Ok(dims[..rank].to_vec())
    }

    /// Bytes `name` needs at its current shape.
    pub fn tensor_bytes(&self, name: &str) -> Result<usize> {
        let desc = self.engine.tensor(name)?;
        let shape = self.tensor_shape(name)?;
        let elements = volume(&shape).ok_or_else(|| TrtError::WrongShape {
            name: name.into(),
            message: format!("shape {shape:?} is not known yet (set the input shapes first)"),
        })?;
        desc.dtype.bytes_for(elements).ok_or_else(|| TrtError::WrongShape {
            name: name.into(),
            message: format!("cannot size {} values of {}", elements, desc.dtype),
        })
    }

    /// Binds `buffer` to tensor `name` (its address goes to TensorRT); the context keeps the
    /// buffer and returns the one it replaces. The buffer must hold the tensor at its
    /// current shape.
    pub fn bind(&mut self, name: &str, buffer: DeviceBuffer) -> Result<Option<DeviceBuffer>> {
        let needed = self.tensor_bytes(name)?;
        if buffer.len() < needed {
            return Err(TrtError::WrongBufferSize {
                name: name.into(),
                needed,
                actual: buffer.len(),
            });
        }
        let cname = c_name(name)?;
        let ptr = buffer.ptr;
        self.shim().call("trt_context_set_tensor_address", |err| {
            // SAFETY: `raw` is live; `ptr` is device memory of at least `needed` bytes that
            // the context owns from here on, so it outlives every enqueue using it.
            unsafe {
                (self.shim().inner.api.context_set_tensor_address)(
                    self.raw,
                    cname.as_ptr(),
                    ptr,
                    err,
                )
            }
        })?;
        Ok(self.buffers.insert(name.to_string(), buffer))
    }

    /// The buffer bound to `name`, if any.
    pub fn buffer(&self, name: &str) -> Option<&DeviceBuffer> {
        self.buffers.get(name)
    }

    /// Makes sure `name` has a bound buffer big enough for its current shape, reusing the
    /// bound one when it is.
    fn ensure_buffer(&mut self, name: &str) -> Result<()> {
        let needed = self.tensor_bytes(name)?;
        if self.buffers.get(name).is_some_and(|b| b.len() >= needed) {
            return Ok(());
        }
        let buffer = self.engine.inner.shim.alloc(needed)?;
        self.bind(name, buffer)?;
        Ok(())
    }

    /// Sets input `name` to `shape` and uploads `data` (row-major) into its buffer.
    pub fn write_input<T: Element>(&mut self, name: &str, shape: &[i64], data: &[T]) -> Result<()> {
        let desc = self.engine.tensor(name)?;
        if desc.dtype != T::DTYPE {
            return Err(TrtError::WrongDtype {
                name: name.into(),
                actual: desc.dtype,
                requested: T::DTYPE,
            });
        }
        let elements = volume(shape).ok_or_else(|| TrtError::WrongShape {
            name: name.into(),
            message: format!("shape {shape:?} has a negative dimension"),
        })?;
        if elements != data.len() {
            return Err(TrtError::WrongShape {
                name: name.into(),
                message: format!(
                    "shape {shape:?} holds {elements} values, the data has {}",
                    data.len()
                ),
            });
        }
        self.set_input_shape(name, shape)?;
        self.ensure_buffer(name)?;
        match self.buffers.get_mut(name) {
            Some(b) => b.copy_from_host(as_bytes(data)),
            None => Err(TrtError::Unbound { name: name.into() }),
        }
    }

    /// Copies raw bytes (e.g. float16 data) into the buffer bound to `name`.
    pub fn upload(&mut self, name: &str, bytes: &[u8]) -> Result<()> {
        let buffer =
            self.buffers.get_mut(name).ok_or_else(|| TrtError::Unbound { name: name.into() })?;
        buffer.copy_from_host(bytes)
    }

    /// Copies the start of the buffer bound to `name` into `dst`.
    pub fn download(&self, name: &str, dst: &mut [u8]) -> Result<()> {
        let buffer =
            self.buffers.get(name).ok_or_else(|| TrtError::Unbound { name: name.into() })?;
        buffer.copy_to_host(dst)
    }

    /// Allocates (or reuses) and binds buffers for every output at the current shapes.
    pub fn prepare_outputs(&mut self) -> Result<()> {
        let names: Vec<String> = self.engine.outputs().map(|t| t.name.clone()).collect();
        for name in names {
            self.ensure_buffer(&name)?;
        }
        Ok(())
    }

    /// `enqueueV3` on `stream`, after checking that every IO tensor has a bound buffer big
    /// enough for its current shape. Asynchronous: synchronise `stream` before reading.
    pub fn enqueue(&mut self, stream: &Stream) -> Result<()> {
        for t in self.engine.io_tensors() {
            let needed = self.tensor_bytes(&t.name)?;
            match self.buffers.get(&t.name) {
                None => return Err(TrtError::Unbound { name: t.name.clone() }),
                Some(b) if b.len() < needed => {
                    return Err(TrtError::WrongBufferSize {
                        name: t.name.clone(),
                        needed,
                        actual: b.len(),
                    });
                }
                Some(_) => {}
            }
        }
        self.shim().call("trt_context_enqueue_v3", |err| {
            // SAFETY: `raw` and the stream are live; every IO address points at an owned
            // buffer large enough for the current shapes (checked above).
            unsafe { (self.shim().inner.api.context_enqueue_v3)(self.raw, stream.raw, err) }
        })
    }

    /// Binds the outputs, enqueues and waits for the stream.
    pub fn run(&mut self, stream: &Stream) -> Result<()> {
        self.prepare_outputs()?;
        self.enqueue(stream)?;
        stream.synchronize()
    }

    /// Copies tensor `name` back to the host at its current shape. Call after the stream
    /// was synchronised ([`ExecutionContext::run`] does).
    pub fn read_tensor<T: Element>(&self, name: &str) -> Result<HostTensor<T>> {
        let desc = self.engine.tensor(name)?;
        if desc.dtype != T::DTYPE {
            return Err(TrtError::WrongDtype {
                name: name.into(),
                actual: desc.dtype,
                requested: T::DTYPE,
            });
        }
        let shape = self.tensor_shape(name)?;
        let elements = volume(&shape).ok_or_else(|| TrtError::WrongShape {
            name: name.into(),
            message: format!("shape {shape:?} is not known yet (set the input shapes first)"),
        })?;
        let buffer =
            self.buffers.get(name).ok_or_else(|| TrtError::Unbound { name: name.into() })?;
        let mut data = vec![T::default(); elements];
        buffer.copy_to_host(as_bytes_mut(&mut data))?;
        Ok(HostTensor { shape, data })
    }
}
