//! ONNX emission of the region proposal network as torchvision runs it in eval: the shared
//! `RPNHead` on every FPN level (one set of initializers), anchors computed in the graph from
//! each level's shape and the padded input size (torchvision's integer strides, cell anchors
//! as constants), then per image and level the `pre_nms_top_n` best logits (`TopK` of
//! `min(pre_nms_top_n, anchors)`), decoding, clipping, the small-box and score filters, NMS per
//! level (`NonMaxSuppression` per level), and the `post_nms_top_n` best survivors by score.
//!
//! Variable counts become a fixed `[B, P]` layout (`P = min(post_nms_top_n, candidates)`) with
//! a validity mask: filtered-out candidates carry the score `-1` (below every sigmoid), so the
//! final `TopK` puts the real proposals first, in torchvision's order (descending score, ties
//! by candidate index), and the mask is `score > -0.5`.
//!
//! Also the box arithmetic both stages share: [`decode`] (torchvision's `BoxCoder.decode`
//! operation for operation), [`clip`] and [`big_enough`].

use tch::Tensor;

use super::OnnxError;
use super::graph::{GraphBuilder, Value};
use crate::frcnn::FasterRcnn;
use crate::frcnn::box_coder::BoxCoder;

/// Score of a candidate that must not be selected (sigmoids and softmaxes are `>= 0`).
pub(super) const DROPPED: f32 = -1.0;
/// Threshold separating [`DROPPED`] from real scores.
pub(super) const DROPPED_BELOW: f32 = -0.5;

/// Graph values describing the input image, shared by both stages.
#[derive(Debug, Clone)]
pub(super) struct ImageInfo {
    /// int64 `[2]`: padded to the size multiple.
    pub hw_padded: Value,
    /// float32 `[4]`: `W, H, W, H`, the clip bounds of `x1, y1, x2, y2`.
    pub bounds: Value,
}

/// Proposals of every image of the batch.
#[derive(Debug, Clone)]
pub(super) struct Proposals {
    /// `[B, P, 4]`, best first; rows past an image's proposals are placeholders.
    pub boxes: Value,
    /// `[B, P]` bool: real proposals.
    pub valid: Value,
    /// int64 `[2]`: `B, P`.
    pub shape: Value,
}

