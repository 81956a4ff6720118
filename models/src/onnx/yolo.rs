//! ONNX emission of a [`Yolo`] model, laid out as ultralytics' `yolo export format=onnx`:
//! input `images` `[batch, 3, H, W]` (float32 in `[0, 1]`, batch dynamic, `H×W` fixed at
//! export), output `output0` `[batch, 4 + nc, N]` with `cx, cy, w, h` in input pixels and
//! sigmoid class scores, so TensorRT/DeepStream tooling written for ultralytics reads it.
//!
//! Conv + BN are folded (from the fused copy when the model is fused, else folded from the
//! current statistics), SiLU is `Sigmoid` + `Mul`, blocks are `Split`/`Concat`/`Add`, SPPF is
//! `MaxPool`, C2PSA attention is `Reshape`/`Split`/`MatMul`/`Softmax`/`Transpose`, upsampling
//! is `Resize` nearest (asymmetric, floor: torch's `nearest`), and the Detect head ends in the
//! DFL (softmax over 16 bins, then the fixed 1×1 `Conv` with weights `0..16`) and `dist2bbox`
//! with anchors and strides as constants for the export's `H×W`.
//!
//! Tensor names follow the model's variable paths: the folded conv of `model.2.cv1` writes
//! `model.2.cv1.conv`, its SiLU `model.2.cv1.act`; layer outputs of Upsample/Concat are
//! `model.i`. [`trace_yolo`] returns every tensor's value by that name.

use tch::{Kind, Tensor};

use super::graph::{Dim, GraphBuilder, Trace, Value};
use super::proto::{DataType, ModelProto};
use super::{BATCH, INPUT, OnnxError};
use crate::yolo::Yolo;
use crate::yolo::anchors::{GRID_CELL_OFFSET, make_anchors};
use crate::yolo::attention::{Attention, C2Psa, PsaBlock};
use crate::yolo::blocks::{Bottleneck, C3k, C3k2, Inner, Sppf};
use crate::yolo::conv::Conv;
use crate::yolo::head::STRIDES;
use crate::yolo::model::{Input, Layer};

/// Name of the output tensor (ultralytics' name).
pub const OUTPUT: &str = "output0";
/// Export sizes must be multiples of the largest stride.
pub const SIZE_MULTIPLE: i64 = 32;

/// Exports `model` for `height × width` inputs (multiples of 32) with a dynamic batch.
pub fn export_yolo(model: &Yolo, height: i64, width: i64) -> Result<ModelProto, OnnxError> {
    check_size(height, width)?;
    let mut g = GraphBuilder::new("fracture-yolo11");
    tch::no_grad(|| emit(&mut g, model, height, width, None))?;
    Ok(g.to_model(&metadata(model, height, width)))
}

/// Exports `model` for the spatial size of `images` (`[B, 3, H, W]` float32) and computes every
/// tensor of the graph on `images` with libtorch (see [`Trace`]; `output0` is
/// `[B, 4 + nc, N]`). The calibration crate
/// reads activations by their ONNX names from here.
pub fn trace_yolo(model: &Yolo, images: &Tensor) -> Result<Trace, OnnxError> {
    let s = images.size();
    let (height, width) = match s.as_slice() {
        &[_, 3, h, w] if images.kind() == Kind::Float => (h, w),
        _ => {
            return Err(OnnxError::Example {
                shape: s.clone(),
                kind: images.kind(),
                height: s.get(2).copied().unwrap_or(0),
                width: s.get(3).copied().unwrap_or(0),
            });
        }
    };
    check_size(height, width)?;
    let mut g = GraphBuilder::traced("fracture-yolo11", images.device());
    tch::no_grad(|| emit(&mut g, model, height, width, Some(images)))?;
    g.into_trace(&metadata(model, height, width))
        .ok_or(OnnxError::Trace("the builder was not tracing"))
}

fn check_size(height: i64, width: i64) -> Result<(), OnnxError> {
    let ok = |v: i64| v >= SIZE_MULTIPLE && v % SIZE_MULTIPLE == 0;
    if ok(height) && ok(width) {
        Ok(())
    } else {
        Err(OnnxError::Size { height, width, multiple: SIZE_MULTIPLE })
    }
}

