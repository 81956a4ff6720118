//! The YOLO11 detection head (ultralytics' `Detect`, non-legacy): per level a box branch
//! `cv2` (3×3 Conv, 3×3 Conv, 1×1 conv to `4·reg_max` DFL logits) and a class branch `cv3`
//! built from depthwise-separable convs (DWConv 3×3 + Conv 1×1, twice, then 1×1 conv to `nc`
//! logits), plus the fixed DFL integral weight. Biases start as ultralytics' `bias_init`.

use tch::nn::{self, Module};
use tch::{Kind, Tensor};

use super::blocks::set_fused;
use super::conv::{Conv, plain_conv};

/// DFL bins per box side.
pub const REG_MAX: i64 = 16;
/// Strides of the P3, P4, P5 levels of YOLO11.
pub const STRIDES: [f64; 3] = [8.0, 16.0, 32.0];

/// `cv2.i`: `[B, c_in, H, W]` -> `[B, 4·reg_max, H, W]`.
#[derive(Debug)]
pub(crate) struct BoxBranch {
    pub(crate) convs: [Conv; 2],
    pub(crate) out: nn::Conv2D,
}

/// `cv3.i`: `[B, c_in, H, W]` -> `[B, nc, H, W]`; each stage is `(DWConv 3×3, Conv 1×1)`.
#[derive(Debug)]
pub(crate) struct ClsBranch {
    pub(crate) stages: [[Conv; 2]; 2],
    pub(crate) out: nn::Conv2D,
}

/// The detection head over the three levels.
#[derive(Debug)]
pub struct Detect {
    pub(crate) nc: i64,
    pub(crate) reg_max: i64,
    pub(crate) box_branches: Vec<BoxBranch>,
    pub(crate) cls_branches: Vec<ClsBranch>,
    /// `[1, reg_max, 1, 1]` = `0..reg_max` (`dfl.conv.weight`, not trainable).
    pub(crate) dfl: Tensor,
    /// Dropout probability on the features entering each branch's last 1×1 conv, in
    /// training only (the study's head-dropout regulariser; ultralytics' Detect has none, so
    /// 0 keeps parity).
    dropout: f64,
}

impl Detect {
    /// `Detect(nc, reg_max=16, ch)` with the input channels `ch` of P3, P4, P5.
    pub fn new(p: &nn::Path, nc: i64, ch: &[i64]) -> Self {
        let reg_max = REG_MAX;
        let first = ch.first().copied().unwrap_or(0);
        let c2 = 16.max(first / 4).max(4 * reg_max);
        let c3 = first.max(nc.min(100));
        let box_branches = ch
            .iter()
            .enumerate()
            .map(|(i, &x)| {
                let q = p.sub("cv2").sub(i);
                BoxBranch {
                    convs: [Conv::new(&q.sub(0), x, c2, 3, 1), Conv::new(&q.sub(1), c2, c2, 3, 1)],
                    out: plain_conv(&q.sub(2), c2, 4 * reg_max, 1),
                }
            })
            .collect();
        let cls_branches = ch
            .iter()
            .enumerate()
            .map(|(i, &x)| {
                let q = p.sub("cv3").sub(i);
                let (s0, s1) = (q.sub(0), q.sub(1));
                ClsBranch {
                    stages: [
                        [
                            Conv::with(&s0.sub(0), x, x, 3, 1, x, true),
                            Conv::new(&s0.sub(1), x, c3, 1, 1),
                        ],
                        [
                            Conv::with(&s1.sub(0), c3, c3, 3, 1, c3, true),
                            Conv::new(&s1.sub(1), c3, c3, 1, 1),
                        ],
                    ],
                    out: plain_conv(&q.sub(2), c3, nc, 1),
                }
            })
            .collect();
        let bins = Tensor::arange(reg_max, (Kind::Float, p.device())).view([1, reg_max, 1, 1]);
        let dfl = p.sub("dfl").sub("conv").add("weight", bins, false);
        let head = Self { nc, reg_max, box_branches, cls_branches, dfl, dropout: 0.0 };
        head.bias_init();
        head
    }

    /// ultralytics' `bias_init`: box logits 2.0; class logits `log(5 / nc / (640 / s)²)`
    /// (about 0.01 objects per cell of a 640 image).
    fn bias_init(&self) {
        tch::no_grad(|| {
            for (i, (b, c)) in self.box_branches.iter().zip(&self.cls_branches).enumerate() {
                let s = STRIDES.get(i).copied().unwrap_or(32.0);
                if let Some(bs) = &b.out.bs {
                    let _ = bs.shallow_clone().fill_(2.0);
                }
                if let Some(bs) = &c.out.bs {
                    let _ =
                        bs.shallow_clone().fill_((5.0 / self.nc as f64 / (640.0 / s).powi(2)).ln());
                }
            }
        });
    }

    /// Per level `[B, 4·reg_max + nc, H, W]` (box logits first, then class logits).
    pub fn forward(&self, feats: &[Tensor], train: bool) -> Vec<Tensor> {
        feats
            .iter()
            .zip(self.box_branches.iter().zip(&self.cls_branches))
            .map(|(x, (bb, cb))| {
                let b = bb.convs.iter().fold(x.shallow_clone(), |y, c| c.forward(&y, train));
                let c =
                    cb.stages.iter().flatten().fold(x.shallow_clone(), |y, c| c.forward(&y, train));
                let (b, c) = if train && self.dropout > 0.0 {
                    (b.dropout(self.dropout, true), c.dropout(self.dropout, true))
                } else {
                    (b, c)
                };
                Tensor::cat(&[bb.out.forward(&b), cb.out.forward(&c)], 1)
            })
            .collect()
    }

    pub fn num_classes(&self) -> i64 {
        self.nc
    }

    /// Sets the training-time head dropout (`0.0 ..= 1.0`, clamped).
    pub fn set_dropout(&mut self, p: f64) {
        self.dropout = p.clamp(0.0, 1.0);
    }

    pub fn reg_max(&self) -> i64 {
        self.reg_max
    }

    /// The DFL integral weight `[1, reg_max, 1, 1]`.
    pub fn dfl_weight(&self) -> &Tensor {
        &self.dfl
    }

    pub(crate) fn fuse(&mut self, on: bool) {
        for b in &mut self.box_branches {
            b.convs.iter_mut().for_each(|c| set_fused(c, on));
        }
        for c in &mut self.cls_branches {
            c.stages.iter_mut().flatten().for_each(|c| set_fused(c, on));
        }
    }
}
