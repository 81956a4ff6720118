//! Non-maximum suppression over a detector's inference output `[B, 4 + nc, N]` (`cx, cy, w, h`
//! then class scores), as ultralytics' `non_max_suppression` with `multi_label=False`: keep
//! anchors whose best class score exceeds `conf`, take that class, cap the candidates at
//! `max_nms` by score, run class-aware greedy NMS (classes separated by offsetting boxes by
//! `class · max_wh`, unless `agnostic`) and keep at most `max_det` per image.
//!
//! The greedy pass is torchvision's `nms` done in plain Rust with the same `f32` arithmetic
//! (areas, intersection, `inter / (area_i + area_j - inter)`, compared to the threshold in
//! `f64`), so it keeps exactly the boxes torchvision keeps whenever scores are distinct (ties
//! are broken by anchor index here; torchvision's unstable sort leaves them unspecified).

use tch::{Device, Kind, Tensor};

use crate::boxes::Xyxy;

/// Thresholds and limits; defaults are ultralytics' `non_max_suppression` defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct NmsConfig {
    /// Keep boxes whose best class score is strictly greater than this (`conf_thres`).
    pub conf: f32,
    /// Suppress boxes whose IoU with a kept box is strictly greater than this (`iou_thres`).
    pub iou: f64,
    /// Detections kept per image.
    pub max_det: usize,
    /// Candidates (highest scores first) passed to the greedy pass per image.
    pub max_nms: usize,
    /// Per-class coordinate offset separating classes in class-aware NMS.
    pub max_wh: f32,
    /// One NMS over all classes instead of one per class.
    pub agnostic: bool,
    /// Only these classes, when set.
    pub classes: Option<Vec<i64>>,
}

impl Default for NmsConfig {
    fn default() -> Self {
        Self {
            conf: 0.25,
            iou: 0.45,
            max_det: 300,
            max_nms: 30_000,
            max_wh: 7680.0,
            agnostic: false,
            classes: None,
        }
    }
}

