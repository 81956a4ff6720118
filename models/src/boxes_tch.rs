//! Box geometry on tensors, for losses and label assignment: centre/corner conversions,
//! box-to-distance encoding and the Complete IoU (CIoU) with its gradient.
//!
//! Boxes are `[..., 4]` tensors (any leading shape, broadcasting where noted); corner boxes are
//! `x1, y1, x2, y2`, centre boxes `cx, cy, w, h`. The arithmetic is written in the same order
//! as ultralytics' (`xywh2xyxy`, `xyxy2xywh`, `bbox2dist`, `bbox_iou(..., CIoU=True)`), so that
//! float32 results agree to the last bit: the task-aligned assigner ranks candidates by a power
//! of the CIoU, and a one-ulp difference can change which anchors it picks.
//! The per-box `[f32; 4]` versions are in [`crate::boxes`].

use std::f64::consts::PI;

use tch::Tensor;

/// The `eps` of ultralytics' `bbox_iou`.
pub const CIOU_EPS: f64 = 1e-7;

/// `[..., 4]` `cx, cy, w, h` -> `[..., 4]` `x1, y1, x2, y2`.
pub fn xywh_to_xyxy(b: &Tensor) -> Tensor {
    let xy = b.narrow(-1, 0, 2);
    let half_wh = b.narrow(-1, 2, 2) / 2.0;
    Tensor::cat(&[&xy - &half_wh, &xy + &half_wh], -1)
}

/// `[..., 4]` `x1, y1, x2, y2` -> `[..., 4]` `cx, cy, w, h`.
pub fn xyxy_to_xywh(b: &Tensor) -> Tensor {
    let c = b.chunk(4, -1); // 4 × [..., 1]
    Tensor::cat(&[(&c[0] + &c[2]) / 2.0, (&c[1] + &c[3]) / 2.0, &c[2] - &c[0], &c[3] - &c[1]], -1)
}

/// Corner boxes `[..., 4]` -> distances `[..., 4]` (left, top, right, bottom) from the points
/// `[..., 2]` (broadcast against the boxes), clamped to `[0, max - 0.01]` when `max` is given
/// (the DFL target range for `reg_max` bins is `max = reg_max - 1`).
pub fn bbox_to_dist(points: &Tensor, boxes: &Tensor, max: Option<f64>) -> Tensor {
    let corners = boxes.chunk(2, -1); // x1y1, x2y2: [..., 2]
    let dist = Tensor::cat(&[points - &corners[0], &corners[1] - points], -1);
    match max {
        Some(m) => dist.clamp(0.0, m - 0.01),
        None => dist,
    }
}

