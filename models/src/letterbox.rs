//! Letterboxing: resize keeping aspect ratio and pad to the network's square input, exactly as
//! ultralytics' `LetterBox` (centred, pad value 114/255, Python's round-half-to-even), and the
//! inverse mapping of boxes back to original pixels (ultralytics' `scale_boxes`). Training,
//! `fracture predict` and the device daemon all go through this one module.

use crate::pixels::GrayF32;

/// ultralytics' grey padding value, on the [0, 1] scale.
pub const PAD_VALUE: f32 = 114.0 / 255.0;

/// The geometry of one letterbox transform.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Letterbox {
    pub src_width: u32,
    pub src_height: u32,
    pub out_width: u32,
    pub out_height: u32,
    /// Resize gain, `min(out_h / src_h, out_w / src_w)`.
    pub gain: f64,
    /// Size of the resized image inside the padded canvas.
    pub resized_width: u32,
    pub resized_height: u32,
    /// Padding on the left and the top.
    pub pad_left: u32,
    pub pad_top: u32,
}

impl Letterbox {
    /// Geometry for `src` into `out` (the study uses 416×416). Upscales small images, as
    /// ultralytics does by default.
    pub fn new(src_width: u32, src_height: u32, out_width: u32, out_height: u32) -> Self {
        let gain = (f64::from(out_height) / f64::from(src_height.max(1)))
            .min(f64::from(out_width) / f64::from(src_width.max(1)));
        let resized_width =
            ((f64::from(src_width) * gain).round_ties_even() as u32).clamp(1, out_width);
        let resized_height =
            ((f64::from(src_height) * gain).round_ties_even() as u32).clamp(1, out_height);
        let dw = f64::from(out_width - resized_width) / 2.0;
        let dh = f64::from(out_height - resized_height) / 2.0;
        Self {
            src_width,
            src_height,
            out_width,
            out_height,
            gain,
            resized_width,
            resized_height,
            pad_left: (dw - 0.1).round_ties_even().max(0.0) as u32,
            pad_top: (dh - 0.1).round_ties_even().max(0.0) as u32,
        }
    }

    pub fn square(src_width: u32, src_height: u32, size: u32) -> Self {
        Self::new(src_width, src_height, size, size)
    }

    /// ultralytics' prediction letterbox (`LetterBox(auto=True)`): scale as into a
    /// `size`×`size` square, but pad only up to the next multiple of `stride`, so a 4:3
    /// image becomes 416×320 instead of 416×416 (fewer pixels, same boxes).
    pub fn rect(src_width: u32, src_height: u32, size: u32, stride: u32) -> Self {
        let sq = Self::square(src_width, src_height, size);
        let stride = stride.max(1);
        let dw = (size - sq.resized_width) % stride;
        let dh = (size - sq.resized_height) % stride;
        Self {
            out_width: sq.resized_width + dw,
            out_height: sq.resized_height + dh,
            pad_left: (f64::from(dw) / 2.0 - 0.1).round_ties_even().max(0.0) as u32,
            pad_top: (f64::from(dh) / 2.0 - 0.1).round_ties_even().max(0.0) as u32,
            ..sq
        }
    }

    /// Resizes (bilinear, half-pixel centres as OpenCV's INTER_LINEAR) and pads.
    pub fn apply(&self, src: &GrayF32) -> GrayF32 {
        let mut out = GrayF32::new(self.out_width, self.out_height, PAD_VALUE);
        out.bit_depth = src.bit_depth;
        let (sw, sh) = (src.width as usize, src.height as usize);
        let (rw, rh) = (self.resized_width as usize, self.resized_height as usize);
        let sx = sw as f32 / rw as f32;
        let sy = sh as f32 / rh as f32;
        // Per-column source indices and weights, computed once.
        let cols: Vec<(usize, usize, f32)> = (0..rw)
            .map(|x| {
                let fx = ((x as f32 + 0.5) * sx - 0.5).max(0.0);
                let x0 = (fx as usize).min(sw - 1);
                let x1 = (x0 + 1).min(sw - 1);
                (x0, x1, fx - x0 as f32)
            })
            .collect();
        let ow = self.out_width as usize;
        for y in 0..rh {
            let fy = ((y as f32 + 0.5) * sy - 0.5).max(0.0);
            let y0 = (fy as usize).min(sh - 1);
            let y1 = (y0 + 1).min(sh - 1);
            let wy = fy - y0 as f32;
            let row0 = &src.data[y0 * sw..(y0 + 1) * sw];
            let row1 = &src.data[y1 * sw..(y1 + 1) * sw];
            let start = (y + self.pad_top as usize) * ow + self.pad_left as usize;
            let dst = &mut out.data[start..start + rw];
            for (d, &(x0, x1, wx)) in dst.iter_mut().zip(&cols) {
                let top = row0[x0] + (row0[x1] - row0[x0]) * wx;
                let bottom = row1[x0] + (row1[x1] - row1[x0]) * wx;
                *d = top + (bottom - top) * wy;
            }
        }
        out
    }