/// torchvision's `BoxCoder.decode_single`: `codes` `[..., 4]` (`dx, dy, dw, dh`) applied to
/// `refs` `[..., 4]` (broadcast against the codes): boxes `[..., 4]`, same operation order.
pub(super) fn decode(
    g: &mut GraphBuilder,
    name: &str,
    codes: &Value,
    refs: &Value,
    coder: &BoxCoder,
) -> Result<Value, OnnxError> {
    let r = g.split(&format!("{name}.refs"), refs, &[1, 1, 1, 1], -1)?;
    let c = g.split(&format!("{name}.codes"), codes, &[1, 1, 1, 1], -1)?;
    let half = g.scalar_f32(&format!("{name}.half"), 0.5)?;
    let widths = g.sub(&format!("{name}.widths"), &r[2], &r[0])?;
    let heights = g.sub(&format!("{name}.heights"), &r[3], &r[1])?;
    let hw_ = g.mul(&format!("{name}.half_widths"), &widths, &half)?;
    let ctr_x = g.add(&format!("{name}.ctr_x"), &r[0], &hw_)?;
    let hh_ = g.mul(&format!("{name}.half_heights"), &heights, &half)?;
    let ctr_y = g.add(&format!("{name}.ctr_y"), &r[1], &hh_)?;
    let clip = g.scalar_f32(&format!("{name}.xform_clip"), coder.bbox_xform_clip as f32)?;
    let mut d = Vec::with_capacity(4);
    for (i, (&wt, tag)) in coder.weights.iter().zip(["dx", "dy", "dw", "dh"]).enumerate() {
        // x / 1 is x exactly: skip the division the RPN's unit weights would do.
        let v = if wt == 1.0 {
            c[i].clone()
        } else {
            let w = g.scalar_f32(&format!("{name}.w{tag}"), wt as f32)?;
            g.div(&format!("{name}.{tag}"), &c[i], &w)?
        };
        d.push(if i >= 2 { g.min(&format!("{name}.{tag}_clamped"), &v, &clip)? } else { v });
    }
    let px = g.mul(&format!("{name}.dx_w"), &d[0], &widths)?;
    let pred_ctr_x = g.add(&format!("{name}.pred_ctr_x"), &px, &ctr_x)?;
    let py = g.mul(&format!("{name}.dy_h"), &d[1], &heights)?;
    let pred_ctr_y = g.add(&format!("{name}.pred_ctr_y"), &py, &ctr_y)?;
    let ew = g.exp(&format!("{name}.exp_dw"), &d[2])?;
    let pred_w = g.mul(&format!("{name}.pred_w"), &ew, &widths)?;
    let eh = g.exp(&format!("{name}.exp_dh"), &d[3])?;
    let pred_h = g.mul(&format!("{name}.pred_h"), &eh, &heights)?;
    let half_w = g.mul(&format!("{name}.pred_half_w"), &pred_w, &half)?;
    let half_h = g.mul(&format!("{name}.pred_half_h"), &pred_h, &half)?;
    let x1 = g.sub(&format!("{name}.x1"), &pred_ctr_x, &half_w)?;
    let y1 = g.sub(&format!("{name}.y1"), &pred_ctr_y, &half_h)?;
    let x2 = g.add(&format!("{name}.x2"), &pred_ctr_x, &half_w)?;
    let y2 = g.add(&format!("{name}.y2"), &pred_ctr_y, &half_h)?;
    g.concat(name, &[&x1, &y1, &x2, &y2], -1)
}

/// Boxes `[..., 4]` clamped into the input: x into `[0, W]`, y into `[0, H]`.
pub(super) fn clip(
    g: &mut GraphBuilder,
    name: &str,
    boxes: &Value,
    img: &ImageInfo,
) -> Result<Value, OnnxError> {
    let zero = g.scalar_f32(&format!("{name}.zero"), 0.0)?;
    let lo = g.max(&format!("{name}.lo"), boxes, &zero)?;
    g.min(name, &lo, &img.bounds)
}

/// Bool `[...]` for boxes `[..., 4]` whose width and height are both `>= min_size`.
pub(super) fn big_enough(
    g: &mut GraphBuilder,
    name: &str,
    boxes: &Value,
    min_size: f64,
) -> Result<Value, OnnxError> {
    let b = g.split(&format!("{name}.coords"), boxes, &[1, 1, 1, 1], -1)?;
    let ws = g.sub(&format!("{name}.ws"), &b[2], &b[0])?;
    let hs = g.sub(&format!("{name}.hs"), &b[3], &b[1])?;
    let m = g.scalar_f32(&format!("{name}.min_size"), min_size as f32)?;
    let w_ok = g.greater_or_equal(&format!("{name}.w_ok"), &ws, &m)?;
    let h_ok = g.greater_or_equal(&format!("{name}.h_ok"), &hs, &m)?;
    let ok = g.and(&format!("{name}.ok"), &w_ok, &h_ok)?;
    g.squeeze(name, &ok, &[-1])
}

