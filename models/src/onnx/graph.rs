//! A small ONNX graph builder that can also *trace*: every op appends a node (with a unique
//! output name) and, when the builder was made with [`GraphBuilder::traced`], computes the op's
//! value with libtorch from the traced values of its inputs. The traced values, keyed by their
//! exact ONNX tensor names, let the export be checked against the model in Rust and let
//! calibration observe every activation of the graph it will quantise.
//!
//! Tracing contract: [`GraphBuilder::values`] maps every tensor name of the graph (inputs,
//! initializers, every node output) to its value for the example input; values are computed
//! eagerly in node order and kept until the builder is dropped (or taken with
//! [`GraphBuilder::into_trace`]). An untraced builder only writes the graph.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use prost::Message;
use tch::{Device, Kind, Tensor};

use super::OnnxError;
use super::proto::{
    AttributeProto, AttributeType, DataType, Dimension, DimensionValue, GraphProto, ModelProto,
    NodeProto, OperatorSetIdProto, StringStringEntryProto, TensorProto, TensorShapeProto,
    TypeProto, TypeProtoTensor, ValueInfoProto,
};

/// IR version written: 8, that of ONNX 1.12, the release that introduced opset 17.
pub const IR_VERSION: i64 = 8;
/// Default-domain operator set written.
pub const OPSET: i64 = 17;
/// `producer_name` of exported models.
pub const PRODUCER: &str = "fracture";

/// A tensor of the graph, by its ONNX name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Value(String);

impl Value {
    pub fn name(&self) -> &str {
        &self.0
    }
}

/// A dimension of a graph input or output: fixed, or symbolic (`dim_param`, e.g. `batch`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dim {
    Fixed(i64),
    Symbolic(String),
}

/// One attribute value.
#[derive(Debug, Clone)]
pub(super) enum Attr {
    Int(i64),
    Ints(Vec<i64>),
    Float(f32),
    Str(String),
}

/// Builds one graph; see the module doc for tracing.
#[derive(Debug)]
pub struct GraphBuilder {
    name: String,
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    inputs: Vec<ValueInfoProto>,
    outputs: Vec<ValueInfoProto>,
    used: HashSet<String>,
    /// Traced values by tensor name; `None` when not tracing.
    trace: Option<HashMap<String, Tensor>>,
    /// Where traced constants are placed (the example input's device).
    device: Device,
}

/// A traced export: the model and the value of every tensor of its graph for the example
/// input, keyed by ONNX tensor name (`images`, initializers, every node output, the outputs).
#[derive(Debug)]
pub struct Trace {
    pub model: ModelProto,
    pub values: HashMap<String, Tensor>,
}

impl Trace {
    /// The traced value of the tensor `name`.
    pub fn value(&self, name: &str) -> Option<&Tensor> {
        self.values.get(name)
    }
}

