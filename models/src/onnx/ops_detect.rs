//! Indexing and detection operators of the [`GraphBuilder`]: `Gather`, batched row gathering
//! (`GatherND`), `NonZero`, `ScatterND`, `TopK`, and `NonMaxSuppression` and `RoiAlign`. When
//! tracing, each computes its value with libtorch — the detection operators with ONNX's
//! semantics ([`nms_value`]) and the project's RoIAlign ([`crate::frcnn::roi_align`]).

use tch::{Device, Kind, Tensor};

use super::OnnxError;
use super::graph::{Attr, GraphBuilder, Value};
use crate::frcnn::roi_align::{RoiAlignConfig, roi_align};
use crate::nms::nms;

/// `RoiAlign` settings (`mode = avg`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RoiAlignSpec {
    /// `[output_height, output_width]`.
    pub output_size: [i64; 2],
    pub sampling_ratio: i64,
    pub spatial_scale: f32,
    /// `coordinate_transformation_mode = half_pixel` (torchvision's `aligned=True`); otherwise
    /// `output_half_pixel` (`aligned=False`: no half-pixel shift, boxes at least 1×1).
    pub aligned: bool,
}

impl GraphBuilder {
    /// `Gather` along `axis` (output `x.shape[..axis] + idx.shape + x.shape[axis + 1..]`).
    pub fn gather(
        &mut self,
        hint: &str,
        x: &Value,
        idx: &Value,
        axis: i64,
    ) -> Result<Value, OnnxError> {
        self.node1("Gather", hint, &[x, idx], vec![("axis", Attr::Int(axis))], |xs| {
            let s = xs[0].size();
            let a = axis as usize;
            let mut shape = s[..a].to_vec();
            shape.extend(xs[1].size());
            shape.extend(&s[a + 1..]);
            xs[0].index_select(axis, &xs[1].reshape([-1])).reshape(shape.as_slice())
        })
    }

    /// Rows of each batch element: `x` `[B, N, ...]`, `idx` `[B, K]` int64 -> `[B, K, ...]`
    /// (`GatherND` with `batch_dims = 1` on `idx` unsqueezed to `[B, K, 1]`).
    pub fn gather_rows(&mut self, hint: &str, x: &Value, idx: &Value) -> Result<Value, OnnxError> {
        let i = self.unsqueeze(&format!("{hint}.idx"), idx, &[2])?;
        self.node1("GatherND", hint, &[x, &i], vec![("batch_dims", Attr::Int(1))], |xs| {
            let (x, i) = (xs[0], xs[1]); // i: [B, K, 1]
            let s = x.size();
            let mut target = i.size()[..2].to_vec();
            target.extend(&s[2..]);
            let mut view = i.size()[..2].to_vec();
            view.extend(vec![1; s.len() - 2]);
            x.gather(1, &i.reshape(view.as_slice()).expand(target.as_slice(), false), false)
        })
    }

    /// Positions of the true entries of a 1-D bool `mask`, ascending: int64 `[n]` (`NonZero`,
    /// which gives `[1, n]`, then `Reshape`).
    pub fn nonzero_1d(&mut self, hint: &str, mask: &Value) -> Result<Value, OnnxError> {
        let nz = self.node1("NonZero", &format!("{hint}.nonzero"), &[mask], vec![], |xs| {
            xs[0].nonzero().transpose(0, 1) // [rank, n], row-major order as ONNX specifies
        })?;
        self.reshape0(hint, &nz, &[-1])
    }

    /// `ScatterND` of `updates` `[n]` into `data` at full indices `[n, rank]`.
    pub fn scatter_nd(
        &mut self,
        hint: &str,
        data: &Value,
        indices: &Value,
        updates: &Value,
    ) -> Result<Value, OnnxError> {
        self.node1("ScatterND", hint, &[data, indices, updates], vec![], |xs| {
            let r = xs[1].size().get(1).copied().unwrap_or(0);
            let idx: Vec<Option<Tensor>> = (0..r).map(|j| Some(xs[1].select(1, j))).collect();
            xs[0].index_put(&idx, xs[2], false)
        })
    }

