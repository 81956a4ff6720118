//! YOLO11's position-sensitive attention, as ultralytics' `Attention`, `PSABlock` and `C2PSA`:
//! multi-head self-attention over all `H·W` positions of the stride-32 map, with a depthwise
//! 3×3 positional encoding on the values, then a 1×1 feed-forward; C2PSA runs the blocks on one
//! half of the channels, CSP-style.

use tch::{Tensor, nn};

use super::blocks::set_fused;
use super::conv::Conv;

/// Multi-head self-attention with a conv positional encoding.
#[derive(Debug)]
pub struct Attention {
    pub(crate) num_heads: i64,
    pub(crate) head_dim: i64,
    pub(crate) key_dim: i64,
    pub(crate) scale: f64,
    /// `dim -> dim + 2 · heads · key_dim` (q, k, v interleaved per head).
    pub(crate) qkv: Conv,
    pub(crate) proj: Conv,
    /// Depthwise 3×3 on the values.
    pub(crate) pe: Conv,
}

impl Attention {
    /// `Attention(dim, num_heads, attn_ratio)`.
    pub fn new(p: &nn::Path, dim: i64, num_heads: i64, attn_ratio: f64) -> Self {
        let head_dim = dim / num_heads;
        let key_dim = (head_dim as f64 * attn_ratio) as i64;
        let h = dim + 2 * key_dim * num_heads;
        Self {
            num_heads,
            head_dim,
            key_dim,
            scale: (key_dim as f64).powf(-0.5),
            qkv: Conv::with(&p.sub("qkv"), dim, h, 1, 1, 1, false),
            proj: Conv::with(&p.sub("proj"), dim, dim, 1, 1, 1, false),
            pe: Conv::with(&p.sub("pe"), dim, dim, 3, 1, dim, false),
        }
    }

    /// `x`: `[B, C, H, W]` -> `[B, C, H, W]`.
    pub fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let s = x.size();
        let (b, c, h, w) = (s[0], s[1], s[2], s[3]);
        let n = h * w;
        let (nh, kd, hd) = (self.num_heads, self.key_dim, self.head_dim);
        // [B, heads, 2·kd + hd, N] split into q, k: [B, heads, kd, N] and v: [B, heads, hd, N].
        let qkv = self.qkv.forward(x, train).reshape([b, nh, 2 * kd + hd, n]);
        let parts = qkv.split_with_sizes([kd, kd, hd], 2);
        let (q, k, v) = (&parts[0], &parts[1], &parts[2]);
        // [B, heads, N, N]
        let attn = (q * self.scale).transpose(-2, -1).matmul(k).softmax(-1, x.kind());
        let y = v.matmul(&attn.transpose(-2, -1)).reshape([b, c, h, w])
            + self.pe.forward(&v.reshape([b, c, h, w]), train);
        self.proj.forward(&y, train)
    }

    fn fuse(&mut self, on: bool) {
        for c in [&mut self.qkv, &mut self.proj, &mut self.pe] {
            set_fused(c, on);
        }
    }
}

/// `x + attn(x)`, then `x + ffn(x)` with `ffn = Conv(c, 2c, 1), Conv(2c, c, 1, act=False)`.
#[derive(Debug)]
pub struct PsaBlock {
    pub(crate) attn: Attention,
    pub(crate) ffn: [Conv; 2],
}

impl PsaBlock {
    /// `PSABlock(c, attn_ratio=0.5, num_heads)` with shortcuts.
    pub fn new(p: &nn::Path, c: i64, num_heads: i64) -> Self {
        let f = p.sub("ffn");
        Self {
            attn: Attention::new(&p.sub("attn"), c, num_heads, 0.5),
            ffn: [
                Conv::new(&f.sub(0), c, 2 * c, 1, 1),
                Conv::with(&f.sub(1), 2 * c, c, 1, 1, 1, false),
            ],
        }
    }

    pub fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let x = x + self.attn.forward(x, train);
        let f = self.ffn[1].forward(&self.ffn[0].forward(&x, train), train);
        x + f
    }

    fn fuse(&mut self, on: bool) {
        self.attn.fuse(on);
        self.ffn.iter_mut().for_each(|c| set_fused(c, on));
    }
}

/// CSP wrapper: `cv1` to `2c` channels, PSA blocks on the second half, concatenate, `cv2`.
#[derive(Debug)]
pub struct C2Psa {
    pub(crate) c: i64,
    pub(crate) cv1: Conv,
    pub(crate) cv2: Conv,
    pub(crate) m: Vec<PsaBlock>,
}

impl C2Psa {
    /// `C2PSA(c1, c1, n, e=0.5)`; heads = `max(c / 64, 1)` with `c = c1 / 2`.
    pub fn new(p: &nn::Path, c1: i64, n: i64) -> Self {
        let c = (c1 as f64 * 0.5) as i64;
        let heads = (c / 64).max(1);
        Self {
            c,
            cv1: Conv::new(&p.sub("cv1"), c1, 2 * c, 1, 1),
            cv2: Conv::new(&p.sub("cv2"), 2 * c, c1, 1, 1),
            m: (0..n).map(|i| PsaBlock::new(&p.sub("m").sub(i), c, heads)).collect(),
        }
    }

    pub fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let halves = self.cv1.forward(x, train).split_with_sizes([self.c, self.c], 1);
        let b = self.m.iter().fold(halves[1].shallow_clone(), |y, blk| blk.forward(&y, train));
        self.cv2.forward(&Tensor::cat(&[&halves[0], &b], 1), train)
    }

    pub(crate) fn fuse(&mut self, on: bool) {
        set_fused(&mut self.cv1, on);
        set_fused(&mut self.cv2, on);
        self.m.iter_mut().for_each(|b| b.fuse(on));
    }
}
