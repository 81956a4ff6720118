//! The YOLO11 training loss, numerically ultralytics' `v8DetectionLoss` (8.4): the head's raw
//! per-level maps and a batch of labels in, `(box + cls + dfl) × B` out.
//!
//! Per batch of `B` images with `A` anchors over the levels and `nc` classes:
//! 1. labels `[N, 6]` = `(image, class, cx, cy, w, h)` (centre/size normalised to the image)
//!    become padded per-image ground truths `[B, M, 5]` in corner pixels;
//! 2. predicted boxes are decoded (softmax over the `reg_max` bins of each side, expectation,
//!    distances from the anchor centre), then the [`TaskAlignedAssigner`] picks foreground
//!    anchors and soft class targets from the detached predictions;
//! 3. **cls**: BCE-with-logits of all `B·A·nc` class logits against the soft targets, summed,
//!    over `S = max(1, Σ target scores)` (or the [`ClsLoss`] variants for class imbalance);
//! 4. **box**: `Σ_fg (1 - CIoU(pred, target)) · w / S` with `w` the anchor's target score, in
//!    grid units (boxes divided by the stride);
//! 5. **dfl**: distribution focal loss of the side distributions against the target distances
//!    (grid units, clamped to `[0, reg_max - 1.01]`), weighted like the box loss;
//! 6. each term times its gain ([`LossGains`], ultralytics' defaults box 7.5, cls 0.5,
//!    dfl 1.5); the total is their sum times `B` (what ultralytics back-propagates), the
//!    reported components are the gained terms without the batch factor (its `loss_items`).
//!
//! The parity test (`models/tests/yolo_loss_parity.rs`) checks components, total and gradients
//! against ultralytics on random predictions.

use tch::{Device, Kind, Reduction, Tensor};

use super::anchors::{GRID_CELL_OFFSET, level_sizes, make_anchors};
use super::assigner::{AssignError, Assignment, TaskAlignedAssigner};
use super::decode::{dist2bbox, flatten_levels};
use crate::boxes_tch::{CIOU_EPS, bbox_to_dist, ciou, xywh_to_xyxy};

/// Weights of the three loss terms.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossGains {
    pub box_gain: f64,
    pub cls_gain: f64,
    pub dfl_gain: f64,
}

impl Default for LossGains {
    /// ultralytics' defaults: box 7.5, cls 0.5, dfl 1.5.
    fn default() -> Self {
        Self { box_gain: 7.5, cls_gain: 0.5, dfl_gain: 1.5 }
    }
}

/// How class logits are scored against the soft targets `t ∈ [0, 1]` (`p = σ(logit)`).
/// Every variant is summed over anchors and classes and divided by the target-score sum.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ClsLoss {
    /// `-(w·t·log p + (1 - t)·log(1 - p))`; `pos_weight` `w` (> 0) up-weights the positive
    /// term against class imbalance. `None` (the default) is ultralytics' loss.
    Bce { pos_weight: Option<f64> },
    /// Focal loss: the BCE times `(1 - p_t)^gamma` with `p_t = t·p + (1 - t)(1 - p)`, and
    /// times `t·alpha + (1 - t)(1 - alpha)` when `alpha > 0` (ultralytics' `FocalLoss`
    /// elementwise; its usual setting is gamma 1.5, alpha 0.25). `gamma >= 0`, `alpha < 1`.
    Focal { gamma: f64, alpha: f64 },
}

