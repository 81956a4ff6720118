//! Fractures on the posed (image-space) skeleton, and their ground-truth boxes: thin lucent
//! lines across a long bone, cortical breaks (an incomplete line from one cortex, sometimes with
//! a buckle), and displaced fractures (the bone split along a jagged line into two pieces, the
//! distal one shifted and tilted). Each box is tight around the visible fracture plus a small
//! margin, snapped outwards to whole pixels and clipped to the image.

use rand::Rng;

use super::geometry::{Rect, Similarity, V2, clip_segment, v2};
use super::raster::{Blob, Clip, Cut, Kind, Panel, Profile, Shape};

/// The kinds of fracture drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Pattern {
    /// A thin lucent line across the shaft (hairline; hard to see at detector input sizes).
    Line,
    /// An incomplete line from one cortex, sometimes with a buckle.
    CorticalBreak,
    /// The bone split along a jagged line, the distal piece shifted and tilted.
    Displaced,
}

impl Pattern {
    pub const ALL: [Pattern; 3] = [Pattern::Line, Pattern::CorticalBreak, Pattern::Displaced];

    /// Share among fractures when every pattern is drawn.
    fn share(self) -> f64 {
        match self {
            Pattern::Line => 0.5,
            Pattern::CorticalBreak | Pattern::Displaced => 0.25,
        }
    }

    /// The pattern a uniform `roll` in [0, 1) picks among `allowed` (shares renormalised);
    /// `None` when `allowed` is empty.
    fn pick(allowed: &[Pattern], roll: f64) -> Option<Pattern> {
        let total: f64 = allowed.iter().map(|p| p.share()).sum();
        let mut x = roll * total;
        for p in allowed {
            if x < p.share() {
                return Some(*p);
            }
            x -= p.share();
        }
        allowed.last().copied()
    }
}

/// One placed fracture.
#[derive(Debug, Clone, PartialEq)]
pub struct Fracture {
    pub pattern: Pattern,
    /// Pixel box (whole pixels, inside the image).
    pub bbox: Rect,
    /// Panel, and index in its shape list, of the broken bone (the proximal piece when
    /// displaced).
    pub panel: usize,
    pub bone: usize,
}

/// A long bone that can take a fracture, with the axis interval visible in its panel.
struct Candidate {
    panel: usize,
    shape: usize,
    rect: Rect,
    t0: f32,
    t1: f32,
    weight: f32,
}

const ATTEMPTS: usize = 40;

/// Adds up to `count` fractures to distinct long bones of the panels and returns them. Fewer
/// (or none) come back only when the visible skeleton has no room for them.
pub fn place(
    panels: &mut [Panel],
    image: &Rect,
    count: usize,
    patterns: &[Pattern],
    displacement: f32,
    rng: &mut impl Rng,
) -> Vec<Fracture> {
    let mut placed: Vec<Fracture> = Vec::new();
    for _ in 0..count {
        let candidates = candidates(panels, &placed);
        let total: f32 = candidates.iter().map(|c| c.weight).sum();
        if candidates.is_empty() || total <= 0.0 {
            break;
        }
        for _ in 0..ATTEMPTS {
            let mut pick = rng.random_range(0.0..total);
            let chosen = candidates
                .iter()
                .find(|c| {
                    pick -= c.weight;
                    pick < 0.0
                })
                .unwrap_or(&candidates[candidates.len() - 1]);
            if let Some((fracture, edits)) =
                attempt(&panels[chosen.panel].shapes, chosen, image, patterns, displacement, rng)
                && !placed.iter().any(|f| f.bbox.expand(2.0).intersects(&fracture.bbox))
            {
                edits.apply(&mut panels[chosen.panel].shapes);
                placed.push(fracture);
                break;
            }
        }
    }
    placed
}

