//! The convolutional blocks of YOLO11, each as in ultralytics' `nn/modules/block.py`:
//! `Bottleneck`, `C3k` (a C3 with 3×3 bottlenecks), `C3k2` (a C2f whose inner blocks are
//! bottlenecks or C3k) and `SPPF`. Sub-module names follow PyTorch's (`cv1`, `m.0`, ...) so the
//! variables carry ultralytics' state_dict names.

use tch::{Tensor, nn};

use super::conv::Conv;

/// `int(c * e)` as Python computes hidden channels.
fn hidden(c: i64, e: f64) -> i64 {
    (c as f64 * e) as i64
}

/// `x + cv2(cv1(x))` (the add only when `shortcut` and `c1 == c2`).
#[derive(Debug)]
pub struct Bottleneck {
    pub(crate) cv1: Conv,
    pub(crate) cv2: Conv,
    pub(crate) add: bool,
}

impl Bottleneck {
    /// `Bottleneck(c1, c2, shortcut, k=(k, k), e=e)`.
    pub fn new(p: &nn::Path, c1: i64, c2: i64, shortcut: bool, k: i64, e: f64) -> Self {
        let c_ = hidden(c2, e);
        Self {
            cv1: Conv::new(&p.sub("cv1"), c1, c_, k, 1),
            cv2: Conv::new(&p.sub("cv2"), c_, c2, k, 1),
            add: shortcut && c1 == c2,
        }
    }

    pub fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let y = self.cv2.forward(&self.cv1.forward(x, train), train);
        if self.add { x + y } else { y }
    }

    fn convs_mut(&mut self) -> [&mut Conv; 2] {
        [&mut self.cv1, &mut self.cv2]
    }
}

/// CSP bottleneck with 3 convolutions and `n` 3×3 bottlenecks (ultralytics' `C3k`, e = 0.5).
#[derive(Debug)]
pub struct C3k {
    pub(crate) cv1: Conv,
    pub(crate) cv2: Conv,
    pub(crate) cv3: Conv,
    pub(crate) m: Vec<Bottleneck>,
}

impl C3k {
    /// `C3k(c1, c2, n, shortcut)` with `e = 0.5`, `k = 3`.
    pub fn new(p: &nn::Path, c1: i64, c2: i64, n: i64, shortcut: bool) -> Self {
        let c_ = hidden(c2, 0.5);
        let m =
            (0..n).map(|i| Bottleneck::new(&p.sub("m").sub(i), c_, c_, shortcut, 3, 1.0)).collect();
        Self {
            cv1: Conv::new(&p.sub("cv1"), c1, c_, 1, 1),
            cv2: Conv::new(&p.sub("cv2"), c1, c_, 1, 1),
            cv3: Conv::new(&p.sub("cv3"), 2 * c_, c2, 1, 1),
            m,
        }
    }

    /// `cv3(cat(m(cv1(x)), cv2(x)))`.
    pub fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let a = self.m.iter().fold(self.cv1.forward(x, train), |y, b| b.forward(&y, train));
        self.cv3.forward(&Tensor::cat(&[a, self.cv2.forward(x, train)], 1), train)
    }

    fn fuse(&mut self, on: bool) {
        for c in [&mut self.cv1, &mut self.cv2, &mut self.cv3] {
            set_fused(c, on);
        }
        for b in &mut self.m {
            b.convs_mut().into_iter().for_each(|c| set_fused(c, on));
        }
    }
}

/// The inner block of a C3k2: a plain bottleneck (n, s sizes in most places) or a C3k.
#[derive(Debug)]
pub(crate) enum Inner {
    Bottleneck(Box<Bottleneck>),
    C3k(Box<C3k>),
}

/// C2f-style CSP block: split `cv1(x)` in two halves `[B, c, H, W]`, chain `n` inner blocks on
/// the second, concatenate everything (`[B, (2 + n) c, H, W]`) and mix with `cv2`.
#[derive(Debug)]
pub struct C3k2 {
    pub(crate) cv1: Conv,
    pub(crate) cv2: Conv,
    pub(crate) m: Vec<Inner>,
}

impl C3k2 {
    /// `C3k2(c1, c2, n, c3k, e)` with `shortcut = True` (its default, as YOLO11 uses it).
    pub fn new(p: &nn::Path, c1: i64, c2: i64, n: i64, c3k: bool, e: f64) -> Self {
        let c = hidden(c2, e);
        let m = (0..n)
            .map(|i| {
                let q = p.sub("m").sub(i);
                if c3k {
                    Inner::C3k(Box::new(C3k::new(&q, c, c, 2, true)))
                } else {
                    Inner::Bottleneck(Box::new(Bottleneck::new(&q, c, c, true, 3, 0.5)))
                }
            })
            .collect::<Vec<_>>();
        Self {
            cv1: Conv::new(&p.sub("cv1"), c1, 2 * c, 1, 1),
            cv2: Conv::new(&p.sub("cv2"), (2 + n) * c, c2, 1, 1),
            m,
        }
    }

    pub fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let mut ys = self.cv1.forward(x, train).chunk(2, 1); // 2 × [B, c, H, W]
        let mut y = ys[1].shallow_clone();
        for inner in &self.m {
            y = match inner {
                Inner::Bottleneck(b) => b.forward(&y, train),
                Inner::C3k(c) => c.forward(&y, train),
            };
            ys.push(y.shallow_clone());
        }
        self.cv2.forward(&Tensor::cat(&ys, 1), train)
    }

    pub(crate) fn fuse(&mut self, on: bool) {
        set_fused(&mut self.cv1, on);
        set_fused(&mut self.cv2, on);
        for inner in &mut self.m {
            match inner {
                Inner::Bottleneck(b) => b.convs_mut().into_iter().for_each(|c| set_fused(c, on)),
                Inner::C3k(c) => c.fuse(on),
            }
        }
    }
}

/// Spatial pyramid pooling, fast: `cv1`, three chained `k×k` max-pools (stride 1), concatenate
/// the four maps, `cv2`. In YOLO11's (pre-YOLO26) YAML rows `cv1` keeps its SiLU.
#[derive(Debug)]
pub struct Sppf {
    pub(crate) cv1: Conv,
    pub(crate) cv2: Conv,
    pub(crate) k: i64,
}

impl Sppf {
    /// `SPPF(c1, c2, k)`.
    pub fn new(p: &nn::Path, c1: i64, c2: i64, k: i64) -> Self {
        let c_ = c1 / 2;
        Self {
            cv1: Conv::new(&p.sub("cv1"), c1, c_, 1, 1),
            cv2: Conv::new(&p.sub("cv2"), 4 * c_, c2, 1, 1),
            k,
        }
    }

    pub fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let (k, pad) = (self.k, self.k / 2);
        let mut y = self.cv1.forward(x, train);
        let mut ys = vec![y.shallow_clone()];
        for _ in 0..3 {
            y = y.max_pool2d([k, k], [1, 1], [pad, pad], [1, 1], false);
            ys.push(y.shallow_clone());
        }
        self.cv2.forward(&Tensor::cat(&ys, 1), train)
    }

    pub(crate) fn fuse(&mut self, on: bool) {
        set_fused(&mut self.cv1, on);
        set_fused(&mut self.cv2, on);
    }
}

/// Fuses (`on`) or unfuses one conv.
pub(crate) fn set_fused(c: &mut Conv, on: bool) {
    if on { c.fuse() } else { c.unfuse() }
}
