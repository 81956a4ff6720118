//! Body-part anatomy for the phantoms: hands, legs (knee, shin, ankle, foot), hips (pelvis or
//! one joint) and shoulders, built from tubes (long bones with a cortical shell and marrow,
//! limbs of soft tissue), ellipses (carpals, heads, flat bones, soft tissue) and arcs (ribs).
//!
//! Everything here is in millimetres in an upright pose (y down, fingers and head up), centred
//! near the origin; [`Anatomy::roi`] is the region a radiograph of that part frames. The global
//! pose (rotation, mirror, zoom) is applied later by the caller.

use rand::Rng;

use super::geometry::{Rect, V2, v2};
use super::raster::{Arc, Blob, Kind, Profile, Shape, Tube};
use crate::dataset::record::{BodyPart, View};

/// Densities per millimetre of path (relative units; only ratios matter after windowing).
pub const SOFT: f32 = 0.020;
pub const CORTEX: f32 = 0.085;
pub const MARROW: f32 = 0.030;
pub const TRABECULAR: f32 = 0.042;

/// One body part, ready to be posed.
#[derive(Debug, Clone)]
pub struct Anatomy {
    pub shapes: Vec<Shape>,
    /// The framed region, in millimetres.
    pub roi: Rect,
}

impl Anatomy {
    /// Moves every shape by `d`.
    fn shifted(mut self, d: V2) -> Anatomy {
        let t = super::geometry::Similarity::new(v2(0.0, 0.0), d, 1.0, 0.0, false);
        self.shapes = self.shapes.iter().map(|s| s.transformed(&t)).collect();
        self.roi =
            Rect::new(self.roi.x0 + d.x, self.roi.y0 + d.y, self.roi.x1 + d.x, self.roi.y1 + d.y);
        self
    }
}

/// Builds `part` as seen in `view`.
pub fn build(part: BodyPart, view: View, rng: &mut impl Rng) -> Anatomy {
    match part {
        BodyPart::Hand => hand(view, rng),
        BodyPart::Leg => match rng.random_range(0..10) {
            0..=2 => knee(view, rng),
            3..=4 => shin(view, rng),
            5..=7 => ankle(view, rng),
            _ => foot(view, rng),
        },
        BodyPart::Hip => pelvis(view, rng),
        BodyPart::Shoulder => shoulder(view, rng),
    }
}

/// Two parts side by side in one exposure (`mixed` in dataset.csv).
pub fn build_pair(first: BodyPart, second: BodyPart, view: View, rng: &mut impl Rng) -> Anatomy {
    let a = build(first, view, rng);
    let b = build(second, view, rng);
    let gap = rng.random_range(5.0..30.0);
    let a = a.clone().shifted(v2(-a.roi.x1 - gap * 0.5, -a.roi.center().y));
    let b = b.clone().shifted(v2(-b.roi.x0 + gap * 0.5, -b.roi.center().y));
    let roi = a.roi.union(&b.roi);
    let mut shapes = a.shapes;
    shapes.extend(b.shapes);
    Anatomy { shapes, roi }
}

/// How far apart side-by-side structures appear: 1 frontal, less when the part is turned.
fn squeeze(view: View) -> f32 {
    match view {
        View::Frontal => 1.0,
        View::Oblique => 0.62,
        View::Lateral => 0.28,
    }
}

/// `x` varied by up to `±frac` of itself.
fn vary(rng: &mut impl Rng, x: f32, frac: f32) -> f32 {
    x * (1.0 + rng.random_range(-frac..=frac))
}

fn long_bone(a: V2, b: V2, r_a: f32, r_mid: f32, r_b: f32) -> Tube {
    Tube {
        a,
        b,
        r_a,
        r_mid,
        r_b,
        flare: 0.22,
        cortex_mid: 0.34,
        cortex_end: 0.10,
        rho_shell: CORTEX,
        rho_core: MARROW,
        kind: Kind::LongBone,
        cuts: Vec::new(),
        clip: None,
    }
}

fn limb(a: V2, b: V2, r: f32) -> Shape {
    Shape::Tube(Tube {
        a,
        b,
        r_a: r,
        r_mid: r,
        r_b: r,
        flare: 0.2,
        cortex_mid: 0.0,
        cortex_end: 0.0,
        rho_shell: SOFT,
        rho_core: SOFT,
        kind: Kind::Soft,
        cuts: Vec::new(),
        clip: None,
    })
}

