//! Training-time augmentation of gray radiographs with their fracture boxes, after
//! ultralytics' pipeline: mosaic of four images, random affine (rotation, scale, translation),
//! horizontal/vertical flips, and photometric jitter (brightness, contrast, gamma) in place of
//! the HSV jitter colour images get. Every geometric step moves the boxes with the pixels and
//! drops boxes that became slivers, as ultralytics' `box_candidates` does.
//!
//! Two pipelines: [`augment`] ends in a square letterboxed input (YOLO), [`augment_native`]
//! keeps each image's own size and leaves resizing to the model (Faster R-CNN's transform); it
//! has no mosaic.

use fracture_models::letterbox::{Letterbox, PAD_VALUE};
use fracture_models::pixels::GrayF32;
use rand::Rng;
use serde::{Deserialize, Serialize};

/// One training image: pixels and boxes `[x1, y1, x2, y2]` in its pixels, one class per box.
#[derive(Debug, Clone)]
pub struct Sample {
    pub image: GrayF32,
    pub boxes: Vec<[f32; 4]>,
    pub classes: Vec<i64>,
}

/// Augmentation hyperparameters (names and defaults as ultralytics' where they exist).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AugmentConfig {
    /// Probability of a 4-image mosaic.
    pub mosaic: f64,
    /// Rotation range, ± degrees.
    pub degrees: f64,
    /// Translation range, ± fraction of the image size.
    pub translate: f64,
    /// Scale gain range, ± fraction.
    pub scale: f64,
    /// Probability of a left-right flip.
    pub fliplr: f64,
    /// Probability of an up-down flip.
    pub flipud: f64,
    /// Brightness shift range, ± fraction of full scale.
    pub brightness: f64,
    /// Contrast gain range, ± fraction.
    pub contrast: f64,
    /// Gamma range, ± fraction around 1.
    pub gamma: f64,
}

impl Default for AugmentConfig {
    fn default() -> Self {
        Self {
            mosaic: 1.0,
            degrees: 0.0,
            translate: 0.1,
            scale: 0.5,
            fliplr: 0.5,
            flipud: 0.0,
            brightness: 0.1,
            contrast: 0.1,
            gamma: 0.1,
        }
    }
}

impl AugmentConfig {
    /// No augmentation at all (validation, or `--no-augment`).
    pub fn none() -> Self {
        Self {
            mosaic: 0.0,
            degrees: 0.0,
            translate: 0.0,
            scale: 0.0,
            fliplr: 0.0,
            flipud: 0.0,
            brightness: 0.0,
            contrast: 0.0,
            gamma: 0.0,
        }
    }
}

/// Resizes so the longer side is `size` (ultralytics' `load_image`), keeping aspect.
pub fn resize_long_side(s: &Sample, size: u32) -> Sample {
    let (w, h) = (s.image.width, s.image.height);
    let r = f64::from(size) / f64::from(w.max(h));
    let (rw, rh) =
        (((f64::from(w) * r).round() as u32).max(1), ((f64::from(h) * r).round() as u32).max(1));
    let image = Letterbox::new(w, h, rw, rh).apply(&s.image);
    let (sx, sy) = (rw as f32 / w as f32, rh as f32 / h as f32);
    Sample {
        image,
        boxes: s.boxes.iter().map(|b| [b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy]).collect(),
        classes: s.classes.clone(),
    }
}

/// Letterboxes to `size`×`size` (the validation path; no randomness).
pub fn letterbox(s: &Sample, size: u32) -> Sample {
    let lb = Letterbox::square(s.image.width, s.image.height, size);
    Sample {
        image: lb.apply(&s.image),
        boxes: s.boxes.iter().map(|b| lb.to_input(*b)).collect(),
        classes: s.classes.clone(),
    }
}