    /// `TopK` (largest, sorted; ties: lower index first) of `k` (int64 `[1]`) along `axis`:
    /// `(values, indices)`.
    pub fn topk(
        &mut self,
        hint: &str,
        x: &Value,
        k: &Value,
        axis: i64,
    ) -> Result<(Value, Value), OnnxError> {
        let attrs =
            vec![("axis", Attr::Int(axis)), ("largest", Attr::Int(1)), ("sorted", Attr::Int(1))];
        let mut v = self.node("TopK", hint, &[x, k], 2, attrs, |xs| {
            let k = xs[1].int64_value(&[0]);
            // A stable descending sort: ties keep index order, as ONNX specifies.
            let (sorted, idx) = xs[0].sort_stable(true, axis, true);
            vec![sorted.narrow(axis, 0, k), idx.narrow(axis, 0, k)]
        })?;
        let indices = v.pop().ok_or(OnnxError::Trace("TopK without indices"))?;
        let values = v.pop().ok_or(OnnxError::Trace("TopK without values"))?;
        Ok((values, indices))
    }

    /// `NonMaxSuppression` (corner boxes): `boxes` `[B, N, 4]`, `scores` `[B, C, N]`, int64
    /// `[1]` `max_per_class`, float `[1]` thresholds; boxes scoring `<= score_threshold` are
    /// ignored, a box is suppressed by a kept one when their IoU `> iou_threshold`. Output
    /// `[n, 3]` int64 rows `(batch, class, box)`, per batch and class in descending score.
    pub fn non_max_suppression(
        &mut self,
        hint: &str,
        boxes: &Value,
        scores: &Value,
        max_per_class: &Value,
        iou_threshold: &Value,
        score_threshold: &Value,
    ) -> Result<Value, OnnxError> {
        let inputs = [boxes, scores, max_per_class, iou_threshold, score_threshold];
        let attrs = vec![("center_point_box", Attr::Int(0))];
        self.node1("NonMaxSuppression", hint, &inputs, attrs, |xs| {
            nms_value(xs[0], xs[1], xs[2], xs[3], xs[4])
        })
    }

    /// `RoiAlign` (average) of `rois` `[R, 4]` (`x1, y1, x2, y2` in input pixels) on `x`
    /// `[B, C, H, W]`, with `batch_indices` `[R]` int64: `[R, C, ph, pw]`.
    pub fn roi_align(
        &mut self,
        hint: &str,
        x: &Value,
        rois: &Value,
        batch_indices: &Value,
        spec: &RoiAlignSpec,
    ) -> Result<Value, OnnxError> {
        let mode = if spec.aligned { "half_pixel" } else { "output_half_pixel" };
        let attrs = vec![
            ("coordinate_transformation_mode", Attr::Str(mode.into())),
            ("mode", Attr::Str("avg".into())),
            ("output_height", Attr::Int(spec.output_size[0])),
            ("output_width", Attr::Int(spec.output_size[1])),
            ("sampling_ratio", Attr::Int(spec.sampling_ratio)),
            ("spatial_scale", Attr::Float(spec.spatial_scale)),
        ];
        let cfg = RoiAlignConfig {
            output_size: spec.output_size,
            sampling_ratio: spec.sampling_ratio,
            aligned: spec.aligned,
        };
        let scale = f64::from(spec.spatial_scale);
        self.node1("RoiAlign", hint, &[x, rois, batch_indices], attrs, |xs| {
            let (x, rois, idx) = (xs[0], xs[1], xs[2]);
            // [R, 5]: batch index, then x1, y1, x2, y2.
            let rois5 =
                Tensor::cat(&[idx.to_kind(Kind::Float).unsqueeze(1), rois.shallow_clone()], 1);
            roi_align(x, &rois5, scale, &cfg).unwrap_or_else(|_| {
                // Only reachable with a malformed graph (the builder's own shapes).
                let (r, c) = (rois.size()[0], x.size().get(1).copied().unwrap_or(0));
                Tensor::zeros(
                    [r, c, cfg.output_size[0], cfg.output_size[1]],
                    (Kind::Float, x.device()),
                )
            })
        })
    }
}

