//! Explicit INT8 quantisation of an exported graph: QuantizeLinear/DequantizeLinear pairs,
//! symmetric int8 with zero point 0 — per output channel for convolution weights (stored as
//! int8 initializers behind a DequantizeLinear on axis 0), per tensor for activations (scale
//! = amax / 127 from calibration). This is the form TensorRT 10 recommends (and 11 requires)
//! and the QDQ format ONNX Runtime fuses into integer kernels.
//!
//! # Placement
//!
//! Every quantised tensor gets one Q/DQ pair, shared by all its readers, and keeps its name:
//! the float producer's output is renamed `<name>/float` and the pair's DequantizeLinear
//! writes `<name>` again, so the graph's consumers and the calibration statistics, both keyed
//! by the original names, are untouched.
//!
//! * **Conv**: its activation input (a pair of its own unless that tensor is already
//!   quantised), its weight, and its output — so ONNX Runtime fuses `DQ → Conv → Q` into
//!   `QLinearConv`. Convolutions named in [`QdqOptions::keep_float`] (by node name or output
//!   name) stay float: the knob for layers that cost small-object accuracy.
//!   [`QdqOptions::only`] quantises just the convolutions it names (the per-layer sensitivity
//!   analysis of `fracture calibrate`).
//! * **Between quantised tensors**: `Sigmoid`, `Mul`, `Add` and `Concat` whose every input is
//!   an already quantised activation (no constant, no graph input) get a pair on their output
//!   — the SiLU (`Sigmoid` + `Mul`), residual `Add`s and block `Concat`s of the backbone and
//!   neck, which ONNX Runtime runs as `QLinearSigmoid`, `QLinearMul`, `QLinearAdd` and
//!   `QLinearConcat`. The scale is the output's own calibrated one, except `Sigmoid`'s: amax 1,
//!   its exact range (a clipping calibration would cap the SiLU gate). `MaxPool`, `Resize`
//!   and `Split` on a quantised tensor (SPPF, the neck's upsampling, the C3k2/C2PSA halves)
//!   get a pair with *their input's* scale: they only move values, which stay on the input's
//!   grid, so the pair is exact and ONNX Runtime drops it and runs the op on int8 directly.
//! * **Only where int8 is read**: such an op is quantised only when some reader of its output
//!   is a quantised Conv or another quantised op (found backwards from the graph's end), and
//!   never when its output is a graph output. So the integer region ends where the float
//!   code begins: the Detect head's per-level `Concat` (read by a `Reshape`), the DFL softmax,
//!   the anchor arithmetic, the class `Sigmoid` and `output0` stay float (their inputs come
//!   from `Reshape`/`Split`/`Transpose` or constants, which are never quantised), as do C2PSA's
//!   attention core (reshapes, matmuls, a constant scale) and its `add_pe`. A Conv kept float
//!   keeps its SiLU float too (its input is no longer quantised), and an op whose only int8
//!   reader was that Conv falls back to float with it. With `only`, the same rule applies
//!   between the named convolutions, so a single named Conv is quantised alone (its SiLU has
//!   no int8 reader). A non-Conv op can also be kept float by naming it (node or an output)
//!   in `keep_float`.
//!
//! The DFL projection Conv is quantised like any Conv unless kept float (`fracture calibrate`
//! keeps it float).
//!
//! On yolo11s at 416 with ONNX Runtime 1.32 on 2 x86 threads, this placement runs the forward
//! at 0.49× of fp32 (Conv-only placement: 0.65×), within ~7% of onnxruntime's own
//! `quantize_static` QDQ model, which also quantises the head decode.
//!
//! TensorRT (explicit quantisation) reads the same graph: Q/DQ around pointwise ops, `Concat`,
//! pooling and resizing is legal there, each `DQ → op → Q` running in int8 where it has a
//! kernel and in higher precision between the scales otherwise. Its own placement guide puts
//! pairs on Conv inputs and residual-`Add` inputs only, so that Conv + SiLU fuse into one
//! kernel; the pairs on Conv outputs and inside the SiLU, which ONNX Runtime's integer kernels
//! need, cost TensorRT extra rounding and possibly a separate pointwise kernel (not measured
//! here).

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
    #[error("no calibration scale for tensor `{tensor}` (quantised at node `{node}`)")]
    MissingScale { tensor: String, node: String },
    #[error("tensor `{tensor}`: amax {amax} is not a finite non-negative number")]
    BadAmax { tensor: String, amax: f32 },
}

