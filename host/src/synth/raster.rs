//! The phantom's drawing primitives and their rasteriser. Every shape adds its projected
//! attenuation (density × path length through it) to a float canvas, visiting only the pixels
//! of its own bounding box, never the whole image per shape.
//!
//! Shapes are described in any space (anatomy millimetres or image pixels) and carried from one
//! to the other by [`Shape::transformed`]; densities are per unit length, so a transform that
//! scales lengths by `s` scales densities by `1 / s` and the line integrals stay the same.

use super::geometry::{Rect, Similarity, V2, polyline_distance, v2};

/// A capsule whose radius and cortical shell vary along its axis: long bones (cortex bright,
/// marrow darker), phalanges, soft-tissue limbs (no shell).
#[derive(Debug, Clone, PartialEq)]
pub struct Tube {
    pub a: V2,
    pub b: V2,
    /// Radius at `a`, mid-shaft and `b`.
    pub r_a: f32,
    pub r_mid: f32,
    pub r_b: f32,
    /// Fraction of the length, at each end, over which the radius flares to `r_a` / `r_b`.
    pub flare: f32,
    /// Cortical shell thickness as a fraction of the radius, mid-shaft and at the ends.
    pub cortex_mid: f32,
    pub cortex_end: f32,
    /// Densities of the shell and of the core, per unit length.
    pub rho_shell: f32,
    pub rho_core: f32,
    pub kind: Kind,
    /// Lucent fracture lines through this tube.
    pub cuts: Vec<Cut>,
    /// Half-plane (with a jagged edge) that bounds this piece of a broken bone.
    pub clip: Option<Clip>,
}

/// What a shape is made of; decides texture, fracture eligibility and the bone mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Soft,
    /// Bone that fractures may be placed on (long bones, necks, clavicle).
    LongBone,
    /// Other bone (carpals, flat bones, heads, ribs).
    Bone,
    Metal,
}

impl Kind {
    pub fn is_bone(self) -> bool {
        matches!(self, Kind::LongBone | Kind::Bone)
    }
}

/// A thin lucent (dark) line: bone density is reduced by `depth` within `half_width` of the
/// polyline.
#[derive(Debug, Clone, PartialEq)]
pub struct Cut {
    pts: Vec<V2>,
    half_width: f32,
    depth: f32,
    bounds: Rect,
}

impl Cut {
    pub fn new(pts: Vec<V2>, half_width: f32, depth: f32) -> Cut {
        let mut bounds = Rect::empty();
        for p in &pts {
            bounds.include(*p);
        }
        let bounds = bounds.expand(half_width + 1.0);
        Cut { pts, half_width, depth, bounds }
    }

    /// Multiplier for the bone density at `p` (1 away from the line).
    fn factor(&self, p: V2) -> f32 {
        let d = polyline_distance(p, &self.pts);
        1.0 - self.depth * (self.half_width + 0.5 - d).clamp(0.0, 1.0)
    }
}

/// Keeps the side `n · (p - o) + jag <= 0` of a line through `o` with unit normal `n`; the
/// edge wiggles by two sinusoids along the line, like a real fracture surface.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Clip {
    pub o: V2,
    pub n: V2,
    /// `(amplitude, spatial frequency, phase)` of the two edge wiggles.
    pub jag: [(f32, f32, f32); 2],
}

impl Clip {
    /// Signed distance-like value; `<= 0` is kept.
    pub fn signed(&self, p: V2) -> f32 {
        let d = p - self.o;
        let along = d.dot(self.n.perp());
        let mut s = d.dot(self.n);
        for (amp, freq, phase) in self.jag {
            s += amp * (freq * along + phase).sin();
        }
        s
    }

    /// Coverage in `[0, 1]` with a one-pixel soft edge.
    fn coverage(&self, p: V2) -> f32 {
        (0.5 - self.signed(p)).clamp(0.0, 1.0)
    }

