//! Indexing and detection operators of the [`GraphBuilder`]: `Gather`, batched row gathering
//! (`GatherND`), `ScatterND`, `TopK`, and `NonMaxSuppression` and `RoiAlign`. The indexing ops
//! compute their values with libtorch when tracing; the two detection operators refuse a traced
//! builder ([`OnnxError::Trace`]).

use tch::Tensor;

use super::OnnxError;
use super::graph::{Attr, GraphBuilder, Value};

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
    /// `[n, 3]` int64 rows `(batch, class, box)`. Not traceable.
    pub fn non_max_suppression(
        &mut self,
        hint: &str,
        boxes: &Value,
        scores: &Value,
        max_per_class: &Value,
        iou_threshold: &Value,
        score_threshold: &Value,
    ) -> Result<Value, OnnxError> {
        if self.is_traced() {
            return Err(OnnxError::Trace("NonMaxSuppression is not traceable"));
        }
        let inputs = [boxes, scores, max_per_class, iou_threshold, score_threshold];
        let attrs = vec![("center_point_box", Attr::Int(0))];
        self.node1("NonMaxSuppression", hint, &inputs, attrs, |_| Tensor::new())
    }

    /// `RoiAlign` (average) of `rois` `[R, 4]` (`x1, y1, x2, y2` in input pixels) on `x`
    /// `[B, C, H, W]`, with `batch_indices` `[R]` int64: `[R, C, ph, pw]`. Not traceable.
    pub fn roi_align(
        &mut self,
        hint: &str,
        x: &Value,
        rois: &Value,
        batch_indices: &Value,
        spec: &RoiAlignSpec,
    ) -> Result<Value, OnnxError> {
        if self.is_traced() {
            return Err(OnnxError::Trace("RoiAlign is not traceable"));
        }
        let mode = if spec.aligned { "half_pixel" } else { "output_half_pixel" };
        let attrs = vec![
            ("coordinate_transformation_mode", Attr::Str(mode.into())),
            ("mode", Attr::Str("avg".into())),
            ("output_height", Attr::Int(spec.output_size[0])),
            ("output_width", Attr::Int(spec.output_size[1])),
            ("sampling_ratio", Attr::Int(spec.sampling_ratio)),
            ("spatial_scale", Attr::Float(spec.spatial_scale)),
        ];
        self.node1("RoiAlign", hint, &[x, rois, batch_indices], attrs, |_| Tensor::new())
    }
}