/// Four images around a random centre of a `2*size` canvas (each resized to long side `size`).
pub fn mosaic(parts: [&Sample; 4], size: u32, rng: &mut impl Rng) -> Sample {
    let s = size as i64;
    let canvas_size = 2 * size;
    let mut canvas = GrayF32::new(canvas_size, canvas_size, PAD_VALUE);
    let xc = rng.random_range(s / 2..=3 * s / 2);
    let yc = rng.random_range(s / 2..=3 * s / 2);
    let (mut boxes, mut classes) = (Vec::new(), Vec::new());
    for (i, part) in parts.into_iter().enumerate() {
        let p = resize_long_side(part, size);
        let (w, h) = (i64::from(p.image.width), i64::from(p.image.height));
        // Where the tile goes on the canvas (x1a..x2a) and which part of it (x1b..x2b).
        let (x1a, y1a, x2a, y2a) = match i {
            0 => ((xc - w).max(0), (yc - h).max(0), xc, yc),
            1 => (xc, (yc - h).max(0), (xc + w).min(2 * s), yc),
            2 => ((xc - w).max(0), yc, xc, (2 * s).min(yc + h)),
            _ => (xc, yc, (xc + w).min(2 * s), (2 * s).min(yc + h)),
        };
        let (x1b, y1b) = match i {
            0 => (w - (x2a - x1a), h - (y2a - y1a)),
            1 => (0, h - (y2a - y1a)),
            2 => (w - (x2a - x1a), 0),
            _ => (0, 0),
        };
        let cw = canvas_size as usize;
        for dy in 0..(y2a - y1a) {
            let src = ((y1b + dy) * w + x1b) as usize;
            let dst = (y1a + dy) as usize * cw + x1a as usize;
            let n = (x2a - x1a) as usize;
            canvas.data[dst..dst + n].copy_from_slice(&p.image.data[src..src + n]);
        }
        let (padw, padh) = ((x1a - x1b) as f32, (y1a - y1b) as f32);
        for (b, c) in p.boxes.iter().zip(&p.classes) {
            boxes.push([b[0] + padw, b[1] + padh, b[2] + padw, b[3] + padh]);
            classes.push(*c);
        }
    }
    canvas.bit_depth = parts_bit_depth(&parts);
    let lim = canvas_size as f32;
    for b in &mut boxes {
        for v in b.iter_mut() {
            *v = v.clamp(0.0, lim);
        }
    }
    Sample { image: canvas, boxes, classes }
}

fn parts_bit_depth(parts: &[&Sample; 4]) -> u8 {
    parts.iter().map(|p| p.image.bit_depth).max().unwrap_or(8)
}

/// A 2×3 affine matrix (`[a, b, c, d, e, f]`: x' = a x + b y + c, y' = d x + e y + f).
type Affine = [f64; 6];

fn invert(m: &Affine) -> Affine {
    let det = m[0] * m[4] - m[1] * m[3];
    let (a, b, d, e) = (m[4] / det, -m[1] / det, -m[3] / det, m[0] / det);
    [a, b, -(a * m[2] + b * m[5]), d, e, -(d * m[2] + e * m[5])]
}

/// Random rotation/scale about the centre, then translation, producing an `out`×`out` image.
/// `src` may be larger (a mosaic canvas): its centre maps to the output's centre.
pub fn random_affine(s: &Sample, out: u32, cfg: &AugmentConfig, rng: &mut impl Rng) -> Sample {
    random_affine_to(s, [out, out], cfg, rng)
}

/// [`random_affine`] into an `out` = `[width, height]` image.
pub fn random_affine_to(
    s: &Sample,
    out: [u32; 2],
    cfg: &AugmentConfig,
    rng: &mut impl Rng,
) -> Sample {
    let angle = if cfg.degrees > 0.0 { rng.random_range(-cfg.degrees..=cfg.degrees) } else { 0.0 };
    let scale =
        if cfg.scale > 0.0 { rng.random_range(1.0 - cfg.scale..=1.0 + cfg.scale) } else { 1.0 };
    let t = |rng: &mut dyn rand::RngCore| {
        if cfg.translate > 0.0 {
            rng.random_range(0.5 - cfg.translate..=0.5 + cfg.translate)
        } else {
            0.5
        }
    };
    let (tx, ty) = (t(rng) * f64::from(out[0]), t(rng) * f64::from(out[1]));
    let (cx, cy) = (f64::from(s.image.width) / 2.0, f64::from(s.image.height) / 2.0);
    let (sin, cos) = angle.to_radians().sin_cos();
    // Image y points down, so a positive angle turns the picture counter-clockwise as seen.
    let (a, b, d, e) = (cos * scale, sin * scale, -sin * scale, cos * scale);
    let m: Affine = [a, b, tx - (a * cx + b * cy), d, e, ty - (d * cx + e * cy)];
    warp(s, &m, out, scale as f32)
}