fn ellipse(c: V2, a: f32, b: f32, angle: f32) -> Blob {
    Blob {
        c,
        u: V2::from_angle(angle),
        a,
        b,
        profile: Profile::Dome { depth: 2.0 * a.min(b) },
        rim: 0.0,
        rho_shell: SOFT,
        rho_core: SOFT,
        kind: Kind::Soft,
    }
}

/// Soft tissue `depth` mm thick at its centre.
fn soft(c: V2, a: f32, b: f32, angle: f32, depth: f32) -> Shape {
    Shape::Blob(Blob { profile: Profile::Dome { depth }, ..ellipse(c, a, b, angle) })
}

/// A compact bone (carpal, tarsal, head, condyle): a dome with a cortical rim.
fn nodule(c: V2, a: f32, b: f32, angle: f32) -> Shape {
    Shape::Blob(Blob {
        rim: 0.16,
        rho_shell: CORTEX * 0.8,
        rho_core: TRABECULAR,
        kind: Kind::Bone,
        ..ellipse(c, a, b, angle)
    })
}

/// A compact bone only `depth` mm thick (where it overlaps another bone's end).
fn nodule_d(c: V2, a: f32, b: f32, angle: f32, depth: f32) -> Shape {
    match nodule(c, a, b, angle) {
        Shape::Blob(blob) => Shape::Blob(Blob { profile: Profile::Dome { depth }, ..blob }),
        other => other,
    }
}

/// A flat bone (iliac wing, scapula): a plate of `thickness` mm with a bright rim.
fn flat_bone(c: V2, a: f32, b: f32, angle: f32, thickness: f32) -> Shape {
    Shape::Blob(Blob {
        profile: Profile::Plate { thickness },
        rim: 0.08,
        rho_shell: CORTEX * 1.3,
        rho_core: TRABECULAR,
        kind: Kind::Bone,
        ..ellipse(c, a, b, angle)
    })
}

/// Upright direction tilted by `angle` radians (positive leans to +x).
fn up(angle: f32) -> V2 {
    v2(0.0, -1.0).rotated(angle)
}

/// A digit (or metacarpal + phalanges) as a chain of bones from `base` along `dir`, each bone
/// `(length, r_proximal, r_mid, r_distal)`, separated by joint spaces of `gap` mm and flexed a
/// little at each joint. Returns the tip.
fn ray(
    shapes: &mut Vec<Shape>,
    rng: &mut impl Rng,
    base: V2,
    angle: f32,
    bones: &[(f32, f32, f32, f32)],
    gap: f32,
    bend: f32,
) -> V2 {
    let mut p = base;
    let mut a = angle;
    for &(len, r0, r1, r2) in bones {
        let d = up(a);
        let end = p + d * vary(rng, len, 0.06);
        let mut bone = long_bone(p, end, r0, r1, r2);
        bone.flare = 0.3;
        bone.cortex_mid = 0.38;
        shapes.push(Shape::Tube(bone));
        p = end + d * gap;
        a += bend + rng.random_range(-0.05..0.05);
    }
    p
}