/// Long bones not yet broken whose visible axis is long enough.
fn candidates(panels: &[Panel], placed: &[Fracture]) -> Vec<Candidate> {
    let mut out = Vec::new();
    for (p, panel) in panels.iter().enumerate() {
        for (i, s) in panel.shapes.iter().enumerate() {
            let Shape::Tube(t) = s else { continue };
            if t.kind != Kind::LongBone
                || t.clip.is_some()
                || placed.iter().any(|f| f.panel == p && f.bone == i)
            {
                continue;
            }
            let len = t.length();
            if t.r_mid < 3.0 || len < 4.0 * t.r_mid {
                continue;
            }
            // Keep away from the joint ends.
            let end_margin = 0.14f32.max(t.flare * 0.7);
            let inner = panel.rect.expand(-(t.r_mid + 6.0));
            if inner.is_empty() {
                continue;
            }
            let Some((a, b)) = clip_segment(t.a, t.b, &inner) else { continue };
            let (t0, t1) = (a.max(end_margin), b.min(1.0 - end_margin));
            let visible = (t1 - t0) * len;
            if visible >= 2.0 * t.r_mid.max(6.0) {
                let weight = visible.sqrt();
                out.push(Candidate { panel: p, shape: i, rect: panel.rect, t0, t1, weight });
            }
        }
    }
    out
}

/// Shape-list changes a fracture needs, applied only once the fracture is accepted.
struct Edits {
    replace: Option<(usize, Shape)>,
    add: Vec<Shape>,
}

impl Edits {
    fn apply(self, shapes: &mut Vec<Shape>) {
        if let Some((i, s)) = self.replace {
            shapes[i] = s;
        }
        shapes.extend(self.add);
    }
}

/// Samples every half pixel along a polyline.
fn samples(pts: &[V2]) -> Vec<V2> {
    let mut out = Vec::new();
    for w in pts.windows(2) {
        let n = ((w[1] - w[0]).len() * 2.0).ceil().max(1.0) as usize;
        for k in 0..=n {
            out.push(w[0].lerp(w[1], k as f32 / n as f32));
        }
    }
    out
}

/// A jagged polyline from `p0` to `p1` with `k` inner vertices displaced sideways by up to
/// `jitter`.
fn jagged(p0: V2, p1: V2, k: usize, jitter: f32, rng: &mut impl Rng) -> Vec<V2> {
    let side = (p1 - p0).unit().perp();
    let mut pts = vec![p0];
    for i in 1..=k {
        let f = i as f32 / (k + 1) as f32;
        pts.push(p0.lerp(p1, f) + side * rng.random_range(-jitter..=jitter));
    }
    pts.push(p1);
    pts
}

