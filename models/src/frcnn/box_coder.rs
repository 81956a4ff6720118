//! torchvision's `BoxCoder`: boxes as deltas `(dx, dy, dw, dh)` relative to reference boxes
//! (anchors for the RPN, proposals for the box head), scaled by per-coordinate weights
//! (`(1, 1, 1, 1)` in the RPN, `(10, 10, 5, 5)` in the box head). Decoding clamps `dw`, `dh` at
//! `log(1000 / 16)` so `exp` cannot blow a box up beyond ~62× its reference.
//!
//! The arithmetic is torchvision's operation for operation (centre `x1 + 0.5·w`, strided slices
//! of the codes, `exp(dw)·w`, half sizes `0.5·w`), so float32 results agree bit for bit.

use tch::Tensor;

/// `log(1000 / 16)`, torchvision's `bbox_xform_clip`.
pub fn default_bbox_xform_clip() -> f64 {
    (1000.0f64 / 16.0).ln()
}

/// Encoder/decoder of box deltas.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BoxCoder {
    /// `(wx, wy, ww, wh)`.
    pub weights: [f64; 4],
    pub bbox_xform_clip: f64,
}

impl BoxCoder {
    pub fn new(weights: [f64; 4]) -> Self {
        Self { weights, bbox_xform_clip: default_bbox_xform_clip() }
    }

    /// Deltas `[N, 4]` that turn `proposals` `[N, 4]` into `reference_boxes` `[N, 4]` (both
    /// `x1, y1, x2, y2`): the regression targets of training.
    pub fn encode(&self, reference_boxes: &Tensor, proposals: &Tensor) -> Tensor {
        let [wx, wy, ww, wh] = self.weights;
        let col = |t: &Tensor, i: i64| t.select(1, i).unsqueeze(1); // [N, 1]
        let (px1, py1, px2, py2) =
            (col(proposals, 0), col(proposals, 1), col(proposals, 2), col(proposals, 3));
        let (gx1, gy1, gx2, gy2) = (
            col(reference_boxes, 0),
            col(reference_boxes, 1),
            col(reference_boxes, 2),
            col(reference_boxes, 3),
        );
        let ex_w = &px2 - &px1;
        let ex_h = &py2 - &py1;
        let ex_cx = &px1 + &ex_w * 0.5;
        let ex_cy = &py1 + &ex_h * 0.5;
        let gt_w = &gx2 - &gx1;
        let gt_h = &gy2 - &gy1;
        let gt_cx = &gx1 + &gt_w * 0.5;
        let gt_cy = &gy1 + &gt_h * 0.5;
        let dx = (gt_cx - ex_cx) * wx / &ex_w;
        let dy = (gt_cy - ex_cy) * wy / &ex_h;
        let dw = (gt_w / ex_w).log() * ww;
        let dh = (gt_h / ex_h).log() * wh;
        Tensor::cat(&[dx, dy, dw, dh], 1)
    }

    /// Applies deltas `rel_codes` `[N, 4·K]` (K boxes per reference, e.g. one per class) to the
    /// reference boxes `[N, 4]`: `[N, 4·K]` boxes `x1, y1, x2, y2`.
    pub fn decode_single(&self, rel_codes: &Tensor, boxes: &Tensor) -> Tensor {
        let boxes = boxes.to_kind(rel_codes.kind());
        let widths = boxes.select(1, 2) - boxes.select(1, 0); // [N]
        let heights = boxes.select(1, 3) - boxes.select(1, 1);
        let ctr_x = boxes.select(1, 0) + &widths * 0.5;
        let ctr_y = boxes.select(1, 1) + &heights * 0.5;
        let [wx, wy, ww, wh] = self.weights;
        let every4 = |start: i64| rel_codes.slice(1, start, None, 4); // [N, K]
        let dx = every4(0) / wx;
        let dy = every4(1) / wy;
        let dw = (every4(2) / ww).clamp_max(self.bbox_xform_clip);
        let dh = (every4(3) / wh).clamp_max(self.bbox_xform_clip);
        let (widths, heights) = (widths.unsqueeze(1), heights.unsqueeze(1)); // [N, 1]
        let pred_ctr_x = dx * &widths + ctr_x.unsqueeze(1);
        let pred_ctr_y = dy * &heights + ctr_y.unsqueeze(1);
        let pred_w = dw.exp() * widths;
        let pred_h = dh.exp() * heights;
        let half_h = pred_h * 0.5;
        let half_w = pred_w * 0.5;
        Tensor::stack(
            &[
                &pred_ctr_x - &half_w,
                &pred_ctr_y - &half_h,
                pred_ctr_x + half_w,
                pred_ctr_y + half_h,
            ],
            2,
        )
        .flatten(1, -1) // [N, K, 4] -> [N, 4·K]
    }

    /// [`BoxCoder::decode_single`] shaped `[N, K, 4]`.
    pub fn decode(&self, rel_codes: &Tensor, boxes: &Tensor) -> Tensor {
        let n = boxes.size()[0];
        // K boxes per reference; with no references, read K from the codes' last dimension.
        let k = if n > 0 {
            rel_codes.numel() as i64 / (4 * n)
        } else {
            rel_codes.size().last().map_or(0, |&d| d / 4)
        };
        let pred = self.decode_single(&rel_codes.reshape([n, 4 * k]), boxes);
        pred.reshape([n, k, 4])
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn encode_decode_round_trip_and_clamp() {
        let coder = BoxCoder::new([10.0, 10.0, 5.0, 5.0]);
        let props =
            Tensor::from_slice(&[10.0f32, 20.0, 50.0, 80.0, 0.0, 0.0, 8.0, 4.0]).view([2, 4]);
        let gt = Tensor::from_slice(&[12.0f32, 18.0, 60.0, 70.0, 1.0, 1.0, 5.0, 9.0]).view([2, 4]);
        let d = coder.encode(&gt, &props);
        let back = coder.decode(&d, &props);
        assert_eq!(back.size(), [2, 1, 4]);
        assert!((back.view([2, 4]) - &gt).abs().max().double_value(&[]) < 1e-4);
        // Zero deltas give the reference boxes back; huge dw is clamped at log(1000/16).
        let z = coder
            .decode_single(&Tensor::zeros([2, 8], (tch::Kind::Float, tch::Device::Cpu)), &props);
        assert_eq!(z.size(), [2, 8]);
        assert!((z.narrow(1, 4, 4) - &props).abs().max().double_value(&[]) == 0.0);
        let big = Tensor::from_slice(&[0.0f32, 0.0, 1e4, 0.0]).view([1, 4]);
        let b = BoxCoder::new([1.0; 4]).decode_single(&big, &props.narrow(0, 0, 1));
        let w = b.double_value(&[0, 2]) - b.double_value(&[0, 0]);
        assert!((w - 40.0 * 1000.0 / 16.0).abs() < 1e-2, "{w}");
    }
}
