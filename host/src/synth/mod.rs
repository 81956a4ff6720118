//! Synthetic radiograph phantoms for tests, demos and benchmarks — never clinical. Each image is
//! a posed body part (hand, leg, hip, shoulder) drawn from long bones with a bright cortical
//! shell and darker marrow, compact and flat bones, soft tissue and sometimes metal hardware,
//! with 0–3 fractures (lucent lines, cortical breaks, displaced fragments) and their boxes,
//! exposed like a digital radiograph and stamped with side markers and a text line.
//!
//! Generation is deterministic per `(seed, index)`: image `index` draws from its own ChaCha8
//! stream, so images can be made in any order, in parallel, and come out byte-identical.
//!
//! Submodules, one concept each: [`geometry`] (vectors, rectangles, the pose transform),
//! [`raster`] (primitives and their bounding-box rasteriser), [`anatomy`] (body parts),
//! [`fracture`] (fractures and their boxes), [`hardware`] (implants), [`exposure`] (from
//! attenuation to display values), [`markers`] (burnt-in text with a bitmap font).

pub use fracture::Pattern;

mod anatomy;
mod exposure;
mod fracture;
mod geometry;
mod hardware;
mod markers;
mod raster;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::dataset::record::{BodyPart, ImageMeta, PixelBox, View};
use crate::dataset::writer::LabelledImage;
use geometry::{Rect, Similarity, v2};
use raster::{Canvas, Kind, Panel, Texture};

/// Smallest and largest image side accepted.
pub const MIN_SIDE: u32 = 96;
pub const MAX_SIDE: u32 = 4096;

/// Share of body parts, in `BodyPart::ALL` order (FracAtlas-like: hand and leg dominate).
const PART_WEIGHTS: [f64; 4] = [0.4, 0.4, 0.1, 0.1];
/// Share of projections: frontal, lateral, oblique.
const VIEW_WEIGHTS: [f64; 3] = [0.57, 0.33, 0.10];
/// Chance an image shows two body parts, or two views side by side.
const MIXED_RATE: f64 = 0.05;
const MULTISCAN_RATE: f64 = 0.05;
/// Chance of metal hardware on fractured and on other images.
const HARDWARE_RATE_FRACTURED: f64 = 0.12;
const HARDWARE_RATE_OTHER: f64 = 0.035;
/// Fractures per fractured image: 1, 2 or 3 (FracAtlas: 922 boxes on 717 images).
const COUNT_WEIGHTS: [f64; 3] = [0.78, 0.16, 0.06];

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthConfig {
    /// Number of images (used by callers; `generate` makes one image at a time).
    pub count: usize,
    pub seed: u64,
    /// Probability that an image is fractured (FracAtlas: 717 / 4083 ≈ 0.18).
    pub fractured_fraction: f64,
    /// 16-bit PNG instead of 8-bit JPEG (decides the `image_id` extension).
    pub png16: bool,
    /// Each side is drawn uniformly from `size_min..=size_max` pixels.
    pub size_min: u32,
    pub size_max: u32,
    /// Fracture kinds drawn (shares renormalised over those listed). All three by default;
    /// `[Displaced]` gives conspicuous fractures, for learning tests and demos.
    pub patterns: Vec<Pattern>,
    /// Scale of a displaced fracture's shift and tilt: 1 by default; larger values give the
    /// grossly displaced fractures a from-scratch detector can learn within a CPU test budget.
    pub displacement: f32,
}

/// The range `--displacement` accepts: beyond 4 the distal piece leaves the bone's panel.
pub const DISPLACEMENT_RANGE: std::ops::RangeInclusive<f32> = 0.25..=4.0;

impl Default for SynthConfig {
    fn default() -> Self {
        SynthConfig {
            count: 500,
            seed: 1,
            fractured_fraction: 0.18,
            png16: false,
            size_min: 352,
            size_max: 480,
            patterns: Pattern::ALL.to_vec(),
            displacement: 1.0,
        }
    }
}

/// A configuration the generator cannot honour.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SynthError {
    #[error("fractured fraction must lie in [0, 1], got {0}")]
    Fraction(f64),
    #[error("no fracture pattern chosen: name at least one of line, cortical-break, displaced")]
    NoPattern,
    #[error("displacement must lie in [0.25, 4], got {0}")]
    Displacement(f32),
    #[error(
        "image side range {min}..={max} is invalid: need {MIN_SIDE} <= min <= max <= {MAX_SIDE}"
    )]
    Size { min: u32, max: u32 },
}

