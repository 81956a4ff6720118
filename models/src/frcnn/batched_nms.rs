//! torchvision's `batched_nms`: greedy NMS that never lets boxes of different categories (RPN
//! levels, or classes) suppress each other. The greedy pass is [`crate::nms::nms`]
//! (torchvision's CPU kernel: stable descending score order, float32 IoU, suppress when
//! `IoU > threshold`).
//!
//! Like torchvision on the CPU, it takes one of two routes, which can differ in the last bit
//! of an IoU and so are both kept: above 4,000 coordinates (1,000 boxes) one NMS per category
//! ("vanilla"), the keeps then ordered by descending score; otherwise one NMS over all boxes
//! shifted apart by `category · (max coordinate + 1)` ("coordinate trick").

use tch::{Device, Kind, Tensor};

use crate::boxes::Xyxy;
use crate::nms::nms;

/// Above this many coordinates (`4·N`), one NMS per category (torchvision's CPU cut-over).
pub const VANILLA_ABOVE_COORDS: i64 = 4000;

/// Indices `[K]` (int64, on the boxes' device) of the boxes kept, in descending score order.
/// `boxes` `[N, 4]` (`x1, y1, x2, y2`), `scores` `[N]`, `idxs` `[N]` (integer categories).
pub fn batched_nms(
    boxes: &Tensor,
    scores: &Tensor,
    idxs: &Tensor,
    iou_threshold: f64,
) -> Result<Tensor, tch::TchError> {
    let device = boxes.device();
    let n = boxes.size()[0];
    if n == 0 {
        return Ok(Tensor::zeros([0], (Kind::Int64, device)));
    }
    let cpu = |t: &Tensor, k: Kind| t.to_device(Device::Cpu).to_kind(k).contiguous().view([-1]);
    let b: Vec<f32> = Vec::try_from(cpu(boxes, Kind::Float))?;
    let s: Vec<f32> = Vec::try_from(cpu(scores, Kind::Float))?;
    let c: Vec<i64> = Vec::try_from(cpu(idxs, Kind::Int64))?;
    let boxes: Vec<Xyxy> = b.chunks_exact(4).map(|r| [r[0], r[1], r[2], r[3]]).collect();
    let keep = if 4 * n > VANILLA_ABOVE_COORDS {
        per_category(&boxes, &s, &c, iou_threshold)
    } else {
        coordinate_trick(&boxes, &s, &c, iou_threshold)
    };
    let keep: Vec<i64> = keep.into_iter().map(|i| i as i64).collect();
    Ok(Tensor::from_slice(&keep).to_device(device))
}

/// One NMS per category; the union of keeps sorted by descending score (stable: ties by index).
fn per_category(boxes: &[Xyxy], scores: &[f32], cats: &[i64], iou: f64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..boxes.len()).collect();
    order.sort_by_key(|&i| cats[i]); // stable: index order within a category
    let mut keep_mask = vec![false; boxes.len()];
    for group in order.chunk_by(|&a, &b| cats[a] == cats[b]) {
        let gb: Vec<Xyxy> = group.iter().map(|&i| boxes[i]).collect();
        let gs: Vec<f32> = group.iter().map(|&i| scores[i]).collect();
        for k in nms(&gb, &gs, iou, usize::MAX) {
            keep_mask[group[k]] = true;
        }
    }
    let mut keep: Vec<usize> = (0..boxes.len()).filter(|&i| keep_mask[i]).collect();
    keep.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    keep
}

/// One NMS with each category shifted by `category · (max coordinate + 1)` (float32, as
/// torchvision computes the offsets).
fn coordinate_trick(boxes: &[Xyxy], scores: &[f32], cats: &[i64], iou: f64) -> Vec<usize> {
    let max_coordinate = boxes.iter().flatten().copied().fold(f32::NEG_INFINITY, f32::max);
    let shifted: Vec<Xyxy> = boxes
        .iter()
        .zip(cats)
        .map(|(b, &c)| {
            let off = c as f32 * (max_coordinate + 1.0);
            b.map(|v| v + off)
        })
        .collect();
    nms(&shifted, scores, iou, usize::MAX)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn run(boxes: &[[f32; 4]], scores: &[f32], cats: &[i64], iou: f64) -> Vec<i64> {
        let flat: Vec<f32> = boxes.iter().flatten().copied().collect();
        let b = Tensor::from_slice(&flat).view([-1, 4]);
        let k =
            batched_nms(&b, &Tensor::from_slice(scores), &Tensor::from_slice(cats), iou).unwrap();
        Vec::try_from(k).unwrap()
    }

    #[test]
    fn categories_do_not_suppress_each_other() {
        let boxes = [[0.0, 0.0, 10.0, 10.0], [1.0, 0.0, 11.0, 10.0], [0.5, 0.0, 10.5, 10.0]];
        assert_eq!(run(&boxes, &[0.9, 0.8, 0.7], &[0, 0, 0], 0.5), vec![0]);
        assert_eq!(run(&boxes, &[0.9, 0.8, 0.7], &[0, 1, 0], 0.5), vec![0, 1]);
        assert_eq!(run(&boxes, &[0.7, 0.8, 0.9], &[1, 0, 2], 0.5), vec![2, 1, 0]);
        assert!(run(&[], &[], &[], 0.5).is_empty());
    }

    #[test]
    fn both_routes_agree_on_separated_boxes() {
        // 1,200 boxes (the per-category route): a grid of disjoint pairs, each pair overlapping.
        let mut boxes = Vec::new();
        let mut scores = Vec::new();
        let mut cats = Vec::new();
        for i in 0..600 {
            let x = (i % 30) as f32 * 20.0;
            let y = (i / 30) as f32 * 20.0;
            boxes.push([x, y, x + 10.0, y + 10.0]);
            boxes.push([x + 1.0, y, x + 11.0, y + 10.0]);
            scores.push(1.0 - i as f32 * 1e-3);
            scores.push(1.0 - i as f32 * 1e-3 - 5e-4);
            cats.push(i64::from(i % 2 == 0));
            cats.push(i64::from(i % 2 == 0));
        }
        let k = run(&boxes, &scores, &cats, 0.5);
        assert_eq!(k.len(), 600);
        assert!(k.iter().all(|i| i % 2 == 0));
        let few = run(&boxes[..200], &scores[..200], &cats[..200], 0.5);
        assert_eq!(few, k[..100].to_vec());
    }
}
