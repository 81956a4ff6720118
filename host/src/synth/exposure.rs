//! Turning projected attenuation into a displayed radiograph, the way a digital detector's
//! processing does: large-scale dynamic-range compression, an automatic window from the
//! histogram, a random tone curve (gamma, contrast, brightness), a slight blur, the heel-effect
//! gradient, collimator shutters, and signal-dependent quantum noise.

use rand::{Rng, RngCore};

use super::geometry::{Rect, V2, v2};

/// Entries of the tone-curve lookup table over the normalised window `[0, 1]`.
const LUT_SIZE: usize = 4096;

/// The random parts of one exposure.
#[derive(Debug, Clone)]
pub struct Exposure {
    /// Weight of the subtracted low-pass image (0 = none).
    pub equalize: f32,
    /// Box radius of that low-pass image, in pixels.
    pub equalize_radius: usize,
    gamma: f32,
    contrast: f32,
    brightness: f32,
    noise: f32,
    /// Brightness change across the image, per image width / height.
    gradient: V2,
    collimation: Option<Collimation>,
}

/// A rotated rectangle outside which the collimator shutters left the detector unexposed.
#[derive(Debug, Clone, Copy)]
struct Collimation {
    c: V2,
    u: V2,
    half: V2,
    level: f32,
}

impl Collimation {
    /// True when the whole of `r` (plus a few pixels) lies inside the exposed field.
    fn covers_none_of(&self, r: &Rect) -> bool {
        let r = r.expand(3.0);
        [v2(r.x0, r.y0), v2(r.x1, r.y0), v2(r.x0, r.y1), v2(r.x1, r.y1)].iter().all(|p| {
            let d = *p - self.c;
            d.dot(self.u).abs() < self.half.x && d.dot(self.u.perp()).abs() < self.half.y
        })
    }
}

/// Where the window of normalised values lies, in attenuation units.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub lo: f32,
    pub hi: f32,
}

impl Exposure {
    /// A random exposure for a `w`×`h` image; the collimator never covers any of `keep`.
    pub fn random(w: usize, h: usize, keep: &[Rect], rng: &mut impl Rng) -> Exposure {
        let collimation = rng.random_bool(0.3).then(|| {
            let (fw, fh) = (w as f32, h as f32);
            let inset = |rng: &mut dyn RngCore, d: f32| rng.random_range(0.02f32..0.12) * d;
            let (l, r) = (inset(rng, fw), inset(rng, fw));
            let (t, b) = (inset(rng, fh), inset(rng, fh));
            Collimation {
                c: v2((l + fw - r) * 0.5, (t + fh - b) * 0.5),
                u: V2::from_angle(rng.random_range(-0.04f32..0.04)),
                half: v2((fw - l - r) * 0.5, (fh - t - b) * 0.5),
                level: rng.random_range(0.55f32..0.95),
            }
        });
        let collimation = collimation.filter(|c| keep.iter().all(|r| c.covers_none_of(r)));
        Exposure {
            equalize: rng.random_range(0.2f32..0.65),
            equalize_radius: (w.min(h) / rng.random_range(8..14)).max(2),
            gamma: rng.random_range(0.75f32..1.35),
            contrast: rng.random_range(0.85f32..1.2),
            brightness: rng.random_range(-0.06f32..0.06),
            noise: rng.random_range(0.008f32..0.028),
            gradient: v2(rng.random_range(-0.06f32..0.06), rng.random_range(-0.06f32..0.06)),
            collimation,
        }
    }

    /// Subtracts `equalize ×` a wide box blur of `att` from it (dynamic-range compression: soft
    /// tissue thickness stops dominating, bone edges stay).
    pub fn compress(&self, att: &mut [f32], w: usize, h: usize) {
        if self.equalize <= 0.0 {
            return;
        }
        let mut low = att.to_vec();
        let mut scratch = vec![0.0f32; w];
        for _ in 0..2 {
            box_blur_rows(&mut low, w, h, self.equalize_radius, &mut scratch);
            box_blur_cols(&mut low, w, h, self.equalize_radius);
        }
        for (a, l) in att.iter_mut().zip(&low) {
            *a -= self.equalize * l;
        }
    }

    /// Display values in `[0, 1]` for the attenuation image, windowed by `window`.
    pub fn develop(
        &self,
        att: &[f32],
        w: usize,
        h: usize,
        window: Window,
        rng: &mut impl Rng,
    ) -> Vec<f32> {
        let lut: Vec<f32> = (0..=LUT_SIZE)
            .map(|i| {
                let v = (i as f32 / LUT_SIZE as f32).powf(self.gamma);
                (0.5 + self.contrast * (v - 0.5) + self.brightness).clamp(0.0, 1.0)
            })
            .collect();
        let scale = LUT_SIZE as f32 / (window.hi - window.lo).max(1e-6);
        let mut out = vec![0.0f32; w * h];
        let (fw, fh) = (w as f32, h as f32);
        let gx: Vec<f32> =
            (0..w).map(|x| self.gradient.x * ((x as f32 + 0.5) / fw - 0.5)).collect();
        for y in 0..h {
            let gy = self.gradient.y * ((y as f32 + 0.5) / fh - 0.5);
            let row = &att[y * w..(y + 1) * w];
            let dst = &mut out[y * w..(y + 1) * w];
            for (x, ((o, a), g)) in dst.iter_mut().zip(row).zip(&gx).enumerate() {
                let i = ((a - window.lo) * scale).clamp(0.0, LUT_SIZE as f32) as usize;
                let mut v = lut[i] + gy + g;
                if let Some(c) = &self.collimation {
                    let d = v2(x as f32 + 0.5, y as f32 + 0.5) - c.c;
                    let outside =
                        ((d.dot(c.u)).abs() - c.half.x).max((d.dot(c.u.perp())).abs() - c.half.y);
                    let k = (outside * 0.5 + 0.5).clamp(0.0, 1.0);
                    v += (c.level - v) * k;
                }
                // Quantum noise: roughly Gaussian (sum of four uniforms), stronger where bright.
                let bits = rng.next_u64();
                let sum = (bits & 0xffff)
                    + ((bits >> 16) & 0xffff)
                    + ((bits >> 32) & 0xffff)
                    + (bits >> 48);
                let g = (sum as f32 / 65535.0 - 2.0) * 1.732;
                v += g * self.noise * (0.5 + v.clamp(0.0, 1.0));
                *o = v.clamp(0.0, 1.0);
            }
        }
        out
    }
}