impl SynthConfig {
    pub fn validate(&self) -> Result<(), SynthError> {
        if !(0.0..=1.0).contains(&self.fractured_fraction) {
            return Err(SynthError::Fraction(self.fractured_fraction));
        }
        let (min, max) = (self.size_min, self.size_max);
        if min < MIN_SIDE || max > MAX_SIDE || min > max {
            return Err(SynthError::Size { min, max });
        }
        if self.patterns.is_empty() {
            return Err(SynthError::NoPattern);
        }
        if !DISPLACEMENT_RANGE.contains(&self.displacement) {
            return Err(SynthError::Displacement(self.displacement));
        }
        Ok(())
    }

    /// The file name of image `index`: `IMG0000042.jpg` (or `.png`), as FracAtlas names them.
    pub fn image_id(&self, index: usize) -> String {
        format!("IMG{index:07}.{}", if self.png16 { "png" } else { "jpg" })
    }

    /// A valid configuration close to this one (fraction, sizes and displacement clamped).
    fn sanitized(&self) -> SynthConfig {
        let fraction = if self.fractured_fraction.is_nan() {
            0.0
        } else {
            self.fractured_fraction.clamp(0.0, 1.0)
        };
        let min = self.size_min.clamp(MIN_SIDE, MAX_SIDE);
        let max = self.size_max.clamp(min, MAX_SIDE);
        let (lo, hi) = (*DISPLACEMENT_RANGE.start(), *DISPLACEMENT_RANGE.end());
        let displacement =
            if self.displacement.is_nan() { 1.0 } else { self.displacement.clamp(lo, hi) };
        SynthConfig {
            fractured_fraction: fraction,
            size_min: min,
            size_max: max,
            displacement,
            ..self.clone()
        }
    }
}

/// One generated image with its labels.
#[derive(Debug, Clone, PartialEq)]
pub struct Phantom {
    /// Its `dataset.csv` row.
    pub meta: ImageMeta,
    pub width: u32,
    pub height: u32,
    /// Grey values, row-major, `width × height`, full 16-bit range (bright = dense).
    pub pixels: Vec<u16>,
    /// Fracture boxes in pixels (whole-pixel edges, inside the image); empty when not fractured.
    pub boxes: Vec<PixelBox>,
}

impl Phantom {
    /// The view of this phantom that [`crate::dataset::writer::DatasetWriter`] writes.
    pub fn labelled(&self) -> LabelledImage<'_> {
        LabelledImage {
            meta: &self.meta,
            width: self.width,
            height: self.height,
            pixels: &self.pixels,
            boxes: &self.boxes,
        }
    }
}

/// Generates image `index` of the set described by `config`. An out-of-range configuration is
/// clamped (see [`SynthConfig::validate`] to reject it instead).
pub fn generate(config: &SynthConfig, index: usize) -> Phantom {
    let config = config.sanitized();
    let mut rng = image_rng(config.seed, index);
    let scene = compose(&config, index, &mut rng);
    render(scene, &mut rng)
}

/// The random stream of image `index`: the key from `seed`, the stream number from `index`.
fn image_rng(seed: u64, index: usize) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(index as u64);
    rng
}

/// Everything decided about one image before it is rasterised.
struct Scene {
    meta: ImageMeta,
    w: usize,
    h: usize,
    part: BodyPart,
    view: View,
    panels: Vec<Panel>,
    fractures: Vec<fracture::Fracture>,
}

fn pick<const N: usize>(weights: &[f64; N], rng: &mut impl Rng) -> usize {
    let mut x = rng.random_range(0.0..weights.iter().sum::<f64>());
    for (i, w) in weights.iter().enumerate() {
        if x < *w {
            return i;
        }
        x -= w;
    }
    N - 1
}

const VIEWS: [View; 3] = [View::Frontal, View::Lateral, View::Oblique];

