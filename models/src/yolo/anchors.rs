//! Anchor points and per-anchor strides for a set of feature levels (ultralytics' `make_anchors`):
//! the centre of every grid cell, in grid units, levels concatenated in order (P3, P4, P5) and
//! each level row-major (y outer, x inner). The anchor order is the order of the detector's
//! `N` axis everywhere: decoded outputs, NMS indices, assigner targets.

use tch::{Device, Kind, Tensor};

/// Grid-cell centre offset used by YOLO11.
pub const GRID_CELL_OFFSET: f64 = 0.5;

/// `(h, w)` of each per-level map `[B, C, h, w]`, the `sizes` [`make_anchors`] takes.
pub fn level_sizes(levels: &[Tensor]) -> Vec<(i64, i64)> {
    levels
        .iter()
        .map(|l| {
            let s = l.size();
            (s[2], s[3])
        })
        .collect()
}

/// `sizes[i] = (h, w)` of level `i`, with stride `strides[i]`. Returns anchor points `[N, 2]`
/// as `(x, y)` in grid units (`+ offset`) and the stride of each anchor `[N, 1]`,
/// `N = Σ h·w`.
pub fn make_anchors(
    sizes: &[(i64, i64)],
    strides: &[f64],
    offset: f64,
    options: (Kind, Device),
) -> (Tensor, Tensor) {
    let mut points = Vec::with_capacity(sizes.len());
    let mut stride_col = Vec::with_capacity(sizes.len());
    for (&(h, w), &stride) in sizes.iter().zip(strides) {
        let sx = Tensor::arange(w, options) + offset;
        let sy = Tensor::arange(h, options) + offset;
        let grid = Tensor::meshgrid_indexing(&[&sy, &sx], "ij"); // 2 × [h, w]
        points.push(Tensor::stack(&[&grid[1], &grid[0]], -1).view([-1, 2]));
        stride_col.push(Tensor::full([h * w, 1], stride, options));
    }
    (Tensor::cat(&points, 0), Tensor::cat(&stride_col, 0))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn cell_centres_row_major_per_level() {
        let opts = (Kind::Float, Device::Cpu);
        let (p, s) = make_anchors(&[(2, 3), (1, 1)], &[8.0, 16.0], 0.5, opts);
        assert_eq!(p.size(), vec![7, 2]);
        let v: Vec<f32> = Vec::try_from(p.flatten(0, -1)).unwrap();
        assert_eq!(&v[..8], &[0.5, 0.5, 1.5, 0.5, 2.5, 0.5, 0.5, 1.5]);
        assert_eq!(&v[12..], &[0.5, 0.5]);
        let s: Vec<f32> = Vec::try_from(s.flatten(0, -1)).unwrap();
        assert_eq!(s, vec![8.0, 8.0, 8.0, 8.0, 8.0, 8.0, 16.0]);
    }
}