/// ONNX `NonMaxSuppression` (`center_point_box = 0`) on traced values: for each batch and
/// class, the boxes scoring above `score_threshold`, greedily by descending score (ties by
/// index), a box dropped when its IoU with a kept one exceeds `iou_threshold`, at most
/// `max_per_class` kept. Rows `(batch, class, box)` int64 `[n, 3]`, batch- then class-major,
/// each class in keep order — what ONNX Runtime returns.
pub fn nms_value(
    boxes: &Tensor,
    scores: &Tensor,
    max_per_class: &Tensor,
    iou_threshold: &Tensor,
    score_threshold: &Tensor,
) -> Tensor {
    let first_f = |t: &Tensor| -> Option<f32> {
        Vec::<f32>::try_from(t.to_kind(Kind::Float).reshape([-1])).ok()?.first().copied()
    };
    let limit = Vec::<i64>::try_from(max_per_class.to_kind(Kind::Int64).reshape([-1]))
        .ok()
        .and_then(|v| v.first().copied())
        .unwrap_or(0);
    let iou = first_f(iou_threshold).unwrap_or(0.0);
    let floor = first_f(score_threshold).unwrap_or(f32::NEG_INFINITY);
    let (bs, ss) = (boxes.size(), scores.size());
    let (&[b, n, 4], &[b2, c, n2]) = (bs.as_slice(), ss.as_slice()) else {
        return Tensor::zeros([0, 3], (Kind::Int64, Device::Cpu));
    };
    let all_boxes = Vec::<f32>::try_from(boxes.to_kind(Kind::Float).reshape([-1]));
    let all_scores = Vec::<f32>::try_from(scores.to_kind(Kind::Float).reshape([-1]));
    let (Ok(all_boxes), Ok(all_scores)) = (all_boxes, all_scores) else {
        return Tensor::zeros([0, 3], (Kind::Int64, Device::Cpu));
    };
    let mut rows: Vec<i64> = Vec::new();
    if b == b2 && n == n2 && limit > 0 {
        let n = n as usize;
        for bi in 0..b as usize {
            let bx: Vec<[f32; 4]> = all_boxes[bi * n * 4..(bi + 1) * n * 4]
                .chunks_exact(4)
                .map(|q| [q[0].min(q[2]), q[1].min(q[3]), q[0].max(q[2]), q[1].max(q[3])])
                .collect();
            for ci in 0..c as usize {
                let off = (bi * c as usize + ci) * n;
                let s = &all_scores[off..off + n];
                let cand: Vec<usize> = (0..n).filter(|&i| s[i] > floor).collect();
                let cb: Vec<[f32; 4]> = cand.iter().map(|&i| bx[i]).collect();
                let cs: Vec<f32> = cand.iter().map(|&i| s[i]).collect();
                for k in nms(&cb, &cs, f64::from(iou), limit as usize) {
                    rows.extend([bi as i64, ci as i64, cand[k] as i64]);
                }
            }
        }
    }
    let count = (rows.len() / 3) as i64;
    Tensor::from_slice(&rows).view([count, 3]).to_device(boxes.device())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn run(
        boxes: &[f32],
        scores: &[f32],
        classes: i64,
        limit: i64,
        iou: f32,
        floor: f32,
    ) -> Vec<i64> {
        let n = (boxes.len() / 4) as i64;
        let b = Tensor::from_slice(boxes).view([1, n, 4]);
        let s = Tensor::from_slice(scores).view([1, classes, n]);
        let out = nms_value(
            &b,
            &s,
            &Tensor::from_slice(&[limit]),
            &Tensor::from_slice(&[iou]),
            &Tensor::from_slice(&[floor]),
        );
        assert_eq!(out.size()[1], 3);
        Vec::<i64>::try_from(out.reshape([-1])).unwrap()
    }

    #[test]
    fn nms_value_follows_onnx_semantics() {
        // Boxes 0 and 1 overlap (IoU 9/11 ≈ 0.82), box 2 is apart; box 3 is box 0 with corners
        // given the other way round (ONNX accepts either corner order).
        let boxes = [0., 0., 10., 10., 1., 0., 11., 10., 20., 20., 30., 30., 10., 10., 0., 0.];
        // Class 0: box 1 best, so 0 and 3 fall; class 1: only box 2 is above the floor.
        let scores = [0.8, 0.9, 0.7, 0.6, 0.1, 0.1, 0.5, 0.3];
        assert_eq!(run(&boxes, &scores, 2, 10, 0.5, 0.2), vec![0, 0, 1, 0, 0, 2, 0, 1, 2, 0, 1, 3]);
        // At most one per class.
        assert_eq!(run(&boxes, &scores, 2, 1, 0.5, 0.2), vec![0, 0, 1, 0, 1, 2]);
        // IoU must exceed the threshold to suppress: at 0.9 boxes 0 and 1 both stay (box 3 and
        // class 1 are under the 0.65 floor).
        assert_eq!(run(&boxes, &scores, 2, 10, 0.9, 0.65), vec![0, 0, 1, 0, 0, 0, 0, 0, 2]);
        // A score equal to the floor is dropped; a zero limit keeps nothing.
        assert_eq!(run(&boxes, &scores, 2, 10, 0.5, 0.8), vec![0, 0, 1]);
        assert!(run(&boxes, &scores, 2, 0, 0.5, 0.0).is_empty());
        // Equal scores: the lower index first.
        let tie = [0., 0., 1., 1., 5., 5., 6., 6.];
        assert_eq!(run(&tie, &[0.5, 0.5], 1, 10, 0.5, 0.0), vec![0, 0, 0, 0, 0, 1]);
    }
}
