//! Burnt-in markers, as real radiographs carry them: the lead side marker ("L"/"R", often in a
//! frame) and a short text line (projection, body part, a date), drawn with a hand-made 5×7
//! bitmap font. Markers are placed in corners clear of the fracture boxes.

use rand::Rng;

use super::geometry::Rect;
use crate::dataset::record::{BodyPart, View};

/// Glyph rows, top to bottom; bit 4 is the leftmost of the 5 columns.
type Glyph = [u8; 7];

const GLYPH_W: usize = 5;
const GLYPH_H: usize = 7;

fn glyph(c: char) -> Glyph {
    match c.to_ascii_uppercase() {
        'A' => [0b01110, 0b10001, 0b10001, 0b11111, 0b10001, 0b10001, 0b10001],
        'B' => [0b11110, 0b10001, 0b10001, 0b11110, 0b10001, 0b10001, 0b11110],
        'C' => [0b01110, 0b10001, 0b10000, 0b10000, 0b10000, 0b10001, 0b01110],
        'D' => [0b11110, 0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b11110],
        'E' => [0b11111, 0b10000, 0b10000, 0b11110, 0b10000, 0b10000, 0b11111],
        'F' => [0b11111, 0b10000, 0b10000, 0b11110, 0b10000, 0b10000, 0b10000],
        'G' => [0b01110, 0b10001, 0b10000, 0b10111, 0b10001, 0b10001, 0b01111],
        'H' => [0b10001, 0b10001, 0b10001, 0b11111, 0b10001, 0b10001, 0b10001],
        'I' => [0b01110, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b01110],
        'K' => [0b10001, 0b10010, 0b10100, 0b11000, 0b10100, 0b10010, 0b10001],
        'L' => [0b10000, 0b10000, 0b10000, 0b10000, 0b10000, 0b10000, 0b11111],
        'M' => [0b10001, 0b11011, 0b10101, 0b10101, 0b10001, 0b10001, 0b10001],
        'N' => [0b10001, 0b10001, 0b11001, 0b10101, 0b10011, 0b10001, 0b10001],
        'O' => [0b01110, 0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b01110],
        'P' => [0b11110, 0b10001, 0b10001, 0b11110, 0b10000, 0b10000, 0b10000],
        'R' => [0b11110, 0b10001, 0b10001, 0b11110, 0b10100, 0b10010, 0b10001],
        'S' => [0b01111, 0b10000, 0b10000, 0b01110, 0b00001, 0b00001, 0b11110],
        'T' => [0b11111, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100],
        'U' => [0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b01110],
        'V' => [0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b01010, 0b00100],
        'W' => [0b10001, 0b10001, 0b10001, 0b10101, 0b10101, 0b10101, 0b01010],
        'X' => [0b10001, 0b10001, 0b01010, 0b00100, 0b01010, 0b10001, 0b10001],
        'Y' => [0b10001, 0b10001, 0b01010, 0b00100, 0b00100, 0b00100, 0b00100],
        '0' => [0b01110, 0b10001, 0b10011, 0b10101, 0b11001, 0b10001, 0b01110],
        '1' => [0b00100, 0b01100, 0b00100, 0b00100, 0b00100, 0b00100, 0b01110],
        '2' => [0b01110, 0b10001, 0b00001, 0b00010, 0b00100, 0b01000, 0b11111],
        '3' => [0b11111, 0b00010, 0b00100, 0b00010, 0b00001, 0b10001, 0b01110],
        '4' => [0b00010, 0b00110, 0b01010, 0b10010, 0b11111, 0b00010, 0b00010],
        '5' => [0b11111, 0b10000, 0b11110, 0b00001, 0b00001, 0b10001, 0b01110],
        '6' => [0b00110, 0b01000, 0b10000, 0b11110, 0b10001, 0b10001, 0b01110],
        '7' => [0b11111, 0b00001, 0b00010, 0b00100, 0b01000, 0b01000, 0b01000],
        '8' => [0b01110, 0b10001, 0b10001, 0b01110, 0b10001, 0b10001, 0b01110],
        '9' => [0b01110, 0b10001, 0b10001, 0b01111, 0b00001, 0b00010, 0b01100],
        '-' => [0, 0, 0, 0b11111, 0, 0, 0],
        '/' => [0b00001, 0b00001, 0b00010, 0b00100, 0b01000, 0b10000, 0b10000],
        ':' => [0, 0b01100, 0b01100, 0, 0b01100, 0b01100, 0],
        '.' => [0, 0, 0, 0, 0, 0b01100, 0b01100],
        _ => [0; 7],
    }
}

/// Size in pixels of `text` drawn at `scale` pixels per font dot (one dot between letters).
pub fn text_size(text: &str, scale: usize) -> (usize, usize) {
    let n = text.chars().count();
    let w = if n == 0 { 0 } else { (n * (GLYPH_W + 1) - 1) * scale };
    (w, GLYPH_H * scale)
}

/// A `w`×`h` grey image in `[0, 1]`, row-major, that markers are burnt into.
pub struct Film<'a> {
    pub pixels: &'a mut [f32],
    pub w: usize,
    pub h: usize,
}

