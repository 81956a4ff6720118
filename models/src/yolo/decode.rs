//! From the head's raw per-level maps to ultralytics' inference output `[B, 4 + nc, N]`:
//! the DFL integral turns each side's `reg_max`-bin distribution into an expected distance,
//! distances from the anchor become a box (`cx, cy, w, h` in input pixels) and class logits go
//! through a sigmoid. NMS and the metrics start from this tensor.

use tch::Tensor;

use super::anchors::{GRID_CELL_OFFSET, level_sizes, make_anchors};

/// Concatenates per-level raw maps `[B, 4·reg_max + nc, H, W]` along anchors and splits the
/// channels: box distributions `[B, 4·reg_max, N]` and class logits `[B, nc, N]`.
pub fn flatten_levels(levels: &[Tensor], reg_max: i64, nc: i64) -> (Tensor, Tensor) {
    let flat: Vec<Tensor> = levels.iter().map(|l| l.flatten(2, -1)).collect();
    let all = Tensor::cat(&flat, 2); // [B, 4·reg_max + nc, N]
    let parts = all.split_with_sizes([4 * reg_max, nc], 1);
    (parts[0].shallow_clone(), parts[1].shallow_clone())
}

/// DFL integral: `[B, 4·reg_max, N]` logits -> `[B, 4, N]` expected distances (in strides),
/// as softmax over bins followed by ultralytics' fixed 1×1 conv whose weight `[1, reg_max, 1, 1]`
/// is `0, 1, ..., reg_max - 1`.
pub fn dfl_integral(box_logits: &Tensor, reg_max: i64, weight: &Tensor) -> Tensor {
    let s = box_logits.size();
    let (b, a) = (s[0], s[2]);
    box_logits
        .view([b, 4, reg_max, a])
        .transpose(2, 1) // [B, reg_max, 4, N]
        .softmax(1, box_logits.kind())
        .conv2d(weight, None::<&Tensor>, 1, 0, 1, 1) // [B, 1, 4, N]
        .view([b, 4, a])
}

/// Left/top/right/bottom distances -> boxes, along dimension `dim` (size 4 for `distance`,
/// 2 for `anchor_points`): `cx, cy, w, h` when `xywh`, else `x1, y1, x2, y2`.
pub fn dist2bbox(distance: &Tensor, anchor_points: &Tensor, xywh: bool, dim: i64) -> Tensor {
    let lt_rb = distance.chunk(2, dim);
    let x1y1 = anchor_points - &lt_rb[0];
    let x2y2 = anchor_points + &lt_rb[1];
    if xywh {
        let c_xy = (&x1y1 + &x2y2) / 2.0;
        let wh = x2y2 - x1y1;
        Tensor::cat(&[c_xy, wh], dim)
    } else {
        Tensor::cat(&[x1y1, x2y2], dim)
    }
}

/// Raw levels -> `[B, 4 + nc, N]`: `cx, cy, w, h` in input pixels, then sigmoid class scores.
pub fn decode(
    levels: &[Tensor],
    strides: &[f64],
    reg_max: i64,
    nc: i64,
    dfl_weight: &Tensor,
) -> Tensor {
    let sizes = level_sizes(levels);
    let Some(first) = levels.first() else { return Tensor::new() };
    let (box_logits, cls_logits) = flatten_levels(levels, reg_max, nc);
    let (anchors, stride_t) =
        make_anchors(&sizes, strides, GRID_CELL_OFFSET, (first.kind(), first.device()));
    let anchors = anchors.transpose(0, 1).unsqueeze(0); // [1, 2, N]
    let stride_t = stride_t.transpose(0, 1); // [1, N]
    let dist = dfl_integral(&box_logits, reg_max, dfl_weight); // [B, 4, N]
    let dbox = dist2bbox(&dist, &anchors, true, 1) * stride_t;
    Tensor::cat(&[dbox, cls_logits.sigmoid()], 1)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn uniform_bins_give_the_middle_distance() {
        let w = Tensor::arange(16, (Kind::Float, Device::Cpu)).view([1, 16, 1, 1]);
        let logits = Tensor::zeros([1, 64, 5], (Kind::Float, Device::Cpu));
        let d = dfl_integral(&logits, 16, &w);
        assert_eq!(d.size(), vec![1, 4, 5]);
        assert!((d - 7.5).abs().max().double_value(&[]) < 1e-5);
    }

    #[test]
    fn distances_to_boxes() {
        let d = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0]).view([1, 4, 1]);
        let a = Tensor::from_slice(&[10.0f32, 20.0]).view([1, 2, 1]);
        let xyxy: Vec<f32> = Vec::try_from(dist2bbox(&d, &a, false, 1).flatten(0, -1)).unwrap();
        assert_eq!(xyxy, vec![9.0, 18.0, 13.0, 24.0]);
        let xywh: Vec<f32> = Vec::try_from(dist2bbox(&d, &a, true, 1).flatten(0, -1)).unwrap();
        assert_eq!(xywh, vec![11.0, 21.0, 4.0, 6.0]);
    }
}
