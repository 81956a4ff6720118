//! ONNX emission of the Faster R-CNN box stage as torchvision runs it in eval:
//! `MultiScaleRoIAlign` (each proposal pooled once with `RoiAlign`, from the level
//! torchvision's `LevelMapper` picks for it), the box head (folded conv + BN + ReLU blocks,
//! `Flatten`, `Gemm` + `Relu`), the predictor (`Gemm`s), and
//! `postprocess_detections`: softmax, per-class decoding and clipping, background dropped,
//! score and size filters, NMS per image and class (`NonMaxSuppression` with image × class as
//! its batch), and the `detections_per_img` best by score, padded to that count.
//!
//! Proposal rows that are placeholders (see [`super::frcnn_rpn::Proposals`]) are pooled and
//! scored like the others (each row is computed on its own), then masked out of the
//! candidates, so they never produce a detection.

use tch::Kind;

use super::OnnxError;
use super::frcnn_backbone::conv_norm_act;
use super::frcnn_rpn::{
    DROPPED, DROPPED_BELOW, ImageInfo, Proposals, big_enough, clip, decode, kept_mask,
};
use super::graph::{GraphBuilder, Value};
use super::ops_detect::RoiAlignSpec;
use crate::frcnn::FasterRcnn;

/// The FPN level P2 is pooled from has stride `2^K_MIN`.
const K_MIN: i64 = 2;

/// Final detections: `[B, D, 4]`, `[B, D]`, `[B, D]` int64.
#[derive(Debug, Clone)]
pub(super) struct Detections {
    pub boxes: Value,
    pub scores: Value,
    pub labels: Value,
}

/// `MultiScaleRoIAlign` of `rois` `[R, 4]` (image `batch_indices` `[R]`): `[R, C, ph, pw]`.
fn multiscale_roi_align(
    g: &mut GraphBuilder,
    model: &FasterRcnn,
    features: &[Value],
    rois: &Value,
    batch_indices: &Value,
) -> Result<Value, OnnxError> {
    let pool = &model.roi_heads.box_roi_pool;
    let n = pool.num_levels;
    if n == 0 || n > features.len() {
        return Err(OnnxError::Model("MultiScaleRoIAlign pools from more levels than the FPN has"));
    }
    let p = "roi_heads.box_roi_pool";
    // LevelMapper: floor(k0 + log2(sqrt(area) / s0) + eps), clamped to the pooled levels.
    let c = g.split(&format!("{p}.coords"), rois, &[1, 1, 1, 1], 1)?;
    let w = g.sub(&format!("{p}.widths"), &c[2], &c[0])?;
    let h = g.sub(&format!("{p}.heights"), &c[3], &c[1])?;
    let area = g.mul(&format!("{p}.areas"), &w, &h)?;
    let s = g.sqrt(&format!("{p}.sqrt_areas"), &area)?;
    let s0 = g.scalar_f32(&format!("{p}.canonical_scale"), pool.canonical_scale as f32)?;
    let rel = g.div(&format!("{p}.relative"), &s, &s0)?;
    let ln = g.log(&format!("{p}.ln"), &rel)?;
    let ln2 = g.scalar_f32(&format!("{p}.ln2"), std::f32::consts::LN_2)?;
    let log2 = g.div(&format!("{p}.log2"), &ln, &ln2)?;
    let k0 = g.scalar_f32(&format!("{p}.canonical_level"), pool.canonical_level as f32)?;
    let lvl = g.add(&format!("{p}.level_raw"), &log2, &k0)?;
    let eps = g.scalar_f32(&format!("{p}.eps"), pool.eps as f32)?;
    let lvl = g.add(&format!("{p}.level_eps"), &lvl, &eps)?;
    let lvl = g.floor(&format!("{p}.level_floor"), &lvl)?;
    let lo = g.scalar_f32(&format!("{p}.k_min"), K_MIN as f32)?;
    let hi = g.scalar_f32(&format!("{p}.k_max"), (K_MIN + n as i64 - 1) as f32)?;
    let lvl = g.clip(&format!("{p}.level_clamped"), &lvl, &lo, &hi)?;
    let lvl = g.reshape0(&format!("{p}.level"), &lvl, &[-1])?; // [R]
    // Each RoI is pooled once, from its own level: per level the indices of its RoIs
    // (`NonZero`), those RoIs pooled, then every level's rows put back in RoI order.
    let align = &pool.align;
    let mut pooled = Vec::with_capacity(n);
    let mut order = Vec::with_capacity(n);
    for (l, feature) in features.iter().enumerate().take(n) {
        let k = K_MIN + l as i64;
        let kv = g.scalar_f32(&format!("{p}.level{l}.k"), k as f32)?;
        let is = g.equal(&format!("{p}.level{l}.is"), &lvl, &kv)?;
        let idx = g.nonzero_1d(&format!("{p}.level{l}.idx"), &is)?; // [R_l]
        let rois_l = g.gather(&format!("{p}.level{l}.rois"), rois, &idx, 0)?;
        let images_l = g.gather(&format!("{p}.level{l}.images"), batch_indices, &idx, 0)?;
        let spec = RoiAlignSpec {
            output_size: align.output_size,
            sampling_ratio: align.sampling_ratio,
            spatial_scale: 0.5f32.powi(k as i32),
            aligned: align.aligned,
        };
        pooled.push(g.roi_align(&format!("{p}.level{l}"), feature, &rois_l, &images_l, &spec)?);
        order.push(idx);
    }
    // `order` [R] lists the RoI of each pooled row, a permutation of 0..R; its inverse (row of
    // each RoI) is `ScatterND` of 0..R at `order`. Every entry is written, so the data it
    // starts from (`order` itself) does not matter.
    let refs: Vec<&Value> = pooled.iter().collect();
    let pooled = g.concat(&format!("{p}.by_level"), &refs, 0)?; // [R, C, ph, pw]
    let refs: Vec<&Value> = order.iter().collect();
    let order = g.concat(&format!("{p}.order"), &refs, 0)?;
    let shape = g.shape(&format!("{p}.rois_shape"), rois)?;
    let r = g.dim(&format!("{p}.num_rois"), &shape, 0)?;
    let r = g.squeeze(&format!("{p}.num_rois_scalar"), &r, &[0])?;
    let zero = g.scalar_i64(&format!("{p}.zero"), 0)?;
    let one = g.scalar_i64(&format!("{p}.one"), 1)?;
    let rows = g.range(&format!("{p}.rows"), &zero, &r, &one)?;
    let at = g.unsqueeze(&format!("{p}.order_col"), &order, &[1])?; // [R, 1]
    let inverse = g.scatter_nd(&format!("{p}.inverse"), &order, &at, &rows)?;
    g.gather(&format!("{p}.pooled"), &pooled, &inverse, 0)
}

