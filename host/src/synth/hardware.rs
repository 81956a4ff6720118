//! Orthopaedic hardware on the posed skeleton (the `hardware` column): plates with screws,
//! intramedullary nails with locking screws, lag screws along a bone, and Kirschner wires on
//! small bones. All metal, far denser than bone, so it burns out to white.

use rand::Rng;

use super::geometry::{Rect, V2, clip_segment};
use super::raster::{Kind, Metal, Panel, Shape, Tube};

/// Attenuation of metal, far above any bone (bone shafts reach about 2).
const METAL: f32 = 12.0;

/// Adds one implant to a visible long bone, preferring `prefer` (panel, shape index: a
/// fractured bone) when given, and keeping the metal off every box in `avoid` so it never hides
/// a labelled fracture. Returns false when no bone could carry one.
pub fn add(
    panels: &mut [Panel],
    prefer: Option<(usize, usize)>,
    avoid: &[Rect],
    rng: &mut impl Rng,
) -> bool {
    let mut options: Vec<(usize, usize, f32, f32)> = Vec::new();
    for (p, panel) in panels.iter().enumerate() {
        for (i, s) in panel.shapes.iter().enumerate() {
            if let Shape::Tube(t) = s
                && t.kind == Kind::LongBone
                && t.r_mid >= 2.5
                && let Some((t0, t1)) = clip_segment(t.a, t.b, &panel.rect.expand(-4.0))
                && (t1 - t0) * t.length() > 6.0 * t.r_mid
            {
                options.push((p, i, t0, t1));
            }
        }
    }
    if options.is_empty() {
        return false;
    }
    for attempt in 0..8 {
        let preferred = prefer
            .filter(|_| attempt < 4)
            .and_then(|(p, i)| options.iter().find(|o| o.0 == p && o.1 == i).copied());
        let (p, i, t0, t1) = match preferred {
            Some(o) => o,
            None if rng.random_bool(0.6) => {
                // Bigger bones carry hardware more often.
                let radius = |o: &(usize, usize, f32, f32)| match &panels[o.0].shapes[o.1] {
                    Shape::Tube(t) => t.r_mid,
                    _ => 0.0,
                };
                options
                    .iter()
                    .copied()
                    .max_by(|a, b| radius(a).total_cmp(&radius(b)))
                    .unwrap_or(options[0])
            }
            None => options[rng.random_range(0..options.len())],
        };
        let Shape::Tube(bone) = &panels[p].shapes[i] else { continue };
        let (t0, t1) = (t0.max(0.1), t1.min(0.9));
        if t1 <= t0 {
            continue;
        }
        let metal = if bone.r_mid < 7.0 {
            kirschner_wires(bone, t0, t1, rng)
        } else {
            match rng.random_range(0..4) {
                0 | 1 => plate(bone, t0, t1, rng),
                2 => nail(bone, t0, t1, rng),
                _ => lag_screws(bone, t0, t1, rng),
            }
        };
        let metal: Vec<Shape> = metal.into_iter().map(Shape::Metal).collect();
        if avoid.iter().any(|b| covers(&metal, b)) {
            continue;
        }
        panels[p].shapes.extend(metal);
        return true;
    }
    false
}

/// Whether any of `metal` touches `r` (sampled every two pixels, edges included).
fn covers(metal: &[Shape], r: &Rect) -> bool {
    let near: Vec<&Shape> = metal.iter().filter(|m| m.bounds().intersects(r)).collect();
    if near.is_empty() {
        return false;
    }
    let steps = |len: f32| (len / 2.0).ceil().max(1.0) as usize;
    let (nx, ny) = (steps(r.width()), steps(r.height()));
    (0..=ny).any(|j| {
        (0..=nx).any(|i| {
            let p = V2 {
                x: r.x0 + r.width() * i as f32 / nx as f32,
                y: r.y0 + r.height() * j as f32 / ny as f32,
            };
            near.iter().any(|m| m.contains(p))
        })
    })
}

fn frame(bone: &Tube) -> (V2, V2) {
    let u = (bone.b - bone.a).unit();
    (u, u.perp())
}

