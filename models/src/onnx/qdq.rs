//! Explicit INT8 quantisation of an exported graph: QuantizeLinear/DequantizeLinear pairs,
//! symmetric int8 with zero point 0 — per output channel for convolution weights (stored as
//! int8 initializers behind a DequantizeLinear on axis 0), per tensor for activations (scale
//! = amax / 127 from calibration). This is the form TensorRT 10 recommends (and 11 requires)
//! and the QDQ format ONNX Runtime fuses into integer convolutions.
//!
//! Every `Conv` is quantised on its activation input and its weight, and — so ONNX Runtime
//! can fuse `DQ → Conv → Q` into one integer kernel — on its output; the output keeps its
//! name (the float Conv result is renamed `<name>/float`), so the graph's consumers and the
//! calibration statistics, both keyed by the original names, are untouched. Convolutions
//! named in [`QdqOptions::keep_float`] (by node name or output name) stay in float: the knob
//! for layers that cost small-object accuracy. [`QdqOptions::only`] quantises just the
//! convolutions it names (the per-layer sensitivity analysis of `fracture calibrate`).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use super::proto::{AttributeProto, AttributeType, GraphProto, ModelProto, NodeProto, TensorProto};

/// ONNX `TensorProto.DataType` codes used here.
const FLOAT: i32 = 1;
const INT8: i32 = 3;

/// The largest int8 magnitude used (symmetric range, as TensorRT quantises).
const QMAX: f32 = 127.0;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QdqError {
    #[error("the model has no graph")]
    NoGraph,
    #[error("Conv `{node}`: its weight `{weight}` is not a float initializer with raw data")]
    Weight { node: String, weight: String },
    #[error("no calibration scale for tensor `{tensor}` (input of Conv `{node}`)")]
    MissingScale { tensor: String, node: String },
    #[error("tensor `{tensor}`: amax {amax} is not a finite non-negative number")]
    BadAmax { tensor: String, amax: f32 },
}

/// What to leave in float.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QdqOptions {
    /// Conv node names or output tensor names kept in float.
    pub keep_float: BTreeSet<String>,
    /// When set, only the convolutions named here (node or output name) are quantised; every
    /// other one stays float (and is listed in [`QdqSummary::kept_float`]). `keep_float` still
    /// wins over it.
    pub only: Option<BTreeSet<String>>,
}

impl QdqOptions {
    /// Whether the Conv node `name` with output `out` stays float.
    fn keeps_float(&self, name: &str, out: &str) -> bool {
        let named = |set: &BTreeSet<String>| set.contains(name) || set.contains(out);
        named(&self.keep_float) || self.only.as_ref().is_some_and(|only| !named(only))
    }
}

/// What [`quantize`] did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QdqSummary {
    /// Output names of the quantised convolutions, in graph order.
    pub quantized: Vec<String>,
    /// Output names of the convolutions kept in float.
    pub kept_float: Vec<String>,
}

/// The per-channel int8 weight and its scales: `w ≈ q · scale[c]` for output channel `c`.
pub fn quantize_weight(w: &[f32], out_channels: usize) -> (Vec<i8>, Vec<f32>) {
    let per = w.len() / out_channels.max(1);
    let mut q = Vec::with_capacity(w.len());
    let mut scales = Vec::with_capacity(out_channels);
    for c in w.chunks(per.max(1)) {
        let amax = c.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        // An all-zero channel quantises to zeros with any scale; 1 keeps it finite.
        let s = if amax > 0.0 { amax / QMAX } else { 1.0 };
        scales.push(s);
        q.extend(c.iter().map(|v| (v / s).round().clamp(-QMAX, QMAX) as i8));
    }
    (q, scales)
}