    fn transformed(&self, t: &Similarity) -> Clip {
        let n = t.direction(self.n);
        let s = t.scale();
        // A mirror reverses `perp`, which only reverses the wiggle pattern.
        let jag = self.jag.map(|(a, f, p)| (a * s, f / s, p));
        Clip { o: t.point(self.o), n, jag }
    }
}

impl Tube {
    /// Axis parameter `t ∈ [0, 1]`, distance to the axis and local radius at `p`.
    pub fn locate(&self, p: V2) -> (f32, f32, f32) {
        let ab = self.b - self.a;
        let l2 = ab.dot(ab).max(1e-12);
        let t = ((p - self.a).dot(ab) / l2).clamp(0.0, 1.0);
        let d = (p - (self.a + ab * t)).len();
        (t, d, self.radius(t))
    }

    pub fn radius(&self, t: f32) -> f32 {
        let (wa, wb) = self.end_weights(t);
        self.r_mid + (self.r_a - self.r_mid) * wa + (self.r_b - self.r_mid) * wb
    }

    fn end_weights(&self, t: f32) -> (f32, f32) {
        let f = self.flare.max(1e-3);
        let wa = (1.0 - t / f).clamp(0.0, 1.0);
        let wb = (1.0 - (1.0 - t) / f).clamp(0.0, 1.0);
        (wa * wa, wb * wb)
    }

    pub fn point_at(&self, t: f32) -> V2 {
        self.a.lerp(self.b, t)
    }

    pub fn length(&self) -> f32 {
        (self.b - self.a).len()
    }

    /// Inside the tube's outline (and on the kept side of its clip).
    pub fn contains(&self, p: V2) -> bool {
        let (_, d, r) = self.locate(p);
        d < r && self.clip.is_none_or(|c| c.signed(p) <= 0.0)
    }

    pub fn bounds(&self) -> Rect {
        let r = self.r_a.max(self.r_b).max(self.r_mid) + 1.0;
        Rect::around(self.a, r).union(&Rect::around(self.b, r))
    }

    /// Projected attenuation at `p`, before texture, cuts and clip.
    fn attenuation(&self, p: V2) -> f32 {
        let (t, d, r) = self.locate(p);
        if d >= r {
            return 0.0;
        }
        let (wa, wb) = self.end_weights(t);
        let end = wa.max(wb);
        let cortex = self.cortex_mid + (self.cortex_end - self.cortex_mid) * end;
        let d2 = d * d;
        let outer = 2.0 * (r * r - d2).max(0.0).sqrt();
        let ri = r * (1.0 - cortex);
        let inner = 2.0 * (ri * ri - d2).max(0.0).sqrt();
        // Flared ends widen more than they thicken: the cross-section there is an ellipse whose
        // depth grows only like √(r · r_mid).
        let depth = if r > self.r_mid { (self.r_mid / r).sqrt() } else { 1.0 };
        depth * (self.rho_shell * (outer - inner) + self.rho_core * inner)
    }

    fn transformed(&self, t: &Similarity) -> Tube {
        let s = t.scale();
        Tube {
            a: t.point(self.a),
            b: t.point(self.b),
            r_a: self.r_a * s,
            r_mid: self.r_mid * s,
            r_b: self.r_b * s,
            rho_shell: self.rho_shell / s,
            rho_core: self.rho_core / s,
            cuts: self
                .cuts
                .iter()
                .map(|c| {
                    Cut::new(c.pts.iter().map(|p| t.point(*p)).collect(), c.half_width * s, c.depth)
                })
                .collect(),
            clip: self.clip.map(|c| c.transformed(t)),
            ..self.clone()
        }
    }
}

/// How an ellipse's thickness varies across it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Profile {
    /// An ellipsoid seen from above: thickness `depth·√(1 - q²)` (heads, carpals, tissue).
    Dome { depth: f32 },
    /// A flat plate of constant thickness (iliac wing, scapula blade).
    Plate { thickness: f32 },
}