fn hand(view: View, rng: &mut impl Rng) -> Anatomy {
    let sq = squeeze(view);
    let mut bones = Vec::new();
    let mut tissue = Vec::new();
    let spread = rng.random_range(0.06..0.16) * sq;
    let bend = if view == View::Lateral { rng.random_range(0.0..0.25) } else { 0.0 };

    // Forearm: radius (thumb side, -x) and ulna, distal ends flared.
    let mut radius = long_bone(v2(-10.0 * sq, 230.0), v2(-9.0 * sq, 64.0), 9.0, 6.5, 13.5);
    radius.flare = 0.16;
    let mut ulna = long_bone(v2(15.0 * sq, 230.0), v2(13.0 * sq, 70.0), 7.0, 5.2, 7.5);
    ulna.flare = 0.14;
    bones.push(Shape::Tube(radius));
    bones.push(Shape::Tube(ulna));
    tissue.push(limb(v2(0.0, 250.0), v2(0.0, 60.0), vary(rng, 31.0, 0.1)));

    // Carpals, two rows.
    let csq = 0.5 + 0.5 * sq;
    for (x, y, a, b, ang) in [
        (-12.0, 55.0, 8.5, 5.5, -0.5),
        (-1.0, 56.0, 6.5, 6.0, 0.0),
        (9.0, 57.0, 5.5, 5.5, 0.2),
        (15.0, 52.0, 4.0, 4.0, 0.0),
        (-18.0, 44.0, 6.5, 5.5, 0.4),
        (-8.5, 42.0, 5.5, 5.0, 0.0),
        (0.5, 43.0, 6.0, 8.5, 0.0),
        (10.0, 44.0, 6.0, 7.5, 0.1),
    ] {
        bones.push(nodule(v2(x * csq, y), vary(rng, a, 0.08), vary(rng, b, 0.08), ang));
    }

    // Fingers 2-5: metacarpal + three phalanges.
    let digits: [(f32, f32, f32, [f32; 4]); 4] = [
        (-9.5, 37.0, -1.2, [64.0, 40.0, 24.0, 18.0]),
        (-1.0, 36.0, -0.3, [62.0, 44.0, 28.0, 19.0]),
        (7.0, 37.0, 0.5, [56.0, 41.0, 26.0, 19.0]),
        (14.0, 41.0, 1.2, [52.0, 33.0, 18.0, 17.0]),
    ];
    for (x, y, k, lengths) in digits {
        let angle = spread * k + rng.random_range(-0.03..0.03);
        let base = v2(x * sq, y);
        let chain = [
            (lengths[0], 4.4, 3.5, 4.6),
            (lengths[1], 4.2, 3.4, 3.8),
            (lengths[2], 3.5, 2.9, 3.2),
            (lengths[3], 3.0, 2.3, 3.0),
        ];
        let tip = ray(&mut bones, rng, base, angle, &chain, 2.6, bend);
        let mcp = base + up(angle) * lengths[0];
        tissue.push(limb(mcp, tip + up(angle) * 3.0, vary(rng, 8.8, 0.08)));
    }

    // Thumb: metacarpal + two phalanges, angled away from the fingers.
    let thumb_angle = -rng.random_range(0.45..0.8) * (0.4 + 0.6 * sq);
    let thumb_base = v2(-16.0 * sq - (1.0 - sq) * 12.0, 40.0);
    let chain = [(44.0, 5.0, 3.8, 5.0), (31.0, 4.6, 3.5, 4.0), (24.0, 3.8, 2.8, 3.5)];
    let tip = ray(&mut bones, rng, thumb_base, thumb_angle, &chain, 2.6, 0.05);
    let mid = thumb_base + up(thumb_angle) * 25.0;
    tissue.push(limb(mid, tip + up(thumb_angle) * 3.0, vary(rng, 10.5, 0.08)));
    tissue.push(soft(v2(-24.0 * sq, 22.0), 16.0, 27.0, -0.5, 26.0));

    // Palm.
    tissue.push(soft(v2(1.0 * sq, 6.0), 40.0 * sq.max(0.5), 50.0, 0.0, 18.0 + 20.0 * (1.0 - sq)));

    tissue.extend(bones);
    Anatomy { shapes: tissue, roi: Rect::new(-70.0, -135.0, 70.0, 118.0) }
}

fn knee(view: View, rng: &mut impl Rng) -> Anatomy {
    let sq = squeeze(view);
    let lateral = view == View::Lateral;
    let mut s = vec![limb(v2(0.0, -280.0), v2(0.0, 280.0), vary(rng, 58.0, 0.1))];
    let mut femur = long_bone(v2(0.0, -260.0), v2(0.0, -22.0), 15.0, 14.0, 24.0);
    femur.flare = 0.25;
    s.push(Shape::Tube(femur));
    // Condyles overlap in a lateral view.
    s.push(nodule_d(v2(-18.0 * sq, -20.0), 19.0, 17.0, 0.2, 13.0));
    s.push(nodule_d(v2(18.0 * sq, -20.0), 19.0, 17.0, -0.2, 13.0));
    let mut tibia = long_bone(v2(0.0, 6.0), v2(-2.0, 260.0), 33.0, 14.0, 16.0);
    tibia.flare = 0.28;
    tibia.cortex_end = 0.08;
    s.push(Shape::Tube(tibia));
    let fx = if lateral { -6.0 } else { 30.0 * sq };
    s.push(Shape::Tube(long_bone(v2(fx, 22.0), v2(fx - 2.0, 260.0), 9.0, 6.0, 6.0)));
    let (px, py) = if lateral { (42.0, -30.0) } else { (2.0, -28.0) };
    s.push(nodule_d(v2(px, py), 21.0, if lateral { 12.0 } else { 23.0 }, 1.57, 10.0));
    let dy = rng.random_range(-20.0..20.0);
    Anatomy { shapes: s, roi: Rect::new(-80.0, -120.0 + dy, 80.0, 130.0 + dy) }
}

