//! ONNX emission of the Faster R-CNN feature extractor: the ResNet50 body and the FPN, every
//! convolution with its (eval-mode or frozen) batch norm folded in, ReLU as `Relu`, the stem's
//! pooling as `MaxPool`, the top-down path as `Resize` nearest ×2 (the padded input is a
//! multiple of 32, so each level is exactly twice the next) and the pooled P6 as a 1×1
//! `MaxPool` with stride 2. Tensor names follow torchvision's module paths
//! (`backbone.body.layer1.0.conv1`, `backbone.fpn.inner_blocks.3`, ...).

use tch::{Kind, Tensor};

use super::OnnxError;
use super::graph::{GraphBuilder, Value};
use crate::frcnn::FasterRcnn;
use crate::frcnn::backbone::Bottleneck;
use crate::frcnn::conv_norm::{Conv2d, ConvNormAct};
use crate::frcnn::norm::{BN_EPS, Norm2d};

/// `conv` with `norm` folded in: `(weight, bias)` in float32, computed in float64
/// (`scale = γ / sqrt(var + eps)`, `w·scale`, `(b - mean)·scale + β`).
pub(super) fn fold(conv: &Conv2d, norm: Option<&Norm2d>) -> (Tensor, Option<Tensor>) {
    let d = |t: &Tensor| t.detach().to_kind(Kind::Double);
    let w = d(&conv.weight);
    let b = conv.bias.as_ref().map(d);
    let (w, b) = match norm {
        None => (w, b),
        Some(n) => {
            let scale = d(&n.weight) / (d(&n.running_var) + BN_EPS).sqrt();
            let bias = match b {
                Some(b) => (b - d(&n.running_mean)) * &scale + d(&n.bias),
                None => d(&n.bias) - d(&n.running_mean) * &scale,
            };
            (w * scale.view([-1, 1, 1, 1]), Some(bias))
        }
    };
    (w.to_kind(Kind::Float), b.map(|b| b.to_kind(Kind::Float)))
}

/// A folded convolution (+ `Relu`).
fn conv_norm(
    g: &mut GraphBuilder,
    name: &str,
    conv: &Conv2d,
    norm: Option<&Norm2d>,
    relu: bool,
    x: &Value,
) -> Result<Value, OnnxError> {
    let (w, b) = fold(conv, norm);
    let y = g.conv(name, x, &w, b.as_ref(), conv.stride, conv.padding, 1)?;
    if relu { g.relu(&format!("{name}.relu"), &y) } else { Ok(y) }
}

/// A `Conv2dNormActivation` block.
pub(super) fn conv_norm_act(
    g: &mut GraphBuilder,
    name: &str,
    m: &ConvNormAct,
    x: &Value,
) -> Result<Value, OnnxError> {
    conv_norm(g, name, &m.conv, m.norm.as_ref(), m.relu, x)
}

fn bottleneck(
    g: &mut GraphBuilder,
    name: &str,
    m: &Bottleneck,
    x: &Value,
) -> Result<Value, OnnxError> {
    let y = conv_norm(g, &format!("{name}.conv1"), &m.conv1, Some(&m.bn1), true, x)?;
    let y = conv_norm(g, &format!("{name}.conv2"), &m.conv2, Some(&m.bn2), true, &y)?;
    let y = conv_norm(g, &format!("{name}.conv3"), &m.conv3, Some(&m.bn3), false, &y)?;
    let identity = match &m.downsample {
        Some((c, n)) => conv_norm(g, &format!("{name}.downsample"), c, Some(n), false, x)?,
        None => x.clone(),
    };
    let sum = g.add(&format!("{name}.add"), &y, &identity)?;
    g.relu(&format!("{name}.relu"), &sum)
}

/// `[B, 3, Hp, Wp]` (normalised, padded) -> FPN levels P2..P5 and the pool level, each
/// `[B, 256, h, w]`.
pub(super) fn features(
    g: &mut GraphBuilder,
    model: &FasterRcnn,
    x: &Value,
) -> Result<Vec<Value>, OnnxError> {
    let body = &model.body;
    let p = "backbone.body";
    let y = conv_norm(g, &format!("{p}.conv1"), &body.conv1, Some(&body.bn1), true, x)?;
    let mut y = g.max_pool(&format!("{p}.maxpool"), &y, 3, 2, 1)?;
    let mut c = Vec::with_capacity(body.layers.len());
    for (i, stage) in body.layers.iter().enumerate() {
        for (j, block) in stage.iter().enumerate() {
            y = bottleneck(g, &format!("{p}.layer{}.{j}", i + 1), block, &y)?;
        }
        c.push(y.clone());
    }
    let fpn = &model.fpn;
    let n = c.len().min(fpn.inner_blocks.len()).min(fpn.layer_blocks.len());
    if n == 0 {
        return Err(OnnxError::Model("the FPN has no levels"));
    }
    let p = "backbone.fpn";
    let mut last = conv_norm_act(
        g,
        &format!("{p}.inner_blocks.{}", n - 1),
        &fpn.inner_blocks[n - 1],
        &c[n - 1],
    )?;
    let mut results = vec![conv_norm_act(
        g,
        &format!("{p}.layer_blocks.{}", n - 1),
        &fpn.layer_blocks[n - 1],
        &last,
    )?];
    for idx in (0..n - 1).rev() {
        let lateral =
            conv_norm_act(g, &format!("{p}.inner_blocks.{idx}"), &fpn.inner_blocks[idx], &c[idx])?;
        let top_down = g.resize_nearest(&format!("{p}.top_down.{idx}"), &last, 2)?;
        last = g.add(&format!("{p}.merge.{idx}"), &lateral, &top_down)?;
        results.insert(
            0,
            conv_norm_act(g, &format!("{p}.layer_blocks.{idx}"), &fpn.layer_blocks[idx], &last)?,
        );
    }
    let top = results.last().cloned().ok_or(OnnxError::Model("the FPN has no levels"))?;
    results.push(g.max_pool(&format!("{p}.pool"), &top, 1, 2, 0)?);
    Ok(results)
}