/// What to leave in float.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QdqOptions {
    /// Conv node names or output tensor names kept in float (a non-Conv op named here, by node
    /// or output, stays float too).
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
    /// Output names of the other ops quantised between quantised tensors (SiLU halves,
    /// residual adds, concatenations, pools, upsamplings, splits), in graph order.
    pub quantized_ops: Vec<String>,
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

/// How [`quantize`] treats one node (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Role {
    Float,
    /// A Conv: activation input, weight and output.
    Conv,
    /// A non-Conv op between quantised tensors, its outputs quantised with `OutScale`.
    Op(OutScale),
}

/// Where a quantised non-Conv op's output scale comes from.
#[derive(Debug, Clone, Copy, PartialEq)]
enum OutScale {
    /// Its own calibrated range (`Mul`, `Add`, `Concat`).
    Calibrated,
    /// Its data input's scale, shared initializers and all (`MaxPool`, `Resize`, `Split`:
    /// the values stay on the input's grid, so the pair is exact).
    Input,
    /// `Sigmoid`: its range is (0, 1) whatever the data, so amax 1 — a calibration that clips
    /// (entropy, percentile) would cap the SiLU gate below 1 and bend every large activation.
    Unit,
}

/// The non-Conv ops quantised between quantised tensors, and their output scale.
fn op_kind(op: &str) -> Option<OutScale> {
    match op {
        "Mul" | "Add" | "Concat" => Some(OutScale::Calibrated),
        "MaxPool" | "Resize" | "Split" => Some(OutScale::Input),
        "Sigmoid" => Some(OutScale::Unit),
        _ => None,
    }
}

/// The activation inputs of a non-Conv op: all of them for the pointwise ops and `Concat`,
/// the first for `MaxPool`, `Resize` and `Split` (the rest are sizes and scales).
fn data_inputs(n: &NodeProto) -> &[String] {
    match n.op_type.as_deref() {
        Some("MaxPool" | "Resize" | "Split") => &n.input[..n.input.len().min(1)],
        _ => &n.input,
    }
}

/// Every node's [`Role`] under `opts`.
fn plan(graph: &GraphProto, opts: &QdqOptions) -> Vec<Role> {
    let graph_outputs: HashSet<&str> =
        graph.output.iter().filter_map(|v| v.name.as_deref()).collect();
    let mut roles = vec![Role::Float; graph.node.len()];
    // Forward: the ops whose every activation input is quantised.
    let mut quantised: HashSet<&str> = HashSet::new();
    for (role, n) in roles.iter_mut().zip(&graph.node) {
        let name = n.name.as_deref().unwrap_or_default();
        let Some(out) = n.output.first() else { continue };
        let op = n.op_type.as_deref().unwrap_or_default();
        if op == "Conv" {
            if n.input.len() >= 2 && !opts.keeps_float(name, out) {
                *role = Role::Conv;
                quantised.insert(out);
            }
            continue;
        }
        let Some(scale) = op_kind(op) else { continue };
        let data = data_inputs(n);
        let ok = !data.is_empty()
            && data.iter().all(|x| quantised.contains(x.as_str()))
            && n.output.iter().all(|o| !o.is_empty() && !graph_outputs.contains(o.as_str()))
            && (op != "MaxPool" || n.output.len() == 1)
            && !opts.keep_float.contains(name)
            && !n.output.iter().any(|o| opts.keep_float.contains(o));
        if ok {
            *role = Role::Op(scale);
            quantised.extend(n.output.iter().map(String::as_str));
        }
    }
    // Backward: an op stays quantised only when a quantised Conv or op reads its output.
    let mut readers: HashMap<&str, Vec<usize>> = HashMap::new();
    for (j, n) in graph.node.iter().enumerate() {
        for x in &n.input {
            readers.entry(x.as_str()).or_default().push(j);
        }
    }
    for i in (0..graph.node.len()).rev() {
        if !matches!(roles[i], Role::Op(_)) {
            continue;
        }
        let read_as_int8 = graph.node[i].output.iter().any(|o| {
            readers.get(o.as_str()).is_some_and(|js| {
                js.iter().any(|&j| {
                    let r = &graph.node[j];
                    match roles[j] {
                        Role::Conv => r.input.first() == Some(o),
                        Role::Op(_) => data_inputs(r).contains(o),
                        Role::Float => false,
                    }
                })
            })
        });
        if !read_as_int8 {
            roles[i] = Role::Float;
        }
    }
    roles
}