impl GraphBuilder {
    /// A builder that only writes the graph.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            nodes: Vec::new(),
            initializers: Vec::new(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            used: HashSet::new(),
            trace: None,
            device: Device::Cpu,
        }
    }

    /// A builder that also computes every tensor's value; traced constants go on `device`
    /// (the example input's device).
    pub fn traced(name: &str, device: Device) -> Self {
        Self { trace: Some(HashMap::new()), device, ..Self::new(name) }
    }

    pub fn is_traced(&self) -> bool {
        self.trace.is_some()
    }

    /// Traced values by ONNX tensor name (`None` for an untraced builder).
    pub fn values(&self) -> Option<&HashMap<String, Tensor>> {
        self.trace.as_ref()
    }

    /// The model and its traced values (`None` for an untraced builder).
    pub fn into_trace(self, metadata: &[(&str, String)]) -> Option<Trace> {
        let model = self.to_model(metadata);
        self.trace.map(|values| Trace { model, values })
    }

    /// The traced value of `v` (`None` when not tracing).
    pub fn value(&self, v: &Value) -> Option<&Tensor> {
        self.trace.as_ref().and_then(|t| t.get(&v.0))
    }

    /// A name not used yet: `hint` itself, else `hint_1`, `hint_2`, ...
    fn fresh(&mut self, hint: &str) -> String {
        let mut name = hint.to_string();
        let mut k = 0;
        while self.used.contains(&name) {
            k += 1;
            name = format!("{hint}_{k}");
        }
        self.used.insert(name.clone());
        name
    }

    /// Declares a float32 graph input `[dims]`; `example` is its traced value (required when
    /// tracing, ignored otherwise).
    pub fn input(
        &mut self,
        name: &str,
        dims: &[Dim],
        example: Option<&Tensor>,
    ) -> Result<Value, OnnxError> {
        let name = self.fresh(name);
        self.inputs.push(value_info(&name, DataType::Float, dims));
        if let Some(trace) = &mut self.trace {
            let x = example.ok_or(OnnxError::Trace("a traced graph input needs an example"))?;
            trace.insert(name.clone(), x.shallow_clone());
        }
        Ok(Value(name))
    }

    /// Declares `v` a graph output of type `kind` (float32 or int64) with shape `dims`. The
    /// output's name is `v`'s name: produce it with the wanted name hint.
    pub fn output(&mut self, v: &Value, kind: DataType, dims: &[Dim]) {
        self.outputs.push(value_info(&v.0, kind, dims));
    }

    /// A constant initializer holding `t` (float32 or int64; other kinds are refused).
    pub fn constant(&mut self, hint: &str, t: &Tensor) -> Result<Value, OnnxError> {
        let name = self.fresh(hint);
        self.initializers.push(tensor_proto(&name, t)?);
        if let Some(trace) = &mut self.trace {
            trace.insert(name.clone(), t.detach().to_device(self.device));
        }
        Ok(Value(name))
    }

    /// An int64 1-D constant (shapes, split sizes, axes).
    pub fn const_i64(&mut self, hint: &str, v: &[i64]) -> Result<Value, OnnxError> {
        self.constant(hint, &Tensor::from_slice(v))
    }

    /// A float32 1-D constant.
    pub fn const_f32(&mut self, hint: &str, v: &[f32]) -> Result<Value, OnnxError> {
        self.constant(hint, &Tensor::from_slice(v))
    }

    /// Appends a node with `n_out` outputs named from `hint`; `f` computes the outputs from
    /// the inputs' traced values (called only when tracing).
    pub(super) fn node(
        &mut self,
        op: &str,
        hint: &str,
        inputs: &[&Value],
        n_out: usize,
        attrs: Vec<(&str, Attr)>,
        f: impl FnOnce(&[&Tensor]) -> Vec<Tensor>,
    ) -> Result<Vec<Value>, OnnxError> {
        let outs: Vec<String> = if n_out == 1 {
            vec![self.fresh(hint)]
        } else {
            (0..n_out).map(|i| self.fresh(&format!("{hint}.{i}"))).collect()
        };
        if let Some(trace) = &mut self.trace {
            let omitted = Tensor::new(); // stands for an omitted optional input (`""`)
            let xs = inputs
                .iter()
                .map(|v| match v.0.as_str() {
                    "" => Ok(&omitted),
                    n => trace.get(n).ok_or(OnnxError::Trace("input has no traced value")),
                })
                .collect::<Result<Vec<&Tensor>, _>>()?;
            let ys = f(&xs);
            if ys.len() != n_out {
                return Err(OnnxError::Trace("an op traced the wrong number of outputs"));
            }
            for (name, y) in outs.iter().zip(ys) {
                trace.insert(name.clone(), y);
            }
        }
        let node_name = self.fresh(&format!("/{}", outs[0]));
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|v| v.0.clone()).collect(),
            output: outs.clone(),
            name: Some(node_name),
            op_type: Some(op.to_string()),
            attribute: attrs.into_iter().map(|(n, a)| attribute(n, a)).collect(),
            ..Default::default()
        });
        Ok(outs.into_iter().map(Value).collect())
    }

    pub(super) fn node1(
        &mut self,
        op: &str,
        hint: &str,
        inputs: &[&Value],
        attrs: Vec<(&str, Attr)>,
        f: impl FnOnce(&[&Tensor]) -> Tensor,
    ) -> Result<Value, OnnxError> {
        let mut v = self.node(op, hint, inputs, 1, attrs, |xs| vec![f(xs)])?;
        v.pop().ok_or(OnnxError::Trace("a node without output"))
    }

    /// `Conv` with constant weight `[c_out, c_in / groups, k, k]` and optional bias `[c_out]`,
    /// square stride and symmetric padding; the constants are named `hint.weight`/`hint.bias`.
    #[allow(clippy::too_many_arguments)]
    pub fn conv(
        &mut self,
        hint: &str,
        x: &Value,
        weight: &Tensor,
        bias: Option<&Tensor>,
        stride: i64,
        pad: i64,
        groups: i64,
    ) -> Result<Value, OnnxError> {
        let ws = weight.size();
        let (kh, kw) = match ws.as_slice() {
            &[_, _, kh, kw] => (kh, kw),
            _ => return Err(OnnxError::Trace("a conv weight must be 4-D")),
        };
        let w = self.constant(&format!("{hint}.weight"), weight)?;
        let b = bias.map(|b| self.constant(&format!("{hint}.bias"), b)).transpose()?;
        self.conv_shared(hint, x, &w, b.as_ref(), [kh, kw], stride, pad, groups)
    }

    /// `Gemm`: `x` `[N, in]` times the constant `weight` `[out, in]` transposed, plus `bias`
    /// (`nn.Linear`); constants named `hint.weight` / `hint.bias`.
    pub fn gemm(
        &mut self,
        hint: &str,
        x: &Value,
        weight: &Tensor,
        bias: &Tensor,
    ) -> Result<Value, OnnxError> {
        let w = self.constant(&format!("{hint}.weight"), weight)?;
        let b = self.constant(&format!("{hint}.bias"), bias)?;
        self.node1("Gemm", hint, &[x, &w, &b], vec![("transB", Attr::Int(1))], |xs| {
            xs[0].linear(xs[1], Some(xs[2]))
        })
    }

    /// `Conv` with weight (and bias) given as values, so several convolutions share one
    /// initializer (the RPN head runs on every FPN level): `kernel` `[kh, kw]`, square stride,
    /// symmetric padding, `groups`.
    #[allow(clippy::too_many_arguments)]
    pub fn conv_shared(
        &mut self,
        hint: &str,
        x: &Value,
        weight: &Value,
        bias: Option<&Value>,
        kernel: [i64; 2],
        stride: i64,
        pad: i64,
        groups: i64,
    ) -> Result<Value, OnnxError> {
        let mut inputs = vec![x, weight];
        if let Some(b) = bias {
            inputs.push(b);
        }
        let attrs = vec![
            ("dilations", Attr::Ints(vec![1, 1])),
            ("group", Attr::Int(groups)),
            ("kernel_shape", Attr::Ints(kernel.to_vec())),
            ("pads", Attr::Ints(vec![pad, pad, pad, pad])),
            ("strides", Attr::Ints(vec![stride, stride])),
        ];
        self.node1("Conv", hint, &inputs, attrs, |xs| {
            xs[0].conv2d(xs[1], xs.get(2).copied(), stride, pad, 1, groups)
        })
    }

    /// `Sigmoid`.
    pub fn sigmoid(&mut self, hint: &str, x: &Value) -> Result<Value, OnnxError> {
        self.node1("Sigmoid", hint, &[x], vec![], |xs| xs[0].sigmoid())
    }

    /// SiLU as `Mul(x, Sigmoid(x))` (ONNX has no SiLU op; TensorRT fuses the pair).
    pub fn silu(&mut self, hint: &str, x: &Value) -> Result<Value, OnnxError> {
        let s = self.sigmoid(&format!("{hint}.sigmoid"), x)?;
        self.mul(hint, x, &s)
    }

    /// `Add` (broadcasting).
    pub fn add(&mut self, hint: &str, a: &Value, b: &Value) -> Result<Value, OnnxError> {
        self.node1("Add", hint, &[a, b], vec![], |xs| xs[0] + xs[1])
    }

    /// `Sub` (broadcasting).
    pub fn sub(&mut self, hint: &str, a: &Value, b: &Value) -> Result<Value, OnnxError> {
        self.node1("Sub", hint, &[a, b], vec![], |xs| xs[0] - xs[1])
    }

    /// `Mul` (broadcasting).
    pub fn mul(&mut self, hint: &str, a: &Value, b: &Value) -> Result<Value, OnnxError> {
        self.node1("Mul", hint, &[a, b], vec![], |xs| xs[0] * xs[1])
    }

    /// `Div` (broadcasting); on integers ONNX truncates towards zero, as traced here.
    pub fn div(&mut self, hint: &str, a: &Value, b: &Value) -> Result<Value, OnnxError> {
        self.node1("Div", hint, &[a, b], vec![], |xs| {
            if xs[0].is_floating_point() {
                xs[0] / xs[1]
            } else {
                xs[0].divide_tensor_mode(xs[1], "trunc")
            }
        })
    }

    /// `Concat` along `axis`.
    pub fn concat(&mut self, hint: &str, xs: &[&Value], axis: i64) -> Result<Value, OnnxError> {
        self.node1("Concat", hint, xs, vec![("axis", Attr::Int(axis))], |ts| Tensor::cat(ts, axis))
    }

    /// `Split` along `axis` into pieces of `sizes` (opset 13+: sizes as an int64 input).
    pub fn split(
        &mut self,
        hint: &str,
        x: &Value,
        sizes: &[i64],
        axis: i64,
    ) -> Result<Vec<Value>, OnnxError> {
        let s = self.const_i64(&format!("{hint}.sizes"), sizes)?;
        let owned = sizes.to_vec();
        self.node("Split", hint, &[x, &s], sizes.len(), vec![("axis", Attr::Int(axis))], |xs| {
            xs[0].split_with_sizes(owned.as_slice(), axis)
        })
    }

    /// `MaxPool` `k×k`, stride `s`, symmetric padding `pad` (floor mode).
    pub fn max_pool(
        &mut self,
        hint: &str,
        x: &Value,
        k: i64,
        s: i64,
        pad: i64,
    ) -> Result<Value, OnnxError> {
        let attrs = vec![
            ("kernel_shape", Attr::Ints(vec![k, k])),
            ("pads", Attr::Ints(vec![pad, pad, pad, pad])),
            ("strides", Attr::Ints(vec![s, s])),
        ];
        self.node1("MaxPool", hint, &[x], attrs, |xs| {
            xs[0].max_pool2d([k, k], [s, s], [pad, pad], [1, 1], false)
        })
    }

    /// Nearest-neighbour upsampling of `[B, C, H, W]` by an integer `factor`, exactly as
    /// torch's `nearest` (`src = floor(dst / factor)`): `Resize` with a scales input,
    /// `coordinate_transformation_mode = asymmetric`, `nearest_mode = floor`.
    pub fn resize_nearest(
        &mut self,
        hint: &str,
        x: &Value,
        factor: i64,
    ) -> Result<Value, OnnxError> {
        let f = factor as f32;
        let scales = self.const_f32(&format!("{hint}.scales"), &[1.0, 1.0, f, f])?;
        let roi = Value(String::new()); // omitted optional input
        let attrs = vec![
            ("coordinate_transformation_mode", Attr::Str("asymmetric".into())),
            ("mode", Attr::Str("nearest".into())),
            ("nearest_mode", Attr::Str("floor".into())),
        ];
        let fs = factor as f64;
        let node = self.node("Resize", hint, &[x, &roi, &scales], 1, attrs, |xs| {
            // xs[1] is the omitted roi: never read.
            let s = xs[0].size();
            vec![xs[0].upsample_nearest2d([s[2] * factor, s[3] * factor], fs, fs)]
        });
        node.and_then(|mut v| v.pop().ok_or(OnnxError::Trace("a node without output")))
    }

    /// `Reshape` to `shape` (`-1` allowed once, e.g. for the dynamic batch).
    pub fn reshape(&mut self, hint: &str, x: &Value, shape: &[i64]) -> Result<Value, OnnxError> {
        let s = self.const_i64(&format!("{hint}.shape"), shape)?;
        let owned = shape.to_vec();
        self.node1("Reshape", hint, &[x, &s], vec![], |xs| xs[0].reshape(owned.as_slice()))
    }

    /// `Transpose` with permutation `perm`.
    pub fn transpose(&mut self, hint: &str, x: &Value, perm: &[i64]) -> Result<Value, OnnxError> {
        let owned = perm.to_vec();
        self.node1("Transpose", hint, &[x], vec![("perm", Attr::Ints(perm.to_vec()))], |xs| {
            xs[0].permute(owned.as_slice())
        })
    }

    /// `MatMul` (numpy semantics).
    pub fn matmul(&mut self, hint: &str, a: &Value, b: &Value) -> Result<Value, OnnxError> {
        self.node1("MatMul", hint, &[a, b], vec![], |xs| xs[0].matmul(xs[1]))
    }

    /// `Softmax` along `axis` (opset 13+: one axis, not a flattened 2-D view).
    pub fn softmax(&mut self, hint: &str, x: &Value, axis: i64) -> Result<Value, OnnxError> {
        self.node1("Softmax", hint, &[x], vec![("axis", Attr::Int(axis))], |xs| {
            xs[0].softmax(axis, xs[0].kind())
        })
    }

    /// The finished model: IR [`IR_VERSION`], default-domain opset [`OPSET`], producer
    /// [`PRODUCER`], with `metadata` as `metadata_props`.
    pub fn to_model(&self, metadata: &[(&str, String)]) -> ModelProto {
        ModelProto {
            ir_version: Some(IR_VERSION),
            opset_import: vec![OperatorSetIdProto {
                domain: Some(String::new()),
                version: Some(OPSET),
            }],
            producer_name: Some(PRODUCER.to_string()),
            producer_version: Some(env!("CARGO_PKG_VERSION").to_string()),
            graph: Some(GraphProto {
                node: self.nodes.clone(),
                name: Some(self.name.clone()),
                initializer: self.initializers.clone(),
                input: self.inputs.clone(),
                output: self.outputs.clone(),
                ..Default::default()
            }),
            metadata_props: metadata
                .iter()
                .map(|(k, v)| StringStringEntryProto {
                    key: Some(k.to_string()),
                    value: Some(v.clone()),
                })
                .collect(),
            ..Default::default()
        }
    }
}