/// Tries one fracture of a random pattern on `c`'s bone; `None` when it would not be visible
/// enough or would leave its panel. `displacement` scales a displaced fracture's shift and
/// tilt (1 = the default spread).
fn attempt(
    shapes: &[Shape],
    c: &Candidate,
    image: &Rect,
    patterns: &[Pattern],
    displacement: f32,
    rng: &mut impl Rng,
) -> Option<(Fracture, Edits)> {
    let Shape::Tube(bone) = &shapes[c.shape] else { return None };
    let t = rng.random_range(c.t0..=c.t1);
    let centre = bone.point_at(t);
    let r = bone.radius(t);
    let u = (bone.b - bone.a).unit();
    let n = u.perp();
    let margin = rng.random_range(3.0..7.0);
    let pattern = Pattern::pick(patterns, rng.random_range(0.0..1.0))?;

    let mut visible = Rect::empty();
    let mut count = 0usize;
    let mut see = |p: V2, inside: bool| {
        if inside {
            visible.include(p);
            count += 1;
        }
    };
    let mut broken = bone.clone();
    let mut add = Vec::new();
    let pad: f32;
    // What must contain the box centre: the bone, its pieces, a buckle.
    let mut mask: Vec<Shape> = Vec::new();
    match pattern {
        Pattern::Line => {
            let phi = rng.random_range(-0.9f32..0.9);
            let dir = n.rotated(phi);
            let half = r / phi.cos().max(0.4) * 1.3;
            let k = rng.random_range(3..=6);
            let pts = jagged(centre - dir * half, centre + dir * half, k, 0.12 * r, rng);
            let hw = rng.random_range(0.5f32..1.3);
            for p in samples(&pts) {
                see(p, bone.contains(p));
            }
            pad = hw;
            broken.cuts.push(Cut::new(pts, hw, rng.random_range(0.75..1.0)));
            mask.push(Shape::Tube(broken.clone()));
        }
        Pattern::CorticalBreak => {
            let side = if rng.random_bool(0.5) { 1.0 } else { -1.0 };
            let out_dir = (n * side).rotated(rng.random_range(-0.6f32..0.6));
            let edge = centre + n * side * r;
            let depth = 2.0 * r * rng.random_range(0.25f32..0.6);
            let pts = jagged(edge + out_dir * (0.35 * r), edge - out_dir * depth, 2, 0.1 * r, rng);
            let hw = rng.random_range(0.6f32..1.4);
            for p in samples(&pts) {
                see(p, bone.contains(p));
            }
            pad = hw;
            broken.cuts.push(Cut::new(pts, hw, rng.random_range(0.8..1.0)));
            mask.push(Shape::Tube(broken.clone()));
            if rng.random_bool(0.5) {
                // Buckle: the cortex bulges next to the break.
                let bump = Blob {
                    c: edge + n * side * (0.12 * r) + u * rng.random_range(-0.3 * r..0.3 * r),
                    u,
                    a: 0.45 * r,
                    b: 0.16 * r,
                    profile: Profile::Dome { depth: 0.5 * r },
                    rim: 0.35,
                    rho_shell: bone.rho_shell * 0.8,
                    rho_core: bone.rho_core,
                    kind: Kind::Bone,
                };
                let b = bump.bounds().expand(-1.0);
                visible.include(v2(b.x0, b.y0));
                visible.include(v2(b.x1, b.y1));
                mask.push(Shape::Blob(bump.clone()));
                add.push(Shape::Blob(bump));
            }
        }
        Pattern::Displaced => {
            let dir = n.rotated(rng.random_range(-0.7f32..0.7));
            let mut m = dir.perp();
            if m.dot(bone.a - centre) > 0.0 {
                m = -m;
            }
            let period = r * rng.random_range(0.4f32..1.0);
            let amp = rng.random_range(0.5f32..1.5);
            let jag = [
                (amp, std::f32::consts::TAU / period, rng.random_range(0.0..6.3)),
                (amp * 0.3, std::f32::consts::TAU / (period * 0.45), rng.random_range(0.0..6.3)),
            ];
            let proximal = Clip { o: centre, n: m, jag };
            let distal = Clip { o: centre, n: -m, jag: jag.map(|(a, f, p)| (-a, -f, p)) };
            let side = if rng.random_bool(0.5) { 1.0 } else { -1.0 };
            let shift = (n * (side * r * rng.random_range(0.25f32..0.9))
                + u * (r * rng.random_range(-0.5f32..0.25)))
                * displacement;
            let tilt = rng.random_range(-0.15f32..0.15) * displacement;
            let motion = Similarity::new(centre, centre + shift, 1.0, tilt, false);
            broken.clip = Some(proximal);
            let mut piece = bone.clone();
            piece.clip = Some(distal);
            let Shape::Tube(piece) = Shape::Tube(piece).transformed(&motion) else { return None };
            let half = r / (dir.dot(n)).abs().max(0.4) * 1.3;
            let line = samples(&[centre - dir * half, centre + dir * half]);
            for p in &line {
                see(*p, bone.contains(*p));
                let q = motion.point(*p);
                let (_, d, rq) = piece.locate(q);
                see(q, d < rq);
            }
            pad = amp * 1.5;
            mask.push(Shape::Tube(broken.clone()));
            mask.push(Shape::Tube(piece.clone()));
            add.push(Shape::Tube(piece));
        }
    }
    if count < 6 {
        return None;
    }
    // The visible fracture must lie well inside its panel.
    let inner = c.rect.expand(-2.0);
    if !inner.contains(v2(visible.x0, visible.y0)) || !inner.contains(v2(visible.x1, visible.y1)) {
        return None;
    }
    let bbox = snap(&visible.expand(pad + margin), image);
    if bbox.width() < 3.0 || bbox.height() < 3.0 {
        return None;
    }
    let centre_px = bbox.center();
    if !mask.iter().any(|s| s.contains(centre_px)) {
        return None;
    }
    let edits = Edits { replace: Some((c.shape, Shape::Tube(broken))), add };
    Some((Fracture { pattern, bbox, panel: c.panel, bone: c.shape }, edits))
}

/// Whole-pixel box around `r`, clipped to `image`.
fn snap(r: &Rect, image: &Rect) -> Rect {
    Rect::new(
        r.x0.floor().max(image.x0),
        r.y0.floor().max(image.y0),
        r.x1.ceil().min(image.x1),
        r.y1.ceil().min(image.y1),
    )
}

/// Whether `p` lies inside any bone of the panels (the union of bone outlines).
#[cfg(test)]
pub fn in_bone(panels: &[Panel], p: V2) -> bool {
    panels.iter().any(|panel| {
        panel.rect.contains(p) && panel.shapes.iter().any(|s| s.kind().is_bone() && s.contains(p))
    })
}