/// An ellipse with a dome or plate profile and an optional bright rim (cortex).
#[derive(Debug, Clone, PartialEq)]
pub struct Blob {
    pub c: V2,
    /// Unit direction of semi-axis `a`.
    pub u: V2,
    pub a: f32,
    pub b: f32,
    pub profile: Profile,
    /// Rim (cortex) thickness as a fraction of the smaller semi-axis.
    pub rim: f32,
    pub rho_shell: f32,
    pub rho_core: f32,
    pub kind: Kind,
}

impl Blob {
    fn local(&self, p: V2) -> (f32, f32) {
        let d = p - self.c;
        (d.dot(self.u), d.dot(self.u.perp()))
    }

    pub fn contains(&self, p: V2) -> bool {
        let (x, y) = self.local(p);
        (x / self.a).powi(2) + (y / self.b).powi(2) < 1.0
    }

    pub fn bounds(&self) -> Rect {
        // Exact half-extents of a rotated ellipse.
        let (ux, uy) = (self.u.x, self.u.y);
        let hx = ((self.a * ux).powi(2) + (self.b * uy).powi(2)).sqrt();
        let hy = ((self.a * uy).powi(2) + (self.b * ux).powi(2)).sqrt();
        Rect::new(self.c.x - hx, self.c.y - hy, self.c.x + hx, self.c.y + hy).expand(1.0)
    }

    fn attenuation(&self, p: V2) -> f32 {
        let (x, y) = self.local(p);
        let (xa, yb) = (x / self.a, y / self.b);
        let q2 = xa * xa + yb * yb;
        match self.profile {
            Profile::Dome { depth } => {
                if q2 >= 1.0 {
                    return 0.0;
                }
                let outer = depth * (1.0 - q2).sqrt();
                let k = 1.0 - self.rim;
                let inner_q2 = q2 / (k * k).max(1e-6);
                let inner = depth * k * (1.0 - inner_q2).max(0.0).sqrt();
                self.rho_shell * (outer - inner) + self.rho_core * inner
            }
            Profile::Plate { thickness } => {
                // Signed distance to the outline, to first order: f / |∇f|.
                let f = q2 - 1.0;
                let g = 2.0 * ((xa / self.a).powi(2) + (yb / self.b).powi(2)).sqrt();
                let sd = f / g.max(1e-6);
                let cover = (0.5 - sd).clamp(0.0, 1.0);
                if cover <= 0.0 {
                    return 0.0;
                }
                let rim_w = (self.rim * self.a.min(self.b)).max(0.5);
                let rim = (1.0 + sd / rim_w).clamp(0.0, 1.0);
                cover * thickness * (self.rho_core + (self.rho_shell - self.rho_core) * rim)
            }
        }
    }

    fn transformed(&self, t: &Similarity) -> Blob {
        let s = t.scale();
        let profile = match self.profile {
            Profile::Dome { depth } => Profile::Dome { depth: depth * s },
            Profile::Plate { thickness } => Profile::Plate { thickness: thickness * s },
        };
        Blob {
            c: t.point(self.c),
            u: t.direction(self.u),
            a: self.a * s,
            b: self.b * s,
            profile,
            rho_shell: self.rho_shell / s,
            rho_core: self.rho_core / s,
            ..self.clone()
        }
    }
}

/// A tube bent along a circular arc (ribs): centre `c`, arc radius `radius`, from direction
/// `u0` turning towards `u1` (less than half a turn), tube radius `r`.
#[derive(Debug, Clone, PartialEq)]
pub struct Arc {
    pub c: V2,
    pub radius: f32,
    pub u0: V2,
    pub u1: V2,
    pub r: f32,
    pub cortex: f32,
    pub rho_shell: f32,
    pub rho_core: f32,
}

impl Arc {
    fn in_wedge(&self, v: V2) -> bool {
        self.u0.cross(v) >= 0.0 && v.cross(self.u1) >= 0.0
    }

    pub fn contains(&self, p: V2) -> bool {
        let v = p - self.c;
        self.in_wedge(v) && (v.len() - self.radius).abs() < self.r
    }

