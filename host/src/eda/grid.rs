//! The example grid: a seeded choice of images (fractured first), each contrast-stretched,
//! fitted into a square tile with its fracture boxes outlined in red, and captioned with its id,
//! class and body part.

use std::path::Path;

use image::{Rgb, RgbImage, imageops};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use super::intensity::image_path;
use crate::dataset::{Dataset, ImageRecord, PixelBox};
use crate::plot::{self, PlotError};

/// Side of one image tile, pixels.
pub const TILE: u32 = 256;
/// Space around a tile's caption lines, pixels.
const CAPTION_PAD: u32 = 6;
const HEADER: u32 = 44;
const GAP: u32 = 6;
const BOX_COLOUR: Rgb<u8> = Rgb([255, 40, 40]);
const BACKGROUND: Rgb<u8> = Rgb([30, 30, 30]);

/// Picks up to `count` images: half (rounded up) fractured, the rest non-fractured, topped up
/// from the other class when one runs short; fractured first. Same seed, same choice.
pub fn choose(dataset: &Dataset, count: usize, seed: u64) -> Vec<usize> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (mut frac, mut non): (Vec<usize>, Vec<usize>) =
        (0..dataset.images.len()).partition(|&i| dataset.images[i].meta.is_fractured());
    frac.shuffle(&mut rng);
    non.shuffle(&mut rng);
    let want_frac = count.div_ceil(2).min(frac.len());
    let want_non = (count - want_frac).min(non.len());
    let want_frac = (count - want_non).min(frac.len());
    let mut chosen: Vec<usize> = frac[..want_frac].to_vec();
    chosen.extend_from_slice(&non[..want_non]);
    chosen
}

/// Columns and rows of a grid of `n` tiles (as square as possible).
pub fn shape(n: usize) -> (u32, u32) {
    let cols = (n.max(1) as f64).sqrt().ceil() as u32;
    let rows = (n.max(1) as u32).div_ceil(cols);
    (cols, rows)
}

/// One tile: the image fitted into `TILE`×`TILE` (aspect kept, centred) with its boxes, or a
/// gray tile when the image cannot be read. Returns the tile and whether the image was read.
pub(crate) fn tile(path: &Path, boxes: &[PixelBox]) -> (RgbImage, bool) {
    let mut out = RgbImage::from_pixel(TILE, TILE, BACKGROUND);
    let Ok(gray) = fracture_models::pixels::read_gray(path) else {
        return (out, false);
    };
    if gray.width == 0 || gray.height == 0 {
        return (out, false);
    }
    let (lo, hi) = stretch_limits(&gray.data);
    let scale = if hi > lo { 1.0 / (hi - lo) } else { 1.0 };
    let bytes: Vec<u8> = gray
        .data
        .iter()
        .map(|&v| (((v - lo) * scale).clamp(0.0, 1.0) * 255.0).round() as u8)
        .collect();
    let Some(full) = image::GrayImage::from_raw(gray.width, gray.height, bytes) else {
        return (out, false);
    };
    let f = f64::from(TILE) / f64::from(gray.width.max(gray.height));
    let (w, h) = (
        ((f64::from(gray.width) * f).round() as u32).clamp(1, TILE),
        ((f64::from(gray.height) * f).round() as u32).clamp(1, TILE),
    );
    let small = imageops::resize(&full, w, h, imageops::FilterType::Triangle);
    let (ox, oy) = ((TILE - w) / 2, (TILE - h) / 2);
    for (x, y, p) in small.enumerate_pixels() {
        out.put_pixel(ox + x, oy + y, Rgb([p[0], p[0], p[0]]));
    }
    for b in boxes {
        let map = |v: f32, o: u32| f64::from(v) * f + f64::from(o);
        outline(
            &mut out,
            map(b.x1, ox),
            map(b.y1, oy),
            map(b.x2, ox),
            map(b.y2, oy),
            2,
            BOX_COLOUR,
        );
    }
    (out, true)
}