    /// A box `[x1, y1, x2, y2]` in network-input pixels back to original pixels, clipped to the
    /// image.
    pub fn to_source(&self, b: [f32; 4]) -> [f32; 4] {
        let g = self.gain as f32;
        let (px, py) = (self.pad_left as f32, self.pad_top as f32);
        let (w, h) = (self.src_width as f32, self.src_height as f32);
        [
            ((b[0] - px) / g).clamp(0.0, w),
            ((b[1] - py) / g).clamp(0.0, h),
            ((b[2] - px) / g).clamp(0.0, w),
            ((b[3] - py) / g).clamp(0.0, h),
        ]
    }

    /// A box in original pixels to network-input pixels (for training targets).
    pub fn to_input(&self, b: [f32; 4]) -> [f32; 4] {
        let g = self.gain as f32;
        let (px, py) = (self.pad_left as f32, self.pad_top as f32);
        [b[0] * g + px, b[1] * g + py, b[2] * g + px, b[3] * g + py]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_matches_ultralytics_for_a_portrait_image() {
        // ultralytics LetterBox((416, 416)) on a 373x454 (w x h) image:
        // r = 416/454 = 0.91630; new_unpad = (round(341.78), 416) = (342, 416);
        // dw = 74/2 = 37 -> left = round(36.9) = 37, top = 0.
        let lb = Letterbox::square(373, 454, 416);
        assert_eq!((lb.resized_width, lb.resized_height), (342, 416));
        assert_eq!((lb.pad_left, lb.pad_top), (37, 0));
    }

    #[test]
    fn rect_pads_only_to_the_stride() {
        // ultralytics LetterBox((416, 416), auto=True, stride=32) on 640x480: r = 0.65,
        // new_unpad = (416, 312); dh = 104 % 32 = 8 -> 416x320 with 4 px on top.
        let lb = Letterbox::rect(640, 480, 416, 32);
        assert_eq!((lb.out_width, lb.out_height), (416, 320));
        assert_eq!((lb.resized_width, lb.resized_height), (416, 312));
        assert_eq!((lb.pad_left, lb.pad_top), (0, 4));
        // Odd remainders split like Python's round(dh -/+ 0.1): 373x454 -> 342 wide, dw = 10.
        let lb = Letterbox::rect(373, 454, 416, 32);
        assert_eq!((lb.out_width, lb.out_height, lb.pad_left), (352, 416, 5));
    }

    #[test]
    fn odd_padding_rounds_like_python() {
        // 416 - 413 = 3 -> dw = 1.5: left = round(1.4) = 1 (right gets 2).
        let lb = Letterbox::new(413, 416, 416, 416);
        assert_eq!(lb.resized_width, 413);
        assert_eq!(lb.pad_left, 1);
        // Half-to-even: 2.5 rounds to 2 in Python.
        let lb = Letterbox::new(5, 2, 5, 5);
        assert_eq!(lb.resized_height, 2);
        assert_eq!(lb.pad_top, 1); // round(1.5 - 0.1) = round(1.4) = 1
    }

    #[test]
    fn boxes_round_trip() {
        for &(w, h) in &[(373u32, 454u32), (800, 600), (100, 417), (416, 416), (3000, 2000)] {
            let lb = Letterbox::square(w, h, 416);
            let b = [w as f32 * 0.1, h as f32 * 0.2, w as f32 * 0.7, h as f32 * 0.9];
            let back = lb.to_source(lb.to_input(b));
            for i in 0..4 {
                assert!(
                    (back[i] - b[i]).abs() < 1e-3 * w.max(h) as f32,
                    "{w}x{h}: {b:?} -> {back:?}"
                );
            }
        }
    }

    #[test]
    fn padding_is_114_and_content_is_kept() {
        let src = GrayF32::new(200, 100, 0.5);
        let lb = Letterbox::square(200, 100, 416);
        let out = lb.apply(&src);
        assert_eq!((out.width, out.height), (416, 416));
        assert_eq!(lb.pad_top, 104);
        assert_eq!(out.get(10, 10), PAD_VALUE);
        assert_eq!(out.get(10, 415), PAD_VALUE);
        assert!((out.get(208, 208) - 0.5).abs() < 1e-6);
        assert!((out.get(0, 104) - 0.5).abs() < 1e-6);
        assert_eq!(out.get(0, 103), PAD_VALUE);
    }

    #[test]
    fn resize_preserves_a_gradient() {
        // A horizontal ramp stays monotone and keeps its mean through a 2x downscale.
        let (w, h) = (64u32, 32u32);
        let data: Vec<f32> = (0..h).flat_map(|_| (0..w).map(|x| x as f32 / 63.0)).collect();
        let src = GrayF32 { width: w, height: h, data, bit_depth: 16 };
        let out = Letterbox::square(w, h, 32).apply(&src);
        let row: Vec<f32> = (0..32).map(|x| out.get(x, 12)).collect();
        assert!(row.windows(2).all(|p| p[1] > p[0]));
        let mean: f32 = row.iter().sum::<f32>() / 32.0;
        assert!((mean - 0.5).abs() < 0.01);
        assert_eq!(out.bit_depth, 16);
    }
}
