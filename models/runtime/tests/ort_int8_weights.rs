//! INT8 convolutions in ONNX Runtime against exact integer arithmetic, with the bundle's 8-bit
//! weights and with the 7-bit ones `Int8Weights::Reduced` loads.
//!
//! The case is the worst one for x86 kernels without VNNI: a full-range image (uint8 values
//! 128..255 around zero point 128) through a 3×3 stem whose weights are all large (|q| ≥ 90 of
//! 127, random signs). The reference sums `x_q · w_q` in int32 and rounds `sum · s_x · s_w /
//! s_y` once, which is what the graph means. ONNX Runtime may differ from it by one output
//! step (its requantisation rounds in float32); a saturated int16 pair sum is off by tens.
//! 1. 7-bit weights agree within one step on every CPU;
//! 2. 8-bit weights agree within one step exactly where [`u8s8_saturates`] says the CPU does
//!    not saturate, and are off by more where it says it does — so the automatic choice
//!    matches what this CPU really does;
//! 3. `auto` picks the 7-bit form exactly where the CPU saturates.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;

use fracture_models::onnx::proto::{DataType, ModelProto};
use fracture_models::onnx::qdq::{QdqOptions, quantize, quantize_weight};
use fracture_models::onnx::{Dim, GraphBuilder};
use fracture_runtime::ort_library::u8s8_saturates;
use fracture_runtime::ort_model::OutputData;
use fracture_runtime::{Int8Weights, OrtModel, OrtOptions};
use tch::Tensor;

const SIDE: i64 = 24;
const C_OUT: i64 = 8;
/// The output's calibrated range: scale `OUT_AMAX / 127`.
const OUT_AMAX: f32 = 40.0;

/// A deterministic stream in `[0, 1)` (xorshift), so the case needs no RNG crate.
fn stream(seed: u64) -> impl FnMut() -> f32 {
    let mut s = seed;
    move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 40) as f32 / (1u64 << 24) as f32
    }
}

/// The float weights `[C_OUT, 3, 3, 3]`: magnitudes 0.7..1.0 of each channel's largest.
fn weights() -> Vec<f32> {
    let mut r = stream(0x9e37_79b9_7f4a_7c15);
    (0..C_OUT * 27)
        .map(|i| {
            let m = if i % 27 == 0 { 1.0 } else { 0.7 + 0.3 * r() };
            if r() < 0.5 { -m } else { m }
        })
        .collect()
}

/// A bright gray image `[1, 3, SIDE, SIDE]` (three equal channels, values 0.6..1.0).
fn image() -> Vec<f32> {
    let mut r = stream(42);
    let plane: Vec<f32> = (0..SIDE * SIDE).map(|_| 0.6 + 0.4 * r()).collect();
    plane.iter().chain(&plane).chain(&plane).copied().collect()
}

/// The stem quantised as bundles are: input amax 1 (scale 1/127), per-channel weights.
fn int8_stem() -> ModelProto {
    let mut g = GraphBuilder::new("stem");
    let dims = [Dim::Fixed(1), Dim::Fixed(3), Dim::Fixed(SIDE), Dim::Fixed(SIDE)];
    let x = g.input("images", &dims, None).unwrap();
    let w = Tensor::from_slice(&weights()).view([C_OUT, 3, 3, 3]);
    let y = g.conv("stem", &x, &w, None, 1, 0, 1).unwrap();
    assert_eq!(y.name(), "stem", "the output keeps its hint as name");
    let out = [Dim::Fixed(1), Dim::Fixed(C_OUT), Dim::Fixed(SIDE - 2), Dim::Fixed(SIDE - 2)];
    g.output(&y, DataType::Float, &out);
    let float = g.to_model(&[]);
    let amax = BTreeMap::from([(x.name().to_string(), 1.0), (y.name().to_string(), OUT_AMAX)]);
    let (model, summary) = quantize(&float, &amax, &QdqOptions::default()).unwrap();
    assert_eq!(summary.quantized.len(), 1, "the stem is quantised");
    model
}

