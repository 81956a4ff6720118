//! An FP16 copy of an exported graph, to measure what half precision (TensorRT's `--fp16`)
//! costs in accuracy: float initializers become float16, the float `images` input is cast to
//! float16 on entry and every float output back to float32 on exit, so the graph keeps its
//! float32 interface. Initializers that ONNX requires in float32 (Resize's `roi` and `scales`)
//! stay float32. ONNX Runtime's CPU provider runs float16 nodes it has no kernel for through
//! inserted casts, so every intermediate tensor is still rounded to float16 — the storage
//! precision of an FP16 engine (accumulation precision differs by hardware).

use std::collections::HashSet;

use half::f16;

use super::proto::{AttributeProto, AttributeType, ModelProto, NodeProto, TypeProto};

const FLOAT: i32 = 1;
const FLOAT16: i32 = 10;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Fp16Error {
    #[error("the model has no graph")]
    NoGraph,
    #[error("initializer `{0}` is float32 without raw data")]
    NoRawData(String),
}

fn cast(name: String, input: String, output: String, to: i32) -> NodeProto {
    NodeProto {
        input: vec![input],
        output: vec![output],
        name: Some(name),
        op_type: Some("Cast".into()),
        attribute: vec![AttributeProto {
            name: Some("to".into()),
            r#type: Some(AttributeType::Int as i32),
            i: Some(i64::from(to)),
            ..AttributeProto::default()
        }],
        ..NodeProto::default()
    }
}

fn is_float(t: &Option<TypeProto>) -> bool {
    t.as_ref().and_then(|t| t.tensor_type.as_ref()).and_then(|t| t.elem_type) == Some(FLOAT)
}

fn set_half(t: &mut Option<TypeProto>) {
    if let Some(tt) = t.as_mut().and_then(|t| t.tensor_type.as_mut())
        && tt.elem_type == Some(FLOAT)
    {
        tt.elem_type = Some(FLOAT16);
    }
}

/// `model` with float16 weights and activations and a float32 interface.
pub fn to_fp16(model: &ModelProto) -> Result<ModelProto, Fp16Error> {
    let mut graph = model.graph.clone().ok_or(Fp16Error::NoGraph)?;
    // Inputs ONNX types as float32 whatever the data: Resize's roi (1) and scales (2).
    let keep: HashSet<String> = graph
        .node
        .iter()
        .filter(|n| n.op_type.as_deref() == Some("Resize"))
        .flat_map(|n| n.input.iter().skip(1).cloned())
        .collect();
    for t in &mut graph.initializer {
        let name = t.name.clone().unwrap_or_default();
        if t.data_type != Some(FLOAT) || keep.contains(&name) {
            continue;
        }
        let raw = t.raw_data.as_ref().ok_or_else(|| Fp16Error::NoRawData(name.clone()))?;
        let half: Vec<u8> = raw
            .chunks_exact(4)
            .flat_map(|b| f16::from_f32(f32::from_le_bytes([b[0], b[1], b[2], b[3]])).to_le_bytes())
            .collect();
        t.raw_data = Some(half);
        t.data_type = Some(FLOAT16);
    }
    for v in &mut graph.value_info {
        set_half(&mut v.r#type);
    }
    let mut nodes = Vec::with_capacity(graph.node.len() + 4);
    // Float inputs: cast on entry, consumers read the float16 copy.
    let mut renamed: Vec<(String, String)> = Vec::new();
    for input in graph.input.iter().filter(|i| is_float(&i.r#type)) {
        let name = input.name.clone().unwrap_or_default();
        let half = format!("{name}/fp16");
        nodes.push(cast(format!("{name}/Cast"), name.clone(), half.clone(), FLOAT16));
        renamed.push((name, half));
    }
    for mut n in graph.node.drain(..) {
        for i in &mut n.input {
            if let Some((_, h)) = renamed.iter().find(|(f, _)| f == i) {
                *i = h.clone();
            }
        }
        nodes.push(n);
    }
    // Float outputs: the producer writes a float16 tensor, a cast restores the float32 name.
    for output in graph.output.iter().filter(|o| is_float(&o.r#type)) {
        let name = output.name.clone().unwrap_or_default();
        let half = format!("{name}/fp16");
        for n in &mut nodes {
            for o in &mut n.output {
                if *o == name {
                    *o = half.clone();
                }
            }
            for i in &mut n.input {
                if *i == name {
                    *i = half.clone();
                }
            }
        }
        nodes.push(cast(format!("{name}/Cast"), half, name, FLOAT));
    }
    graph.node = nodes;
    Ok(ModelProto { graph: Some(graph), ..model.clone() })
}
