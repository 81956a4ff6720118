//! Random Faster R-CNN heads whose outputs are spread out, for tests that compare two
//! implementations' rankings: with the default initialisation every score is within ~1e-3
//! of its neighbours and top-k, NMS and output order would hinge on float32 rounding.
//! Shared by `models/tests/onnx_frcnn.rs` and `models/runtime/tests/ort_frcnn.rs`.

use std::collections::HashMap;

use fracture_models::frcnn::FasterRcnn;
use tch::{Device, Kind, Tensor};

/// Rescales layer `name` (`weight [C, ...]`, `bias [C]`) whose outputs were `seen` `[N, C]`:
/// per output channel, the largest deviation from the mean becomes 0.8·`target`, plus an
/// offset in ±0.2·`target`.
fn rescale(vars: &HashMap<String, Tensor>, name: &str, seen: &Tensor, target: f64) {
    let mean = seen.mean_dim(0, false, Kind::Float);
    let dev = (seen - &mean).abs().amax(0, false).clamp_min(1e-12);
    let scale = dev.reciprocal() * (0.8 * target);
    let mut w = vars[&format!("{name}.weight")].shallow_clone();
    let mut b = vars[&format!("{name}.bias")].shallow_clone();
    let mut shape = vec![-1i64];
    shape.extend(vec![1; w.dim() - 1]);
    w.copy_(&(&w * scale.view(shape.as_slice())));
    let offset = (scale.rand_like() * 0.4 - 0.2) * target;
    b.copy_(&((&b - mean) * scale + offset));
}

/// Per-channel rows `[N, C]` of per-level maps `[B, C, H, W]`.
fn channels(ts: &[Tensor]) -> Tensor {
    let rows: Vec<Tensor> =
        ts.iter().map(|t| t.transpose(0, 1).flatten(1, -1).transpose(0, 1)).collect();
    Tensor::cat(&rows, 0)
}

/// Rescales `model`'s last layers so that, on `images`, objectness logits spread over ±8, box
/// deltas over ±1 (RPN), class logits over ±4 and box deltas over ±3 (box head).
pub fn spread_heads(model: &FasterRcnn, vars: &HashMap<String, Tensor>, images: &[Tensor]) {
    tch::no_grad(|| {
        let batch = model.transform.batch(images, Device::Cpu).unwrap();
        let features = model.features(&batch, false);
        let (logits, deltas) = model.rpn.head.forward(&features);
        rescale(vars, "rpn.head.cls_logits", &channels(&logits), 8.0);
        rescale(vars, "rpn.head.bbox_pred", &channels(&deltas), 1.0);
        let (props, _) = model.rpn.forward(&features, &batch, false).unwrap();
        let boxes: Vec<Tensor> = props.iter().map(|p| p.boxes.shallow_clone()).collect();
        let f = model.roi_heads.box_features(&features, &boxes, &batch.image_sizes, false).unwrap();
        let (cls, reg) = model.roi_heads.predict(&f);
        rescale(vars, "roi_heads.box_predictor.cls_score", &cls, 4.0);
        rescale(vars, "roi_heads.box_predictor.bbox_pred", &reg, 3.0);
    });
}