fn warp(s: &Sample, m: &Affine, out: [u32; 2], scale: f32) -> Sample {
    let inv = invert(m);
    let (sw, sh) = (s.image.width as usize, s.image.height as usize);
    let (ow, oh) = (out[0] as usize, out[1] as usize);
    let mut img = GrayF32::new(out[0], out[1], PAD_VALUE);
    img.bit_depth = s.image.bit_depth;
    for y in 0..oh {
        for x in 0..ow {
            let (fx, fy) = (x as f64, y as f64);
            let u = inv[0] * fx + inv[1] * fy + inv[2];
            let v = inv[3] * fx + inv[4] * fy + inv[5];
            if u < 0.0 || v < 0.0 || u > (sw - 1) as f64 || v > (sh - 1) as f64 {
                continue;
            }
            let (x0, y0) = (u as usize, v as usize);
            let (x1, y1) = ((x0 + 1).min(sw - 1), (y0 + 1).min(sh - 1));
            let (wx, wy) = ((u - x0 as f64) as f32, (v - y0 as f64) as f32);
            let p = |xx: usize, yy: usize| s.image.data[yy * sw + xx];
            let top = p(x0, y0) + (p(x1, y0) - p(x0, y0)) * wx;
            let bottom = p(x0, y1) + (p(x1, y1) - p(x0, y1)) * wx;
            img.data[y * ow + x] = top + (bottom - top) * wy;
        }
    }
    let (lim_x, lim_y) = (out[0] as f32, out[1] as f32);
    let (mut boxes, mut classes) = (Vec::new(), Vec::new());
    for (b, c) in s.boxes.iter().zip(&s.classes) {
        let corners = [[b[0], b[1]], [b[2], b[1]], [b[0], b[3]], [b[2], b[3]]];
        let mapped = corners.map(|[x, y]| {
            let (x, y) = (f64::from(x), f64::from(y));
            [(m[0] * x + m[1] * y + m[2]) as f32, (m[3] * x + m[4] * y + m[5]) as f32]
        });
        let nb = [
            mapped.iter().map(|p| p[0]).fold(f32::INFINITY, f32::min).clamp(0.0, lim_x),
            mapped.iter().map(|p| p[1]).fold(f32::INFINITY, f32::min).clamp(0.0, lim_y),
            mapped.iter().map(|p| p[0]).fold(f32::NEG_INFINITY, f32::max).clamp(0.0, lim_x),
            mapped.iter().map(|p| p[1]).fold(f32::NEG_INFINITY, f32::max).clamp(0.0, lim_y),
        ];
        if box_candidate(b, &nb, scale) {
            boxes.push(nb);
            classes.push(*c);
        }
    }
    Sample { image: img, boxes, classes }
}

/// ultralytics' `box_candidates`: wider and taller than 2 px, at least 10% of the scaled
/// original area left, aspect below 100.
fn box_candidate(before: &[f32; 4], after: &[f32; 4], scale: f32) -> bool {
    let (w1, h1) = ((before[2] - before[0]) * scale, (before[3] - before[1]) * scale);
    let (w2, h2) = (after[2] - after[0], after[3] - after[1]);
    let eps = 1e-16f32;
    let ar = (w2 / (h2 + eps)).max(h2 / (w2 + eps));
    w2 > 2.0 && h2 > 2.0 && w2 * h2 / (w1 * h1 + eps) > 0.1 && ar < 100.0
}