fn shin(view: View, rng: &mut impl Rng) -> Anatomy {
    let sq = squeeze(view);
    let mut s = vec![limb(v2(0.0, -260.0), v2(0.0, 250.0), vary(rng, 52.0, 0.1))];
    s.push(soft(v2(0.0, -60.0), 130.0, 50.0, 1.57, 40.0));
    let mut tibia = long_bone(v2(0.0, -200.0), v2(-3.0, 190.0), 33.0, 12.5, 23.0);
    tibia.flare = 0.14;
    s.push(Shape::Tube(tibia));
    let fx = 27.0 * sq + (1.0 - sq) * -10.0;
    let mut fibula = long_bone(v2(fx, -185.0), v2(fx + 3.0, 205.0), 8.5, 5.5, 9.0);
    fibula.flare = 0.08;
    s.push(Shape::Tube(fibula));
    let mut femur = long_bone(v2(0.0, -400.0), v2(0.0, -222.0), 15.0, 14.0, 30.0);
    femur.flare = 0.3;
    s.push(Shape::Tube(femur));
    s.push(nodule(v2(-2.0, 212.0), 24.0, 15.0, 0.0));
    Anatomy { shapes: s, roi: Rect::new(-75.0, -225.0, 75.0, 225.0) }
}

fn ankle(view: View, rng: &mut impl Rng) -> Anatomy {
    let sq = squeeze(view);
    let lateral = view == View::Lateral;
    let mut s = vec![limb(v2(0.0, -260.0), v2(0.0, 30.0), vary(rng, 40.0, 0.1))];
    s.push(soft(
        v2(if lateral { 25.0 } else { 0.0 }, 55.0),
        if lateral { 95.0 } else { 45.0 },
        38.0,
        0.0,
        if lateral { 60.0 } else { 40.0 },
    ));
    let mut tibia = long_bone(v2(0.0, -250.0), v2(0.0, 18.0), 15.0, 13.0, 24.0);
    tibia.flare = 0.2;
    s.push(Shape::Tube(tibia));
    // Medial malleolus.
    s.push(nodule(v2(-20.0 * sq, 26.0), 7.0, 11.0, 0.0));
    let fx = if lateral { -8.0 } else { 28.0 * sq };
    let mut fibula = long_bone(v2(fx, -250.0), v2(fx + 3.0, 42.0), 6.0, 5.5, 10.0);
    fibula.flare = 0.14;
    s.push(Shape::Tube(fibula));
    // Talus, and in a lateral view the calcaneus and midfoot.
    s.push(nodule_d(v2(2.0, 42.0), 22.0, 16.0, 0.0, 24.0));
    if lateral || view == View::Oblique {
        s.push(nodule(v2(-14.0, 78.0), 38.0, 20.0, 0.15));
        s.push(nodule(v2(42.0, 60.0), 14.0, 12.0, 0.3));
        s.push(nodule(v2(70.0, 72.0), 18.0, 11.0, 0.3));
    }
    Anatomy { shapes: s, roi: Rect::new(-80.0, -110.0, 80.0, 110.0) }
}

