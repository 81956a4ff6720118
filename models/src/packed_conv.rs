//! CPU inference convolutions with the weight reordered once and the activation fused: what
//! PyTorch's inductor emits (`mkldnn::_convolution_pointwise` on a prepacked weight).
//!
//! Eager `conv2d` hands oneDNN a plain weight, and oneDNN reorders it into its blocked layout
//! on every call: ~90 weight reorders per yolo11s forward (`ONEDNN_VERBOSE=1` lists them). A
//! [`PackedConv`] does that reorder once, keeps channels-last activations channels-last, and
//! applies SiLU / ReLU inside the convolution instead of in a separate pass over the output.
//! `fracture-bench predict` times both in one run: yolo11s at 416, 2 threads, forward 57 ms
//! packed against 69 ms eager.
//!
//! oneDNN's preferred weight layout depends on the input's size (for a 3×3 convolution it
//! blocks output channels by 16 at one size and by 32 at another), and a weight packed for
//! one size reorders itself into the other layout on *every* call at another size: with
//! rect-letterboxed images of different shapes, ~39 of yolo11s' 86 convolutions did so
//! (`ONEDNN_VERBOSE=1`). An [`InferenceConv`] therefore keeps one packed copy per input size
//! it meets, the [`PACKED_SIZES`] most recently used. Results equal `conv2d` + activation to float rounding (the unit
//! tests below hold them to 1e-5; `yolo_parity` compares whole models).
//!
//! Only for float32 CPU tensors that need no gradient; [`PackedConv::pack`] says `None`
//! anywhere else (CUDA, other kinds, a libtorch without oneDNN) and callers keep `conv2d`.
//! Setting `FRACTURE_EAGER_CONV=1` in the environment turns packing off process-wide, for
//! side-by-side timing and for ruling it out when a result looks wrong ([`set_enabled`] does
//! the same for one thread from code).

use std::cell::{Cell, RefCell};
use std::ffi::{CStr, c_char};
use std::sync::OnceLock;

use tch::{Device, Kind, Tensor};

/// The activation oneDNN applies to the convolution's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    None,
    Relu,
    Silu,
}

impl Activation {
    /// The name `_convolution_pointwise` knows it by.
    fn attr(self) -> &'static CStr {
        match self {
            Activation::None => c"none",
            Activation::Relu => c"relu",
            Activation::Silu => c"swish",
        }
    }
}

/// A 2-d convolution (square stride, padding, dilation 1) with its weight prepacked.
#[derive(Debug)]
pub struct PackedConv {
    /// An mkldnn (opaque) tensor in oneDNN's preferred layout for this convolution.
    weight: Tensor,
    bias: Option<Tensor>,
    stride: i64,
    padding: i64,
    groups: i64,
    act: Activation,
}

/// The process-wide default: oneDNN is there and `FRACTURE_EAGER_CONV` is not set.
fn default_enabled() -> bool {
    static DEFAULT: OnceLock<bool> = OnceLock::new();
    *DEFAULT.get_or_init(|| {
        tch::utils::has_mkldnn() && std::env::var_os("FRACTURE_EAGER_CONV").is_none_or(|v| v == "0")
    })
}

thread_local! {
    /// This thread's override of [`default_enabled`], set by [`set_enabled`].
    static ENABLED: Cell<Option<bool>> = const { Cell::new(None) };
}

/// Whether packed convolutions are used on this thread: the process-wide default unless
/// [`set_enabled`] said otherwise here. Checked on every call, so it also switches layers
/// already packed.
pub fn enabled() -> bool {
    ENABLED.with(Cell::get).unwrap_or_else(default_enabled)
}

/// Turns packed convolutions on or off for the calling thread (benchmarks and tests compare
/// both in one process); on has no effect without oneDNN.
pub fn set_enabled(on: bool) {
    ENABLED.with(|e| e.set(Some(on && tch::utils::has_mkldnn())));
}

#[allow(unsafe_code)]
mod ffi {
    use std::ffi::c_char;
    use torch_sys::C_tensor;