/// Left-right and up-down flips with their probabilities.
pub fn random_flip(s: &mut Sample, cfg: &AugmentConfig, rng: &mut impl Rng) {
    let (w, h) = (s.image.width as usize, s.image.height as usize);
    if cfg.fliplr > 0.0 && rng.random_bool(cfg.fliplr.min(1.0)) {
        for row in s.image.data.chunks_mut(w) {
            row.reverse();
        }
        for b in &mut s.boxes {
            *b = [w as f32 - b[2], b[1], w as f32 - b[0], b[3]];
        }
    }
    if cfg.flipud > 0.0 && rng.random_bool(cfg.flipud.min(1.0)) {
        for y in 0..h / 2 {
            let (top, bottom) = s.image.data.split_at_mut((h - 1 - y) * w);
            top[y * w..(y + 1) * w].swap_with_slice(&mut bottom[..w]);
        }
        for b in &mut s.boxes {
            *b = [b[0], h as f32 - b[3], b[2], h as f32 - b[1]];
        }
    }
}

/// Brightness shift, contrast gain about mid-grey, and gamma, each drawn uniformly.
pub fn random_photometric(s: &mut Sample, cfg: &AugmentConfig, rng: &mut impl Rng) {
    let draw =
        |rng: &mut dyn rand::RngCore, r: f64| if r > 0.0 { rng.random_range(-r..=r) } else { 0.0 };
    let shift = draw(rng, cfg.brightness) as f32;
    let gain = 1.0 + draw(rng, cfg.contrast) as f32;
    let gamma = 1.0 + draw(rng, cfg.gamma) as f32;
    if shift == 0.0 && gain == 1.0 && gamma == 1.0 {
        return;
    }
    for v in &mut s.image.data {
        let x = ((*v - 0.5) * gain + 0.5 + shift).clamp(0.0, 1.0);
        *v = x.powf(gamma);
    }
}

/// The whole training-time pipeline for one sample; `others` supplies three more images for a
/// mosaic.
pub fn augment(
    first: &Sample,
    others: [&Sample; 3],
    size: u32,
    cfg: &AugmentConfig,
    rng: &mut impl Rng,
) -> Sample {
    let mut s = if cfg.mosaic > 0.0 && rng.random_bool(cfg.mosaic.min(1.0)) {
        let m = mosaic([first, others[0], others[1], others[2]], size, rng);
        random_affine(&m, size, cfg, rng)
    } else {
        let lb = letterbox(first, size);
        random_affine(&lb, size, cfg, rng)
    };
    random_photometric(&mut s, cfg, rng);
    random_flip(&mut s, cfg, rng);
    s
}