/// ultralytics-style metadata (`stride`, `task`, `imgsz`, `nc`).
fn metadata(model: &Yolo, height: i64, width: i64) -> Vec<(&'static str, String)> {
    vec![
        ("task", "detect".to_string()),
        ("stride", SIZE_MULTIPLE.to_string()),
        ("imgsz", format!("[{height}, {width}]")),
        ("nc", model.num_classes().to_string()),
        ("arch", format!("yolo11{}", model.config().scale)),
    ]
}

/// A graph value with its spatial size `(h, w)`.
#[derive(Debug, Clone)]
struct Map {
    v: Value,
    hw: (i64, i64),
}

fn emit(
    g: &mut GraphBuilder,
    model: &Yolo,
    height: i64,
    width: i64,
    example: Option<&Tensor>,
) -> Result<(), OnnxError> {
    let batch = Dim::Symbolic(BATCH.to_string());
    let x = g.input(
        INPUT,
        &[batch.clone(), Dim::Fixed(3), Dim::Fixed(height), Dim::Fixed(width)],
        example,
    )?;
    let mut outs: Vec<Map> = Vec::with_capacity(model.nodes.len());
    let mut prev = Map { v: x, hw: (height, width) };
    for (i, node) in model.nodes.iter().enumerate() {
        let name = format!("model.{i}");
        let inputs: Vec<Map> = node
            .from
            .iter()
            .map(|inp| match *inp {
                Input::Layer(j) => outs.get(j).cloned().ok_or(OnnxError::Model("bad layer input")),
                Input::Previous => Ok(prev.clone()),
            })
            .collect::<Result<_, _>>()?;
        let first = inputs.first().ok_or(OnnxError::Model("a layer without input"))?;
        let out = match &node.layer {
            Layer::Conv(c) => conv(g, &name, c, first)?,
            Layer::C3k2(m) => c3k2(g, &name, m, first)?,
            Layer::Sppf(m) => sppf(g, &name, m, first)?,
            Layer::C2Psa(m) => c2psa(g, &name, m, first)?,
            Layer::Upsample => Map {
                v: g.resize_nearest(&name, &first.v, 2)?,
                hw: (first.hw.0 * 2, first.hw.1 * 2),
            },
            Layer::Concat => {
                let vs: Vec<&Value> = inputs.iter().map(|m| &m.v).collect();
                Map { v: g.concat(&name, &vs, 1)?, hw: first.hw }
            }
        };
        outs.push(out.clone());
        prev = out;
    }
    let feats: Vec<Map> = model
        .detect_from
        .iter()
        .map(|&j| outs.get(j).cloned().ok_or(OnnxError::Model("bad Detect input")))
        .collect::<Result<_, _>>()?;
    let name = format!("model.{}", model.nodes.len());
    let out = detect(g, &name, model, &feats)?;
    let n: i64 = feats.iter().map(|f| f.hw.0 * f.hw.1).sum();
    g.output(&out, DataType::Float, &[batch, Dim::Fixed(4 + model.num_classes()), Dim::Fixed(n)]);
    Ok(())
}

/// Folded `Conv` (+ SiLU); spatial size from the kernel, stride and padding.
fn conv(g: &mut GraphBuilder, name: &str, c: &Conv, x: &Map) -> Result<Map, OnnxError> {
    let (w, b) = c.folded().ok_or(OnnxError::Model("a batch norm without affine parameters"))?;
    let (w, b) = (w.to_kind(Kind::Float), b.to_kind(Kind::Float));
    let k = w.size()[2];
    let y = g.conv(&format!("{name}.conv"), &x.v, &w, Some(&b), c.stride, c.padding, c.groups)?;
    let y = if c.act { g.silu(&format!("{name}.act"), &y)? } else { y };
    let side = |v: i64| (v + 2 * c.padding - k) / c.stride + 1;
    Ok(Map { v: y, hw: (side(x.hw.0), side(x.hw.1)) })
}

