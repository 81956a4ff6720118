//! ONNX emission of a [`FasterRcnn`] (ResNet50-FPN v2) as one graph from resized pixels to
//! final detections, equal to the model's eval forward ([`FasterRcnn::forward_eval`]) on the
//! same resized images.
//!
//! **Contract.**
//! - Input `images`: float32 `[batch, 3, height, width]`, RGB in `[0, 1]`, every dimension
//!   dynamic, **already resized** by the caller with torchvision's rule (the model's
//!   [`crate::frcnn::transform::Transform::resized_size`]: short side `min_size`, long side at
//!   most `max_size`; both are in the metadata). The images of a batch share their size.
//! - In the graph: ImageNet normalisation (the model's mean and std), zero padding at the bottom
//!   and right *after* normalisation up to a multiple of 32 (torchvision's batching), the
//!   backbone and FPN, anchors computed from the feature-map shapes, proposals and detections
//!   clipped to the unpadded `height × width` (read from the input's shape).
//! - RPN (torchvision eval): per level the best `min(pre_nms_top_n_test, anchors)` logits,
//!   decoded (weights 1, `dw`/`dh` clamped at `log(1000 / 16)`), clipped, boxes under
//!   `min_size` dropped, `sigmoid >= score_thresh`, NMS per level, the `post_nms_top_n_test`
//!   best per image ([`super::frcnn_rpn`]).
//! - Box stage: `MultiScaleRoIAlign` 7×7, sampling ratio 2, `LevelMapper` (k0 4, 224,
//!   eps 1e-6, levels 2..5) with `RoiAlign` `output_half_pixel` (torchvision's
//!   `aligned=False`), box head, predictor, softmax, per-class boxes (weights 10, 10, 5, 5)
//!   clipped, background dropped, `score > score_thresh`, sides `>= min_size`, NMS per class,
//!   the `detections_per_img` best ([`super::frcnn_heads`]). Thresholds and counts are the
//!   model's configuration, written as constants.
//! - Outputs, `D = detections_per_img`: `boxes` float32 `[batch, D, 4]` (`x1, y1, x2, y2` in
//!   the input's pixels, i.e. the resized image), `scores` float32 `[batch, D]`, `labels` int64
//!   `[batch, D]` (1-based model classes, 0 is background). Each image's detections come first,
//!   by descending score as torchvision returns them (ties: lower candidate index first);
//!   **padding rows** after them have score 0, label 0 and a zero box, so the detections of an
//!   image are exactly its rows with `score > 0`.
//!
//! Scope: the RoI pooling scales are the levels' nominal `1/4 .. 1/32`. torchvision infers them
//! from the feature and image heights, which gives the same scales whenever the padded height
//! is under √2 × the height (every height from 75 px; the detector's inputs are hundreds of
//! pixels).
//!
//! Conv + BN pairs are folded ([`super::frcnn_backbone::fold`], in float64), so the graph's
//! float32 arithmetic differs from the model's in rounding only.

use super::frcnn_heads::detections;
use super::frcnn_rpn::{ImageInfo, proposals};
use super::graph::{Dim, GraphBuilder, Trace, Value};
use super::proto::{DataType, ModelProto};
use super::{BATCH, INPUT, OnnxError};
use crate::frcnn::predictor::{ANCHOR_SIZES_KEY, anchor_sizes_text};
use crate::frcnn::{ARCH, FasterRcnn};

/// Output names.
pub const FRCNN_OUTPUTS: [&str; 3] = ["boxes", "scores", "labels"];
/// Names of the input's spatial dimensions.
pub const HEIGHT: &str = "height";
pub const WIDTH: &str = "width";

/// Exports `model` (in eval form) with `names` the object classes (background excluded, in
/// label order: label `k` is `names[k - 1]`); an empty `names` writes none.
pub fn export_frcnn(model: &FasterRcnn, names: &[String]) -> Result<ModelProto, OnnxError> {
    if !names.is_empty() && names.len() as i64 != model.num_classes() - 1 {
        return Err(OnnxError::Model("class names must number num_classes - 1"));
    }
    let mut g = GraphBuilder::new("fracture-frcnn-r50-fpn-v2");
    tch::no_grad(|| emit(&mut g, model, None))?;
    Ok(g.to_model(&metadata(model, names)))
}

/// The graph of [`export_frcnn`] with every tensor computed on `images` (`[B, 3, h, w]`
/// float32, resized RGB in 0..1 as the export takes it) by libtorch (see [`Trace`]): what INT8
/// calibration observes, under the ONNX tensor names.
pub fn trace_frcnn(
    model: &FasterRcnn,
    names: &[String],
    images: &tch::Tensor,
) -> Result<Trace, OnnxError> {
    let s = images.size();
    if !matches!(s.as_slice(), &[_, 3, _, _]) || images.kind() != tch::Kind::Float {
        return Err(OnnxError::Example {
            kind: images.kind(),
            height: s.get(2).copied().unwrap_or(0),
            width: s.get(3).copied().unwrap_or(0),
            shape: s,
        });
    }
    let mut g = GraphBuilder::traced("fracture-frcnn-r50-fpn-v2", images.device());
    tch::no_grad(|| emit(&mut g, model, Some(images)))?;
    g.into_trace(&metadata(model, names)).ok_or(OnnxError::Trace("the builder was not tracing"))
}