/// A quantised tensor's dequantised name and the initializers of its scale and zero point.
#[derive(Debug, Clone)]
struct Dq {
    name: String,
    scale: String,
    zero: String,
}

/// `x → QuantizeLinear(s, z) → DequantizeLinear(s, z) → dq_out`.
fn qdq_nodes(x: &str, dq_out: String, s: &str, z: &str) -> [NodeProto; 2] {
    let q = format!("{x}/quantized");
    [
        node(
            "QuantizeLinear",
            format!("{x}/QuantizeLinear"),
            vec![x.into(), s.into(), z.into()],
            q.clone(),
        ),
        node(
            "DequantizeLinear",
            format!("{x}/DequantizeLinear"),
            vec![q, s.into(), z.into()],
            dq_out,
        ),
    ]
}

/// Rewrites `model` with Q/DQ as the module doc describes, activation scales from `amax`
/// (per tensor name, as calibration found them).
pub fn quantize(
    model: &ModelProto,
    amax: &BTreeMap<String, f32>,
    opts: &QdqOptions,
) -> Result<(ModelProto, QdqSummary), QdqError> {
    let graph = model.graph.as_ref().ok_or(QdqError::NoGraph)?;
    let roles = plan(graph, opts);
    let inits: HashMap<&str, &TensorProto> =
        graph.initializer.iter().filter_map(|t| Some((t.name.as_deref()?, t))).collect();
    let mut new_inits: Vec<TensorProto> = Vec::new();
    let mut replaced: HashSet<String> = HashSet::new();
    let mut nodes = Vec::with_capacity(graph.node.len() * 2);
    // Activation tensor -> its dequantised form (one Q/DQ pair per tensor).
    let mut dq_of: HashMap<String, Dq> = HashMap::new();
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
    // A Q/DQ pair quantising float tensor `x` with its own `scale` into `dq_out`.
    let own_pair = |x: &str, dq_out: String, scale: f32, inits: &mut Vec<TensorProto>| {
        let (s, z) = (format!("{x}/scale"), format!("{x}/zero_point"));
        inits.push(f32_tensor(&s, vec![], &[scale]));
        inits.push(i8_tensor(&z, vec![], &[0]));
        let nodes = qdq_nodes(x, dq_out.clone(), &s, &z);
        (nodes, Dq { name: dq_out, scale: s, zero: z })
    };

    for (n, role) in graph.node.iter().zip(&roles) {
        let name = n.name.clone().unwrap_or_default();
        let out = n.output.first().cloned().unwrap_or_default();
        match role {
            Role::Float => {
                if n.op_type.as_deref() == Some("Conv") {
                    summary.kept_float.push(out);
                }
                nodes.push(n.clone());
            }
            Role::Op(scale) => {
                // Its activation inputs are quantised tensors already (their DQ outputs carry
                // the original names): only the outputs change.
                let Some(input_dq) = data_inputs(n).first().and_then(|x| dq_of.get(x)).cloned()
                else {
                    nodes.push(n.clone());
                    continue;
                };
                let mut op = n.clone();
                let mut pairs = Vec::new();
                for (k, o) in n.output.iter().enumerate() {
                    let float = format!("{o}/float");
                    op.output[k] = float.clone();
                    let own = match scale {
                        OutScale::Calibrated => Some(scale_of(o, &name)?),
                        OutScale::Unit => Some(1.0 / QMAX),
                        OutScale::Input => None,
                    };
                    let dq = match own {
                        Some(s) => {
                            let (p, dq) = own_pair(&float, o.clone(), s, &mut new_inits);
                            pairs.extend(p);
                            dq
                        }
                        None => {
                            let (s, z) = (&input_dq.scale, &input_dq.zero);
                            pairs.extend(qdq_nodes(&float, o.clone(), s, z));
                            Dq { name: o.clone(), ..input_dq.clone() }
                        }
                    };
                    dq_of.insert(o.clone(), dq);
                    summary.quantized_ops.push(o.clone());
                }
                nodes.push(op);
                nodes.extend(pairs);
            }
            Role::Conv => {
                let (x, wname) = (&n.input[0], &n.input[1]);
                let weight_err = || QdqError::Weight { node: name.clone(), weight: wname.clone() };
                let w_t = inits.get(wname.as_str()).ok_or_else(weight_err)?;
                let w = f32_raw(w_t).ok_or_else(weight_err)?;
                let c_out = *w_t.dims.first().ok_or_else(weight_err)?;

                let mut conv = n.clone();
                // The activation input.
                let x_dq = match dq_of.get(x) {
                    Some(d) => d.name.clone(),
                    None => {
                        let d = format!("{x}/dequantized");
                        let (p, dq) = own_pair(x, d.clone(), scale_of(x, &name)?, &mut new_inits);
                        nodes.extend(p);
                        dq_of.insert(x.clone(), dq);
                        d
                    }
                };
                conv.input[0] = x_dq;
                // The weight: int8 initializer + per-channel DequantizeLinear, once per weight
                // (the Faster R-CNN RPN head shares its convolutions across FPN levels).
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
                let (p, dq) = own_pair(&y_float, out.clone(), y_scale, &mut new_inits);
                nodes.extend(p);
                // Later readers of `out` use this pair's output directly.
                dq_of.insert(out.clone(), dq);
                summary.quantized.push(out);
            }
        }
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

/// The activation tensors whose scales [`quantize`] reads from `amax` under `opts`: the
/// quantised convolutions' inputs (unless quantised already) and outputs, and the outputs of
/// the `Mul`s, `Add`s and `Concat`s it quantises (`MaxPool`, `Resize` and `Split` reuse their
/// input's scale, `Sigmoid`'s is fixed).
pub fn quantized_activations(model: &ModelProto, opts: &QdqOptions) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let Some(g) = model.graph.as_ref() else {
        return out;
    };
    let mut quantised: HashSet<&str> = HashSet::new();
    for (n, role) in g.node.iter().zip(plan(g, opts)) {
        match role {
            Role::Float => {}
            Role::Conv => {
                let (x, y) = (&n.input[0], &n.output[0]);
                if quantised.insert(x) {
                    out.insert(x.clone());
                }
                quantised.insert(y);
                out.insert(y.clone());
            }
            Role::Op(scale) => {
                for o in &n.output {
                    quantised.insert(o);
                    if scale == OutScale::Calibrated {
                        out.insert(o.clone());
                    }
                }
            }
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

/// The same model with every int8 weight behind a `DequantizeLinear` re-quantised to 7 bits:
/// `q' = round_half_even(q / 2)` (|q'| ≤ 64) with twice the scale, so `q'·2s` stays the
/// nearest point of the coarser grid to `q·s`. This is ONNX Runtime's `reduce_range` for
/// x86 CPUs without VNNI, whose u8×s8 kernels (`vpmaddubsw`) add two products into a
/// saturating int16: with uint8 activations around 128 and weights up to ±127 a pair reaches
/// 2·255·127 = 64770 and clips at 32767, while 7-bit weights keep it at most 2·255·64 = 32640.
/// Measured on an AVX2-only EPYC: a 3×3 convolution of a full-range image with 8-bit weights
/// is off by up to 75 output steps, with 7-bit ones by none. Weights are initializers of
/// rank ≥ 2 (convolution kernels); activations' zero points and scales are untouched.
pub fn to_reduced_range_weights(model: &ModelProto) -> ModelProto {
    let mut out = model.clone();
    let Some(g) = out.graph.as_mut() else {
        return out;
    };
    let mut pairs: HashMap<String, String> = HashMap::new(); // weight -> its scale
    for n in &g.node {
        if n.op_type.as_deref() == Some("DequantizeLinear") && n.input.len() >= 2 {
            pairs.insert(n.input[0].clone(), n.input[1].clone());
        }
    }
    let is_weight = |t: &TensorProto| t.data_type == Some(INT8) && t.dims.len() >= 2;
    let weights: HashMap<String, String> = g
        .initializer
        .iter()
        .filter(|t| is_weight(t))
        .filter_map(|t| t.name.as_ref().and_then(|n| Some((n.clone(), pairs.get(n)?.clone()))))
        .collect();
    let scales: HashSet<String> = weights.values().cloned().collect();
    for t in &mut g.initializer {
        let Some(name) = t.name.as_ref() else { continue };
        if weights.contains_key(name) {
            if let Some(raw) = t.raw_data.as_mut() {
                for b in raw.iter_mut() {
                    let q = f32::from(*b as i8);
                    *b = (q / 2.0).round_ties_even() as i8 as u8;
                }
            }
        } else if scales.contains(name)
            && let Some(v) = f32_raw(t)
        {
            let doubled: Vec<f32> = v.iter().map(|s| 2.0 * s).collect();
            t.raw_data = Some(doubled.iter().flat_map(|x| x.to_le_bytes()).collect());
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
    fn reduced_range_halves_the_weights_and_doubles_their_scales() {
        use crate::onnx::proto::GraphProto;
        let q: Vec<i8> = vec![127, -127, 3, -3, 1, -1, 0, 64];
        let dq = |w: &str, s: &str, z: &str, out: &str| {
            node(
                "DequantizeLinear",
                format!("{out}/dq"),
                vec![w.into(), s.into(), z.into()],
                out.into(),
            )
        };
        let model = ModelProto {
            graph: Some(GraphProto {
                node: vec![dq("w", "ws", "wz", "wd"), dq("xq", "xs", "xz", "xd")],
                initializer: vec![
                    i8_tensor("w", vec![2, 4, 1, 1], &q),
                    f32_tensor("ws", vec![2], &[0.5, 0.25]),
                    i8_tensor("wz", vec![2], &[0, 0]),
                    f32_tensor("xs", vec![], &[0.1]),
                    i8_tensor("xz", vec![], &[0]),
                ],
                ..GraphProto::default()
            }),
            ..ModelProto::default()
        };
        let r = to_reduced_range_weights(&model);
        let init = |name: &str| -> TensorProto {
            let g = r.graph.as_ref().unwrap();
            g.initializer.iter().find(|t| t.name.as_deref() == Some(name)).unwrap().clone()
        };
        let w: Vec<i8> = init("w").raw_data.unwrap().iter().map(|&b| b as i8).collect();
        // 63.5 -> 64 (ties to even), 1.5 -> 2, 0.5 -> 0, 32 exactly.
        assert_eq!(w, vec![64, -64, 2, -2, 0, 0, 0, 32]);
        assert_eq!(f32_raw(&init("ws")).unwrap(), vec![1.0, 0.5]);
        // Every product pair stays inside int16 with full-range uint8 activations.
        assert!(w.iter().all(|&v| 2 * 255 * i32::from(v).abs() <= i32::from(i16::MAX)));
        // The activation's scale and zero point, and the weight's zero points, are untouched.
        assert_eq!(f32_raw(&init("xs")).unwrap(), vec![0.1]);
        assert_eq!(init("wz").raw_data.unwrap(), vec![0, 0]);
        assert_eq!(init("xz").data_type, Some(INT8));
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

    /// A node with outputs `outs`.
    fn op(op: &str, name: &str, inputs: &[&str], outs: &[&str]) -> NodeProto {
        NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outs.iter().map(|s| s.to_string()).collect(),
            name: Some(name.into()),
            op_type: Some(op.into()),
            ..NodeProto::default()
        }
    }

    /// Conv → SiLU → Conv, a residual Add, Split, MaxPool, Resize and Concat into a third
    /// Conv, then a toy head decode (level Concat → Reshape → Sigmoid output, a constant Mul).
    fn block() -> ModelProto {
        use crate::onnx::proto::{GraphProto, ValueInfoProto};
        let g = GraphProto {
            node: vec![
                op("Conv", "a", &["x", "a.w"], &["a.out"]),
                op("Sigmoid", "a.sig", &["a.out"], &["a.s"]),
                op("Mul", "a.act", &["a.out", "a.s"], &["a.m"]),
                op("Conv", "b", &["a.m", "b.w"], &["b.out"]),
                op("Add", "add", &["a.m", "b.out"], &["r"]),
                op("Split", "split", &["r", "halves"], &["r.0", "r.1"]),
                op("MaxPool", "pool", &["r.0"], &["p"]),
                op("Resize", "up", &["p", "", "scales"], &["u"]),
                op("Concat", "cat", &["a.m", "r.1", "u"], &["c"]),
                op("Conv", "d", &["c", "d.w"], &["d.out"]),
                // The head decode: float.
                op("Concat", "head.level", &["d.out", "b.out"], &["head.level"]),
                op("Reshape", "head.flat", &["head.level", "shape"], &["head.flat"]),
                op("Mul", "head.scaled", &["head.flat", "two"], &["head.scaled"]),
                op("Sigmoid", "head.scores", &["head.scaled"], &["output0"]),
            ],
            initializer: vec![
                f32_tensor("a.w", vec![2, 1, 1, 1], &[0.5, -1.0]),
                f32_tensor("b.w", vec![1, 1, 1, 1], &[0.25]),
                f32_tensor("d.w", vec![1, 1, 1, 1], &[2.0]),
                f32_tensor("scales", vec![4], &[1.0, 1.0, 2.0, 2.0]),
                f32_tensor("two", vec![], &[2.0]),
                tensor(
                    "halves",
                    vec![2],
                    7,
                    [1i64, 1].iter().flat_map(|v| v.to_le_bytes()).collect(),
                ),
                tensor(
                    "shape",
                    vec![3],
                    7,
                    [1i64, 2, -1].iter().flat_map(|v| v.to_le_bytes()).collect(),
                ),
            ],
            output: vec![ValueInfoProto {
                name: Some("output0".into()),
                ..ValueInfoProto::default()
            }],
            ..GraphProto::default()
        };
        ModelProto { graph: Some(g), ..ModelProto::default() }
    }

    fn all_amax(model: &ModelProto) -> BTreeMap<String, f32> {
        let g = model.graph.as_ref().unwrap();
        std::iter::once("x".to_string())
            .chain(g.node.iter().flat_map(|n| n.output.clone()))
            .map(|n| (n, 2.54))
            .collect()
    }

    #[test]
    fn pointwise_concat_pool_and_upsample_are_quantised_between_quantised_tensors() {
        let model = block();
        let amax = all_amax(&model);
        let (q, summary) = quantize(&model, &amax, &QdqOptions::default()).unwrap();
        assert_eq!(summary.quantized, ["a.out", "b.out", "d.out"]);
        assert!(summary.kept_float.is_empty());
        assert_eq!(summary.quantized_ops, ["a.s", "a.m", "r", "r.0", "r.1", "p", "u", "c"]);
        let g = q.graph.unwrap();
        let producer: HashMap<&str, &NodeProto> =
            g.node.iter().flat_map(|n| n.output.iter().map(move |o| (o.as_str(), n))).collect();
        let op_of = |t: &str| producer.get(t).and_then(|n| n.op_type.as_deref()).unwrap_or("");
        let inits: HashMap<&str, &TensorProto> =
            g.initializer.iter().map(|t| (t.name.as_deref().unwrap(), t)).collect();
        let readers = |t: &str| g.node.iter().filter(|n| n.input.iter().any(|i| i == t)).count();
        let by_name = |name: &str| g.node.iter().find(|n| n.name.as_deref() == Some(name)).unwrap();

        // Every original tensor keeps its name (written by a DequantizeLinear when quantised).
        for n in &model.graph.as_ref().unwrap().node {
            for o in &n.output {
                assert!(producer.contains_key(o.as_str()), "{o} lost");
            }
        }
        // Each targeted op: DQ on every activation input, its float output quantised and
        // dequantised back to the original name, read by nothing else.
        let own_scale = ["a.sig", "a.act", "add", "cat"];
        for name in own_scale.iter().chain(&["split", "pool", "up"]) {
            let n = by_name(name);
            for x in data_inputs(n) {
                assert_eq!(op_of(x), "DequantizeLinear", "{name}: input {x}");
            }
            let original = model.graph.as_ref().unwrap().node.iter();
            let original = original.clone().find(|m| m.name.as_deref() == Some(*name)).unwrap();
            for (o, orig) in n.output.iter().zip(&original.output) {
                assert_eq!(o, &format!("{orig}/float"));
                assert_eq!(readers(o), 1, "{o}");
                let qn = g.node.iter().find(|m| m.input.first() == Some(o)).unwrap();
                assert_eq!(qn.op_type.as_deref(), Some("QuantizeLinear"));
                let dq = producer[orig.as_str()];
                assert_eq!(dq.op_type.as_deref(), Some("DequantizeLinear"));
                assert_eq!(dq.input[0], qn.output[0]);
                // Own calibrated scale for pointwise ops and Concat; the input's scale (the
                // very same initializers) for Split, MaxPool and Resize.
                let in_dq = producer[data_inputs(n)[0].as_str()];
                if own_scale.contains(name) {
                    assert_eq!(qn.input[1], format!("{o}/scale"));
                    let s = inits[qn.input[1].as_str()].raw_data.clone().unwrap();
                    let s = f32::from_le_bytes([s[0], s[1], s[2], s[3]]);
                    // Sigmoid's range is (0, 1) whatever calibration says (2.54 here).
                    let amax = if *name == "a.sig" { 1.0 } else { 2.54 };
                    assert_eq!(s, amax / QMAX, "{name}");
                } else {
                    assert_eq!(qn.input[1..], in_dq.input[1..], "{name}");
                }
            }
        }
        // One Q/DQ pair per tensor: `a.m` feeds a Conv, an Add and a Concat through one DQ.
        let q_of = |t: &str| {
            g.node
                .iter()
                .filter(|n| n.op_type.as_deref() == Some("QuantizeLinear"))
                .filter(|n| n.input[0] == t)
                .count()
        };
        assert_eq!(q_of("a.m/float"), 1);
        assert_eq!(by_name("b").input[0], "a.m");
        assert_eq!(by_name("d").input[0], "c");
        assert_eq!(q_of("x"), 1);
        // The head decode is untouched: same nodes, same tensors, no pair on its outputs.
        for name in ["head.level", "head.flat", "head.scaled", "head.scores"] {
            let orig = model.graph.as_ref().unwrap().node.iter();
            let orig = orig.clone().find(|m| m.name.as_deref() == Some(name)).unwrap();
            assert_eq!(by_name(name), orig, "{name}");
            assert_eq!(q_of(&orig.output[0]), 0, "{name}");
        }
        assert_eq!(op_of("output0"), "Sigmoid");
        // The scales read from calibration are exactly those `quantized_activations` names.
        let needed = quantized_activations(&model, &QdqOptions::default());
        let expected: BTreeSet<String> =
            ["x", "a.out", "a.m", "b.out", "r", "c", "d.out"].map(String::from).into();
        assert_eq!(needed, expected);
        let only_needed: BTreeMap<String, f32> = amax
            .iter()
            .filter(|(k, _)| needed.contains(*k))
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        assert!(quantize(&model, &only_needed, &QdqOptions::default()).is_ok());
        for t in &needed {
            let mut less = only_needed.clone();
            less.remove(t);
            let e = quantize(&model, &less, &QdqOptions::default()).unwrap_err();
            assert!(matches!(e, QdqError::MissingScale { ref tensor, .. } if tensor == t), "{e}");
        }
    }

    #[test]
    fn a_float_conv_keeps_its_surroundings_float() {
        let model = block();
        let amax = all_amax(&model);
        // `b` float: the residual Add reads a float tensor, so it and everything downstream
        // up to `d` stay float; then the SiLU of `a` has no int8 reader and stays float too.
        let opts = QdqOptions { keep_float: ["b".to_string()].into(), only: None };
        let (q, summary) = quantize(&model, &amax, &opts).unwrap();
        assert_eq!(summary.quantized, ["a.out", "d.out"]);
        assert_eq!(summary.kept_float, ["b.out"]);
        assert!(summary.quantized_ops.is_empty(), "{:?}", summary.quantized_ops);
        let g = q.graph.unwrap();
        let qs: Vec<&str> = g
            .node
            .iter()
            .filter(|n| n.op_type.as_deref() == Some("QuantizeLinear"))
            .map(|n| n.input[0].as_str())
            .collect();
        assert_eq!(qs, ["x", "a.out/float", "c", "d.out/float"]);
        // One Conv alone (the sensitivity analysis): its SiLU has no int8 reader.
        let opts = QdqOptions { only: Some(["a".to_string()].into()), ..QdqOptions::default() };
        let (_, summary) = quantize(&model, &amax, &opts).unwrap();
        assert_eq!(summary.quantized, ["a.out"]);
        assert!(summary.quantized_ops.is_empty());
        // Naming an op keeps it float, and what only it read as int8 (the Add, Split, MaxPool
        // and Resize chain) follows; the SiLU still feeds Conv `b`.
        let opts = QdqOptions { keep_float: ["cat".to_string()].into(), only: None };
        let (_, summary) = quantize(&model, &amax, &opts).unwrap();
        assert_eq!(summary.quantized_ops, ["a.s", "a.m"]);
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