fn bottleneck(g: &mut GraphBuilder, name: &str, m: &Bottleneck, x: &Map) -> Result<Map, OnnxError> {
    let y = conv(g, &format!("{name}.cv1"), &m.cv1, x)?;
    let y = conv(g, &format!("{name}.cv2"), &m.cv2, &y)?;
    if m.add { Ok(Map { v: g.add(&format!("{name}.add"), &x.v, &y.v)?, hw: y.hw }) } else { Ok(y) }
}

/// `cv3(cat(m(cv1(x)), cv2(x)))`.
fn c3k(g: &mut GraphBuilder, name: &str, m: &C3k, x: &Map) -> Result<Map, OnnxError> {
    let mut a = conv(g, &format!("{name}.cv1"), &m.cv1, x)?;
    for (i, b) in m.m.iter().enumerate() {
        a = bottleneck(g, &format!("{name}.m.{i}"), b, &a)?;
    }
    let b = conv(g, &format!("{name}.cv2"), &m.cv2, x)?;
    let cat = Map { v: g.concat(&format!("{name}.cat"), &[&a.v, &b.v], 1)?, hw: a.hw };
    conv(g, &format!("{name}.cv3"), &m.cv3, &cat)
}

/// `cv1` split in halves `[B, c, H, W]`, inner blocks chained on the second, all concatenated.
fn c3k2(g: &mut GraphBuilder, name: &str, m: &C3k2, x: &Map) -> Result<Map, OnnxError> {
    let y = conv(g, &format!("{name}.cv1"), &m.cv1, x)?;
    let c = m.cv1.out_channels() / 2;
    let halves = g.split(&format!("{name}.split"), &y.v, &[c, c], 1)?;
    let mut ys: Vec<Value> = halves.clone();
    let mut cur = Map { v: halves[1].clone(), hw: y.hw };
    for (i, inner) in m.m.iter().enumerate() {
        let q = format!("{name}.m.{i}");
        cur = match inner {
            Inner::Bottleneck(b) => bottleneck(g, &q, b, &cur)?,
            Inner::C3k(k) => c3k(g, &q, k, &cur)?,
        };
        ys.push(cur.v.clone());
    }
    let refs: Vec<&Value> = ys.iter().collect();
    let cat = Map { v: g.concat(&format!("{name}.cat"), &refs, 1)?, hw: y.hw };
    conv(g, &format!("{name}.cv2"), &m.cv2, &cat)
}

/// `cv1`, three chained `k×k` stride-1 max-pools, concatenation of the four maps, `cv2`.
fn sppf(g: &mut GraphBuilder, name: &str, m: &Sppf, x: &Map) -> Result<Map, OnnxError> {
    let y = conv(g, &format!("{name}.cv1"), &m.cv1, x)?;
    let mut ys = vec![y.v.clone()];
    for i in 0..3 {
        let last = ys[ys.len() - 1].clone();
        ys.push(g.max_pool(&format!("{name}.m.{i}"), &last, m.k, 1, m.k / 2)?);
    }
    let refs: Vec<&Value> = ys.iter().collect();
    let cat = Map { v: g.concat(&format!("{name}.cat"), &refs, 1)?, hw: y.hw };
    conv(g, &format!("{name}.cv2"), &m.cv2, &cat)
}

fn c2psa(g: &mut GraphBuilder, name: &str, m: &C2Psa, x: &Map) -> Result<Map, OnnxError> {
    let y = conv(g, &format!("{name}.cv1"), &m.cv1, x)?;
    let halves = g.split(&format!("{name}.split"), &y.v, &[m.c, m.c], 1)?;
    let mut b = Map { v: halves[1].clone(), hw: y.hw };
    for (i, blk) in m.m.iter().enumerate() {
        b = psa_block(g, &format!("{name}.m.{i}"), blk, &b)?;
    }
    let cat = Map { v: g.concat(&format!("{name}.cat"), &[&halves[0], &b.v], 1)?, hw: y.hw };
    conv(g, &format!("{name}.cv2"), &m.cv2, &cat)
}