/// The size-keeping pipeline (Faster R-CNN): random affine about the centre into an image of
/// the same size (skipped when rotation, scale and translation are all off), photometric
/// jitter, flips. `cfg.mosaic` does not apply.
pub fn augment_native(s: &Sample, cfg: &AugmentConfig, rng: &mut impl Rng) -> Sample {
    let mut out = if cfg.degrees > 0.0 || cfg.scale > 0.0 || cfg.translate > 0.0 {
        random_affine_to(s, [s.image.width, s.image.height], cfg, rng)
    } else {
        s.clone()
    };
    random_photometric(&mut out, cfg, rng);
    random_flip(&mut out, cfg, rng);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// A dark image with one bright rectangle, boxed.
    fn bright_box(w: u32, h: u32, b: [u32; 4]) -> Sample {
        let mut image = GrayF32::new(w, h, 0.05);
        for y in b[1]..b[3] {
            for x in b[0]..b[2] {
                image.data[(y * w + x) as usize] = 0.95;
            }
        }
        Sample { image, boxes: vec![b.map(|v| v as f32)], classes: vec![0] }
    }

    fn mean_inside(s: &Sample, b: &[f32; 4]) -> f32 {
        let (mut sum, mut n) = (0.0, 0);
        // shrink by 2 px against interpolation at the edges
        for y in (b[1] as u32 + 2)..(b[3] as u32).saturating_sub(2) {
            for x in (b[0] as u32 + 2)..(b[2] as u32).saturating_sub(2) {
                sum += s.image.get(x, y);
                n += 1;
            }
        }
        if n == 0 { f32::NAN } else { sum / n as f32 }
    }

    #[test]
    fn boxes_follow_the_pixels_through_the_whole_pipeline() {
        let cfg = AugmentConfig {
            degrees: 0.0,
            brightness: 0.0,
            contrast: 0.0,
            gamma: 0.0,
            ..Default::default()
        };
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let a = bright_box(300, 200, [100, 60, 180, 120]);
        let b = bright_box(200, 300, [20, 30, 90, 100]);
        let mut checked = 0;
        for _ in 0..40 {
            let s = augment(&a, [&b, &a, &b], 256, &cfg, &mut rng);
            assert_eq!((s.image.width, s.image.height), (256, 256));
            for bx in &s.boxes {
                if bx[2] - bx[0] > 8.0 && bx[3] - bx[1] > 8.0 {
                    let m = mean_inside(&s, bx);
                    assert!(m > 0.85, "box {bx:?} covers mean {m}");
                    checked += 1;
                }
            }
        }
        assert!(checked > 40, "only {checked} boxes checked");
    }

    #[test]
    fn rotation_keeps_boxes_around_the_object() {
        let cfg = AugmentConfig {
            mosaic: 0.0,
            degrees: 30.0,
            translate: 0.0,
            scale: 0.0,
            ..AugmentConfig::none()
        };
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let a = bright_box(256, 256, [100, 100, 156, 156]);
        for _ in 0..10 {
            let s = random_affine(&letterbox(&a, 256), 256, &cfg, &mut rng);
            let b = s.boxes[0];
            // Rotated square: its bounding box grows, never shrinks below the square.
            assert!(b[2] - b[0] >= 55.0 && b[3] - b[1] >= 55.0, "{b:?}");
            let (cx, cy) = ((b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0);
            assert!(s.image.get(cx as u32, cy as u32) > 0.9);
        }
    }

    #[test]
    fn flips_mirror_boxes() {
        let mut s = bright_box(100, 50, [10, 5, 30, 20]);
        let cfg = AugmentConfig { fliplr: 1.0, flipud: 1.0, ..AugmentConfig::none() };
        random_flip(&mut s, &cfg, &mut ChaCha8Rng::seed_from_u64(0));
        assert_eq!(s.boxes[0], [70.0, 30.0, 90.0, 45.0]);
        assert!(mean_inside(&s, &s.boxes[0].clone()) > 0.9);
    }

    #[test]
    fn slivers_are_dropped() {
        // A box pushed almost entirely out of the picture disappears.
        let a = bright_box(256, 256, [0, 0, 20, 20]);
        let m: Affine = [1.0, 0.0, -19.0, 0.0, 1.0, 0.0];
        let s = warp(&letterbox(&a, 256), &m, [256, 256], 1.0);
        assert!(s.boxes.is_empty());
    }

    #[test]
    fn native_pipeline_keeps_the_size_and_the_boxes_on_the_object() {
        let cfg = AugmentConfig {
            degrees: 10.0,
            brightness: 0.0,
            contrast: 0.0,
            gamma: 0.0,
            ..Default::default()
        };
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let a = bright_box(300, 200, [100, 60, 180, 120]);
        for _ in 0..20 {
            let s = augment_native(&a, &cfg, &mut rng);
            assert_eq!((s.image.width, s.image.height), (300, 200));
            for b in &s.boxes {
                assert!(b[2] <= 300.0 && b[3] <= 200.0);
                if b[2] - b[0] > 12.0 && b[3] - b[1] > 12.0 {
                    let (cx, cy) = ((b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0);
                    assert!(s.image.get(cx as u32, cy as u32) > 0.8, "{b:?}");
                }
            }
        }
        let same = augment_native(&a, &AugmentConfig::none(), &mut rng);
        assert_eq!(same.boxes, a.boxes);
        assert_eq!(same.image.data, a.image.data);
    }

    #[test]
    fn photometric_stays_in_range() {
        let mut s = bright_box(32, 32, [4, 4, 20, 20]);
        let cfg =
            AugmentConfig { brightness: 0.5, contrast: 0.5, gamma: 0.5, ..AugmentConfig::none() };
        random_photometric(&mut s, &cfg, &mut ChaCha8Rng::seed_from_u64(3));
        assert!(s.image.data.iter().all(|v| (0.0..=1.0).contains(v)));
    }
}