/// What the Q/DQ graph means, in exact integers, for weights `w_q` with scales `w_s`: output
/// values on the output's grid, `[C_OUT, SIDE-2, SIDE-2]` flat.
fn reference(w_q: &[i8], w_s: &[f32]) -> Vec<f32> {
    let x = image();
    let x_s = 1.0f32 / 127.0;
    let x_q: Vec<i32> = x.iter().map(|v| (v / x_s).round().clamp(-127.0, 127.0) as i32).collect();
    let y_s = OUT_AMAX / 127.0;
    let side = SIDE as usize;
    let o = side - 2;
    let mut out = Vec::with_capacity(C_OUT as usize * o * o);
    for c in 0..C_OUT as usize {
        for oy in 0..o {
            for ox in 0..o {
                let mut acc = 0i32;
                for ci in 0..3 {
                    for ky in 0..3 {
                        for kx in 0..3 {
                            let xv = x_q[ci * side * side + (oy + ky) * side + ox + kx];
                            acc += xv * i32::from(w_q[((c * 3 + ci) * 3 + ky) * 3 + kx]);
                        }
                    }
                }
                let y = f64::from(acc) * f64::from(x_s) * f64::from(w_s[c]);
                let q = (y / f64::from(y_s)).round().clamp(-128.0, 127.0);
                out.push((q * f64::from(y_s)) as f32);
            }
        }
    }
    out
}

/// The stem run by ONNX Runtime with `int8_weights`.
fn run(model: &ModelProto, int8_weights: Int8Weights) -> Vec<f32> {
    let opts = OrtOptions { threads: Some(1), int8_weights, ..OrtOptions::default() };
    let ort = OrtModel::from_proto(model, Path::new("stem.int8.onnx"), &opts).unwrap();
    let out = ort.run(&image(), 1, &["stem"]).unwrap();
    match &out[0].data {
        OutputData::F32(v) => v.clone(),
        other => panic!("a float output, not {other:?}"),
    }
}

/// The largest difference in output steps.
fn steps_apart(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let y_s = OUT_AMAX / 127.0;
    a.iter().zip(b).map(|(x, y)| ((x - y) / y_s).abs().round()).fold(0.0, f32::max)
}

#[test]
fn seven_bit_weights_never_saturate_and_auto_uses_them_where_eight_bit_ones_do() {
    let model = int8_stem();
    let (full_q, full_s) = quantize_weight(&weights(), C_OUT as usize);
    assert!(full_q.iter().all(|q| q.unsigned_abs() >= 88), "large weights, the hard case");
    let reduced_q: Vec<i8> =
        full_q.iter().map(|&q| (f32::from(q) / 2.0).round_ties_even() as i8).collect();
    let reduced_s: Vec<f32> = full_s.iter().map(|s| 2.0 * s).collect();

    let reduced =
        steps_apart(&run(&model, Int8Weights::Reduced), &reference(&reduced_q, &reduced_s));
    let full = steps_apart(&run(&model, Int8Weights::Full), &reference(&full_q, &full_s));
    let saturates = u8s8_saturates();
    eprintln!(
        "this CPU saturates u8×s8 pairs: {saturates}; largest error in output steps: \
         7-bit weights {reduced}, 8-bit weights {full}"
    );
    assert!(reduced <= 1.0, "7-bit weights are off by {reduced} steps");
    if saturates {
        assert!(full > 1.0, "8-bit weights are exact here ({full} steps): the CPU check is wrong");
    } else {
        assert!(full <= 1.0, "8-bit weights are off by {full} steps on a CPU said not to saturate");
    }
    assert_eq!(Int8Weights::Auto.reduced(), saturates);
    assert_eq!(Int8Weights::default(), Int8Weights::Auto);
    assert_eq!("reduced".parse::<Int8Weights>(), Ok(Int8Weights::Reduced));
    assert!("7bit".parse::<Int8Weights>().unwrap_err().contains("auto|full|reduced"));
}