fn f32_raw(t: &TensorProto) -> Option<Vec<f32>> {
    if t.data_type != Some(FLOAT) {
        return None;
    }
    let raw = t.raw_data.as_ref()?;
    Some(raw.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
}

fn tensor(name: &str, dims: Vec<i64>, data_type: i32, raw: Vec<u8>) -> TensorProto {
    TensorProto {
        dims,
        data_type: Some(data_type),
        name: Some(name.to_string()),
        raw_data: Some(raw),
        ..TensorProto::default()
    }
}

fn f32_tensor(name: &str, dims: Vec<i64>, v: &[f32]) -> TensorProto {
    tensor(name, dims, FLOAT, v.iter().flat_map(|x| x.to_le_bytes()).collect())
}

fn i8_tensor(name: &str, dims: Vec<i64>, v: &[i8]) -> TensorProto {
    tensor(name, dims, INT8, v.iter().map(|&x| x as u8).collect())
}

fn node(op: &str, name: String, inputs: Vec<String>, output: String) -> NodeProto {
    NodeProto {
        input: inputs,
        output: vec![output],
        name: Some(name),
        op_type: Some(op.to_string()),
        ..NodeProto::default()
    }
}

fn axis(v: i64) -> AttributeProto {
    AttributeProto {
        name: Some("axis".into()),
        r#type: Some(AttributeType::Int as i32),
        i: Some(v),
        ..AttributeProto::default()
    }
}

/// Rewrites `model` with Q/DQ around every Conv (see the module doc), activation scales from
/// `amax` (per tensor name, as calibration found them).
pub fn quantize(
    model: &ModelProto,
    amax: &BTreeMap<String, f32>,
    opts: &QdqOptions,
) -> Result<(ModelProto, QdqSummary), QdqError> {
    let graph = model.graph.as_ref().ok_or(QdqError::NoGraph)?;
    let inits: HashMap<&str, &TensorProto> =
        graph.initializer.iter().filter_map(|t| Some((t.name.as_deref()?, t))).collect();
    let mut new_inits: Vec<TensorProto> = Vec::new();
    let mut replaced: HashSet<String> = HashSet::new();
    let mut nodes = Vec::with_capacity(graph.node.len() * 2);
    // Activation tensor -> its dequantised name (one Q/DQ pair per tensor).
    let mut dq_of: HashMap<String, String> = HashMap::new();
    let mut summary = QdqSummary::default();

    let scale_of = |tensor: &str, node: &str| -> Result<f32, QdqError> {
        let a = *amax.get(tensor).ok_or_else(|| QdqError::MissingScale {
            tensor: tensor.to_string(),
            node: node.to_string(),
        })?;
        if !(a.is_finite() && a >= 0.0) {
            return Err(QdqError::BadAmax { tensor: tensor.to_string(), amax: a });
        }
        // A tensor that was always zero quantises exactly with any scale; 1/127 keeps the
        // scale positive, as QuantizeLinear requires.
        Ok(if a > 0.0 { a / QMAX } else { 1.0 / QMAX })
    };
    // Q/DQ nodes for activation `x` with `scale`; returns the nodes and the DQ output name.
    let qdq = |x: &str, dq_out: String, scale: f32, inits: &mut Vec<TensorProto>| {
        let (s, z, q) = (format!("{x}/scale"), format!("{x}/zero_point"), format!("{x}/quantized"));
        inits.push(f32_tensor(&s, vec![], &[scale]));
        inits.push(i8_tensor(&z, vec![], &[0]));
        [
            node(
                "QuantizeLinear",
                format!("{x}/QuantizeLinear"),
                vec![x.into(), s.clone(), z.clone()],
                q.clone(),
            ),
            node("DequantizeLinear", format!("{x}/DequantizeLinear"), vec![q, s, z], dq_out),
        ]
    };

    for n in &graph.node {
        let name = n.name.clone().unwrap_or_default();
        let out = n.output.first().cloned().unwrap_or_default();
        if n.op_type.as_deref() != Some("Conv") {
            nodes.push(n.clone());
            continue;
        }
        if opts.keeps_float(&name, &out) {
            summary.kept_float.push(out);
            nodes.push(n.clone());
            continue;
        }
        let (Some(x), Some(wname)) = (n.input.first(), n.input.get(1)) else {
            nodes.push(n.clone());
            continue;
        };
        let weight_err = || QdqError::Weight { node: name.clone(), weight: wname.clone() };
        let w_t = inits.get(wname.as_str()).ok_or_else(weight_err)?;
        let w = f32_raw(w_t).ok_or_else(weight_err)?;
        let c_out = *w_t.dims.first().ok_or_else(weight_err)?;

        let mut conv = n.clone();
        // The activation input.
        let x_dq = match dq_of.get(x) {
            Some(d) => d.clone(),
            None => {
                let d = format!("{x}/dequantized");
                nodes.extend(qdq(x, d.clone(), scale_of(x, &name)?, &mut new_inits));
                dq_of.insert(x.clone(), d.clone());
                d
            }
        };
        conv.input[0] = x_dq;
        // The weight: int8 initializer + per-channel DequantizeLinear, once per weight (the
        // Faster R-CNN RPN head shares its convolutions across FPN levels).
        let wd = format!("{wname}/dequantized");
        if replaced.insert(wname.clone()) {
            let (q, scales) = quantize_weight(&w, c_out as usize);
            let (wq, ws, wz) = (
                format!("{wname}/quantized"),
                format!("{wname}/scale"),
                format!("{wname}/zero_point"),
            );
            new_inits.push(i8_tensor(&wq, w_t.dims.clone(), &q));
            new_inits.push(f32_tensor(&ws, vec![c_out], &scales));
            new_inits.push(i8_tensor(&wz, vec![c_out], &vec![0; c_out as usize]));
            let mut dq_w = node(
                "DequantizeLinear",
                format!("{wname}/DequantizeLinear"),
                vec![wq, ws, wz],
                wd.clone(),
            );
            dq_w.attribute.push(axis(0));
            nodes.push(dq_w);
        }
        conv.input[1] = wd;
        // The output: float result renamed, Q/DQ back to the original name.
        let y_scale = scale_of(&out, &name)?;
        let y_float = format!("{out}/float");
        conv.output[0] = y_float.clone();
        nodes.push(conv);
        let pair = qdq(&y_float, out.clone(), y_scale, &mut new_inits);
        nodes.extend(pair);
        // A later Conv reading `out` reuses this pair's output directly.
        dq_of.insert(out.clone(), out.clone());
        summary.quantized.push(out);
    }

    let mut initializer: Vec<TensorProto> = graph
        .initializer
        .iter()
        .filter(|t| !t.name.as_ref().is_some_and(|n| replaced.contains(n)))
        .cloned()
        .collect();
    initializer.extend(new_inits);
    let graph = GraphProto { node: nodes, initializer, ..graph.clone() };
    Ok((ModelProto { graph: Some(graph), ..model.clone() }, summary))
}

/// The activation tensors [`quantize`] needs scales for: every Conv's input and output.
pub fn conv_activations(model: &ModelProto) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for n in model.graph.iter().flat_map(|g| &g.node) {
        if n.op_type.as_deref() == Some("Conv") {
            out.extend(n.input.first().cloned());
            out.extend(n.output.first().cloned());
        }
    }
    out
}