/// Architecture, classes, the resize rule the caller applies and the output layout.
fn metadata(model: &FasterRcnn, names: &[String]) -> Vec<(&'static str, String)> {
    let t = &model.transform.cfg;
    let r = &model.roi_heads.cfg;
    vec![
        ("task", "detect".to_string()),
        ("arch", ARCH.to_string()),
        ("nc", (model.num_classes() - 1).to_string()),
        ("names", serde_json::to_string(names).unwrap_or_default()),
        ("stride", t.size_divisible.to_string()),
        ("min_size", t.min_size.to_string()),
        ("max_size", t.max_size.to_string()),
        ("detections_per_img", r.detections_per_img.to_string()),
        ("score_thresh", r.score_thresh.to_string()),
        ("nms_thresh", r.nms_thresh.to_string()),
        ("rpn_post_nms_top_n_test", model.rpn.cfg.post_nms_top_n_test.to_string()),
        (ANCHOR_SIZES_KEY, anchor_sizes_text(&model.rpn.cfg.anchor_sizes)),
        ("labels", "1-based (label k is names[k-1]); 0 on padding rows".to_string()),
        ("padding", "rows after an image's detections have score 0".to_string()),
    ]
}

/// Input, normalisation and padding, the two stages, outputs.
fn emit(
    g: &mut GraphBuilder,
    model: &FasterRcnn,
    example: Option<&tch::Tensor>,
) -> Result<(), OnnxError> {
    let batch = Dim::Symbolic(BATCH.to_string());
    let dims = [
        batch.clone(),
        Dim::Fixed(3),
        Dim::Symbolic(HEIGHT.to_string()),
        Dim::Symbolic(WIDTH.to_string()),
    ];
    let x = g.input(INPUT, &dims, example)?;
    let t = &model.transform.cfg;
    let shape = g.shape("transform.shape", &x)?;
    let hw = g.slice("transform.image_hw", &shape, &[2], &[4], &[0])?;
    let f32s = |v: [f64; 3]| v.map(|x| x as f32);
    let mean = tch::Tensor::from_slice(&f32s(t.image_mean)).view([1, 3, 1, 1]);
    let std = tch::Tensor::from_slice(&f32s(t.image_std)).view([1, 3, 1, 1]);
    let mean = g.constant("transform.image_mean", &mean)?;
    let std = g.constant("transform.image_std", &std)?;
    let centred = g.sub("transform.centred", &x, &mean)?;
    let normalised = g.div("transform.normalised", &centred, &std)?;
    // Padded size: ceil(side / div) · div (integer division of positive sizes).
    let div = t.size_divisible;
    let up = g.const_i64("transform.round_up", &[div - 1])?;
    let divv = g.const_i64("transform.size_divisible", &[div])?;
    let s = g.add("transform.hw_up", &hw, &up)?;
    let s = g.div("transform.hw_blocks", &s, &divv)?;
    let hw_padded = g.mul("transform.padded_hw", &s, &divv)?;
    let extra = g.sub("transform.pad_hw", &hw_padded, &hw)?;
    let begins = g.const_i64("transform.pad_begins", &[0, 0, 0, 0, 0, 0])?;
    let pads = g.concat("transform.pads", &[&begins, &extra], 0)?;
    let zero = g.scalar_f32("transform.pad_value", 0.0)?;
    let padded = g.pad("transform.batch", &normalised, &pads, &zero)?;
    // Clip bounds W, H, W, H.
    let whwh = g.const_i64("transform.whwh", &[1, 0, 1, 0])?;
    let bounds = g.gather("transform.bounds_int", &hw, &whwh, 0)?;
    let bounds = g.cast("transform.bounds", &bounds, DataType::Float)?;
    let img = ImageInfo { hw_padded, bounds };

    let features = super::frcnn_backbone::features(g, model, &padded)?;
    let props = proposals(g, model, &features, &img)?;
    let det = detections(g, model, &features, &props, &img)?;
    let d = Dim::Fixed(model.roi_heads.cfg.detections_per_img);
    let outs: [(&Value, DataType, Vec<Dim>); 3] = [
        (&det.boxes, DataType::Float, vec![batch.clone(), d.clone(), Dim::Fixed(4)]),
        (&det.scores, DataType::Float, vec![batch.clone(), d.clone()]),
        (&det.labels, DataType::Int64, vec![batch, d]),
    ];
    for ((v, kind, dims), name) in outs.iter().zip(FRCNN_OUTPUTS) {
        if v.name() != name {
            return Err(OnnxError::Model("an output name is taken inside the graph"));
        }
        g.output(v, *kind, dims);
    }
    Ok(())
}