    unsafe extern "C" {
        /// csrc/conv_pointwise.cpp: a new tensor, or null with the reason in `err`.
        pub fn fracture_conv_pointwise(
            x: *const C_tensor,
            w: *const C_tensor,
            b: *const C_tensor,
            padding: *const i64,
            stride: *const i64,
            dilation: *const i64,
            groups: i64,
            attr: *const c_char,
            err: *mut c_char,
            err_len: usize,
        ) -> *mut C_tensor;
    }
}

impl PackedConv {
    /// Prepacks `weight` (`[c_out, c_in / groups, k, k]`, float32, CPU) for inputs shaped like
    /// `input_size` (`[n, c_in, h, w]`; other sizes still compute correctly, oneDNN may then
    /// reorder again). `None` where packing does not apply or libtorch refuses it.
    pub fn pack(
        weight: &Tensor,
        bias: Option<&Tensor>,
        stride: i64,
        padding: i64,
        groups: i64,
        act: Activation,
        input_size: &[i64],
    ) -> Option<Self> {
        let plain =
            |t: &Tensor| t.device() == Device::Cpu && t.kind() == Kind::Float && !t.requires_grad();
        if !plain(weight) || !bias.is_none_or(plain) || !enabled() {
            return None;
        }
        if weight.dim() != 4 || input_size.len() != 4 {
            return None;
        }
        let packed = tch::no_grad(|| {
            weight.contiguous().f_to_mkldnn(Kind::Float).and_then(|w| {
                w.f_mkldnn_reorder_conv2d_weight(
                    [padding, padding],
                    [stride, stride],
                    [1, 1],
                    groups,
                    input_size,
                )
            })
        })
        .ok()?;
        let bias = bias.map(|b| b.contiguous());
        Some(Self { weight: packed, bias, stride, padding, groups, act })
    }

    /// `act(conv2d(x))` for a float32 CPU `x` (`[n, c_in, h, w]`, best channels-last); the
    /// reason when `x` does not qualify or libtorch rejects the call, so the caller can fall
    /// back to `conv2d`.
    #[allow(unsafe_code)]
    pub fn forward(&self, x: &Tensor) -> Result<Tensor, String> {
        if x.device() != Device::Cpu || x.kind() != Kind::Float || x.dim() != 4 {
            let (device, kind, dims) = (x.device(), x.kind(), x.dim());
            return Err(format!(
                "needs a 4-d float32 CPU input, got {dims}-d {kind:?} on {device:?}"
            ));
        }
        let padding = [self.padding; 2];
        let stride = [self.stride; 2];
        let dilation = [1i64; 2];
        let mut err = [0u8; 256];
        let bias = self.bias.as_ref().map_or(std::ptr::null(), |b| b.as_ptr());
        // SAFETY: every tensor pointer comes from a live `Tensor` borrowed for the whole call
        // (or is null for "no bias", which the shim checks); the three arrays hold the two
        // values the shim reads; `attr` is NUL-terminated; `err` is writable for its length and
        // the shim always NUL-terminates what it writes. The shim catches every C++ exception.
        let out = unsafe {
            ffi::fracture_conv_pointwise(
                x.as_ptr(),
                self.weight.as_ptr(),
                bias,
                padding.as_ptr(),
                stride.as_ptr(),
                dilation.as_ptr(),
                self.groups,
                self.act.attr().as_ptr(),
                err.as_mut_ptr().cast::<c_char>(),
                err.len(),
            )
        };
        if out.is_null() {
            let msg = CStr::from_bytes_until_nul(&err).map_or_else(
                |_| "libtorch refused the call".to_string(),
                |m| m.to_string_lossy().into_owned(),
            );
            return Err(msg);
        }
        // SAFETY: a non-null result is a heap `at::Tensor` the shim allocated for us to own;
        // `Tensor`'s drop frees it.
        Ok(unsafe { Tensor::from_ptr(out) })
    }
}

/// How many input sizes an [`InferenceConv`] keeps a packed weight for. A rect letterbox
/// at 416 gives one shape per aspect-ratio bucket (the benchmark's six images: five shapes);
/// each copy costs the layer's weight again (yolo11s: 38 MB for all layers).
pub const PACKED_SIZES: usize = 8;