/// ONNX `TensorProto.DataType` of uint8.
const UINT8: i32 = 2;

/// Whether the graph quantises activations to int8 (per-tensor zero points of type int8 on
/// QuantizeLinear nodes): what [`quantize`] writes for TensorRT.
pub fn has_int8_activations(model: &ModelProto) -> bool {
    !activation_zero_points(model).is_empty()
}

/// Names of the scalar int8 zero points of QuantizeLinear nodes.
fn activation_zero_points(model: &ModelProto) -> HashSet<String> {
    let Some(g) = model.graph.as_ref() else {
        return HashSet::new();
    };
    let scalar_i8: HashSet<&str> = g
        .initializer
        .iter()
        .filter(|t| t.data_type == Some(INT8) && t.dims.is_empty())
        .filter_map(|t| t.name.as_deref())
        .collect();
    g.node
        .iter()
        .filter(|n| n.op_type.as_deref() == Some("QuantizeLinear"))
        .filter_map(|n| n.input.get(2))
        .filter(|z| scalar_i8.contains(z.as_str()))
        .cloned()
        .collect()
}

/// The same quantisation with activations as uint8 around zero point 128 instead of int8
/// around 0 — the very same grid of values (`round(x/s)` clamped to 256 levels, shifted by
/// 128), so results are identical — because ONNX Runtime's x86 integer convolutions take
/// uint8 activations: with int8 ones it fuses almost nothing and runs slower than float.
/// TensorRT needs the symmetric int8 form, which is what bundles keep.
pub fn to_u8_activations(model: &ModelProto) -> ModelProto {
    let zps = activation_zero_points(model);
    let mut out = model.clone();
    if let Some(g) = out.graph.as_mut() {
        for t in &mut g.initializer {
            if t.name.as_ref().is_some_and(|n| zps.contains(n)) {
                t.data_type = Some(UINT8);
                t.raw_data = Some(vec![128]);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn u8_activations_keep_the_grid_and_the_weights() {
        use crate::onnx::proto::GraphProto;
        // x -> Q/DQ -> Conv(w) with a 2-channel 1x1 weight.
        let g = GraphProto {
            node: vec![NodeProto {
                input: vec!["x".into(), "w".into()],
                output: vec!["y".into()],
                name: Some("c".into()),
                op_type: Some("Conv".into()),
                ..NodeProto::default()
            }],
            initializer: vec![f32_tensor("w", vec![2, 1, 1, 1], &[0.5, -2.0])],
            ..GraphProto::default()
        };
        let model = ModelProto { graph: Some(g), ..ModelProto::default() };
        let amax: BTreeMap<String, f32> = [("x".into(), 1.27), ("y".into(), 2.54)].into();
        let (q, summary) = quantize(&model, &amax, &QdqOptions::default()).unwrap();
        assert_eq!(summary.quantized, vec!["y".to_string()]);
        assert!(has_int8_activations(&q));
        let u = to_u8_activations(&q);
        assert!(!has_int8_activations(&u));
        let inits = &u.graph.as_ref().unwrap().initializer;
        let by = |n: &str| inits.iter().find(|t| t.name.as_deref() == Some(n)).unwrap().clone();
        for zp in ["x/zero_point", "y/float/zero_point"] {
            let t = by(zp);
            assert_eq!((t.data_type, t.raw_data), (Some(UINT8), Some(vec![128])), "{zp}");
        }
        // Scales unchanged (1.27/127 = 0.01); the per-channel weight zero points stay int8.
        let s = by("x/scale").raw_data.unwrap();
        assert_eq!(f32::from_le_bytes([s[0], s[1], s[2], s[3]]), 1.27f32 / 127.0);
        assert_eq!(by("w/zero_point").data_type, Some(INT8));
    }

    #[test]
    fn only_quantises_the_named_convs() {
        use crate::onnx::proto::GraphProto;
        // x -> a -> b -> c, three 1x1 convs.
        let conv = |n: &str, x: &str| NodeProto {
            input: vec![x.into(), format!("{n}.w")],
            output: vec![format!("{n}.out")],
            name: Some(n.into()),
            op_type: Some("Conv".into()),
            ..NodeProto::default()
        };
        let g = GraphProto {
            node: vec![conv("a", "x"), conv("b", "a.out"), conv("c", "b.out")],
            initializer: ["a", "b", "c"]
                .iter()
                .map(|n| f32_tensor(&format!("{n}.w"), vec![1, 1, 1, 1], &[0.5]))
                .collect(),
            ..GraphProto::default()
        };
        let model = ModelProto { graph: Some(g), ..ModelProto::default() };
        let amax: BTreeMap<String, f32> =
            ["x", "a.out", "b.out", "c.out"].iter().map(|n| (n.to_string(), 1.0)).collect();
        // By node name or by output name; the others are listed as float.
        for name in ["b", "b.out"] {
            let opts =
                QdqOptions { only: Some([name.to_string()].into()), ..QdqOptions::default() };
            let (q, summary) = quantize(&model, &amax, &opts).unwrap();
            assert_eq!(summary.quantized, vec!["b.out".to_string()], "{name}");
            assert_eq!(summary.kept_float, vec!["a.out".to_string(), "c.out".to_string()]);
            let g = q.graph.unwrap();
            // Its input gets its own Q/DQ pair (its producer is float), and its output one.
            let qs: Vec<&str> = g
                .node
                .iter()
                .filter(|n| n.op_type.as_deref() == Some("QuantizeLinear"))
                .filter_map(|n| n.input.first().map(String::as_str))
                .collect();
            assert_eq!(qs, vec!["a.out", "b.out/float"]);
        }
        // keep_float wins over only.
        let opts = QdqOptions {
            keep_float: ["b".to_string()].into(),
            only: Some(["b".to_string()].into()),
        };
        let (_, summary) = quantize(&model, &amax, &opts).unwrap();
        assert!(summary.quantized.is_empty());
        assert_eq!(summary.kept_float.len(), 3);
    }

    #[test]
    fn weights_quantise_per_channel_symmetrically() {
        // Two output channels with different ranges.
        let w = [0.5, -1.0, 0.25, 0.0, 4.0, -2.0, 1.0, 0.0];
        let (q, s) = quantize_weight(&w, 2);
        assert_eq!(s, vec![1.0 / 127.0, 4.0 / 127.0]);
        assert_eq!(q, vec![64, -127, 32, 0, 127, -64, 32, 0]);
        for (i, (&qi, &wi)) in q.iter().zip(&w).enumerate() {
            let back = f32::from(qi) * s[i / 4];
            assert!((back - wi).abs() <= s[i / 4] / 2.0 + 1e-7, "{i}: {back} vs {wi}");
        }
        // An all-zero channel stays zero with a finite scale.
        let (q, s) = quantize_weight(&[0.0; 4], 1);
        assert_eq!((q, s), (vec![0; 4], vec![1.0]));
    }
}
