//! torchvision's `AnchorGenerator`: per feature level, zero-centred "cell" anchors for each
//! (aspect ratio, size) pair, rounded to integers, then shifted to every grid cell.
//!
//! Facts carried over (and kept bit for bit): the aspect ratio is `h / w`, so
//! `h = size·sqrt(r)`, `w = size / sqrt(r)`; the cell anchor is
//! `round([-w, -h, w, h] / 2)` (round half to even) in float32; a level's stride is the
//! *padded batch* size integer-divided by that level's grid size, per axis (so the pooled level of
//! a 416-wide batch has stride 416 / 7 = 59, not 64); anchors are ordered by (y, x, anchor),
//! anchors within a cell by (ratio, size).
//! v2's default is one size per level, `32, 64, 128, 256, 512`, with ratios `0.5, 1, 2`.

use tch::{Device, Kind, Tensor};

use super::FrcnnError;

/// v2's anchor sizes, one per FPN level (P2..P6).
pub const FPN_DEFAULT_SIZES: [f64; 5] = [32.0, 64.0, 128.0, 256.0, 512.0];

/// The anchor layout.
#[derive(Debug)]
pub struct AnchorGenerator {
    sizes: Vec<Vec<f64>>,
    aspect_ratios: Vec<Vec<f64>>,
    /// Per level `[A, 4]` float32 on the CPU.
    cell_anchors: Vec<Tensor>,
}

impl AnchorGenerator {
    /// `sizes[l]` and `aspect_ratios[l]` for each level `l`.
    pub fn new(sizes: Vec<Vec<f64>>, aspect_ratios: Vec<Vec<f64>>) -> Result<Self, FrcnnError> {
        if sizes.len() != aspect_ratios.len() || sizes.is_empty() {
            return Err(FrcnnError::Config(format!(
                "anchor sizes ({} levels) and aspect ratios ({} levels) must have the same, \
                 non-zero number of levels",
                sizes.len(),
                aspect_ratios.len()
            )));
        }
        let bad = |v: &[f64]| v.is_empty() || v.iter().any(|x| !(x.is_finite() && *x > 0.0));
        if sizes.iter().any(|s| bad(s)) || aspect_ratios.iter().any(|r| bad(r)) {
            return Err(FrcnnError::Config(
                "anchor sizes and aspect ratios must be positive and finite".into(),
            ));
        }
        let cell_anchors =
            sizes.iter().zip(&aspect_ratios).map(|(s, r)| cell_anchors(s, r)).collect();
        Ok(Self { sizes, aspect_ratios, cell_anchors })
    }

    /// `fasterrcnn_resnet50_fpn_v2`'s anchors: sizes `((32,), (64,), (128,), (256,), (512,))`,
    /// ratios `(0.5, 1.0, 2.0)` on every level.
    pub fn fpn_default() -> Self {
        Self::fpn(&FPN_DEFAULT_SIZES).expect("the default sizes are valid")
    }

    /// One size per FPN level (`sizes[l]` pixels on level `l`), v2's ratios `(0.5, 1.0, 2.0)`
    /// everywhere: torchvision's `AnchorGenerator(((s0,), (s1,), ...), ((0.5, 1.0, 2.0),) * L)`.
    pub fn fpn(sizes: &[f64]) -> Result<Self, FrcnnError> {
        let sizes: Vec<Vec<f64>> = sizes.iter().map(|&s| vec![s]).collect();
        let ratios = vec![vec![0.5, 1.0, 2.0]; sizes.len()];
        Self::new(sizes, ratios)
    }

    pub fn num_levels(&self) -> usize {
        self.sizes.len()
    }

    /// Anchors per grid cell, per level (3 everywhere for v2).
    pub fn num_anchors_per_location(&self) -> Vec<i64> {
        self.sizes
            .iter()
            .zip(&self.aspect_ratios)
            .map(|(s, r)| (s.len() * r.len()) as i64)
            .collect()
    }

    /// The zero-centred cell anchors of each level, `[A, 4]`.
    pub fn cell_anchors(&self) -> &[Tensor] {
        &self.cell_anchors
    }

    /// All anchors of a padded batch of size `batch_hw` whose feature maps have the grid sizes
    /// `grids` (`[h, w]` per level): `[sum_l h_l·w_l·A_l, 4]` float32 on `device`, level by level.
    /// Every image of the batch shares them.
    pub fn anchors(&self, batch_hw: [i64; 2], grids: &[[i64; 2]], device: Device) -> Tensor {
        let per_level: Vec<Tensor> = grids
            .iter()
            .zip(&self.cell_anchors)
            .map(|(g, base)| {
                let stride = [batch_hw[0] / g[0].max(1), batch_hw[1] / g[1].max(1)];
                grid_anchors(*g, stride, &base.to_device(device))
            })
            .collect();
        Tensor::cat(&per_level, 0)
    }
}