impl Film<'_> {
    fn fill(&mut self, x0: usize, y0: usize, x1: usize, y1: usize, value: f32) {
        for y in y0.min(self.h)..y1.min(self.h) {
            for x in x0.min(self.w)..x1.min(self.w) {
                self.pixels[y * self.w + x] = value;
            }
        }
    }

    /// Draws `text` with its top-left corner at `(x, y)`.
    pub fn text(&mut self, text: &str, x: usize, y: usize, scale: usize, value: f32) {
        for (i, c) in text.chars().enumerate() {
            let gx = x + i * (GLYPH_W + 1) * scale;
            for (row, bits) in glyph(c).iter().enumerate() {
                for col in 0..GLYPH_W {
                    if bits & (1 << (GLYPH_W - 1 - col)) != 0 {
                        let px = gx + col * scale;
                        let py = y + row * scale;
                        self.fill(px, py, px + scale, py + scale, value);
                    }
                }
            }
        }
    }

    /// A one-`t`-pixel outline of the rectangle `[x0, x1) × [y0, y1)`.
    fn frame(&mut self, x0: usize, y0: usize, x1: usize, y1: usize, t: usize, value: f32) {
        self.fill(x0, y0, x1, y0 + t, value);
        self.fill(x0, y1.saturating_sub(t), x1, y1, value);
        self.fill(x0, y0, x0 + t, y1, value);
        self.fill(x1.saturating_sub(t), y0, x1, y1, value);
    }
}

/// A short technician's text line for the image.
fn caption(part: BodyPart, view: View, rng: &mut impl Rng) -> String {
    let projection = match view {
        View::Frontal => {
            if rng.random_bool(0.5) {
                "AP"
            } else {
                "PA"
            }
        }
        View::Lateral => "LAT",
        View::Oblique => "OBL",
    };
    let region = match part {
        BodyPart::Hand => ["HAND", "WRIST", "FINGER"][rng.random_range(0..3)],
        BodyPart::Leg => ["KNEE", "ANKLE", "TIB FIB", "FOOT"][rng.random_range(0..4)],
        BodyPart::Hip => ["PELVIS", "HIP"][rng.random_range(0..2)],
        BodyPart::Shoulder => ["SHOULDER", "HUMERUS"][rng.random_range(0..2)],
    };
    match rng.random_range(0..4) {
        0 => format!("{region} {projection}"),
        1 => format!("{projection} {region}"),
        2 => format!(
            "{:02}.{:02}.{:02}",
            rng.random_range(1..29),
            rng.random_range(1..13),
            rng.random_range(10..24)
        ),
        _ => projection.to_string(),
    }
}

/// Burns a side marker and (usually) a text line into `film`, each in a corner that does not
/// cover any of `keep_clear`.
pub fn burn(
    film: &mut Film<'_>,
    part: BodyPart,
    view: View,
    keep_clear: &[Rect],
    rng: &mut impl Rng,
) {
    let side = if rng.random_bool(0.5) { "L" } else { "R" };
    let big = (film.w.min(film.h) / 90).max(2);
    let side_scale = rng.random_range(big..=big + 2);
    let framed = rng.random_bool(0.5);
    let value = rng.random_range(0.88f32..1.0);
    let mut corners = [0usize, 1, 2, 3];
    // Shuffle the corner preference.
    for i in (1..corners.len()).rev() {
        corners.swap(i, rng.random_range(0..=i));
    }
    let mut used: Vec<Rect> = keep_clear.iter().map(|r| r.expand(3.0)).collect();

    let (tw, th) = text_size(side, side_scale);
    let pad = if framed { 2 * side_scale } else { 0 };
    let size = (tw + 2 * pad, th + 2 * pad);
    if let Some((x, y)) = place(film, size, &corners, &used, rng) {
        film.text(side, x + pad, y + pad, side_scale, value);
        if framed {
            film.frame(x, y, x + size.0, y + size.1, (side_scale / 2).max(1), value);
        }
        used.push(Rect::new(x as f32, y as f32, (x + size.0) as f32, (y + size.1) as f32));
    }

    if rng.random_bool(0.8) {
        let text = caption(part, view, rng);
        let scale = (big / 2).max(1) + rng.random_range(0..2);
        let size = text_size(&text, scale);
        let value = rng.random_range(0.75f32..1.0);
        if let Some((x, y)) = place(film, size, &corners, &used, rng) {
            film.text(&text, x, y, scale, value);
        }
    }
}

/// Top-left corner for a `size` box in the first corner (in `order`) where it fits without
/// touching `used`.
fn place(
    film: &Film<'_>,
    size: (usize, usize),
    order: &[usize],
    used: &[Rect],
    rng: &mut impl Rng,
) -> Option<(usize, usize)> {
    let (bw, bh) = size;
    if bw + 8 >= film.w || bh + 8 >= film.h {
        return None;
    }
    let inset_x = rng.random_range(4..=(film.w / 20).max(5));
    let inset_y = rng.random_range(4..=(film.h / 20).max(5));
    for &corner in order {
        let x = if corner % 2 == 0 { inset_x } else { film.w.saturating_sub(bw + inset_x) };
        let y = if corner < 2 { inset_y } else { film.h.saturating_sub(bh + inset_y) };
        let r = Rect::new(x as f32, y as f32, (x + bw) as f32, (y + bh) as f32);
        if !used.iter().any(|u| u.intersects(&r)) {
            return Some((x, y));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_lands_where_asked() {
        let mut px = vec![0.0f32; 40 * 20];
        let mut film = Film { pixels: &mut px, w: 40, h: 20 };
        film.text("L", 2, 3, 2, 1.0);
        // 'L' has its left column set on every row, bottom row full.
        assert_eq!(px[3 * 40 + 2], 1.0);
        assert_eq!(px[(3 + 13) * 40 + 2 + 9], 1.0);
        assert_eq!(px[3 * 40 + 2 + 4], 0.0);
        assert_eq!(text_size("AB", 2), (22, 14));
    }
}