/// Complete IoU of corner boxes `box1` and `box2` (`[..., 4]`, broadcast against each other):
/// `IoU - (ρ²/c² + α·v)` with `ρ` the centre distance, `c` the diagonal of the enclosing box,
/// `v = 4/π² (atan(w2/h2) - atan(w1/h1))²` and the trade-off `α = v / (1 - IoU + v + eps)`
/// held constant for the gradient (as in the CIoU paper and ultralytics). Heights get `+eps`.
/// Returns `[..., 1]`, in `(-1.5, 1]`; differentiable in both arguments.
pub fn ciou(box1: &Tensor, box2: &Tensor, eps: f64) -> Tensor {
    let a = box1.chunk(4, -1); // b1 x1, y1, x2, y2: [..., 1] each
    let b = box2.chunk(4, -1);
    let (w1, h1) = (&a[2] - &a[0], &a[3] - &a[1] + eps);
    let (w2, h2) = (&b[2] - &b[0], &b[3] - &b[1] + eps);

    let inter = (a[2].minimum(&b[2]) - a[0].maximum(&b[0])).clamp_min(0.0)
        * (a[3].minimum(&b[3]) - a[1].maximum(&b[1])).clamp_min(0.0);
    let union = &w1 * &h1 + &w2 * &h2 - &inter + eps;
    let iou = inter / union;

    let cw = a[2].maximum(&b[2]) - a[0].minimum(&b[0]); // enclosing box
    let ch = a[3].maximum(&b[3]) - a[1].minimum(&b[1]);
    let c2 = cw.pow_tensor_scalar(2) + ch.pow_tensor_scalar(2) + eps;
    let rho2 = ((&b[0] + &b[2] - &a[0] - &a[2]).pow_tensor_scalar(2)
        + (&b[1] + &b[3] - &a[1] - &a[3]).pow_tensor_scalar(2))
        / 4.0;
    let v = ((w2 / h2).atan() - (w1 / h1).atan()).pow_tensor_scalar(2) * (4.0 / (PI * PI));
    let alpha = {
        let (v, iou) = (v.detach(), iou.detach());
        &v / ((-&iou + 1.0) + &v + eps)
    };
    iou - (rho2 / c2 + v * alpha)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use tch::{Device, Kind};

    fn t(v: &[f32], shape: &[i64]) -> Tensor {
        Tensor::from_slice(v).view(shape)
    }

    fn vec(x: &Tensor) -> Vec<f32> {
        Vec::try_from(x.flatten(0, -1).to_kind(Kind::Float)).unwrap()
    }

    #[test]
    fn conversions_round_trip() {
        let xywh = t(&[10.0, 20.0, 4.0, 6.0], &[1, 4]);
        let xyxy = xywh_to_xyxy(&xywh);
        assert_eq!(vec(&xyxy), vec![8.0, 17.0, 12.0, 23.0]);
        assert_eq!(vec(&xyxy_to_xywh(&xyxy)), vec![10.0, 20.0, 4.0, 6.0]);
    }

    #[test]
    fn distances_are_clamped() {
        let p = t(&[5.0, 5.0], &[1, 2]);
        let b = t(&[4.0, 0.0, 30.0, 6.0], &[1, 4]);
        assert_eq!(vec(&bbox_to_dist(&p, &b, None)), vec![1.0, 5.0, 25.0, 1.0]);
        let d = vec(&bbox_to_dist(&p, &b, Some(15.0)));
        assert!((d[2] - 14.99).abs() < 1e-5);
    }

    #[test]
    fn ciou_of_identical_boxes_is_one_and_penalises_distance() {
        let a = t(&[0.0, 0.0, 10.0, 10.0], &[1, 4]);
        let same = ciou(&a, &a, CIOU_EPS).double_value(&[0, 0]);
        assert!((same - 1.0).abs() < 1e-5, "{same}");
        // Same size, shifted by 5: IoU 1/3, centre distance² 25, enclosing diagonal² 15² + 10².
        let b = t(&[5.0, 0.0, 15.0, 10.0], &[1, 4]);
        let c = ciou(&a, &b, CIOU_EPS).double_value(&[0, 0]);
        assert!((c - (1.0 / 3.0 - 25.0 / 325.0)).abs() < 1e-5, "{c}");
        // Disjoint boxes are negative.
        let far = t(&[50.0, 50.0, 60.0, 80.0], &[1, 4]);
        assert!(ciou(&a, &far, CIOU_EPS).double_value(&[0, 0]) < 0.0);
    }

    #[test]
    fn ciou_gradient_flows_to_both_boxes() {
        let a = t(&[0.0, 0.0, 10.0, 10.0], &[1, 4]).set_requires_grad(true);
        let b = t(&[2.0, 1.0, 13.0, 9.0], &[1, 4]).to_device(Device::Cpu).set_requires_grad(true);
        ciou(&a, &b, CIOU_EPS).sum(Kind::Float).backward();
        assert!(a.grad().abs().sum(Kind::Float).double_value(&[]) > 0.0);
        assert!(b.grad().abs().sum(Kind::Float).double_value(&[]) > 0.0);
    }
}