    pub fn bounds(&self) -> Rect {
        // The arc's end points, its mid point and any axis extreme inside the wedge.
        let mut r = Rect::empty();
        let mid = (self.u0 + self.u1).unit();
        for u in [self.u0, self.u1, mid, v2(1.0, 0.0), v2(-1.0, 0.0), v2(0.0, 1.0), v2(0.0, -1.0)] {
            if self.in_wedge(u) {
                r.include(self.c + u * self.radius);
            }
        }
        r.expand(self.r + 1.0)
    }

    fn attenuation(&self, p: V2) -> f32 {
        let v = p - self.c;
        if !self.in_wedge(v) {
            return 0.0;
        }
        let d = (v.len() - self.radius).abs();
        if d >= self.r {
            return 0.0;
        }
        let d2 = d * d;
        let outer = 2.0 * (self.r * self.r - d2).sqrt();
        let ri = self.r * (1.0 - self.cortex);
        let inner = 2.0 * (ri * ri - d2).max(0.0).sqrt();
        self.rho_shell * (outer - inner) + self.rho_core * inner
    }

    fn transformed(&self, t: &Similarity) -> Arc {
        let s = t.scale();
        let (mut u0, mut u1) = (t.direction(self.u0), t.direction(self.u1));
        if t.mirrors() {
            std::mem::swap(&mut u0, &mut u1);
        }
        Arc {
            c: t.point(self.c),
            radius: self.radius * s,
            u0,
            u1,
            r: self.r * s,
            rho_shell: self.rho_shell / s,
            rho_core: self.rho_core / s,
            ..self.clone()
        }
    }
}

/// A metal capsule of uniform, very high density (plates, nails, wires, screws); screws carry
/// a thread that notches the outline every `pitch`.
#[derive(Debug, Clone, PartialEq)]
pub struct Metal {
    pub a: V2,
    pub b: V2,
    pub r: f32,
    /// Attenuation inside the outline, whatever the path length: metal stops nearly all of the
    /// beam, so thin wires burn out as white as thick plates.
    pub rho: f32,
    pub thread_pitch: Option<f32>,
}

impl Metal {
    pub fn bounds(&self) -> Rect {
        Rect::around(self.a, self.r + 1.0).union(&Rect::around(self.b, self.r + 1.0))
    }

    fn attenuation(&self, p: V2) -> f32 {
        let ab = self.b - self.a;
        let l2 = ab.dot(ab).max(1e-12);
        let s = (p - self.a).dot(ab) / l2;
        let t = s.clamp(0.0, 1.0);
        let d = (p - (self.a + ab * t)).len();
        let r = match self.thread_pitch {
            Some(pitch) if pitch > 0.0 => {
                let along = s * l2.sqrt() / pitch;
                let tooth = (along - along.floor() - 0.5).abs() * 2.0; // triangle wave 0..1
                self.r * (0.78 + 0.22 * tooth)
            }
            _ => self.r,
        };
        (r - d + 0.5).clamp(0.0, 1.0) * self.rho
    }

    fn transformed(&self, t: &Similarity) -> Metal {
        let s = t.scale();
        Metal {
            a: t.point(self.a),
            b: t.point(self.b),
            r: self.r * s,
            rho: self.rho,
            thread_pitch: self.thread_pitch.map(|p| p * s),
        }
    }
}

/// Any primitive of the scene.
#[derive(Debug, Clone, PartialEq)]
pub enum Shape {
    Tube(Tube),
    Blob(Blob),
    Arc(Arc),
    Metal(Metal),
}

impl Shape {
    pub fn kind(&self) -> Kind {
        match self {
            Shape::Tube(t) => t.kind,
            Shape::Blob(b) => b.kind,
            Shape::Arc(_) => Kind::Bone,
            Shape::Metal(_) => Kind::Metal,
        }
    }

    pub fn bounds(&self) -> Rect {
        match self {
            Shape::Tube(t) => t.bounds(),
            Shape::Blob(b) => b.bounds(),
            Shape::Arc(a) => a.bounds(),
            Shape::Metal(m) => m.bounds(),
        }
    }