/// One kept box.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Detection {
    /// Corners in the prediction's pixel frame (the network input).
    pub bbox: Xyxy,
    pub score: f32,
    pub class: i64,
    /// Anchor index along the prediction's `N` axis.
    pub index: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum NmsError {
    #[error("predictions must be [B, 4 + nc, N] with nc >= 1, got {0:?}")]
    Shape(Vec<i64>),
    #[error("confidence threshold {0} is outside [0, 1]")]
    Conf(f32),
    #[error("IoU threshold {0} is outside [0, 1]")]
    Iou(f64),
    #[error("cannot read predictions: {0}")]
    Tensor(#[from] tch::TchError),
}

/// Runs NMS on every image of `pred` (`[B, 4 + nc, N]`, any device and float kind).
/// Detections per image are in descending score order.
pub fn non_max_suppression(
    pred: &Tensor,
    cfg: &NmsConfig,
) -> Result<Vec<Vec<Detection>>, NmsError> {
    let shape = pred.size();
    let &[batch, channels, n] = shape.as_slice() else { return Err(NmsError::Shape(shape)) };
    if channels < 5 {
        return Err(NmsError::Shape(shape));
    }
    if !(0.0..=1.0).contains(&cfg.conf) {
        return Err(NmsError::Conf(cfg.conf));
    }
    if !(0.0..=1.0).contains(&cfg.iou) {
        return Err(NmsError::Iou(cfg.iou));
    }
    // [B, N, 4 + nc] rows, on the CPU as f32.
    let rows =
        pred.to_device(Device::Cpu).to_kind(Kind::Float).transpose(1, 2).contiguous().view(-1);
    let data = Vec::<f32>::try_from(&rows)?;
    let (c, n) = (channels as usize, n as usize);
    Ok((0..batch as usize).map(|b| nms_image(&data[b * n * c..(b + 1) * n * c], c, cfg)).collect())
}

/// One image: `rows` is `[N, 4 + nc]` row-major.
fn nms_image(rows: &[f32], c: usize, cfg: &NmsConfig) -> Vec<Detection> {
    let mut cand: Vec<Detection> = rows
        .chunks_exact(c)
        .enumerate()
        .filter_map(|(index, row)| {
            let (score, class) = best_class(&row[4..])?;
            if score <= cfg.conf {
                return None;
            }
            if cfg.classes.as_ref().is_some_and(|cl| !cl.contains(&(class as i64))) {
                return None;
            }
            let (x, y, w2, h2) = (row[0], row[1], row[2] / 2.0, row[3] / 2.0);
            Some(Detection {
                bbox: [x - w2, y - h2, x + w2, y + h2],
                score,
                class: class as i64,
                index,
            })
        })
        .collect();
    // Descending score, ties by anchor index (a stable sort of anchors in order).
    cand.sort_by(|a, b| b.score.total_cmp(&a.score));
    cand.truncate(cfg.max_nms);
    let offset_boxes: Vec<Xyxy> = cand
        .iter()
        .map(|d| {
            let off = if cfg.agnostic { 0.0 } else { d.class as f32 * cfg.max_wh };
            d.bbox.map(|v| v + off)
        })
        .collect();
    let scores: Vec<f32> = cand.iter().map(|d| d.score).collect();
    nms(&offset_boxes, &scores, cfg.iou, cfg.max_det).into_iter().map(|i| cand[i]).collect()
}

/// `(max, first argmax)` of the class scores; `None` if any is NaN (torch's max propagates it,
/// and a NaN score never passes the threshold).
fn best_class(scores: &[f32]) -> Option<(f32, usize)> {
    let mut best: Option<(f32, usize)> = None;
    for (j, &s) in scores.iter().enumerate() {
        if s.is_nan() {
            return None;
        }
        if best.is_none_or(|(b, _)| s > b) {
            best = Some((s, j));
        }
    }
    best
}

/// Greedy NMS, torchvision semantics: visit boxes by descending score (ties by index), keep a
/// box unless a kept box overlaps it with IoU `> iou`; stop after `limit` keeps (the first
/// `limit` keeps of the full pass). Returns indices into `boxes`, in keep order.
pub fn nms(boxes: &[Xyxy], scores: &[f32], iou: f64, limit: usize) -> Vec<usize> {
    let n = boxes.len().min(scores.len());
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let areas: Vec<f32> = boxes.iter().map(|b| (b[2] - b[0]) * (b[3] - b[1])).collect();
    let mut suppressed = vec![false; n];
    let mut keep = Vec::new();
    for (pos, &i) in order.iter().enumerate() {
        if keep.len() >= limit {
            break;
        }
        if suppressed[i] {
            continue;
        }
        keep.push(i);
        let bi = boxes[i];
        for &j in &order[pos + 1..] {
            if suppressed[j] {
                continue;
            }
            let bj = boxes[j];
            let w = (bi[2].min(bj[2]) - bi[0].max(bj[0])).max(0.0);
            let h = (bi[3].min(bj[3]) - bi[1].max(bj[1])).max(0.0);
            let inter = w * h;
            let ovr = inter / (areas[i] + areas[j] - inter);
            if f64::from(ovr) > iou {
                suppressed[j] = true;
            }
        }
    }
    keep
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn greedy_keeps_best_and_disjoint() {
        let boxes = [[0.0, 0.0, 10.0, 10.0], [1.0, 0.0, 11.0, 10.0], [20.0, 20.0, 30.0, 30.0]];
        let keep = nms(&boxes, &[0.8, 0.9, 0.7], 0.5, usize::MAX);
        assert_eq!(keep, vec![1, 2]);
        assert_eq!(nms(&boxes, &[0.8, 0.9, 0.7], 0.5, 1), vec![1]);
        // IoU 9/11 ≈ 0.82 is not > 0.9: both kept.
        assert_eq!(nms(&boxes, &[0.8, 0.9, 0.7], 0.9, usize::MAX), vec![1, 0, 2]);
    }

    #[test]
    fn class_aware_and_thresholds() {
        // Two overlapping boxes of different classes and one below the threshold; [1, 4+2, 3].
        let cols: [[f32; 6]; 3] = [
            [5.0, 5.0, 10.0, 10.0, 0.9, 0.1],
            [5.5, 5.0, 10.0, 10.0, 0.2, 0.8],
            [50.0, 50.0, 4.0, 4.0, 0.1, 0.2],
        ];
        let flat: Vec<f32> = cols.iter().flatten().copied().collect();
        let pred = Tensor::from_slice(&flat).view([1, 3, 6]).transpose(1, 2);
        let cfg = NmsConfig::default();
        let out = non_max_suppression(&pred, &cfg).unwrap();
        assert_eq!(out.len(), 1);
        let got: Vec<(usize, i64)> = out[0].iter().map(|d| (d.index, d.class)).collect();
        assert_eq!(got, vec![(0, 0), (1, 1)]);
        assert_eq!(out[0][0].bbox, [0.0, 0.0, 10.0, 10.0]);

        let agnostic =
            non_max_suppression(&pred, &NmsConfig { agnostic: true, ..cfg.clone() }).unwrap();
        assert_eq!(agnostic[0].len(), 1);
        let only1 =
            non_max_suppression(&pred, &NmsConfig { classes: Some(vec![1]), ..cfg.clone() })
                .unwrap();
        assert_eq!(only1[0].iter().map(|d| d.index).collect::<Vec<_>>(), vec![1]);
        let low = non_max_suppression(&pred, &NmsConfig { conf: 0.15, max_det: 2, ..cfg.clone() })
            .unwrap();
        assert_eq!(low[0].iter().map(|d| d.index).collect::<Vec<_>>(), vec![0, 1]);
        let capped =
            non_max_suppression(&pred, &NmsConfig { conf: 0.15, max_nms: 1, ..cfg }).unwrap();
        assert_eq!(capped[0].iter().map(|d| d.index).collect::<Vec<_>>(), vec![0]);
    }

    #[test]
    fn bad_inputs_are_errors() {
        let cfg = NmsConfig::default();
        let t = Tensor::zeros([2, 4, 3], (Kind::Float, Device::Cpu));
        assert!(matches!(non_max_suppression(&t, &cfg), Err(NmsError::Shape(_))));
        let t = Tensor::zeros([5, 3], (Kind::Float, Device::Cpu));
        assert!(matches!(non_max_suppression(&t, &cfg), Err(NmsError::Shape(_))));
        let t = Tensor::zeros([1, 5, 3], (Kind::Float, Device::Cpu));
        assert!(matches!(
            non_max_suppression(&t, &NmsConfig { iou: 1.5, ..cfg.clone() }),
            Err(NmsError::Iou(_))
        ));
        assert!(non_max_suppression(&t, &cfg).unwrap()[0].is_empty());
    }
}
