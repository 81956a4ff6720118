//! Decoding radiograph files into one gray `f32` plane in [0, 1], keeping the full range of
//! 16-bit images (a 12-bit detector's values are not squeezed through 8 bits), with size limits
//! checked from the header before any pixel is decoded.

use std::io::Cursor;
use std::path::Path;

use image::{DynamicImage, ImageReader, Limits};

/// A gray image, row-major, values in [0, 1].
#[derive(Debug, Clone, PartialEq)]
pub struct GrayF32 {
    pub width: u32,
    pub height: u32,
    pub data: Vec<f32>,
    /// Bits per sample of the source (8 or 16).
    pub bit_depth: u8,
}

impl GrayF32 {
    pub fn new(width: u32, height: u32, fill: f32) -> Self {
        Self { width, height, data: vec![fill; width as usize * height as usize], bit_depth: 8 }
    }

    pub fn from_u8(width: u32, height: u32, samples: &[u8]) -> Self {
        Self {
            width,
            height,
            data: samples.iter().map(|&v| f32::from(v) / 255.0).collect(),
            bit_depth: 8,
        }
    }

    pub fn from_u16(width: u32, height: u32, samples: &[u16]) -> Self {
        Self {
            width,
            height,
            data: samples.iter().map(|&v| f32::from(v) / 65535.0).collect(),
            bit_depth: 16,
        }
    }

    #[inline]
    pub fn get(&self, x: u32, y: u32) -> f32 {
        self.data[y as usize * self.width as usize + x as usize]
    }

    /// Back to 8 bits (rounded), e.g. for previews.
    pub fn to_u8(&self) -> Vec<u8> {
        self.data.iter().map(|&v| (v.clamp(0.0, 1.0) * 255.0).round() as u8).collect()
    }
}

/// Upper bounds checked on the header before decoding (decompression bombs).
#[derive(Debug, Clone, Copy)]
pub struct DecodeLimits {
    pub max_width: u32,
    pub max_height: u32,
    /// Bytes the decoder may allocate.
    pub max_alloc: u64,
}

impl Default for DecodeLimits {
    /// Large enough for any radiograph (a 43×43 cm detector at 100 µm is ~4300 px per side).
    fn default() -> Self {
        Self { max_width: 16_384, max_height: 16_384, max_alloc: 1 << 30 }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PixelError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("unrecognised or corrupt image: {0}")]
    Decode(String),
    #[error("image is {width}x{height}, over the {max_width}x{max_height} limit")]
    TooLarge { width: u32, height: u32, max_width: u32, max_height: u32 },
}

/// Decodes PNG / JPEG / TIFF bytes (8 or 16 bit, gray or colour) to one gray plane.
pub fn decode_gray(bytes: &[u8]) -> Result<GrayF32, PixelError> {
    decode_gray_with(bytes, DecodeLimits::default())
}

pub fn decode_gray_with(bytes: &[u8], limits: DecodeLimits) -> Result<GrayF32, PixelError> {
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| PixelError::Decode(e.to_string()))?;
    let (width, height) = {
        let probe = ImageReader::new(Cursor::new(bytes))
            .with_guessed_format()
            .map_err(|e| PixelError::Decode(e.to_string()))?;
        probe.into_dimensions().map_err(|e| PixelError::Decode(e.to_string()))?
    };
    if width > limits.max_width || height > limits.max_height {
        return Err(PixelError::TooLarge {
            width,
            height,
            max_width: limits.max_width,
            max_height: limits.max_height,
        });
    }
    let mut reader = reader;
    let mut decoder_limits = Limits::default();
    decoder_limits.max_image_width = Some(limits.max_width);
    decoder_limits.max_image_height = Some(limits.max_height);
    decoder_limits.max_alloc = Some(limits.max_alloc);
    reader.limits(decoder_limits);
    let image = reader.decode().map_err(|e| PixelError::Decode(e.to_string()))?;
    Ok(to_gray(image))
}

/// Reads and decodes a file; errors name the path.
pub fn read_gray(path: &Path) -> Result<GrayF32, PixelError> {
    let bytes = std::fs::read(path)
        .map_err(|source| PixelError::Io { path: path.display().to_string(), source })?;
    decode_gray(&bytes)
}

fn to_gray(image: DynamicImage) -> GrayF32 {
    let (width, height) = (image.width(), image.height());
    match image {
        DynamicImage::ImageLuma8(buf) => GrayF32::from_u8(width, height, buf.as_raw()),
        DynamicImage::ImageLuma16(buf) => GrayF32::from_u16(width, height, buf.as_raw()),
        img @ (DynamicImage::ImageLumaA16(_)
        | DynamicImage::ImageRgb16(_)
        | DynamicImage::ImageRgba16(_)) => {
            let buf = img.into_luma16();
            GrayF32::from_u16(width, height, buf.as_raw())
        }
        other => {
            let buf = other.into_luma8();
            GrayF32::from_u8(width, height, buf.as_raw())
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use image::{ImageBuffer, Luma};

    fn encode_png16(w: u32, h: u32, f: impl Fn(u32, u32) -> u16) -> Vec<u8> {
        let img: ImageBuffer<Luma<u16>, Vec<u16>> =
            ImageBuffer::from_fn(w, h, |x, y| Luma([f(x, y)]));
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png).unwrap();
        out.into_inner()
    }

    #[test]
    fn sixteen_bit_keeps_every_level() {
        // Neighbouring 16-bit levels must stay distinct after decoding.
        let bytes = encode_png16(4, 1, |x, _| 1000 + x as u16);
        let g = decode_gray(&bytes).unwrap();
        assert_eq!(g.bit_depth, 16);
        for x in 0..4 {
            let expected = f32::from(1000 + x as u16) / 65535.0;
            assert_eq!(g.get(x, 0), expected);
        }
        assert!(g.get(1, 0) > g.get(0, 0));
    }

    #[test]
    fn eight_bit_gray_maps_to_unit_range() {
        let img: ImageBuffer<Luma<u8>, Vec<u8>> =
            ImageBuffer::from_fn(2, 1, |x, _| Luma([if x == 0 { 0 } else { 255 }]));
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png).unwrap();
        let g = decode_gray(out.get_ref()).unwrap();
        assert_eq!(g.data, vec![0.0, 1.0]);
        assert_eq!(g.bit_depth, 8);
    }

    #[test]
    fn oversized_header_is_refused_before_decoding() {
        let bytes = encode_png16(64, 32, |_, _| 0);
        let limits = DecodeLimits { max_width: 32, max_height: 32, max_alloc: 1 << 20 };
        match decode_gray_with(&bytes, limits) {
            Err(PixelError::TooLarge { width: 64, height: 32, .. }) => {}
            other => panic!("expected TooLarge, got {other:?}"),
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(decode_gray(b"not an image at all").is_err());
        assert!(decode_gray(&[]).is_err());
        let mut truncated = encode_png16(16, 16, |x, y| (x * y) as u16);
        truncated.truncate(truncated.len() / 2);
        assert!(decode_gray(&truncated).is_err());
    }
}