    /// Inside the shape's outline (metal and soft tissue included).
    pub fn contains(&self, p: V2) -> bool {
        match self {
            Shape::Tube(t) => t.contains(p),
            Shape::Blob(b) => b.contains(p),
            Shape::Arc(a) => a.contains(p),
            Shape::Metal(m) => m.attenuation(p) > 0.0,
        }
    }

    pub fn transformed(&self, t: &Similarity) -> Shape {
        match self {
            Shape::Tube(x) => Shape::Tube(x.transformed(t)),
            Shape::Blob(x) => Shape::Blob(x.transformed(t)),
            Shape::Arc(x) => Shape::Arc(x.transformed(t)),
            Shape::Metal(x) => Shape::Metal(x.transformed(t)),
        }
    }
}

/// One exposure field of the image (a multiscan has two side by side) and the posed shapes
/// drawn inside it, in image pixels.
#[derive(Debug, Clone)]
pub struct Panel {
    pub rect: Rect,
    pub shapes: Vec<Shape>,
}

/// Low-frequency multiplicative texture for bone (trabecular pattern): two octaves of bilinear
/// value noise on coarse grids.
#[derive(Debug, Clone)]
pub struct Texture {
    octaves: Vec<Grid>,
    amplitude: f32,
}

#[derive(Debug, Clone)]
struct Grid {
    cell: f32,
    cols: usize,
    rows: usize,
    values: Vec<f32>,
}

impl Grid {
    fn sample(&self, p: V2) -> f32 {
        let gx = (p.x / self.cell).max(0.0);
        let gy = (p.y / self.cell).max(0.0);
        let (ix, iy) = (gx as usize, gy as usize);
        let (fx, fy) = (gx - ix as f32, gy - iy as f32);
        let at = |x: usize, y: usize| {
            self.values[y.min(self.rows - 1) * self.cols + x.min(self.cols - 1)]
        };
        let top = at(ix, iy) + (at(ix + 1, iy) - at(ix, iy)) * fx;
        let bottom = at(ix, iy + 1) + (at(ix + 1, iy + 1) - at(ix, iy + 1)) * fx;
        top + (bottom - top) * fy
    }
}

impl Texture {
    /// `cells` is `(cell size in px, values in [-1, 1])` per octave, each grid covering a
    /// `w`×`h` image.
    pub fn new(w: usize, h: usize, amplitude: f32, octaves: Vec<(f32, Vec<f32>)>) -> Texture {
        let octaves = octaves
            .into_iter()
            .map(|(cell, values)| {
                let (cols, rows) = Texture::grid_size(w, h, cell);
                let mut values = values;
                values.resize(cols * rows, 0.0);
                Grid { cell, cols, rows, values }
            })
            .collect();
        Texture { octaves, amplitude }
    }

    /// Grid points needed for a `w`×`h` image at `cell` px per cell.
    pub fn grid_size(w: usize, h: usize, cell: f32) -> (usize, usize) {
        let c = cell.max(1.0);
        ((w as f32 / c).ceil() as usize + 2, (h as f32 / c).ceil() as usize + 2)
    }

    fn factor(&self, p: V2) -> f32 {
        let mut n = 0.0;
        let mut weight = 1.0;
        let mut total = 0.0;
        for g in &self.octaves {
            n += g.sample(p) * weight;
            total += weight;
            weight *= 0.6;
        }
        1.0 + self.amplitude * n / total.max(1e-6)
    }
}

/// The attenuation image being drawn: `w`×`h` floats, row-major.
#[derive(Debug, Clone)]
pub struct Canvas {
    pub w: usize,
    pub h: usize,
    pub att: Vec<f32>,
    texture: Texture,
}

impl Canvas {
    pub fn new(w: usize, h: usize, texture: Texture) -> Canvas {
        Canvas { w, h, att: vec![0.0; w * h], texture }
    }