/// `x + attn(x)`, then `x + ffn(x)`.
fn psa_block(g: &mut GraphBuilder, name: &str, m: &PsaBlock, x: &Map) -> Result<Map, OnnxError> {
    let a = attention(g, &format!("{name}.attn"), &m.attn, x)?;
    let x = Map { v: g.add(&format!("{name}.add_attn"), &x.v, &a.v)?, hw: x.hw };
    let f = conv(g, &format!("{name}.ffn.0"), &m.ffn[0], &x)?;
    let f = conv(g, &format!("{name}.ffn.1"), &m.ffn[1], &f)?;
    Ok(Map { v: g.add(&format!("{name}.add_ffn"), &x.v, &f.v)?, hw: x.hw })
}

/// Multi-head self-attention over the `N = h·w` positions (batch `-1` in every reshape).
fn attention(g: &mut GraphBuilder, name: &str, m: &Attention, x: &Map) -> Result<Map, OnnxError> {
    let (h, w) = x.hw;
    let n = h * w;
    let c = m.proj.out_channels();
    let (nh, kd, hd) = (m.num_heads, m.key_dim, m.head_dim);
    let qkv = conv(g, &format!("{name}.qkv"), &m.qkv, x)?;
    // [B, heads, 2·kd + hd, N] -> q, k [B, heads, kd, N], v [B, heads, hd, N]
    let r = g.reshape(&format!("{name}.qkv.reshape"), &qkv.v, &[-1, nh, 2 * kd + hd, n])?;
    let qkv = g.split(&format!("{name}.qkv.split"), &r, &[kd, kd, hd], 2)?;
    let (q, k, v) = (&qkv[0], &qkv[1], &qkv[2]);
    let scale = g.constant(&format!("{name}.scale"), &Tensor::from(m.scale as f32))?;
    let q = g.mul(&format!("{name}.q_scaled"), q, &scale)?;
    let qt = g.transpose(&format!("{name}.q_t"), &q, &[0, 1, 3, 2])?; // [B, heads, N, kd]
    let logits = g.matmul(&format!("{name}.logits"), &qt, k)?; // [B, heads, N, N]
    let attn = g.softmax(&format!("{name}.softmax"), &logits, -1)?;
    let attn_t = g.transpose(&format!("{name}.softmax_t"), &attn, &[0, 1, 3, 2])?;
    let o = g.matmul(&format!("{name}.weighted"), v, &attn_t)?; // [B, heads, hd, N]
    let o = g.reshape(&format!("{name}.weighted.reshape"), &o, &[-1, c, h, w])?;
    let v4 = Map { v: g.reshape(&format!("{name}.v.reshape"), v, &[-1, c, h, w])?, hw: x.hw };
    let pe = conv(g, &format!("{name}.pe"), &m.pe, &v4)?;
    let y = Map { v: g.add(&format!("{name}.add_pe"), &o, &pe.v)?, hw: x.hw };
    conv(g, &format!("{name}.proj"), &m.proj, &y)
}

/// A plain biased `Conv2d` (the last conv of each head branch).
fn plain(
    g: &mut GraphBuilder,
    name: &str,
    c: &tch::nn::Conv2D,
    x: &Value,
) -> Result<Value, OnnxError> {
    let w = c.ws.to_kind(Kind::Float);
    let b = c.bs.as_ref().map(|b| b.to_kind(Kind::Float));
    let pad = w.size()[2] / 2;
    g.conv(&format!("{name}.conv"), x, &w, b.as_ref(), 1, pad, 1)
}