/// The box stage on `props`: detections per image, padded to `detections_per_img`.
pub(super) fn detections(
    g: &mut GraphBuilder,
    model: &FasterRcnn,
    features: &[Value],
    props: &Proposals,
    img: &ImageInfo,
) -> Result<Detections, OnnxError> {
    let heads = &model.roi_heads;
    let cfg = &heads.cfg;
    let nc = model.num_classes();
    let d = cfg.detections_per_img;
    if d < 1 {
        return Err(OnnxError::Model("detections_per_img must be at least 1"));
    }
    // Rois [R = B·P, 4] and their image indices.
    let rois = g.reshape0("roi_heads.rois", &props.boxes, &[-1, 4])?;
    let b = g.dim("roi_heads.batch", &props.shape, 0)?;
    let b = g.squeeze("roi_heads.batch_scalar", &b, &[0])?;
    let zero = g.scalar_i64("roi_heads.zero", 0)?;
    let one = g.scalar_i64("roi_heads.one", 1)?;
    let images = g.range("roi_heads.images", &zero, &b, &one)?;
    let images = g.unsqueeze("roi_heads.images_col", &images, &[1])?;
    let images = g.expand("roi_heads.images_grid", &images, &props.shape)?;
    let batch_indices = g.reshape0("roi_heads.batch_indices", &images, &[-1])?;
    let x = multiscale_roi_align(g, model, features, &rois, &batch_indices)?;

    // Box head and predictor.
    let mut x = x;
    for (i, c) in heads.box_head.convs.iter().enumerate() {
        x = conv_norm_act(g, &format!("roi_heads.box_head.{i}"), c, &x)?;
    }
    let x = g.flatten("roi_heads.box_head.flatten", &x, 1)?;
    let fc = &heads.box_head.fc;
    let f = heads.box_head.convs.len() + 1;
    let fw = fc.weight.to_kind(Kind::Float);
    let x = g.gemm(&format!("roi_heads.box_head.{f}"), &x, &fw, &fc.bias.to_kind(Kind::Float))?;
    let x = g.relu("roi_heads.box_head.relu", &x)?;
    let pred = &heads.box_predictor;
    let f32 = |t: &tch::Tensor| t.to_kind(Kind::Float);
    let cls = &pred.cls_score;
    let logits =
        g.gemm("roi_heads.box_predictor.cls_score", &x, &f32(&cls.weight), &f32(&cls.bias))?;
    let bb = &pred.bbox_pred;
    let deltas =
        g.gemm("roi_heads.box_predictor.bbox_pred", &x, &f32(&bb.weight), &f32(&bb.bias))?;

    // postprocess_detections.
    let p = "roi_heads.post";
    let probs = g.softmax(&format!("{p}.probs"), &logits, -1)?; // [R, nc]
    let codes = g.reshape0(&format!("{p}.codes"), &deltas, &[0, nc, 4])?; // [R, nc, 4]
    let refs = g.unsqueeze(&format!("{p}.refs"), &rois, &[1])?; // [R, 1, 4]
    let boxes = decode(g, &format!("{p}.decoded"), &codes, &refs, &heads.box_coder)?;
    let boxes = clip(g, &format!("{p}.clipped"), &boxes, img)?; // [R, nc, 4]
    let c1 = nc - 1;
    let s3 = g.const_i64(&format!("{p}.classes"), &[nc])?;
    let s3 = g.concat(&format!("{p}.shape_bpc"), &[&props.shape, &s3], 0)?;
    let s4 = g.const_i64(&format!("{p}.classes4"), &[nc, 4])?;
    let s4 = g.concat(&format!("{p}.shape_bpc4"), &[&props.shape, &s4], 0)?;
    let probs = g.reshape_to(&format!("{p}.probs_bpc"), &probs, &s3)?; // [B, P, nc]
    let boxes = g.reshape_to(&format!("{p}.boxes_bpc"), &boxes, &s4)?; // [B, P, nc, 4]
    let scores = g.slice(&format!("{p}.fg_scores"), &probs, &[1], &[nc], &[2])?; // [B, P, c1]
    let boxes = g.slice(&format!("{p}.fg_boxes"), &boxes, &[1], &[nc], &[2])?; // [B, P, c1, 4]
    let real = g.unsqueeze(&format!("{p}.real"), &props.valid, &[2])?; // [B, P, 1]
    let thr = g.scalar_f32(&format!("{p}.score_thresh"), cfg.score_thresh as f32)?;
    let high = g.greater(&format!("{p}.above_thresh"), &scores, &thr)?;
    let big = big_enough(g, &format!("{p}.big_enough"), &boxes, cfg.min_size)?;
    let ok = g.and(&format!("{p}.real_high"), &real, &high)?;
    let ok = g.and(&format!("{p}.ok"), &ok, &big)?;
    let dropped = g.scalar_f32(&format!("{p}.dropped"), DROPPED)?;
    let cand = g.where_(&format!("{p}.candidate_scores"), &ok, &scores, &dropped)?; // [B, P, c1]

    // NMS per (image, class): batch B·c1 of P boxes each.
    let np = g.dim(&format!("{p}.num_proposals"), &props.shape, 1)?;
    let m1 = g.const_i64(&format!("{p}.minus_one"), &[-1])?;
    let c4 = g.const_i64(&format!("{p}.four"), &[4])?;
    let one_d = g.const_i64(&format!("{p}.one_d"), &[1])?;
    let nb_shape = g.concat(&format!("{p}.nms_boxes_shape"), &[&m1, &np, &c4], 0)?;
    let ns_shape = g.concat(&format!("{p}.nms_scores_shape"), &[&m1, &one_d, &np], 0)?;
    let bt = g.transpose(&format!("{p}.boxes_by_class"), &boxes, &[0, 2, 1, 3])?;
    let nms_boxes = g.reshape_to(&format!("{p}.nms_boxes"), &bt, &nb_shape)?; // [B·c1, P, 4]
    let st = g.transpose(&format!("{p}.scores_by_class"), &cand, &[0, 2, 1])?; // [B, c1, P]
    let nms_scores = g.reshape_to(&format!("{p}.nms_scores"), &st, &ns_shape)?; // [B·c1, 1, P]
    // A class's kept boxes past its first `d` can never be among the image's best `d`.
    let max_out = g.const_i64(&format!("{p}.nms_max"), &[d])?;
    let iou = g.const_f32(&format!("{p}.nms_iou"), &[cfg.nms_thresh as f32])?;
    let floor = g.const_f32(&format!("{p}.nms_score_floor"), &[DROPPED_BELOW])?;
    let sel = g.non_max_suppression(
        &format!("{p}.nms"),
        &nms_boxes,
        &nms_scores,
        &max_out,
        &iou,
        &floor,
    )?;
    let flat_scores = g.squeeze(&format!("{p}.nms_scores_2d"), &nms_scores, &[1])?; // [B·c1, P]
    let kept = kept_mask(g, &format!("{p}.kept"), &sel, &flat_scores)?;
    let st_shape = g.shape(&format!("{p}.by_class_shape"), &st)?;
    let kept = g.reshape_to(&format!("{p}.kept_by_class"), &kept, &st_shape)?; // [B, c1, P]
    let kept = g.transpose(&format!("{p}.kept_bpc"), &kept, &[0, 2, 1])?; // [B, P, c1]
    let half = g.scalar_f32(&format!("{p}.half"), 0.5)?;
    let kept = g.greater(&format!("{p}.kept_bool"), &kept, &half)?;
    let fin = g.where_(&format!("{p}.final_scores_bpc"), &kept, &cand, &dropped)?;
    // Candidates in torchvision's order (proposal, then class): [B, M = P·c1].
    let fin = g.reshape0(&format!("{p}.final_scores"), &fin, &[0, -1])?;
    let flat_boxes = g.reshape0(&format!("{p}.final_boxes"), &boxes, &[0, -1, 4])?;
    // Padded by `d` dropped candidates, so TopK(d) exists whatever M is.
    let pads = g.const_i64(&format!("{p}.pad_scores"), &[0, 0, 0, d])?;
    let fill = g.scalar_f32(&format!("{p}.pad_score"), DROPPED)?;
    let fin = g.pad(&format!("{p}.final_scores_padded"), &fin, &pads, &fill)?;
    let pads = g.const_i64(&format!("{p}.pad_boxes"), &[0, 0, 0, 0, d, 0])?;
    let fill = g.scalar_f32(&format!("{p}.pad_box"), 0.0)?;
    let flat_boxes = g.pad(&format!("{p}.final_boxes_padded"), &flat_boxes, &pads, &fill)?;
    let k = g.const_i64(&format!("{p}.detections_per_img"), &[d])?;
    let (top, idx) = g.topk(&format!("{p}.top"), &fin, &k, 1)?; // [B, D]
    let below = g.scalar_f32(&format!("{p}.dropped_below"), DROPPED_BELOW)?;
    let real = g.greater(&format!("{p}.detection_valid"), &top, &below)?;
    let zero_f = g.scalar_f32(&format!("{p}.zero"), 0.0)?;
    let scores = g.where_("scores", &real, &top, &zero_f)?;
    let chosen = g.gather_rows(&format!("{p}.chosen_boxes"), &flat_boxes, &idx)?; // [B, D, 4]
    let real4 = g.unsqueeze(&format!("{p}.detection_valid_4"), &real, &[2])?;
    let boxes = g.where_("boxes", &real4, &chosen, &zero_f)?;
    let c1v = g.scalar_i64(&format!("{p}.fg_classes"), c1)?;
    let cls = g.modulo(&format!("{p}.class_index"), &idx, &c1v)?;
    let one_i = g.scalar_i64(&format!("{p}.label_offset"), 1)?;
    let labels = g.add(&format!("{p}.labels"), &cls, &one_i)?;
    let zero_i = g.scalar_i64(&format!("{p}.no_label"), 0)?;
    let labels = g.where_("labels", &real, &labels, &zero_i)?;
    Ok(Detections { boxes, scores, labels })
}