    /// Adds `shape`, restricted to `clip` (a panel of the image).
    pub fn draw(&mut self, shape: &Shape, clip: &Rect) {
        let area = shape.bounds().intersect(clip);
        if area.is_empty() {
            return;
        }
        let (_, ys) = area.pixel_span(self.w, self.h);
        let textured = shape.kind().is_bone();
        for y in ys {
            let py = y as f32 + 0.5;
            if py < clip.y0 || py >= clip.y1 {
                continue;
            }
            // Only the part of this row the shape can reach.
            let Some((lo, hi)) = shape.row_span(py) else { continue };
            let span = Rect::new(lo.max(area.x0), py, hi.min(area.x1), py + 1.0);
            let (cols, _) = span.pixel_span(self.w, self.h);
            let row = &mut self.att[y * self.w..(y + 1) * self.w];
            for x in cols {
                let p = v2(x as f32 + 0.5, py);
                if p.x < clip.x0 || p.x >= clip.x1 {
                    continue;
                }
                let mut v = match shape {
                    Shape::Tube(t) => tube_value(t, p),
                    Shape::Blob(b) => b.attenuation(p),
                    Shape::Arc(a) => a.attenuation(p),
                    Shape::Metal(m) => m.attenuation(p),
                };
                if v == 0.0 {
                    continue;
                }
                if textured {
                    v *= self.texture.factor(p);
                }
                row[x] += v;
            }
        }
    }
}

/// The x-interval of a row at height `y` within `r` of the segment `a`–`b` (a superset of the
/// capsule's cross-section), or `None` when the row misses it.
fn capsule_row_span(a: V2, b: V2, r: f32, y: f32) -> Option<(f32, f32)> {
    let d = b - a;
    let (t0, t1) = if d.y.abs() < 1e-6 {
        if (a.y - y).abs() > r {
            return None;
        }
        (0.0, 1.0)
    } else {
        let u = (y - r - a.y) / d.y;
        let v = (y + r - a.y) / d.y;
        let (lo, hi) = if u < v { (u, v) } else { (v, u) };
        let (lo, hi) = (lo.max(0.0), hi.min(1.0));
        if lo > hi {
            return None;
        }
        (lo, hi)
    };
    let (x0, x1) = (a.x + d.x * t0, a.x + d.x * t1);
    Some((x0.min(x1) - r, x0.max(x1) + r))
}

/// The x-interval of a row at height `y` inside the ellipse grown by one pixel.
fn ellipse_row_span(e: &Blob, y: f32) -> Option<(f32, f32)> {
    let (a, b) = (e.a + 1.0, e.b + 1.0);
    let (ux, uy) = (e.u.x, e.u.y);
    let (ia, ib) = (1.0 / (a * a), 1.0 / (b * b));
    let dy = y - e.c.y;
    // Q(dx) = A dx² + B dx + C ≤ 0 inside.
    let qa = ux * ux * ia + uy * uy * ib;
    let qb = 2.0 * dy * ux * uy * (ia - ib);
    let qc = dy * dy * (uy * uy * ia + ux * ux * ib) - 1.0;
    let disc = qb * qb - 4.0 * qa * qc;
    if disc < 0.0 || qa <= 0.0 {
        return None;
    }
    let root = disc.sqrt();
    Some((e.c.x + (-qb - root) / (2.0 * qa), e.c.x + (-qb + root) / (2.0 * qa)))
}

impl Shape {
    /// A superset of the x-interval the shape covers on the row at height `y`.
    fn row_span(&self, y: f32) -> Option<(f32, f32)> {
        match self {
            Shape::Tube(t) => capsule_row_span(t.a, t.b, t.r_a.max(t.r_b).max(t.r_mid) + 1.0, y),
            Shape::Metal(m) => capsule_row_span(m.a, m.b, m.r + 1.0, y),
            Shape::Blob(e) => ellipse_row_span(e, y),
            Shape::Arc(a) => {
                let r = a.bounds();
                Some((r.x0, r.x1))
            }
        }
    }
}