/// Writes `model` to `path` (protobuf binary).
pub fn save(model: &ModelProto, path: &Path) -> Result<(), OnnxError> {
    std::fs::write(path, model.encode_to_vec())
        .map_err(|source| OnnxError::Io { path: path.to_path_buf(), source })
}

fn attribute(name: &str, a: Attr) -> AttributeProto {
    let mut p = AttributeProto { name: Some(name.to_string()), ..Default::default() };
    let ty = match a {
        Attr::Int(i) => {
            p.i = Some(i);
            AttributeType::Int
        }
        Attr::Ints(v) => {
            p.ints = v;
            AttributeType::Ints
        }
        Attr::Float(f) => {
            p.f = Some(f);
            AttributeType::Float
        }
        Attr::Str(s) => {
            p.s = Some(s.into_bytes());
            AttributeType::String
        }
    };
    p.r#type = Some(ty as i32);
    p
}

fn value_info(name: &str, kind: DataType, dims: &[Dim]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                Dim::Fixed(n) => DimensionValue::DimValue(*n),
                Dim::Symbolic(s) => DimensionValue::DimParam(s.clone()),
            }),
        })
        .collect();
    ValueInfoProto {
        name: Some(name.to_string()),
        r#type: Some(TypeProto {
            tensor_type: Some(TypeProtoTensor {
                elem_type: Some(kind as i32),
                shape: Some(TensorShapeProto { dim }),
            }),
        }),
        doc_string: None,
    }
}