/// `round([-w, -h, w, h] / 2)` for every (ratio, size): `[ratios·sizes, 4]`, in float32 as
/// torchvision computes it (`h_ratio = sqrt(r)`, `w_ratio = 1 / h_ratio`).
fn cell_anchors(sizes: &[f64], ratios: &[f64]) -> Tensor {
    let f32s = |v: &[f64]| Tensor::from_slice(&v.iter().map(|&x| x as f32).collect::<Vec<f32>>());
    let scales = f32s(sizes); // [S]
    let h_ratios = f32s(ratios).sqrt(); // [R]
    let w_ratios = h_ratios.reciprocal();
    let ws = (w_ratios.unsqueeze(1) * scales.unsqueeze(0)).view([-1]); // [R·S]
    let hs = (h_ratios.unsqueeze(1) * scales.unsqueeze(0)).view([-1]);
    (Tensor::stack(&[-&ws, -&hs, ws, hs], 1) / 2.0).round()
}

/// One level: cell anchors `[A, 4]` shifted to every cell of a `grid` (`[h, w]`) with `stride`
/// (`[sy, sx]` pixels): `[h·w·A, 4]`, ordered by (y, x, anchor).
fn grid_anchors(grid: [i64; 2], stride: [i64; 2], base: &Tensor) -> Tensor {
    let device = base.device();
    let shifts_x = Tensor::arange(grid[1], (Kind::Int64, device)) * stride[1]; // [w]
    let shifts_y = Tensor::arange(grid[0], (Kind::Int64, device)) * stride[0]; // [h]
    let mesh = Tensor::meshgrid_indexing(&[&shifts_y, &shifts_x], "ij");
    let (sy, sx) = (mesh[0].reshape([-1]), mesh[1].reshape([-1])); // [h·w]
    let shifts = Tensor::stack(&[&sx, &sy, &sx, &sy], 1); // [h·w, 4] int64
    (shifts.view([-1, 1, 4]) + base.view([1, -1, 4])).reshape([-1, 4])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn rows(t: &Tensor) -> Vec<Vec<f32>> {
        let v: Vec<f32> = Vec::try_from(t.flatten(0, -1)).unwrap();
        v.chunks(4).map(|c| c.to_vec()).collect()
    }

    #[test]
    fn cell_anchors_are_torchvision_values() {
        let g = AnchorGenerator::fpn_default();
        assert_eq!(g.num_anchors_per_location(), vec![3; 5]);
        // sqrt(0.5)·32 = 22.63 high, 45.25 wide for ratio 0.5; halves rounded.
        assert_eq!(
            rows(&g.cell_anchors()[0]),
            [
                vec![-23.0, -11.0, 23.0, 11.0],
                vec![-16.0, -16.0, 16.0, 16.0],
                vec![-11.0, -23.0, 11.0, 23.0]
            ]
        );
        assert_eq!(rows(&g.cell_anchors()[4])[1], vec![-256.0, -256.0, 256.0, 256.0]);
    }

    #[test]
    fn other_sizes_per_level() {
        let g = AnchorGenerator::fpn(&[16.0, 32.0, 64.0, 128.0, 256.0]).unwrap();
        assert_eq!(g.num_anchors_per_location(), vec![3; 5]);
        assert_eq!(rows(&g.cell_anchors()[0])[1], vec![-8.0, -8.0, 8.0, 8.0]);
        assert_eq!(
            rows(&g.cell_anchors()[1]),
            rows(&AnchorGenerator::fpn_default().cell_anchors()[0])
        );
        assert!(AnchorGenerator::fpn(&[16.0, 0.0]).is_err());
    }

    #[test]
    fn grid_order_and_integer_strides() {
        let g = AnchorGenerator::fpn_default();
        // A 64×96 batch: level grids 16×24 ... and a pooled 1×2 grid (stride 64, 48).
        let grids = [[16, 24], [8, 12], [4, 6], [2, 3], [1, 2]];
        let a = g.anchors([64, 96], &grids, Device::Cpu);
        assert_eq!(a.size(), [(16 * 24 + 8 * 12 + 4 * 6 + 2 * 3 + 2) * 3, 4]);
        let r = rows(&a);
        assert_eq!(r[3], vec![4.0 - 23.0, -11.0, 4.0 + 23.0, 11.0]); // cell (0, 1), anchor 0
        assert_eq!(r[24 * 3 + 1], vec![-16.0, 4.0 - 16.0, 16.0, 4.0 + 16.0]); // cell (1, 0)
        let last = r.len() - 2; // pooled level, cell (0, 1), ratio 1: x shift 48
        assert_eq!(r[last], vec![48.0 - 256.0, -256.0, 48.0 + 256.0, 256.0]);
        assert!(AnchorGenerator::new(vec![vec![32.0]], vec![]).is_err());
        assert!(AnchorGenerator::new(vec![vec![-1.0]], vec![vec![1.0]]).is_err());
    }
}