/// Gray levels at the 0.5th and 99.5th percentiles (a 1024-bin histogram), for display.
fn stretch_limits(data: &[f32]) -> (f32, f32) {
    const BINS: usize = 1024;
    let mut hist = [0usize; BINS];
    for &v in data {
        hist[((v.clamp(0.0, 1.0) * (BINS - 1) as f32).round() as usize).min(BINS - 1)] += 1;
    }
    let level = |target: usize| {
        let mut seen = 0;
        for (i, &c) in hist.iter().enumerate() {
            seen += c;
            if seen > target {
                return i as f32 / (BINS - 1) as f32;
            }
        }
        1.0
    };
    let n = data.len();
    (level(n / 200), level(n - 1 - n / 200))
}

/// Draws a rectangle outline `thickness` pixels wide, inside the corners, clipped to the image.
pub fn outline(
    img: &mut RgbImage,
    x1: f64,
    y1: f64,
    x2: f64,
    y2: f64,
    thickness: u32,
    colour: Rgb<u8>,
) {
    let (w, h) = (i64::from(img.width()), i64::from(img.height()));
    if w == 0 || h == 0 {
        return;
    }
    let (x1, x2) = (x1.min(x2).round() as i64, x1.max(x2).round() as i64);
    let (y1, y2) = (y1.min(y2).round() as i64, y1.max(y2).round() as i64);
    let t = i64::from(thickness.max(1));
    let mut put = |x: i64, y: i64| {
        if (0..w).contains(&x) && (0..h).contains(&y) {
            img.put_pixel(x as u32, y as u32, colour);
        }
    };
    for x in x1..=x2 {
        for k in 0..t {
            put(x, y1 + k);
            put(x, y2 - k);
        }
    }
    for y in y1..=y2 {
        for k in 0..t {
            put(x1 + k, y);
            put(x2 - k, y);
        }
    }
}

/// Draws the grid of `chosen` images to `path`. Returns how many of them could be read.
pub fn draw(dataset: &Dataset, chosen: &[usize], path: &Path) -> Result<usize, PlotError> {
    let title = format!(
        "Example images ({} of {}; red boxes = fracture labels)",
        chosen.len(),
        dataset.images.len()
    );
    draw_tiles(dataset, chosen, &title, path, |_, r, ok| {
        let id = crate::dataset::layout::stem(&r.meta.image_id);
        let text = if ok {
            let class = if r.meta.is_fractured() { "fractured" } else { "non-fractured" };
            format!("{id} · {class} · {}", r.meta.primary_part_name())
        } else {
            format!("{id} (unreadable)")
        };
        vec![Caption { text, colour: class_colour(r) }]
    })
}

/// One caption line under a tile.
pub struct Caption {
    pub text: String,
    pub colour: RGBColor,
}

/// Dark red for a fractured image's caption, black otherwise.
pub fn class_colour(r: &ImageRecord) -> RGBColor {
    if r.meta.is_fractured() { RGBColor(180, 0, 0) } else { BLACK }
}

/// Height of one caption line, pixels.
const CAPTION_LINE: u32 = 20;

