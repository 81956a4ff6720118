//! Plane geometry for the phantom generator: 2-D vectors, axis-aligned pixel rectangles, the
//! similarity transform (scale, rotation, optional mirror, shift) that takes anatomy drawn in
//! millimetres to image pixels, and the small distance helpers the rasteriser needs.

use std::ops::{Add, Mul, Neg, Sub};

/// A point or direction in the plane (image convention: x right, y down).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct V2 {
    pub x: f32,
    pub y: f32,
}

pub const fn v2(x: f32, y: f32) -> V2 {
    V2 { x, y }
}

impl V2 {
    pub fn dot(self, o: V2) -> f32 {
        self.x * o.x + self.y * o.y
    }
    /// z component of the 3-D cross product.
    pub fn cross(self, o: V2) -> f32 {
        self.x * o.y - self.y * o.x
    }
    pub fn len(self) -> f32 {
        self.dot(self).sqrt()
    }
    /// Unit vector in the same direction; `(1, 0)` for the zero vector.
    pub fn unit(self) -> V2 {
        let l = self.len();
        if l > 1e-12 { v2(self.x / l, self.y / l) } else { v2(1.0, 0.0) }
    }
    /// Rotated by +90° (in image coordinates: from x towards y).
    pub fn perp(self) -> V2 {
        v2(-self.y, self.x)
    }
    /// Unit vector at `angle` radians from the x axis.
    pub fn from_angle(angle: f32) -> V2 {
        v2(angle.cos(), angle.sin())
    }
    /// This vector rotated by `angle` radians.
    pub fn rotated(self, angle: f32) -> V2 {
        let (s, c) = angle.sin_cos();
        v2(c * self.x - s * self.y, s * self.x + c * self.y)
    }
    pub fn lerp(self, o: V2, t: f32) -> V2 {
        self + (o - self) * t
    }
}

impl Add for V2 {
    type Output = V2;
    fn add(self, o: V2) -> V2 {
        v2(self.x + o.x, self.y + o.y)
    }
}

impl Sub for V2 {
    type Output = V2;
    fn sub(self, o: V2) -> V2 {
        v2(self.x - o.x, self.y - o.y)
    }
}

impl Mul<f32> for V2 {
    type Output = V2;
    fn mul(self, k: f32) -> V2 {
        v2(self.x * k, self.y * k)
    }
}

impl Neg for V2 {
    type Output = V2;
    fn neg(self) -> V2 {
        v2(-self.x, -self.y)
    }
}

/// Axis-aligned rectangle `[x0, x1) × [y0, y1)` in pixels (floats; pixel `(i, j)` covers
/// `[i, i+1) × [j, j+1)` and is sampled at its centre `(i + 0.5, j + 0.5)`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rect {
    pub x0: f32,
    pub y0: f32,
    pub x1: f32,
    pub y1: f32,
}

impl Rect {
    pub fn new(x0: f32, y0: f32, x1: f32, y1: f32) -> Rect {
        Rect { x0, y0, x1, y1 }
    }
    /// The empty rectangle, the neutral element of [`Rect::union`].
    pub fn empty() -> Rect {
        Rect { x0: f32::INFINITY, y0: f32::INFINITY, x1: f32::NEG_INFINITY, y1: f32::NEG_INFINITY }
    }
    /// Bounding box of a disc.
    pub fn around(c: V2, r: f32) -> Rect {
        Rect::new(c.x - r, c.y - r, c.x + r, c.y + r)
    }
    pub fn width(&self) -> f32 {
        self.x1 - self.x0
    }
    pub fn height(&self) -> f32 {
        self.y1 - self.y0
    }
    pub fn is_empty(&self) -> bool {
        !(self.x1 > self.x0 && self.y1 > self.y0)
    }
    pub fn center(&self) -> V2 {
        v2((self.x0 + self.x1) * 0.5, (self.y0 + self.y1) * 0.5)
    }
    pub fn contains(&self, p: V2) -> bool {
        p.x >= self.x0 && p.x < self.x1 && p.y >= self.y0 && p.y < self.y1
    }
    pub fn include(&mut self, p: V2) {
        self.x0 = self.x0.min(p.x);
        self.y0 = self.y0.min(p.y);
        self.x1 = self.x1.max(p.x);
        self.y1 = self.y1.max(p.y);
    }
    pub fn union(&self, o: &Rect) -> Rect {
        Rect::new(self.x0.min(o.x0), self.y0.min(o.y0), self.x1.max(o.x1), self.y1.max(o.y1))
    }
    pub fn intersect(&self, o: &Rect) -> Rect {
        Rect::new(self.x0.max(o.x0), self.y0.max(o.y0), self.x1.min(o.x1), self.y1.min(o.y1))
    }
    pub fn intersects(&self, o: &Rect) -> bool {
        !self.intersect(o).is_empty()
    }
    pub fn expand(&self, m: f32) -> Rect {
        Rect::new(self.x0 - m, self.y0 - m, self.x1 + m, self.y1 + m)
    }
    /// The pixel index ranges `(x0..x1, y0..y1)` whose centres may lie inside, clamped to an
    /// image of `w`×`h`. Empty ranges when the rectangle misses the image.
    pub fn pixel_span(
        &self,
        w: usize,
        h: usize,
    ) -> (std::ops::Range<usize>, std::ops::Range<usize>) {
        let clamp = |v: f32, hi: usize| -> usize {
            if v.is_nan() || v <= 0.0 {
                0
            } else if v >= hi as f32 {
                hi
            } else {
                v as usize
            }
        };
        let x0 = clamp(self.x0.floor(), w);
        let x1 = clamp(self.x1.ceil(), w);
        let y0 = clamp(self.y0.floor(), h);
        let y1 = clamp(self.y1.ceil(), h);
        (x0..x1.max(x0), y0..y1.max(y0))
    }
}