impl Default for ClsLoss {
    fn default() -> Self {
        Self::Bce { pos_weight: None }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LossError {
    #[error("invalid loss setting: {0}")]
    Config(String),
    #[error("expected {expected} prediction levels (one per stride), got {got}")]
    Levels { expected: usize, got: usize },
    #[error(
        "prediction level {level} must be a float [B, {channels}, H, W] map with the batch size, \
         kind and device of level 0, got {shape:?} {kind:?} on {device:?}"
    )]
    Level { level: usize, channels: i64, shape: Vec<i64>, kind: Kind, device: Device },
    #[error(
        "image size {imgsz:?} (height, width) does not match the first level: {grid:?} cells \
         of stride {stride}"
    )]
    ImageSize { imgsz: [i64; 2], grid: [i64; 2], stride: f64 },
    #[error(
        "targets must be a float [N, 6] tensor (image, class, cx, cy, w, h), got {shape:?} {kind:?}"
    )]
    Targets { shape: Vec<i64>, kind: Kind },
    #[error("target row {row} is not finite")]
    NonFinite { row: usize },
    #[error("target row {row}: image index {value} is not an integer in 0..{batch}")]
    Image { row: usize, value: f64, batch: i64 },
    #[error("target row {row}: class {value} is not an integer in 0..{num_classes}")]
    Class { row: usize, value: f64, num_classes: i64 },
    #[error("label assignment: {0}")]
    Assign(#[from] AssignError),
    #[error(transparent)]
    Torch(#[from] tch::TchError),
}

/// A computed loss.
#[derive(Debug)]
pub struct LossOutput {
    /// `[]`, differentiable: `(box + cls + dfl) × B` with the gains applied.
    pub total: Tensor,
    /// `[3]`, detached: the gained box, cls and dfl terms (no batch factor).
    pub components: Tensor,
    /// The label assignment behind it (detached).
    pub assignment: Assignment,
}

impl LossOutput {
    /// The components as numbers: `[box, cls, dfl]`.
    pub fn component_values(&self) -> Result<[f64; 3], LossError> {
        let v = Vec::<f64>::try_from(self.components.to_kind(Kind::Double).to_device(Device::Cpu))?;
        match v.as_slice() {
            &[b, c, d] => Ok([b, c, d]),
            _ => Err(LossError::Config(format!("{} loss components", v.len()))),
        }
    }
}

/// The YOLO11 detection loss for `num_classes` classes.
#[derive(Debug, Clone)]
pub struct YoloLoss {
    num_classes: i64,
    reg_max: i64,
    strides: Vec<f64>,
    gains: LossGains,
    cls: ClsLoss,
    assigner: TaskAlignedAssigner,
}

impl YoloLoss {
    /// A loss for a head with `num_classes` classes, `reg_max` DFL bins per side and the
    /// given level strides (YOLO11: 16 and `[8, 16, 32]`). Settings are checked by
    /// [`YoloLoss::validate`], which every computation calls first.
    pub fn new(
        num_classes: i64,
        reg_max: i64,
        strides: &[f64],
        gains: LossGains,
        cls: ClsLoss,
    ) -> Self {
        let mut assigner = TaskAlignedAssigner::new(num_classes);
        // ultralytics widens tiny boxes to the second stride (the first when there is one).
        if let Some(&s) = strides.get(1).or(strides.first()) {
            assigner.min_gt_side = s;
        }
        Self { num_classes, reg_max, strides: strides.to_vec(), gains, cls, assigner }
    }

    /// ultralytics' loss for YOLO11 (reg_max 16, strides 8/16/32, default gains, plain BCE).
    pub fn yolo11(num_classes: i64) -> Self {
        Self::new(
            num_classes,
            super::head::REG_MAX,
            &super::head::STRIDES,
            LossGains::default(),
            ClsLoss::default(),
        )
    }

    /// The assigner, to change its settings (top-k, α, β).
    pub fn assigner_mut(&mut self) -> &mut TaskAlignedAssigner {
        &mut self.assigner
    }

    pub fn gains(&self) -> LossGains {
        self.gains
    }

    pub fn cls_loss(&self) -> ClsLoss {
        self.cls
    }

    /// Checks the settings.
    pub fn validate(&self) -> Result<(), LossError> {
        let bad = |m: String| Err(LossError::Config(m));
        if self.num_classes < 1 {
            return bad(format!("number of classes must be at least 1, got {}", self.num_classes));
        }
        if self.reg_max < 2 {
            return bad(format!("reg_max must be at least 2, got {}", self.reg_max));
        }
        if self.strides.is_empty() || self.strides.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
            return bad(format!("strides must be positive, got {:?}", self.strides));
        }
        let g = self.gains;
        if [g.box_gain, g.cls_gain, g.dfl_gain].iter().any(|v| !(v.is_finite() && *v >= 0.0)) {
            return bad(format!("gains must be finite and non-negative, got {g:?}"));
        }
        match self.cls {
            ClsLoss::Bce { pos_weight: Some(w) } if !(w.is_finite() && w > 0.0) => {
                bad(format!("pos_weight must be positive, got {w}"))
            }
            ClsLoss::Focal { gamma, alpha }
                if !(gamma.is_finite() && gamma >= 0.0 && alpha.is_finite() && alpha < 1.0) =>
            {
                bad(format!("focal loss needs gamma >= 0 and alpha < 1, got {gamma}, {alpha}"))
            }
            _ => Ok(()),
        }
    }

    /// The loss of raw head maps `levels` (`[B, 4·reg_max + nc, H_i, W_i]` per stride) for
    /// `targets` `[N, 6]` on input images of `imgsz = [height, width]` pixels. Returns the
    /// differentiable total and `[box, cls, dfl]` (see [`LossOutput`]).
    ///
    /// Target rows are `(image index, class, cx, cy, w, h)`, the box normalised to the image;
    /// index and class must be integers in range. Rows may come in any order (an image's rows
    /// keep theirs; ultralytics needs them grouped by image). As in ultralytics, a box whose
    /// pixel corners sum to 0 or less counts as padding.
    pub fn compute(
        &self,
        levels: &[Tensor],
        targets: &Tensor,
        imgsz: [i64; 2],
    ) -> Result<(Tensor, [f64; 3]), LossError> {
        let out = self.compute_detailed(levels, targets, Some(imgsz))?;
        let parts = out.component_values()?;
        Ok((out.total, parts))
    }

    /// [`YoloLoss::compute`] with the assignment and the components as a tensor. Without
    /// `imgsz` the image size is taken as the first level's grid times its stride (as
    /// ultralytics does); with it, the two must agree.
    pub fn compute_detailed(
        &self,
        levels: &[Tensor],
        targets: &Tensor,
        imgsz: Option<[i64; 2]>,
    ) -> Result<LossOutput, LossError> {
        self.validate()?;
        let (b, grid0) = self.check_levels(levels)?;
        let Some(first) = levels.first() else {
            return Err(LossError::Levels { expected: self.strides.len(), got: 0 });
        };
        let (kind, device) = (first.kind(), first.device());
        let stride0 = self.strides[0];
        // Image size in pixels (height, width), from the first level.
        let (img_h, img_w) = (grid0[0] as f64 * stride0, grid0[1] as f64 * stride0);
        if let Some(sz) = imgsz
            && (sz[0] as f64, sz[1] as f64) != (img_h, img_w)
        {
            return Err(LossError::ImageSize { imgsz: sz, grid: grid0, stride: stride0 });
        }
        let (nc, reg_max) = (self.num_classes, self.reg_max);

        let (box_logits, cls_logits) = flatten_levels(levels, reg_max, nc);
        let pred_distri = box_logits.permute([0, 2, 1]).contiguous(); // [B, A, 4·reg_max]
        let pred_scores = cls_logits.permute([0, 2, 1]).contiguous(); // [B, A, nc]
        let a = pred_scores.size()[1];
        let sizes = level_sizes(levels);
        let (anchor_points, stride_t) =
            make_anchors(&sizes, &self.strides, GRID_CELL_OFFSET, (kind, device)); // [A, 2], [A, 1]

        let gt = self.preprocess(targets, b, [img_w, img_h, img_w, img_h], kind, device)?; // [B, M, 5]
        let gt_labels = gt.narrow(2, 0, 1); // [B, M, 1]
        let gt_bboxes = gt.narrow(2, 1, 4); // [B, M, 4] corner pixels
        let mask_gt = gt_bboxes.sum_dim_intlist(2, true, kind).gt(0.0).to_kind(kind); // [B, M, 1]

        // Decoded boxes, grid units: [B, A, 4] corners.
        let proj = Tensor::arange(reg_max, (kind, device));
        let dist = pred_distri.view([b, a, 4, reg_max]).softmax(3, kind).matmul(&proj);
        let pred_bboxes = dist2bbox(&dist, &anchor_points, false, -1);

        let assignment = self.assigner.assign(
            &pred_scores.detach().sigmoid(),
            &(pred_bboxes.detach() * &stride_t).to_kind(gt_bboxes.kind()),
            &(&anchor_points * &stride_t),
            &gt_labels,
            &gt_bboxes,
            &mask_gt,
        )?;
        let target_scores = &assignment.target_scores; // [B, A, nc]
        let score_sum = target_scores.sum(kind).clamp_min(1.0); // []

        let cls = self.cls_term(&pred_scores, &target_scores.to_kind(kind)) / &score_sum;

        // Foreground anchors only.
        let fg = assignment.fg_mask.nonzero(); // [K, 2]
        let fg_idx = [Some(fg.select(1, 0)), Some(fg.select(1, 1))];
        let weight = target_scores.index(&fg_idx).sum_dim_intlist(-1, true, kind); // [K, 1]
        let target_grid = &assignment.target_bboxes / &stride_t; // [B, A, 4]
        let iou = ciou(&pred_bboxes.index(&fg_idx), &target_grid.index(&fg_idx), CIOU_EPS); // [K, 1]
        let box_term = ((-iou + 1.0) * &weight).sum(kind) / &score_sum;

        let target_ltrb = bbox_to_dist(&anchor_points, &target_grid, Some((reg_max - 1) as f64)); // [B, A, 4]
        let dfl = dfl_loss(
            &pred_distri.index(&fg_idx).view([-1, reg_max]),
            &target_ltrb.index(&fg_idx),
            reg_max,
        ); // [K, 1]
        let dfl_term = (dfl * &weight).sum(kind) / &score_sum;

        let g = self.gains;
        let components =
            Tensor::stack(&[box_term * g.box_gain, cls * g.cls_gain, dfl_term * g.dfl_gain], 0); // [3]
        let total = (&components * b as f64).sum(kind);
        Ok(LossOutput { total, components: components.detach(), assignment })
    }

    /// `[B, A, nc]` logits and soft targets -> `[]` summed class loss.
    fn cls_term(&self, logits: &Tensor, targets: &Tensor) -> Tensor {
        let kind = logits.kind();
        match self.cls {
            ClsLoss::Bce { pos_weight } => {
                let pw = pos_weight
                    .map(|w| Tensor::full([self.num_classes], w, (kind, logits.device())));
                logits
                    .binary_cross_entropy_with_logits(targets, None::<Tensor>, pw, Reduction::None)
                    .sum(kind)
            }
            ClsLoss::Focal { gamma, alpha } => {
                let bce = logits.binary_cross_entropy_with_logits(
                    targets,
                    None::<Tensor>,
                    None::<Tensor>,
                    Reduction::None,
                );
                let p = logits.sigmoid();
                let p_t = targets * &p + (-targets + 1.0) * (-&p + 1.0);
                let mut loss = bce * (-p_t + 1.0).pow_tensor_scalar(gamma);
                if alpha > 0.0 {
                    loss *= targets * alpha + (-targets + 1.0) * (1.0 - alpha);
                }
                loss.sum(kind)
            }
        }
    }

    /// Checks the levels; returns the batch size and the first level's grid `[H, W]`.
    fn check_levels(&self, levels: &[Tensor]) -> Result<(i64, [i64; 2]), LossError> {
        if levels.len() != self.strides.len() {
            return Err(LossError::Levels { expected: self.strides.len(), got: levels.len() });
        }
        let channels = 4 * self.reg_max + self.num_classes;
        let mut first: Option<(i64, Kind, Device, [i64; 2])> = None;
        for (level, l) in levels.iter().enumerate() {
            let s = l.size();
            let (kind, device) = (l.kind(), l.device());
            let float = matches!(kind, Kind::Float | Kind::Double | Kind::Half | Kind::BFloat16);
            let ok = s.len() == 4
                && s[1] == channels
                && s[2] > 0
                && s[3] > 0
                && float
                && first.is_none_or(|(b, k, d, _)| s[0] == b && kind == k && device == d);
            if !ok {
                return Err(LossError::Level { level, channels, shape: s, kind, device });
            }
            if first.is_none() {
                first = Some((s[0], kind, device, [s[2], s[3]]));
            }
        }
        match first {
            Some((b, _, _, grid)) => Ok((b, grid)),
            None => Err(LossError::Levels { expected: self.strides.len(), got: 0 }),
        }
    }

    /// Targets `[N, 6]` -> padded ground truths `[B, M, 5]` = `(class, x1, y1, x2, y2)` in
    /// pixels, `M` the largest count of one image, all-zero rows as padding. Rows of an image
    /// keep their order. `scale` = `(w, h, w, h)` of the image.
    fn preprocess(
        &self,
        targets: &Tensor,
        b: i64,
        scale: [f64; 4],
        kind: Kind,
        device: Device,
    ) -> Result<Tensor, LossError> {
        let s = targets.size();
        let tk = targets.kind();
        let float = matches!(tk, Kind::Float | Kind::Double | Kind::Half | Kind::BFloat16);
        if s.len() != 2 || s[1] != 6 || !float {
            return Err(LossError::Targets { shape: s, kind: tk });
        }
        let n = s[0];
        if n == 0 {
            return Ok(Tensor::zeros([b, 0, 5], (kind, device)));
        }
        let host: Vec<f64> =
            Vec::try_from(targets.to_kind(Kind::Double).to_device(Device::Cpu).reshape([-1]))?;
        let mut counts = vec![0i64; b as usize];
        let mut images = Vec::with_capacity(n as usize);
        let mut within = Vec::with_capacity(n as usize);
        for (row, r) in host.chunks_exact(6).enumerate() {
            if r.iter().any(|v| !v.is_finite()) {
                return Err(LossError::NonFinite { row });
            }
            let (img, cls) = (r[0], r[1]);
            if img.fract() != 0.0 || img < 0.0 || img >= b as f64 {
                return Err(LossError::Image { row, value: img, batch: b });
            }
            if cls.fract() != 0.0 || cls < 0.0 || cls >= self.num_classes as f64 {
                return Err(LossError::Class { row, value: cls, num_classes: self.num_classes });
            }
            let i = img as usize;
            images.push(img as i64);
            within.push(counts[i]);
            counts[i] += 1;
        }
        let m = counts.iter().copied().max().unwrap_or(0);
        let images = Tensor::from_slice(&images).to_device(device);
        let within = Tensor::from_slice(&within).to_device(device);
        let values = targets.to_device(device).to_kind(kind).narrow(1, 1, 5); // [N, 5]
        let out = Tensor::zeros([b, m, 5], (kind, device)).index_put(
            &[Some(images), Some(within)],
            &values,
            false,
        );
        let scale = Tensor::from_slice(&scale).to_kind(kind).to_device(device);
        let boxes = xywh_to_xyxy(&(out.narrow(2, 1, 4) * scale));
        Ok(Tensor::cat(&[out.narrow(2, 0, 1), boxes], 2))
    }
}