fn foot(view: View, rng: &mut impl Rng) -> Anatomy {
    let sq = squeeze(view).max(0.5);
    let mut tissue = vec![
        soft(v2(0.0, -20.0), 48.0 * sq, 120.0, 0.0, 45.0),
        limb(v2(-2.0, 60.0), v2(0.0, 160.0), 38.0),
    ];
    let mut bones = Vec::new();
    // Tarsals.
    for (x, y, a, b) in [
        (-14.0, 42.0, 12.0, 9.0),
        (-18.0, 24.0, 8.0, 7.0),
        (-4.0, 26.0, 7.0, 7.0),
        (8.0, 28.0, 7.0, 7.0),
        (20.0, 36.0, 10.0, 12.0),
        (-4.0, 72.0, 20.0, 16.0),
        (-2.0, 120.0, 24.0, 26.0),
    ] {
        let (a, b) = (vary(rng, a, 0.08), vary(rng, b, 0.08));
        bones.push(nodule_d(v2(x * sq, y), a, b, 0.0, 0.8 * a.min(b)));
    }
    let spread = rng.random_range(0.04..0.1) * sq;
    for (i, (x, len, r)) in [
        (-20.0, 62.0, 6.2),
        (-7.0, 72.0, 4.2),
        (3.0, 68.0, 4.0),
        (12.0, 64.0, 3.9),
        (21.0, 58.0, 4.0),
    ]
    .into_iter()
    .enumerate()
    {
        let angle = spread * (i as f32 - 2.0) + rng.random_range(-0.03..0.03);
        let base = v2(x * sq, 16.0);
        let chain: Vec<(f32, f32, f32, f32)> = if i == 0 {
            vec![(len, r + 1.5, r, r + 1.8), (29.0, 6.5, 5.0, 5.5), (23.0, 5.5, 4.2, 4.6)]
        } else {
            vec![(len, r + 1.2, r * 0.85, r + 0.8), (22.0, 4.0, 3.0, 3.5), (10.0, 3.2, 2.6, 3.0)]
        };
        let tip = ray(&mut bones, rng, base, angle, &chain, 2.4, 0.0);
        let head = base + up(angle) * len;
        tissue.push(limb(head, tip + up(angle) * 3.0, if i == 0 { 12.0 } else { 8.5 }));
    }
    tissue.extend(bones);
    Anatomy { shapes: tissue, roi: Rect::new(-65.0, -150.0, 65.0, 120.0) }
}

fn pelvis(view: View, rng: &mut impl Rng) -> Anatomy {
    let sq = squeeze(view).max(0.55);
    let mut s = vec![
        soft(v2(0.0, -10.0), 185.0, 165.0, 0.0, 180.0),
        limb(v2(-95.0, 60.0), v2(-105.0, 330.0), 66.0),
        limb(v2(95.0, 60.0), v2(105.0, 330.0), 66.0),
    ];
    // Lowest lumbar vertebra and sacrum.
    s.push(nodule(v2(0.0, -150.0), 30.0, 17.0, 0.0));
    s.push(flat_bone(v2(0.0, -62.0), 38.0, 56.0, 0.0, 16.0));
    for side in [-1.0f32, 1.0] {
        let x = |v: f32| side * v * sq;
        // Iliac wing, acetabular roof, pubic and ischial rami.
        s.push(flat_bone(v2(x(92.0), -82.0), 70.0, 50.0, side * 0.5, 7.0));
        s.push(nodule_d(v2(x(92.0), -2.0), 30.0, 14.0, side * -0.1, 14.0));
        s.push(Shape::Tube(long_bone(v2(x(72.0), 28.0), v2(x(10.0), 52.0), 12.0, 8.0, 10.0)));
        s.push(Shape::Tube(long_bone(v2(x(64.0), 92.0), v2(x(14.0), 84.0), 11.0, 7.0, 9.0)));
        s.push(nodule_d(v2(x(70.0), 68.0), 14.0, 26.0, side * 0.2, 16.0));
        // Femur: head, neck, trochanters, shaft.
        let head = v2(x(96.0), 16.0);
        s.push(nodule_d(head, vary(rng, 24.0, 0.05), 24.0, 0.0, 40.0));
        let mut neck = long_bone(head + v2(x(8.0), 6.0), v2(x(126.0), 56.0), 17.0, 14.0, 20.0);
        neck.flare = 0.3;
        s.push(Shape::Tube(neck));
        s.push(nodule_d(v2(x(134.0), 46.0), 17.0, 24.0, side * 0.1, 18.0));
        s.push(nodule(v2(x(110.0), 92.0), 8.0, 9.0, 0.0));
        let mut shaft = long_bone(v2(x(128.0), 46.0), v2(x(112.0), 340.0), 23.0, 14.0, 14.0);
        shaft.flare = 0.15;
        s.push(Shape::Tube(shaft));
    }
    // Either the whole pelvis or one hip joint.
    let roi = if rng.random_bool(0.6) {
        Rect::new(-175.0, -150.0, 175.0, 140.0)
    } else {
        let side = if rng.random_bool(0.5) { -1.0 } else { 1.0 };
        let c = v2(side * 100.0 * sq, 40.0);
        Rect::new(c.x - 90.0, c.y - 110.0, c.x + 90.0, c.y + 110.0)
    };
    Anatomy { shapes: s, roi }
}