/// A packed weight and the input size it was packed for (`None`: packing refused there).
#[derive(Debug)]
struct PackedFor {
    input_size: Vec<i64>,
    conv: Option<PackedConv>,
}

/// A convolution with fixed weights (batch norm already folded in) and its activation, for
/// inference: prepacked on its first CPU float32 call at each input size (the
/// [`PACKED_SIZES`] most recent kept), eager `conv2d` wherever packing does not apply (CUDA,
/// other kinds, packing switched off).
#[derive(Debug)]
pub struct InferenceConv {
    /// `[c_out, c_in / groups, k, k]`.
    weight: Tensor,
    /// `[c_out]`.
    bias: Tensor,
    stride: i64,
    padding: i64,
    groups: i64,
    act: Activation,
    /// Least recently used first.
    packed: RefCell<Vec<PackedFor>>,
}

impl InferenceConv {
    pub fn new(
        weight: Tensor,
        bias: Tensor,
        stride: i64,
        padding: i64,
        groups: i64,
        act: Activation,
    ) -> Self {
        Self { weight, bias, stride, padding, groups, act, packed: RefCell::new(Vec::new()) }
    }

    /// `[c_out, c_in / groups, k, k]`.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// `[c_out]`.
    pub fn bias(&self) -> &Tensor {
        &self.bias
    }

    /// Calls `f` with the weight packed for `input_size` (packing it first when this size is
    /// new, dropping the least recently used size beyond [`PACKED_SIZES`]).
    fn with_packed<R>(&self, input_size: &[i64], f: impl FnOnce(Option<&PackedConv>) -> R) -> R {
        let mut packed = self.packed.borrow_mut();
        match packed.iter().position(|p| p.input_size == input_size) {
            Some(i) => {
                let hit = packed.remove(i);
                packed.push(hit);
            }
            None => {
                let (w, b) = (&self.weight, Some(&self.bias));
                let conv = PackedConv::pack(
                    w,
                    b,
                    self.stride,
                    self.padding,
                    self.groups,
                    self.act,
                    input_size,
                );
                if packed.len() >= PACKED_SIZES {
                    packed.remove(0);
                }
                packed.push(PackedFor { input_size: input_size.to_vec(), conv });
            }
        }
        f(packed.last().and_then(|p| p.conv.as_ref()))
    }

    /// The input sizes a packed weight is kept for, least recently used first.
    pub fn packed_sizes(&self) -> Vec<Vec<i64>> {
        self.packed.borrow().iter().map(|p| p.input_size.clone()).collect()
    }

    /// `act(conv2d(x))`, `[n, c_in, h, w]` -> `[n, c_out, h', w']`.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        if !x.requires_grad()
            && enabled()
            && let Some(Ok(y)) = self.with_packed(&x.size(), |p| p.map(|p| p.forward(x)))
        {
            return y;
        }
        let mut y =
            x.conv2d(&self.weight, Some(&self.bias), self.stride, self.padding, 1, self.groups);
        // In place: one allocation less per layer.
        match self.act {
            Activation::None => {}
            Activation::Relu => {
                let _ = y.relu_();
            }
            Activation::Silu => {
                let _ = y.silu_();
            }
        }
        y
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::tensor::channels_last;

    fn reference(
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        s: i64,
        p: i64,
        g: i64,
        act: Activation,
    ) -> Tensor {
        let y = x.conv2d(w, Some(b), s, p, 1, g);
        match act {
            Activation::None => y,
            Activation::Relu => y.relu(),
            Activation::Silu => y.silu(),
        }
    }