fn compose(config: &SynthConfig, index: usize, rng: &mut impl Rng) -> Scene {
    let wants_fracture = rng.random_bool(config.fractured_fraction);
    let part = BodyPart::ALL[pick(&PART_WEIGHTS, rng)];
    let second = rng.random_bool(MIXED_RATE).then(|| {
        let mut weights = PART_WEIGHTS;
        weights[BodyPart::ALL.iter().position(|p| *p == part).unwrap_or(0)] = 0.0;
        BodyPart::ALL[pick(&weights, rng)]
    });
    let multiscan = second.is_none() && rng.random_bool(MULTISCAN_RATE);
    let view = VIEWS[pick(&VIEW_WEIGHTS, rng)];
    let hardware_rate = if wants_fracture { HARDWARE_RATE_FRACTURED } else { HARDWARE_RATE_OTHER };
    let wants_hardware = rng.random_bool(hardware_rate);
    let w = rng.random_range(config.size_min..=config.size_max) as usize;
    let h = rng.random_range(config.size_min..=config.size_max) as usize;
    let image = Rect::new(0.0, 0.0, w as f32, h as f32);

    let rects = if multiscan {
        let gap = rng.random_range(3.0f32..10.0);
        if w >= h {
            let mid = w as f32 * 0.5;
            vec![
                Rect::new(0.0, 0.0, mid - gap * 0.5, h as f32),
                Rect::new(mid + gap * 0.5, 0.0, w as f32, h as f32),
            ]
        } else {
            let mid = h as f32 * 0.5;
            vec![
                Rect::new(0.0, 0.0, w as f32, mid - gap * 0.5),
                Rect::new(0.0, mid + gap * 0.5, w as f32, h as f32),
            ]
        }
    } else {
        vec![image]
    };
    let mut panels: Vec<Panel> = rects
        .iter()
        .enumerate()
        .map(|(k, rect)| {
            // The second view of a multiscan is another projection of the same part.
            let v = if k == 0 {
                view
            } else if view == View::Frontal {
                View::Lateral
            } else {
                View::Frontal
            };
            let body = match second {
                Some(other) => anatomy::build_pair(part, other, v, rng),
                None => anatomy::build(part, v, rng),
            };
            // Hips and shoulders are framed upright; hands and legs lie any way on the detector.
            let turnable = matches!(part, BodyPart::Hand | BodyPart::Leg);
            let pose = pose(&body.roi, rect, turnable, rng);
            Panel {
                rect: *rect,
                shapes: body.shapes.iter().map(|s| s.transformed(&pose)).collect(),
            }
        })
        .collect();

    let count = if wants_fracture { 1 + pick(&COUNT_WEIGHTS, rng) } else { 0 };
    let fractures =
        fracture::place(&mut panels, &image, count, &config.patterns, config.displacement, rng);
    let boxes: Vec<Rect> = fractures.iter().map(|f| f.bbox).collect();
    let prefer = fractures.first().filter(|_| rng.random_bool(0.6)).map(|f| (f.panel, f.bone));
    let hardware = wants_hardware && hardware::add(&mut panels, prefer, &boxes, rng);

    let flag = |p: BodyPart| u8::from(part == p || second == Some(p));
    let meta = ImageMeta {
        image_id: config.image_id(index),
        hand: flag(BodyPart::Hand),
        leg: flag(BodyPart::Leg),
        hip: flag(BodyPart::Hip),
        shoulder: flag(BodyPart::Shoulder),
        mixed: u8::from(second.is_some()),
        hardware: u8::from(hardware),
        multiscan: u8::from(multiscan),
        fractured: u8::from(!fractures.is_empty()),
        fracture_count: fractures.len() as u32,
        frontal: u8::from(view == View::Frontal),
        lateral: u8::from(view == View::Lateral),
        oblique: u8::from(view == View::Oblique),
    };
    Scene { meta, w, h, part, view, panels, fractures }
}

/// The global pose of one panel: the anatomy's region of interest fitted into `panel` (turned a
/// quarter, when `turnable`, if the panel's orientation calls for it), zoomed, tilted and maybe
/// mirrored.
fn pose(roi: &Rect, panel: &Rect, turnable: bool, rng: &mut impl Rng) -> Similarity {
    let (rw, rh) = (roi.width(), roi.height());
    let (pw, ph) = (panel.width(), panel.height());
    let quarter: i32 = if turnable && (rh > rw) != (ph > pw) && rng.random_bool(0.85) {
        if rng.random_bool(0.5) { 1 } else { -1 }
    } else if turnable && rng.random_bool(0.04) {
        2
    } else {
        0
    };
    let (ew, eh) = if quarter % 2 != 0 { (rh, rw) } else { (rw, rh) };
    let scale = (pw / ew).min(ph / eh) * rng.random_range(0.9f32..1.3);
    let tilt = (rng.random_range(-1.0f32..1.0) + rng.random_range(-1.0f32..1.0)) * 0.12;
    let angle = quarter as f32 * std::f32::consts::FRAC_PI_2 + tilt;
    let pivot = roi.center()
        + v2(rng.random_range(-0.06f32..0.06) * rw, rng.random_range(-0.06f32..0.06) * rh);
    Similarity::new(pivot, panel.center(), scale, angle, rng.random_bool(0.5))
}