/// Draws `images` (indices into `dataset`, in order) as tiles in rows under `title`, each
/// with the caption lines `caption(position, record, readable)` gives. Returns how many
/// images could be read. The example grid and the embedding outlier grid share it.
pub fn draw_tiles(
    dataset: &Dataset,
    images: &[usize],
    title: &str,
    path: &Path,
    caption: impl Fn(usize, &ImageRecord, bool) -> Vec<Caption>,
) -> Result<usize, PlotError> {
    plot::register_fonts()?;
    let tiles: Vec<(RgbImage, bool)> = {
        use rayon::prelude::*;
        images
            .par_iter()
            .map(|&i| {
                let r = &dataset.images[i];
                tile(&image_path(dataset, r), &r.boxes)
            })
            .collect()
    };
    let captions: Vec<Vec<Caption>> = images
        .iter()
        .zip(&tiles)
        .enumerate()
        .map(|(k, (&i, (_, ok)))| caption(k, &dataset.images[i], *ok))
        .collect();
    let lines = captions.iter().map(Vec::len).max().unwrap_or(1).max(1) as u32;
    let (cols, rows) = shape(images.len());
    let cell_h = TILE + CAPTION_PAD + lines * CAPTION_LINE;
    let width = cols * TILE + (cols + 1) * GAP;
    let height = HEADER + rows * cell_h + (rows + 1) * GAP;
    let mut canvas = RgbImage::from_pixel(width, height, Rgb([255, 255, 255]));
    let origin = |k: usize| {
        let (c, r) = (k as u32 % cols, k as u32 / cols);
        (GAP + c * (TILE + GAP), HEADER + GAP + r * (cell_h + GAP))
    };
    let read = tiles.iter().filter(|(_, ok)| *ok).count();
    for (k, (t, _)) in tiles.iter().enumerate() {
        let (x, y) = origin(k);
        imageops::replace(&mut canvas, t, i64::from(x), i64::from(y));
    }

    let mut buffer = canvas.into_raw();
    {
        let root = BitMapBackend::with_buffer(&mut buffer, (width, height)).into_drawing_area();
        let centre = Pos::new(HPos::Center, VPos::Center);
        root.draw(&Text::new(
            title.to_string(),
            (width as i32 / 2, HEADER as i32 / 2),
            plot::text_style(20.0).pos(centre),
        ))?;
        for (k, lines) in captions.into_iter().enumerate() {
            let (x, y) = origin(k);
            let cx = (x + TILE / 2) as i32;
            for (n, line) in lines.into_iter().enumerate() {
                let cy = (y + TILE + CAPTION_PAD / 2 + CAPTION_LINE / 2) as i32
                    + (n as i32) * CAPTION_LINE as i32;
                root.draw(&Text::new(
                    line.text,
                    (cx, cy),
                    plot::text_style(14.0).color(&line.colour).pos(centre),
                ))?;
            }
        }
        root.present()?;
    }
    plot::save_png(path, &buffer, width, height)?;
    Ok(read)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eda::stats::tests::small_dataset;

    #[test]
    fn choice_is_seeded_and_fractured_first() {
        let ds = small_dataset();
        let a = choose(&ds, 3, 7);
        assert_eq!(a, choose(&ds, 3, 7));
        assert_eq!(a.len(), 3);
        // Two fractured (indices 0 and 1) then one non-fractured.
        assert!(a[..2].iter().all(|&i| i < 2) && a[2] >= 2);
        // More than there are: everything, fractured first.
        let all = choose(&ds, 16, 1);
        assert_eq!(all.len(), 4);
        assert!(all[..2].iter().all(|&i| i < 2));
        // Only one wanted: a fractured one.
        assert!(choose(&ds, 1, 3)[0] < 2);
    }

    #[test]
    fn grid_shape() {
        assert_eq!(shape(16), (4, 4));
        assert_eq!(shape(10), (4, 3));
        assert_eq!(shape(1), (1, 1));
        assert_eq!(shape(0), (1, 1));
    }

    #[test]
    fn outline_is_clipped_and_two_thick() {
        let mut img = RgbImage::new(10, 10);
        outline(&mut img, 2.0, 2.0, 7.0, 7.0, 2, BOX_COLOUR);
        outline(&mut img, -5.0, -5.0, 20.0, 20.0, 2, BOX_COLOUR);
        assert_eq!(img.get_pixel(2, 5), &BOX_COLOUR);
        assert_eq!(img.get_pixel(3, 5), &BOX_COLOUR);
        assert_eq!(img.get_pixel(4, 5), &Rgb([0, 0, 0]));
        assert_eq!(img.get_pixel(7, 4), &BOX_COLOUR);
    }
}