/// Anchors `[h·w·A, 4]` of one level (`feature` `[B, C, h, w]`), ordered (y, x, anchor):
/// cell anchors shifted by `(x, y)·stride`, `stride = padded size / grid size` (integer).
fn anchors(
    g: &mut GraphBuilder,
    name: &str,
    feature: &Value,
    cell: &Tensor,
    img: &ImageInfo,
) -> Result<Value, OnnxError> {
    let fshape = g.shape(&format!("{name}.feature_shape"), feature)?;
    let grid = g.slice(&format!("{name}.grid"), &fshape, &[2], &[4], &[0])?; // [h, w]
    let stride = g.div(&format!("{name}.stride"), &img.hw_padded, &grid)?; // [sy, sx]
    let zero = g.scalar_i64(&format!("{name}.zero"), 0)?;
    let one = g.scalar_i64(&format!("{name}.one"), 1)?;
    let mut shifts = Vec::with_capacity(2);
    for (axis, tag) in [(0, "y"), (1, "x")] {
        let n = g.dim(&format!("{name}.grid_{tag}"), &grid, axis)?;
        let n = g.squeeze(&format!("{name}.grid_{tag}_scalar"), &n, &[0])?;
        let r = g.range(&format!("{name}.range_{tag}"), &zero, &n, &one)?;
        let s = g.dim(&format!("{name}.stride_{tag}"), &stride, axis)?;
        let sh = g.mul(&format!("{name}.shifts_{tag}"), &r, &s)?;
        // y along rows ([h, 1]), x along columns ([1, w]), both expanded to [h, w, 1].
        let sh = g.unsqueeze(&format!("{name}.shifts_{tag}_2d"), &sh, &[1 - axis])?;
        let sh = g.expand(&format!("{name}.shifts_{tag}_grid"), &sh, &grid)?;
        shifts.push(g.unsqueeze(&format!("{name}.shifts_{tag}_3d"), &sh, &[2])?);
    }
    let (sy, sx) = (&shifts[0], &shifts[1]);
    let s = g.concat(&format!("{name}.shifts"), &[sx, sy, sx, sy], 2)?; // [h, w, 4]
    let s = g.reshape0(&format!("{name}.shifts_flat"), &s, &[-1, 1, 4])?;
    let s = g.cast(&format!("{name}.shifts_float"), &s, super::proto::DataType::Float)?;
    let cell = g.constant(&format!("{name}.cell_anchors"), &cell.reshape([1, -1, 4]))?;
    let a = g.add(&format!("{name}.grid_anchors"), &s, &cell)?; // [h·w, A, 4]
    g.reshape0(name, &a, &[-1, 4])
}

/// One level's candidates: (boxes `[B, k, 4]`, scores `[B, k]` with dropped ones at
/// [`DROPPED`], kept-by-NMS `[B, k]` as 0/1 floats).
struct Candidates {
    boxes: Value,
    scores: Value,
    kept: Value,
}

#[allow(clippy::too_many_arguments)]
fn level_candidates(
    g: &mut GraphBuilder,
    name: &str,
    model: &FasterRcnn,
    objectness: &Value,
    deltas: &Value,
    anchors: &Value,
    img: &ImageInfo,
) -> Result<Candidates, OnnxError> {
    let cfg = &model.rpn.cfg;
    let oshape = g.shape(&format!("{name}.objectness_shape"), objectness)?;
    let n = g.dim(&format!("{name}.num_anchors"), &oshape, 1)?;
    let pre = g.const_i64(&format!("{name}.pre_nms_top_n"), &[cfg.pre_nms_top_n_test])?;
    let k = g.min(&format!("{name}.k"), &n, &pre)?;
    let (logits, idx) = g.topk(&format!("{name}.top"), objectness, &k, 1)?; // [B, k]
    let d = g.gather_rows(&format!("{name}.top_deltas"), deltas, &idx)?; // [B, k, 4]
    let a = g.gather(&format!("{name}.top_anchors"), anchors, &idx, 0)?; // [B, k, 4]
    let boxes = decode(g, &format!("{name}.decoded"), &d, &a, &model.rpn.box_coder)?;
    let boxes = clip(g, &format!("{name}.boxes"), &boxes, img)?;
    let scores = g.sigmoid(&format!("{name}.scores"), &logits)?;
    let big = big_enough(g, &format!("{name}.big_enough"), &boxes, cfg.min_size)?;
    let thr = g.scalar_f32(&format!("{name}.score_thresh"), cfg.score_thresh as f32)?;
    let high = g.greater_or_equal(&format!("{name}.above_thresh"), &scores, &thr)?;
    let ok = g.and(&format!("{name}.ok"), &big, &high)?;
    let dropped = g.scalar_f32(&format!("{name}.dropped"), DROPPED)?;
    let scores = g.where_(&format!("{name}.candidate_scores"), &ok, &scores, &dropped)?;
    let nms_scores = g.unsqueeze(&format!("{name}.nms_scores"), &scores, &[1])?; // [B, 1, k]
    let max_out = g.const_i64(&format!("{name}.nms_max"), &[cfg.pre_nms_top_n_test])?;
    let iou = g.const_f32(&format!("{name}.nms_iou"), &[cfg.nms_thresh as f32])?;
    let below = g.const_f32(&format!("{name}.nms_score_floor"), &[DROPPED_BELOW])?;
    let sel =
        g.non_max_suppression(&format!("{name}.nms"), &boxes, &nms_scores, &max_out, &iou, &below)?;
    let kept = kept_mask(g, &format!("{name}.kept"), &sel, &scores)?;
    Ok(Candidates { boxes, scores, kept })
}