/// A float32 or int64 tensor as a `TensorProto` with little-endian `raw_data`.
fn tensor_proto(name: &str, t: &Tensor) -> Result<TensorProto, OnnxError> {
    let flat = t.detach().to_device(Device::Cpu).contiguous().reshape([-1]);
    let (data_type, raw) = match t.kind() {
        Kind::Float => {
            let v = Vec::<f32>::try_from(&flat).map_err(|e| OnnxError::Tensor(e.to_string()))?;
            (DataType::Float, v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>())
        }
        Kind::Int64 => {
            let v = Vec::<i64>::try_from(&flat).map_err(|e| OnnxError::Tensor(e.to_string()))?;
            (DataType::Int64, v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>())
        }
        k => return Err(OnnxError::Kind { name: name.to_string(), kind: k }),
    };
    Ok(TensorProto {
        dims: t.size(),
        data_type: Some(data_type as i32),
        name: Some(name.to_string()),
        doc_string: None,
        raw_data: Some(raw),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn field_numbers_and_zero_attributes_are_written() {
        let m = ModelProto { ir_version: Some(8), ..Default::default() };
        assert_eq!(m.encode_to_vec(), vec![0x08, 0x08]); // field 1, varint 8
        let a = attribute("axis", Attr::Int(0));
        let bytes = a.encode_to_vec();
        // name (field 1), i = 0 (field 3, still present), type INT (field 20 = 0xa0 0x01).
        assert!(bytes.windows(2).any(|w| w == [0x18, 0x00]), "{bytes:?}");
        assert!(bytes.windows(3).any(|w| w == [0xa0, 0x01, 0x02]), "{bytes:?}");
    }

    #[test]
    fn names_are_unique_and_values_traced() {
        let x = Tensor::from_slice(&[-1.0f32, 0.0, 2.0]).view([1, 3]);
        let mut g = GraphBuilder::traced("t", Device::Cpu);
        let i = g.input("images", &[Dim::Symbolic("batch".into()), Dim::Fixed(3)], Some(&x));
        let i = i.unwrap();
        let a = g.silu("act", &i).unwrap();
        let b = g.silu("act", &a).unwrap();
        assert_eq!((a.name(), b.name()), ("act", "act_1"));
        let want = x.silu().silu();
        let got = g.value(&b).unwrap();
        assert!((got - want).abs().max().double_value(&[]) < 1e-6);
        let model = g.to_model(&[]);
        let graph = model.graph.as_ref().unwrap();
        assert_eq!(graph.node.len(), 4); // Sigmoid, Mul, Sigmoid, Mul
        let decoded = ModelProto::decode(model.encode_to_vec().as_slice()).unwrap();
        assert_eq!(decoded, model);
        let mut untraced = GraphBuilder::new("t");
        assert!(untraced.input("images", &[Dim::Fixed(3)], None).is_ok());
        assert!(untraced.values().is_none());
    }
}