    /// The shapes YOLO11 and ResNet use: 3×3 stride 1 and 2, 1×1, depthwise, 7×7 stride 2;
    /// each at the packed size and at another one (letterboxed images differ in size).
    #[test]
    fn equals_conv2d_with_activation() {
        tch::manual_seed(3);
        let cases: [(i64, i64, i64, i64, i64, Activation); 6] = [
            (16, 32, 3, 1, 1, Activation::Silu),
            (32, 64, 3, 2, 1, Activation::Silu),
            (64, 48, 1, 1, 1, Activation::None),
            (48, 48, 3, 1, 48, Activation::Silu),
            (3, 64, 7, 2, 1, Activation::Relu),
            (64, 64, 3, 1, 1, Activation::Relu),
        ];
        for (c1, c2, k, s, g, act) in cases {
            let w = Tensor::randn([c2, c1 / g, k, k], (Kind::Float, Device::Cpu)) * 0.1;
            let b = Tensor::randn([c2], (Kind::Float, Device::Cpu));
            let packed = PackedConv::pack(&w, Some(&b), s, k / 2, g, act, &[1, c1, 40, 32])
                .expect("float32 CPU weights pack");
            for (h, wd) in [(40, 32), (24, 56)] {
                let x = channels_last(&Tensor::randn([1, c1, h, wd], (Kind::Float, Device::Cpu)));
                let want = reference(&x, &w, &b, s, k / 2, g, act);
                let got = packed.forward(&x).expect("packed forward");
                assert_eq!(got.size(), want.size(), "{c1}->{c2} k{k} s{s} g{g} at {h}x{wd}");
                let diff = (&got - &want).abs().max().double_value(&[]);
                assert!(diff < 1e-5, "{c1}->{c2} k{k} s{s} g{g} at {h}x{wd}: max diff {diff}");
            }
        }
    }

    /// One packed weight per input size, the most recent [`PACKED_SIZES`] kept, each giving
    /// `conv2d`'s result at its size.
    #[test]
    fn keeps_a_packed_weight_per_input_size() {
        tch::manual_seed(5);
        let w = Tensor::randn([32, 16, 3, 3], (Kind::Float, Device::Cpu)) * 0.1;
        let b = Tensor::randn([32], (Kind::Float, Device::Cpu));
        let conv = InferenceConv::new(w.copy(), b.copy(), 1, 1, 1, Activation::Silu);
        let sizes: Vec<[i64; 4]> =
            (0..PACKED_SIZES as i64 + 2).map(|i| [1, 16, 8 + 4 * i, 12]).collect();
        let run = |size: [i64; 4]| {
            let x = channels_last(&Tensor::randn(size, (Kind::Float, Device::Cpu)));
            let diff = (conv.forward(&x) - reference(&x, &w, &b, 1, 1, 1, Activation::Silu))
                .abs()
                .max()
                .double_value(&[]);
            assert!(diff < 1e-5, "at {size:?}: max diff {diff}");
        };
        if !enabled() {
            return; // no oneDNN here: eager conv2d only, nothing is packed
        }
        run(sizes[0]);
        run(sizes[1]);
        run(sizes[0]); // a hit: moves to the back
        assert_eq!(conv.packed_sizes(), vec![sizes[1].to_vec(), sizes[0].to_vec()]);
        for &size in &sizes[2..] {
            run(size);
        }
        let kept = conv.packed_sizes();
        assert_eq!(kept.len(), PACKED_SIZES);
        // The two least recently used (sizes[1], then sizes[0]) went first.
        assert!(!kept.contains(&sizes[1].to_vec()) && !kept.contains(&sizes[0].to_vec()));
        assert_eq!(kept.last(), Some(&sizes[PACKED_SIZES + 1].to_vec()));
    }

    #[test]
    fn refuses_what_it_cannot_run() {
        let w = Tensor::randn([8, 4, 3, 3], (Kind::Float, Device::Cpu));
        let wd = w.to_kind(Kind::Double);
        assert!(PackedConv::pack(&wd, None, 1, 1, 1, Activation::None, &[1, 4, 8, 8]).is_none());
        let wg = w.set_requires_grad(true);
        assert!(PackedConv::pack(&wg, None, 1, 1, 1, Activation::None, &[1, 4, 8, 8]).is_none());
        let packed = PackedConv::pack(&w.detach(), None, 1, 1, 1, Activation::None, &[1, 4, 8, 8]);
        let x = Tensor::randn([1, 4, 8, 8], (Kind::Double, Device::Cpu));
        let err = packed.expect("packs").forward(&x).unwrap_err();
        assert!(err.contains("Double"), "{err}");
    }
}