/// `[N, M]` float mask, 1 at the `(batch, box)` pairs `NonMaxSuppression` selected (`sel`
/// `[n, 3]`), 0 elsewhere; `like` is any `[N, M]` value.
pub(super) fn kept_mask(
    g: &mut GraphBuilder,
    name: &str,
    sel: &Value,
    like: &Value,
) -> Result<Value, OnnxError> {
    let cols = g.const_i64(&format!("{name}.cols"), &[0, 2])?;
    let pairs = g.gather(&format!("{name}.pairs"), sel, &cols, 1)?; // [n, 2]
    let zero = g.scalar_f32(&format!("{name}.zero"), 0.0)?;
    let one = g.scalar_f32(&format!("{name}.one"), 1.0)?;
    let shape = g.shape(&format!("{name}.shape"), like)?;
    let zeros = g.expand(&format!("{name}.zeros"), &zero, &shape)?;
    let sshape = g.shape(&format!("{name}.sel_shape"), sel)?;
    let n = g.dim(&format!("{name}.count"), &sshape, 0)?;
    let ones = g.expand(&format!("{name}.ones"), &one, &n)?;
    g.scatter_nd(name, &zeros, &pairs, &ones)
}

/// The RPN on the FPN levels: proposals per image.
pub(super) fn proposals(
    g: &mut GraphBuilder,
    model: &FasterRcnn,
    features: &[Value],
    img: &ImageInfo,
) -> Result<Proposals, OnnxError> {
    let rpn = &model.rpn;
    let cells = rpn.anchor_generator.cell_anchors();
    if cells.len() != features.len() {
        return Err(OnnxError::Model("anchor levels and FPN levels differ in number"));
    }
    if rpn.cfg.pre_nms_top_n_test < 1 || rpn.cfg.post_nms_top_n_test < 1 {
        return Err(OnnxError::Model("the RPN must keep at least one proposal"));
    }
    // The shared head's initializers, once.
    let p = "rpn.head";
    let head = &rpn.head;
    let mut convs = Vec::with_capacity(head.convs.len());
    for (i, c) in head.convs.iter().enumerate() {
        if c.norm.is_some() {
            return Err(OnnxError::Model("the exporter expects a norm-free RPN head"));
        }
        let w = g.constant(
            &format!("{p}.conv.{i}.0.weight"),
            &c.conv.weight.to_kind(tch::Kind::Float),
        )?;
        let b = match &c.conv.bias {
            Some(b) => {
                Some(g.constant(&format!("{p}.conv.{i}.0.bias"), &b.to_kind(tch::Kind::Float))?)
            }
            None => None,
        };
        convs.push((w, b, c.conv.weight.size()[2], c.conv.padding, c.relu));
    }
    let mut last = Vec::with_capacity(2);
    for (tag, c) in [("cls_logits", &head.cls_logits), ("bbox_pred", &head.bbox_pred)] {
        let w = g.constant(&format!("{p}.{tag}.weight"), &c.weight.to_kind(tch::Kind::Float))?;
        let b = match &c.bias {
            Some(b) => Some(g.constant(&format!("{p}.{tag}.bias"), &b.to_kind(tch::Kind::Float))?),
            None => None,
        };
        last.push((w, b, c.weight.size()[2], c.padding));
    }
    let mut levels = Vec::with_capacity(features.len());
    for (l, (f, cell)) in features.iter().zip(cells).enumerate() {
        let name = format!("rpn.level{l}");
        let mut t = f.clone();
        for (i, (w, b, k, pad, relu)) in convs.iter().enumerate() {
            t =
                g.conv_shared(&format!("{name}.conv{i}"), &t, w, b.as_ref(), [*k, *k], 1, *pad, 1)?;
            if *relu {
                t = g.relu(&format!("{name}.conv{i}.relu"), &t)?;
            }
        }
        let (w, b, k, pad) = &last[0];
        let obj =
            g.conv_shared(&format!("{name}.cls_logits"), &t, w, b.as_ref(), [*k, *k], 1, *pad, 1)?;
        let (w, b, k, pad) = &last[1];
        let del =
            g.conv_shared(&format!("{name}.bbox_pred"), &t, w, b.as_ref(), [*k, *k], 1, *pad, 1)?;
        let a = cell.size()[0];
        // [B, A, h, w] -> [B, h·w·A]; [B, 4A, h, w] -> [B, h·w·A, 4] (permute_and_flatten).
        let obj = g.reshape0(&format!("{name}.objectness_3d"), &obj, &[0, a, -1])?;
        let obj = g.transpose(&format!("{name}.objectness_t"), &obj, &[0, 2, 1])?;
        let obj = g.reshape0(&format!("{name}.objectness"), &obj, &[0, -1])?;
        let del = g.reshape0(&format!("{name}.deltas_4d"), &del, &[0, a, 4, -1])?;
        let del = g.transpose(&format!("{name}.deltas_t"), &del, &[0, 3, 1, 2])?;
        let del = g.reshape0(&format!("{name}.deltas"), &del, &[0, -1, 4])?;
        let anc = anchors(g, &format!("{name}.anchors"), f, cell, img)?;
        levels.push(level_candidates(g, &name, model, &obj, &del, &anc, img)?);
    }
    let cat = |g: &mut GraphBuilder, name: &str, pick: fn(&Candidates) -> &Value, axis| {
        let vs: Vec<&Value> = levels.iter().map(pick).collect();
        g.concat(name, &vs, axis)
    };
    let boxes = cat(g, "rpn.candidate_boxes", |c| &c.boxes, 1)?; // [B, K, 4]
    let scores = cat(g, "rpn.candidate_scores", |c| &c.scores, 1)?; // [B, K]
    let kept = cat(g, "rpn.kept", |c| &c.kept, 1)?; // [B, K]
    let half = g.scalar_f32("rpn.kept_half", 0.5)?;
    let kept = g.greater("rpn.kept_bool", &kept, &half)?;
    let dropped = g.scalar_f32("rpn.dropped", DROPPED)?;
    let final_scores = g.where_("rpn.final_scores", &kept, &scores, &dropped)?;
    let sshape = g.shape("rpn.final_shape", &final_scores)?;
    let k = g.dim("rpn.num_candidates", &sshape, 1)?;
    let post = g.const_i64("rpn.post_nms_top_n", &[rpn.cfg.post_nms_top_n_test])?;
    let p = g.min("rpn.num_proposals", &k, &post)?;
    let (top, idx) = g.topk("rpn.proposals_top", &final_scores, &p, 1)?; // [B, P]
    let below = g.scalar_f32("rpn.dropped_below", DROPPED_BELOW)?;
    let valid = g.greater("rpn.proposals_valid", &top, &below)?;
    let boxes = g.gather_rows("rpn.proposals", &boxes, &idx)?; // [B, P, 4]
    let shape = g.shape("rpn.proposals_shape", &idx)?;
    Ok(Proposals { boxes, valid, shape })
}