/// Detect: per level box and class branches, flattened and concatenated along anchors, then
/// DFL, `dist2bbox` (xywh) times stride and sigmoid scores: `output0` `[B, 4 + nc, N]`.
fn detect(
    g: &mut GraphBuilder,
    name: &str,
    model: &Yolo,
    feats: &[Map],
) -> Result<Value, OnnxError> {
    let head = &model.detect;
    let (nc, reg_max) = (head.nc, head.reg_max);
    let mut levels = Vec::with_capacity(feats.len());
    for (i, ((x, bb), cb)) in
        feats.iter().zip(&head.box_branches).zip(&head.cls_branches).enumerate()
    {
        let mut b = x.clone();
        for (j, c) in bb.convs.iter().enumerate() {
            b = conv(g, &format!("{name}.cv2.{i}.{j}"), c, &b)?;
        }
        let b = plain(g, &format!("{name}.cv2.{i}.2"), &bb.out, &b.v)?; // [B, 4·reg_max, h, w]
        let mut c = x.clone();
        for (s, stage) in cb.stages.iter().enumerate() {
            for (j, conv_) in stage.iter().enumerate() {
                c = conv(g, &format!("{name}.cv3.{i}.{s}.{j}"), conv_, &c)?;
            }
        }
        let c = plain(g, &format!("{name}.cv3.{i}.2"), &cb.out, &c.v)?; // [B, nc, h, w]
        let cat = g.concat(&format!("{name}.level{i}"), &[&b, &c], 1)?;
        let (h, w) = x.hw;
        levels.push(g.reshape(
            &format!("{name}.level{i}.flat"),
            &cat,
            &[-1, 4 * reg_max + nc, h * w],
        )?);
    }
    let refs: Vec<&Value> = levels.iter().collect();
    let all = g.concat(&format!("{name}.levels"), &refs, 2)?; // [B, 4·reg_max + nc, N]
    let n: i64 = feats.iter().map(|f| f.hw.0 * f.hw.1).sum();
    let parts = g.split(&format!("{name}.split"), &all, &[4 * reg_max, nc], 1)?;
    // DFL: [B, 4·reg_max, N] -> [B, 4, reg_max, N] -> [B, reg_max, 4, N], softmax over bins,
    // the fixed 1×1 conv with weights 0..reg_max -> [B, 1, 4, N] -> [B, 4, N].
    let d = g.reshape(&format!("{name}.dfl.reshape"), &parts[0], &[-1, 4, reg_max, n])?;
    let d = g.transpose(&format!("{name}.dfl.transpose"), &d, &[0, 2, 1, 3])?;
    let d = g.softmax(&format!("{name}.dfl.softmax"), &d, 1)?;
    let dfl_w = head.dfl.to_kind(Kind::Float);
    let d = g.conv(&format!("{name}.dfl.conv"), &d, &dfl_w, None, 1, 0, 1)?;
    let dist = g.reshape(&format!("{name}.dfl"), &d, &[-1, 4, n])?;
    // Anchors [1, 2, N] (grid units) and strides [1, N] for this export's size.
    let sizes: Vec<(i64, i64)> = feats.iter().map(|f| f.hw).collect();
    let (points, strides) =
        make_anchors(&sizes, &STRIDES, GRID_CELL_OFFSET, (Kind::Float, tch::Device::Cpu));
    let anchors =
        g.constant(&format!("{name}.anchors"), &points.transpose(0, 1).unsqueeze(0).contiguous())?;
    let strides = g.constant(&format!("{name}.strides"), &strides.transpose(0, 1).contiguous())?;
    let lt_rb = g.split(&format!("{name}.dist"), &dist, &[2, 2], 1)?;
    let x1y1 = g.sub(&format!("{name}.x1y1"), &anchors, &lt_rb[0])?;
    let x2y2 = g.add(&format!("{name}.x2y2"), &anchors, &lt_rb[1])?;
    let two = g.constant(&format!("{name}.two"), &Tensor::from(2.0f32))?;
    let sum = g.add(&format!("{name}.xy_sum"), &x1y1, &x2y2)?;
    let cxy = g.div(&format!("{name}.cxy"), &sum, &two)?;
    let wh = g.sub(&format!("{name}.wh"), &x2y2, &x1y1)?;
    let xywh = g.concat(&format!("{name}.xywh"), &[&cxy, &wh], 1)?;
    let dbox = g.mul(&format!("{name}.dbox"), &xywh, &strides)?; // [B, 4, N] pixels
    let scores = g.sigmoid(&format!("{name}.scores"), &parts[1])?; // [B, nc, N]
    g.concat(OUTPUT, &[&dbox, &scores], 1)
}