/// A plate lying on the bone with screws across it.
fn plate(bone: &Tube, t0: f32, t1: f32, rng: &mut impl Rng) -> Vec<Metal> {
    let (u, n) = frame(bone);
    let r = bone.r_mid;
    let len = (t1 - t0) * bone.length();
    let plate_len = (len * rng.random_range(0.4f32..0.75)).max(3.0 * r);
    let tc = rng.random_range(t0..=t1);
    let side = rng.random_range(-0.9f32..0.9) * r;
    let c = bone.point_at(tc) + n * side;
    let half_w = r * rng.random_range(0.3f32..0.45);
    let a = c - u * (plate_len * 0.5);
    let b = c + u * (plate_len * 0.5);
    let mut out = vec![Metal { a, b, r: half_w, rho: METAL, thread_pitch: None }];
    let screws = ((plate_len / (1.3 * r)) as usize).clamp(2, 10);
    let tilt = rng.random_range(-0.15f32..0.15);
    for k in 0..screws {
        let f = (k as f32 + 0.5) / screws as f32;
        let p = a.lerp(b, f);
        let axis = bone.point_at(tc) + u * ((p - c).dot(u));
        let dir = n.rotated(tilt);
        let half = 1.15 * r;
        out.push(Metal {
            a: axis - dir * half,
            b: axis + dir * half,
            r: 0.17 * r,
            rho: METAL,
            thread_pitch: Some(0.22 * r),
        });
        // Screw head on the plate.
        out.push(Metal {
            a: p - u * (0.2 * r),
            b: p + u * (0.2 * r),
            r: 0.3 * r,
            rho: METAL,
            thread_pitch: None,
        });
    }
    out
}

/// An intramedullary nail down the marrow with a locking screw near each end.
fn nail(bone: &Tube, t0: f32, t1: f32, rng: &mut impl Rng) -> Vec<Metal> {
    let (_, n) = frame(bone);
    let r = bone.r_mid;
    let a = bone.point_at(t0);
    let b = bone.point_at(t1);
    let mut out =
        vec![Metal { a, b, r: r * rng.random_range(0.3f32..0.42), rho: METAL, thread_pitch: None }];
    for f in [0.12f32, 0.88] {
        let p = a.lerp(b, f);
        let dir = n.rotated(rng.random_range(-0.3f32..0.3));
        out.push(Metal {
            a: p - dir * (1.2 * r),
            b: p + dir * (1.2 * r),
            r: 0.16 * r,
            rho: METAL,
            thread_pitch: Some(0.2 * r),
        });
    }
    out
}

/// Two or three parallel screws along the bone (as across a femoral neck).
fn lag_screws(bone: &Tube, t0: f32, t1: f32, rng: &mut impl Rng) -> Vec<Metal> {
    let (u, n) = frame(bone);
    let r = bone.r_mid;
    let count = rng.random_range(2..=3);
    let start = bone.point_at(t0);
    let len = (t1 - t0) * bone.length() * rng.random_range(0.5f32..0.9);
    (0..count)
        .map(|k| {
            let off = (k as f32 - (count - 1) as f32 * 0.5) * 0.55 * r;
            let a = start + n * off;
            Metal { a, b: a + u * len, r: 0.15 * r, rho: METAL, thread_pitch: Some(0.2 * r) }
        })
        .collect()
}

/// One to three thin smooth wires crossing a small bone obliquely.
fn kirschner_wires(bone: &Tube, t0: f32, t1: f32, rng: &mut impl Rng) -> Vec<Metal> {
    let (u, _) = frame(bone);
    let count = rng.random_range(1..=3);
    (0..count)
        .map(|_| {
            let c = bone.point_at(rng.random_range(t0..=t1));
            let dir = u.rotated(rng.random_range(-0.5f32..0.5));
            let half = bone.length() * rng.random_range(0.3f32..0.6);
            Metal { a: c - dir * half, b: c + dir * half, r: 1.1, rho: METAL, thread_pitch: None }
        })
        .collect()
}