fn shoulder(view: View, rng: &mut impl Rng) -> Anatomy {
    let sq = squeeze(view).max(0.5);
    let abduction = rng.random_range(-0.15..0.35);
    let mut s = vec![
        soft(v2(-110.0, 90.0), 150.0, 230.0, 0.0, 220.0),
        soft(v2(35.0, -10.0), 62.0, 52.0, 0.0, 90.0),
    ];
    let arm_dir = v2(0.0, 1.0).rotated(-abduction);
    s.push(limb(v2(40.0, 10.0), v2(40.0, 10.0) + arm_dir * 300.0, vary(rng, 44.0, 0.1)));
    // Lung field: air, less attenuation than tissue.
    s.push(Shape::Blob(Blob {
        rho_shell: -SOFT * 0.7,
        rho_core: -SOFT * 0.7,
        ..ellipse(v2(-120.0, 110.0), 85.0, 170.0, 0.05)
    }));
    // Ribs: arcs sweeping down and out.
    for i in 0..7 {
        let y = -40.0 + 34.0 * i as f32;
        s.push(Shape::Arc(Arc {
            c: v2(-190.0, y - 70.0),
            radius: 150.0 + 6.0 * i as f32,
            u0: V2::from_angle(-0.05),
            u1: V2::from_angle(1.1),
            r: 5.5,
            cortex: 0.35,
            rho_shell: CORTEX,
            rho_core: MARROW,
        }));
    }
    // Scapula, glenoid, acromion, coracoid, clavicle.
    s.push(flat_bone(v2(-28.0 * sq, 60.0), 42.0 * sq, 85.0, -0.25, 7.0));
    s.push(nodule(v2(4.0, 4.0), 9.0, 22.0, 0.0));
    s.push(Shape::Tube(long_bone(v2(-45.0, -40.0), v2(34.0, -34.0), 10.0, 8.0, 9.0)));
    s.push(Shape::Tube(long_bone(v2(-8.0, -14.0), v2(14.0, -6.0), 7.0, 5.5, 6.0)));
    let mut clavicle = long_bone(v2(-170.0, -78.0), v2(24.0, -48.0), 11.0, 7.0, 10.0);
    clavicle.flare = 0.15;
    s.push(Shape::Tube(clavicle));
    // Humerus: head, greater tuberosity, shaft.
    let head = v2(30.0, 2.0);
    s.push(nodule_d(head, 25.0, 25.0, 0.0, 36.0));
    s.push(nodule_d(head + v2(22.0, -4.0), 12.0, 15.0, 0.0, 14.0));
    let top = head + v2(8.0, 10.0);
    let mut humerus = long_bone(top, top + arm_dir * 320.0, 17.0, 11.5, 12.0);
    humerus.flare = 0.12;
    s.push(Shape::Tube(humerus));
    Anatomy { shapes: s, roi: Rect::new(-125.0, -95.0, 120.0, 175.0) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn every_part_has_fracturable_bones_inside_its_roi() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        for part in BodyPart::ALL {
            for view in [View::Frontal, View::Lateral, View::Oblique] {
                for _ in 0..5 {
                    let a = build(part, view, &mut rng);
                    let n = a
                        .shapes
                        .iter()
                        .filter(|s| match s {
                            Shape::Tube(t) => {
                                t.kind == Kind::LongBone
                                    && super::super::geometry::clip_segment(t.a, t.b, &a.roi)
                                        .is_some_and(|(t0, t1)| (t1 - t0) * t.length() > 30.0)
                            }
                            _ => false,
                        })
                        .count();
                    assert!(n >= 1, "{part:?} {view:?}");
                }
            }
        }
    }
}