/// A tube's attenuation with its clip and cuts applied.
fn tube_value(t: &Tube, p: V2) -> f32 {
    let mut v = t.attenuation(p);
    if v == 0.0 {
        return 0.0;
    }
    if let Some(c) = &t.clip {
        v *= c.coverage(p);
    }
    for cut in &t.cuts {
        if v > 0.0 && cut.bounds.contains(p) {
            v *= cut.factor(p);
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flat_texture() -> Texture {
        Texture::new(64, 64, 0.0, Vec::new())
    }

    fn bone() -> Tube {
        Tube {
            a: v2(10.0, 32.0),
            b: v2(54.0, 32.0),
            r_a: 8.0,
            r_mid: 8.0,
            r_b: 8.0,
            flare: 0.2,
            cortex_mid: 0.3,
            cortex_end: 0.3,
            rho_shell: 0.1,
            rho_core: 0.03,
            kind: Kind::LongBone,
            cuts: Vec::new(),
            clip: None,
        }
    }

    #[test]
    fn cortex_is_brighter_than_marrow_and_cut_is_dark() {
        let full = Rect::new(0.0, 0.0, 64.0, 64.0);
        let mut c = Canvas::new(64, 64, flat_texture());
        let mut t = bone();
        t.cuts.push(Cut::new(vec![v2(32.0, 20.0), v2(32.0, 44.0)], 1.0, 1.0));
        c.draw(&Shape::Tube(t), &full);
        let at = |x: usize, y: usize| c.att[y * 64 + x];
        // Near the edge (through the shell tangentially) brighter than the centre line.
        assert!(at(20, 32 - 6) > at(20, 32), "{} vs {}", at(20, 26), at(20, 32));
        assert!(at(32, 32) < 0.05 * at(20, 32));
        assert_eq!(at(20, 5), 0.0);
    }

    #[test]
    fn row_spans_cover_the_shapes() {
        let shapes = [
            Shape::Tube(Tube { b: v2(40.0, 50.0), ..bone() }),
            Shape::Blob(Blob {
                c: v2(30.0, 30.0),
                u: V2::from_angle(0.6),
                a: 20.0,
                b: 7.0,
                profile: Profile::Plate { thickness: 3.0 },
                rim: 0.1,
                rho_shell: 0.1,
                rho_core: 0.05,
                kind: Kind::Bone,
            }),
        ];
        for s in &shapes {
            for y in 0..64 {
                let py = y as f32 + 0.5;
                for x in 0..64 {
                    let p = v2(x as f32 + 0.5, py);
                    if s.contains(p) {
                        let (lo, hi) = s.row_span(py).unwrap_or((1e9, -1e9));
                        assert!(lo <= p.x && p.x <= hi, "{p:?} outside row span {lo}..{hi}");
                    }
                }
            }
        }
    }

    #[test]
    fn clip_removes_one_side() {
        let full = Rect::new(0.0, 0.0, 64.0, 64.0);
        let mut c = Canvas::new(64, 64, flat_texture());
        let mut t = bone();
        t.clip = Some(Clip { o: v2(32.0, 32.0), n: v2(1.0, 0.0), jag: [(0.0, 0.0, 0.0); 2] });
        c.draw(&Shape::Tube(t), &full);
        assert!(c.att[32 * 64 + 20] > 0.0);
        assert_eq!(c.att[32 * 64 + 40], 0.0);
    }

    #[test]
    fn transform_keeps_line_integrals() {
        let t = Similarity::new(v2(0.0, 0.0), v2(32.0, 32.0), 2.0, 0.7, true);
        let b = Blob {
            c: v2(0.0, 0.0),
            u: v2(1.0, 0.0),
            a: 6.0,
            b: 4.0,
            profile: Profile::Dome { depth: 8.0 },
            rim: 0.2,
            rho_shell: 0.2,
            rho_core: 0.1,
            kind: Kind::Bone,
        };
        let centre_before = b.attenuation(v2(0.0, 0.0));
        let Shape::Blob(moved) = Shape::Blob(b).transformed(&t) else { unreachable!() };
        assert!((moved.attenuation(v2(32.0, 32.0)) - centre_before).abs() < 1e-4);
    }
}