/// `p' = offset + scale · M p` with `M` a rotation, optionally preceded by a mirror of x.
/// Lengths scale by `scale`; densities per unit length scale by `1 / scale`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Similarity {
    /// Row-major 2×2 matrix `scale · R(θ) · diag(±1, 1)`.
    m: [f32; 4],
    offset: V2,
    scale: f32,
}

impl Similarity {
    /// Maps `pivot` to `target`, rotating by `angle` radians and mirroring x first when `mirror`.
    pub fn new(pivot: V2, target: V2, scale: f32, angle: f32, mirror: bool) -> Similarity {
        let (s, c) = angle.sin_cos();
        let f = if mirror { -1.0 } else { 1.0 };
        let m = [scale * c * f, -scale * s, scale * s * f, scale * c];
        let mut t = Similarity { m, offset: V2::default(), scale };
        t.offset = target - t.linear(pivot);
        t
    }
    /// The linear part only (for directions).
    pub fn linear(&self, p: V2) -> V2 {
        v2(self.m[0] * p.x + self.m[1] * p.y, self.m[2] * p.x + self.m[3] * p.y)
    }
    pub fn point(&self, p: V2) -> V2 {
        self.linear(p) + self.offset
    }
    /// A unit direction mapped and renormalised.
    pub fn direction(&self, d: V2) -> V2 {
        self.linear(d).unit()
    }
    pub fn scale(&self) -> f32 {
        self.scale
    }
    /// True when the map reverses orientation (it mirrors).
    pub fn mirrors(&self) -> bool {
        self.m[0] * self.m[3] - self.m[1] * self.m[2] < 0.0
    }
}

/// Distance from `p` to the segment `a`–`b`.
pub fn segment_distance(p: V2, a: V2, b: V2) -> f32 {
    let ab = b - a;
    let l2 = ab.dot(ab);
    let t = if l2 > 0.0 { ((p - a).dot(ab) / l2).clamp(0.0, 1.0) } else { 0.0 };
    (p - (a + ab * t)).len()
}

/// Distance from `p` to an open polyline.
pub fn polyline_distance(p: V2, pts: &[V2]) -> f32 {
    let mut best = f32::INFINITY;
    for w in pts.windows(2) {
        best = best.min(segment_distance(p, w[0], w[1]));
    }
    if pts.len() == 1 {
        best = (p - pts[0]).len();
    }
    best
}

/// The parameter interval `[t0, t1] ⊂ [0, 1]` of the segment `a + t (b - a)` inside `r`
/// (Liang–Barsky), or `None` when it misses.
pub fn clip_segment(a: V2, b: V2, r: &Rect) -> Option<(f32, f32)> {
    let d = b - a;
    let mut t0 = 0.0f32;
    let mut t1 = 1.0f32;
    for (p, q) in [(-d.x, a.x - r.x0), (d.x, r.x1 - a.x), (-d.y, a.y - r.y0), (d.y, r.y1 - a.y)] {
        if p.abs() < 1e-9 {
            if q < 0.0 {
                return None;
            }
        } else {
            let t = q / p;
            if p < 0.0 {
                t0 = t0.max(t);
            } else {
                t1 = t1.min(t);
            }
        }
    }
    (t0 <= t1).then_some((t0, t1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn similarity_maps_pivot_and_scales_lengths() {
        let t = Similarity::new(v2(1.0, 2.0), v2(10.0, 20.0), 2.0, 0.3, true);
        let p = t.point(v2(1.0, 2.0));
        assert!((p - v2(10.0, 20.0)).len() < 1e-5);
        let d = t.point(v2(4.0, 6.0)) - p;
        assert!((d.len() - 10.0).abs() < 1e-4);
        assert!(t.mirrors());
        assert!(!Similarity::new(v2(0.0, 0.0), v2(0.0, 0.0), 1.0, 2.0, false).mirrors());
    }

    #[test]
    fn clip_segment_to_rect() {
        let r = Rect::new(0.0, 0.0, 10.0, 10.0);
        let (t0, t1) = clip_segment(v2(-5.0, 5.0), v2(15.0, 5.0), &r).unwrap_or((9.0, 9.0));
        assert!((t0 - 0.25).abs() < 1e-6 && (t1 - 0.75).abs() < 1e-6);
        assert!(clip_segment(v2(-5.0, 20.0), v2(15.0, 20.0), &r).is_none());
    }

    #[test]
    fn pixel_span_clamps() {
        let (xs, ys) = Rect::new(-3.2, 4.5, 7.1, 100.0).pixel_span(6, 50);
        assert_eq!((xs, ys), (0..6, 4..50));
        let (xs, _) = Rect::new(10.0, 0.0, 12.0, 1.0).pixel_span(6, 50);
        assert!(xs.is_empty());
    }
}