/// Distribution focal loss: side distributions `[K·4, reg_max]` (logits) against target
/// distances `[K, 4]` (clamped to `[0, reg_max - 1.01]`): cross-entropy with the two bins
/// around each target, weighted by closeness, averaged over the 4 sides. Returns `[K, 1]`.
pub fn dfl_loss(pred_dist: &Tensor, target: &Tensor, reg_max: i64) -> Tensor {
    let target = target.clamp(0.0, (reg_max - 1) as f64 - 0.01);
    let left = target.to_kind(Kind::Int64); // [K, 4]
    let right = &left + 1;
    let w_left = right.to_kind(target.kind()) - &target;
    let w_right = -&w_left + 1.0;
    let logp = pred_dist.log_softmax(1, pred_dist.kind()); // [K·4, reg_max]
    let pick = |idx: &Tensor| logp.gather(1, &idx.view([-1, 1]), false).view_as(idx);
    -(pick(&left) * w_left + pick(&right) * w_right).mean_dim(-1, true, target.kind())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const F: (Kind, Device) = (Kind::Float, Device::Cpu);

    /// Random levels for a 64×64 image, `nc` classes, batch `b`.
    fn levels(b: i64, nc: i64) -> Vec<Tensor> {
        tch::manual_seed(7);
        [8, 4, 2].iter().map(|&g| Tensor::randn([b, 64 + nc, g, g], F)).collect()
    }

    fn targets(rows: &[[f32; 6]]) -> Tensor {
        let flat: Vec<f32> = rows.iter().flatten().copied().collect();
        Tensor::from_slice(&flat).view([-1, 6])
    }

    #[test]
    fn preprocess_pads_and_scales() {
        let loss = YoloLoss::yolo11(2);
        let t = targets(&[
            [0.0, 1.0, 0.5, 0.5, 0.5, 0.25],
            [1.0, 0.0, 0.25, 0.5, 0.5, 0.5],
            [1.0, 1.0, 0.75, 0.75, 0.25, 0.25],
        ]);
        let gt =
            loss.preprocess(&t, 3, [64.0, 32.0, 64.0, 32.0], Kind::Float, Device::Cpu).unwrap();
        assert_eq!(gt.size(), vec![3, 2, 5]);
        let v: Vec<f32> = Vec::try_from(gt.reshape([-1])).unwrap();
        assert_eq!(
            v,
            vec![
                1.0, 16.0, 12.0, 48.0, 20.0, 0.0, 0.0, 0.0, 0.0, 0.0, // image 0
                0.0, 0.0, 8.0, 32.0, 24.0, 1.0, 40.0, 20.0, 56.0, 28.0, // image 1
                0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, // image 2
            ]
        );
    }

    #[test]
    fn empty_batch_has_only_a_class_loss() {
        let loss = YoloLoss::yolo11(1);
        let lv: Vec<Tensor> = levels(2, 1).into_iter().map(|t| t.set_requires_grad(true)).collect();
        let out = loss.compute_detailed(&lv, &Tensor::zeros([0, 6], F), Some([64, 64])).unwrap();
        let [bx, cls, dfl] = out.component_values().unwrap();
        assert_eq!((bx, dfl), (0.0, 0.0));
        // All targets zero, score sum clamped to 1: 0.5 × Σ BCE(x, 0).
        let expected: f64 = lv
            .iter()
            .map(|l| (l.narrow(1, 64, 1).exp() + 1.0).log().sum(Kind::Double).double_value(&[]))
            .sum::<f64>()
            * 0.5;
        assert!((cls - expected).abs() < 1e-3 * expected, "{cls} vs {expected}");
        assert!((out.total.double_value(&[]) - 2.0 * cls).abs() < 1e-3 * cls);
        out.total.backward();
        // Box logits get no gradient without foreground.
        assert_eq!(lv[0].grad().narrow(1, 0, 64).abs().max().double_value(&[]), 0.0);
    }

    #[test]
    fn variants_and_gains() {
        let lv = levels(2, 2);
        let t = targets(&[[0.0, 1.0, 0.5, 0.5, 0.4, 0.3], [1.0, 0.0, 0.3, 0.6, 0.2, 0.5]]);
        let base = YoloLoss::yolo11(2).compute(&lv, &t, [64, 64]).unwrap().1;
        assert!(base.iter().all(|v| v.is_finite() && *v > 0.0), "{base:?}");
        let gains = LossGains { box_gain: 1.0, cls_gain: 1.0, dfl_gain: 1.0 };
        let ungained = YoloLoss::new(2, 16, &[8.0, 16.0, 32.0], gains, ClsLoss::default())
            .compute(&lv, &t, [64, 64])
            .unwrap()
            .1;
        for (g, (a, b)) in [7.5, 0.5, 1.5].iter().zip(base.iter().zip(&ungained)) {
            assert!((a - g * b).abs() < 1e-5 * a, "{a} vs {g} × {b}");
        }
        let with = |cls| {
            YoloLoss::new(2, 16, &[8.0, 16.0, 32.0], LossGains::default(), cls)
                .compute(&lv, &t, [64, 64])
                .unwrap()
                .1
        };
        // pos_weight 1 and focal with gamma 0 and no alpha are plain BCE.
        let same = [
            with(ClsLoss::Bce { pos_weight: Some(1.0) }),
            with(ClsLoss::Focal { gamma: 0.0, alpha: 0.0 }),
        ];
        for s in same {
            assert!((s[1] - base[1]).abs() < 1e-5 * base[1], "{s:?} vs {base:?}");
            assert_eq!((s[0], s[2]), (base[0], base[2]));
        }
        assert!(with(ClsLoss::Bce { pos_weight: Some(10.0) })[1] > base[1]);
        assert!(with(ClsLoss::Focal { gamma: 1.5, alpha: 0.25 })[1] < base[1]);
    }

    #[test]
    fn bad_inputs_are_errors() {
        let loss = YoloLoss::yolo11(2);
        let lv = levels(2, 2);
        let ok = targets(&[[0.0, 1.0, 0.5, 0.5, 0.4, 0.3]]);
        let err = |lv: &[Tensor], t: &Tensor, sz| loss.compute(lv, t, sz).unwrap_err();
        assert!(matches!(err(&lv[..2], &ok, [64, 64]), LossError::Levels { expected: 3, got: 2 }));
        let wrong = [lv[0].shallow_clone(), lv[1].shallow_clone(), lv[2].narrow(1, 0, 60)];
        assert!(matches!(err(&wrong, &ok, [64, 64]), LossError::Level { level: 2, .. }));
        assert!(matches!(err(&lv, &ok, [64, 96]), LossError::ImageSize { .. }));
        assert!(matches!(err(&lv, &ok.narrow(1, 0, 5), [64, 64]), LossError::Targets { .. }));
        let bad_img = targets(&[[2.0, 1.0, 0.5, 0.5, 0.4, 0.3]]);
        assert!(matches!(err(&lv, &bad_img, [64, 64]), LossError::Image { row: 0, .. }));
        let bad_cls = targets(&[[0.0, 0.0, 0.5, 0.5, 0.4, 0.3], [1.0, 2.0, 0.5, 0.5, 0.4, 0.3]]);
        assert!(matches!(err(&lv, &bad_cls, [64, 64]), LossError::Class { row: 1, .. }));
        let nan = targets(&[[0.0, 0.0, f32::NAN, 0.5, 0.4, 0.3]]);
        assert!(matches!(err(&lv, &nan, [64, 64]), LossError::NonFinite { row: 0 }));
        let focal = YoloLoss::new(
            2,
            16,
            &[8.0, 16.0, 32.0],
            LossGains::default(),
            ClsLoss::Focal { gamma: -1.0, alpha: 0.25 },
        );
        assert!(matches!(focal.compute(&lv, &ok, [64, 64]), Err(LossError::Config(_))));
    }

    #[test]
    fn dfl_is_cross_entropy_between_neighbouring_bins() {
        // Target 2.25 between bins 2 and 3: 0.75·CE(bin 2) + 0.25·CE(bin 3).
        let logits = Tensor::from_slice(&[0.0f32, 1.0, 2.0, 0.5]).view([1, 4]).repeat([4, 1]);
        let target = Tensor::full([1, 4], 2.25, F);
        let got = dfl_loss(&logits, &target, 4).double_value(&[0, 0]);
        let lse = (1.0f64 + 1f64.exp() + 2f64.exp() + 0.5f64.exp()).ln();
        let expected = 0.75 * (lse - 2.0) + 0.25 * (lse - 0.5);
        assert!((got - expected).abs() < 1e-5, "{got} vs {expected}");
    }
}