/// The window from the histogram: a low percentile to a high one, randomly widened a little.
pub fn auto_window(att: &[f32], rng: &mut impl Rng) -> Window {
    // Every third pixel is plenty for percentiles.
    let sample = || att.iter().step_by(3);
    let (mut min, mut max) = (f32::INFINITY, f32::NEG_INFINITY);
    for &a in sample() {
        min = min.min(a);
        max = max.max(a);
    }
    if max <= min || max.is_nan() {
        return Window { lo: min.min(0.0), hi: min.max(0.0) + 1.0 };
    }
    const BINS: usize = 2048;
    let mut hist = vec![0u32; BINS];
    let k = (BINS - 1) as f32 / (max - min);
    let mut n = 0u64;
    for &a in sample() {
        hist[((a - min) * k) as usize] += 1;
        n += 1;
    }
    let quantile = |q: f64| -> f32 {
        let target = (q * n as f64) as u64;
        let mut acc = 0u64;
        for (i, &n) in hist.iter().enumerate() {
            acc += u64::from(n);
            if acc > target {
                return min + i as f32 / k;
            }
        }
        max
    };
    let lo = quantile(0.005);
    let hi = quantile(0.997);
    let span = (hi - lo).max(1e-3);
    Window {
        lo: lo + span * rng.random_range(-0.04f32..0.12),
        hi: hi + span * rng.random_range(-0.08f32..0.15),
    }
}

/// A small binomial blur (1 2 1)/4 in both directions: the detector's point spread.
pub fn soften(att: &mut [f32], w: usize, h: usize) {
    if w < 3 || h < 3 {
        return;
    }
    let mut row = vec![0.0f32; w];
    for y in 0..h {
        let line = &mut att[y * w..(y + 1) * w];
        row.copy_from_slice(line);
        for x in 1..w - 1 {
            line[x] = 0.25 * (row[x - 1] + row[x + 1]) + 0.5 * row[x];
        }
    }
    let mut prev = att[..w].to_vec();
    for y in 1..h - 1 {
        let (_, rest) = att.split_at_mut(y * w);
        let (cur, below) = rest.split_at_mut(w);
        for x in 0..w {
            let c = cur[x];
            cur[x] = 0.25 * (prev[x] + below[x]) + 0.5 * c;
            prev[x] = c;
        }
    }
}

/// Running-sum box blur of radius `r` along rows (edges clamp).
fn box_blur_rows(img: &mut [f32], w: usize, h: usize, r: usize, scratch: &mut [f32]) {
    for y in 0..h {
        let line = &mut img[y * w..(y + 1) * w];
        scratch[..w].copy_from_slice(line);
        box_line(&scratch[..w], line, r);
    }
}

/// Running-sum box blur of radius `r` along columns (edges clamp), swept a row at a time so
/// memory is read in order.
fn box_blur_cols(img: &mut [f32], w: usize, h: usize, r: usize) {
    if h == 0 {
        return;
    }
    let src = img.to_vec();
    let row = |y: isize| {
        let y = y.clamp(0, h as isize - 1) as usize;
        &src[y * w..(y + 1) * w]
    };
    let r = r as isize;
    let norm = 1.0 / (2 * r + 1) as f32;
    let mut sum = vec![0.0f32; w];
    for k in -r..=r {
        for (s, v) in sum.iter_mut().zip(row(k)) {
            *s += v;
        }
    }
    for y in 0..h {
        for (d, s) in img[y * w..(y + 1) * w].iter_mut().zip(&sum) {
            *d = s * norm;
        }
        let (enter, leave) = (row(y as isize + r + 1), row(y as isize - r));
        for ((s, e), l) in sum.iter_mut().zip(enter).zip(leave) {
            *s += e - l;
        }
    }
}

fn box_line(src: &[f32], dst: &mut [f32], r: usize) {
    let n = src.len();
    if n == 0 {
        return;
    }
    let at = |i: isize| src[i.clamp(0, n as isize - 1) as usize];
    let r = r as isize;
    let norm = 1.0 / (2 * r + 1) as f32;
    let mut sum: f32 = (-r..=r).map(at).sum();
    for (i, d) in dst.iter_mut().enumerate() {
        *d = sum * norm;
        let i = i as isize;
        sum += at(i + r + 1) - at(i - r);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn box_line_averages() {
        let src = [0.0, 0.0, 3.0, 0.0, 0.0];
        let mut dst = [0.0; 5];
        box_line(&src, &mut dst, 1);
        assert_eq!(dst, [0.0, 1.0, 1.0, 1.0, 0.0]);
    }

    #[test]
    fn window_spans_the_histogram() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let att: Vec<f32> = (0..1000).map(|i| i as f32 / 1000.0).collect();
        let w = auto_window(&att, &mut rng);
        assert!(w.lo < 0.12 && w.hi > 0.85, "{w:?}");
    }
}