fn render(scene: Scene, rng: &mut impl Rng) -> Phantom {
    let (w, h) = (scene.w, scene.h);
    let texture = {
        let amplitude = rng.random_range(0.08f32..0.22);
        let octaves = [rng.random_range(9.0f32..16.0), rng.random_range(3.0f32..5.0)]
            .into_iter()
            .map(|cell| {
                let (cols, rows) = Texture::grid_size(w, h, cell);
                (cell, (0..cols * rows).map(|_| rng.random_range(-1.0f32..1.0)).collect())
            })
            .collect();
        Texture::new(w, h, amplitude, octaves)
    };
    let mut canvas = Canvas::new(w, h, texture);
    for panel in &scene.panels {
        for s in panel.shapes.iter().filter(|s| s.kind() != Kind::Metal) {
            canvas.draw(s, &panel.rect);
        }
    }
    let boxes: Vec<Rect> = scene.fractures.iter().map(|f| f.bbox).collect();
    let exposure = exposure::Exposure::random(w, h, &boxes, rng);
    exposure.compress(&mut canvas.att, w, h);
    let window = exposure::auto_window(&canvas.att, rng);
    for panel in &scene.panels {
        for s in panel.shapes.iter().filter(|s| s.kind() == Kind::Metal) {
            canvas.draw(s, &panel.rect);
        }
    }
    exposure::soften(&mut canvas.att, w, h);
    let mut film = exposure.develop(&canvas.att, w, h, window, rng);
    markers::burn(
        &mut markers::Film { pixels: &mut film, w, h },
        scene.part,
        scene.view,
        &boxes,
        rng,
    );
    Phantom {
        meta: scene.meta,
        width: w as u32,
        height: h as u32,
        pixels: film.iter().map(|v| (v.clamp(0.0, 1.0) * 65535.0 + 0.5) as u16).collect(),
        boxes: boxes.iter().map(|r| PixelBox { x1: r.x0, y1: r.y0, x2: r.x1, y2: r.y1 }).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(seed: u64, fraction: f64) -> SynthConfig {
        SynthConfig { seed, fractured_fraction: fraction, ..SynthConfig::default() }
    }

    #[test]
    fn same_seed_same_bytes_other_seed_other_bytes() {
        let config = small(7, 0.5);
        for index in [0, 1, 17] {
            let a = generate(&config, index);
            let b = generate(&config, index);
            assert_eq!(a, b, "image {index}");
            let c = generate(&small(8, 0.5), index);
            assert_ne!(a.pixels, c.pixels);
        }
        // Order does not matter: each image has its own stream.
        let later = generate(&config, 17);
        let _ = generate(&config, 3);
        assert_eq!(later, generate(&config, 17));
    }

    #[test]
    fn fracture_boxes_lie_inside_the_image_and_on_bone() {
        let config = small(11, 1.0);
        let mut fractured = 0;
        for index in 0..60 {
            let mut rng = image_rng(config.seed, index);
            let scene = compose(&config, index, &mut rng);
            let (w, h) = (scene.w as f32, scene.h as f32);
            assert_eq!(scene.meta.fracture_count as usize, scene.fractures.len());
            fractured += usize::from(!scene.fractures.is_empty());
            for f in &scene.fractures {
                let b = f.bbox;
                assert!(b.x0 >= 0.0 && b.y0 >= 0.0 && b.x1 <= w && b.y1 <= h, "{index}: {b:?}");
                assert!(b.width() >= 3.0 && b.height() >= 3.0, "{index}: {b:?}");
                assert!(fracture::in_bone(&scene.panels, b.center()), "{index}: {b:?} off bone");
                // A good part of the box is bone, not background.
                let (mut inside, mut total) = (0, 0);
                let (xs, ys) = b.pixel_span(scene.w, scene.h);
                for y in ys {
                    for x in xs.clone() {
                        total += 1;
                        inside += usize::from(fracture::in_bone(
                            &scene.panels,
                            v2(x as f32 + 0.5, y as f32 + 0.5),
                        ));
                    }
                }
                assert!(inside * 5 >= total, "{index}: only {inside}/{total} box pixels on bone");
            }
            let phantom = render(scene, &mut rng);
            assert_eq!(phantom.boxes.len(), phantom.meta.fracture_count as usize);
        }
        assert!(fractured >= 57, "only {fractured}/60 images got a fracture");
    }

    #[test]
    fn fractured_fraction_is_like_fracatlas() {
        let config = SynthConfig { size_min: 160, size_max: 200, ..small(5, 0.18) };
        let n = 300;
        let fractured = (0..n).filter(|&i| generate(&config, i).meta.fractured == 1).count();
        let share = fractured as f64 / n as f64;
        assert!((0.10..=0.26).contains(&share), "fractured share {share}");
    }

    #[test]
    fn rows_are_consistent() {
        let config = small(3, 0.3);
        for index in 0..40 {
            let p = generate(&config, index);
            let m = &p.meta;
            assert_eq!(m.frontal + m.lateral + m.oblique, 1);
            let parts = m.hand + m.leg + m.hip + m.shoulder;
            assert_eq!(parts, if m.mixed == 1 { 2 } else { 1 });
            assert_eq!(m.fractured == 1, !p.boxes.is_empty());
            assert_eq!(p.pixels.len(), (p.width * p.height) as usize);
            assert!((352..=480).contains(&p.width) && (352..=480).contains(&p.height));
            assert_eq!(m.image_id, format!("IMG{index:07}.jpg"));
        }
    }

    #[test]
    fn invalid_configs_are_refused() {
        let bad = SynthConfig { fractured_fraction: 1.5, ..SynthConfig::default() };
        assert_eq!(bad.validate(), Err(SynthError::Fraction(1.5)));
        let bad = SynthConfig { size_min: 500, size_max: 400, ..SynthConfig::default() };
        assert!(matches!(bad.validate(), Err(SynthError::Size { .. })));
        assert!(SynthConfig::default().validate().is_ok());
        let none = SynthConfig { patterns: Vec::new(), ..SynthConfig::default() };
        assert_eq!(none.validate(), Err(SynthError::NoPattern));
        let bad = SynthConfig { displacement: 5.0, ..SynthConfig::default() };
        assert_eq!(bad.validate(), Err(SynthError::Displacement(5.0)));
    }

    #[test]
    fn larger_displacement_spreads_the_pieces_further() {
        // Mean box diagonal of displaced fractures: the box spans both pieces, so a grosser
        // shift must widen it.
        let mean_diagonal = |displacement: f32| {
            let config =
                SynthConfig { patterns: vec![Pattern::Displaced], displacement, ..small(21, 1.0) };
            let boxes: Vec<PixelBox> = (0..30).flat_map(|i| generate(&config, i).boxes).collect();
            let sum: f32 = boxes.iter().map(|b| (b.x2 - b.x1).hypot(b.y2 - b.y1)).sum();
            sum / boxes.len().max(1) as f32
        };
        let (plain, gross) = (mean_diagonal(1.0), mean_diagonal(3.0));
        assert!(gross > 1.1 * plain, "mean box diagonal {plain} at 1x, {gross} at 3x");
    }

    #[test]
    fn chosen_patterns_are_the_only_ones_drawn() {
        let count = |config: &SynthConfig, pattern: Pattern| {
            (0..40)
                .map(|index| {
                    let scene = compose(config, index, &mut image_rng(config.seed, index));
                    scene.fractures.iter().filter(|f| f.pattern == pattern).count()
                })
                .sum::<usize>()
        };
        let all = small(13, 1.0);
        for p in Pattern::ALL {
            assert!(count(&all, p) > 0, "{p:?} never drawn by default");
        }
        let displaced = SynthConfig { patterns: vec![Pattern::Displaced], ..all };
        assert!(count(&displaced, Pattern::Displaced) >= 35);
        assert_eq!(count(&displaced, Pattern::Line) + count(&displaced, Pattern::CorticalBreak), 0);
    }
}
