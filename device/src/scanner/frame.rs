//! One captured frame as the driver delivered it, and its conversion to a 16-bit grey
//! picture: GREY (8-bit luma), Y16 (16-bit little-endian luma), YUYV (4:2:2, the Y samples
//! are kept) and MJPG (a JPEG per frame). Rows may be padded (`stride` bytes per row).

use std::fmt;
use std::str::FromStr;

/// Pixel formats a scanner may deliver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelFormat {
    Grey,
    Y16,
    Yuyv,
    Mjpg,
}

impl PixelFormat {
    /// The V4L2 four-character code.
    pub fn fourcc(self) -> [u8; 4] {
        match self {
            PixelFormat::Grey => *b"GREY",
            PixelFormat::Y16 => *b"Y16 ",
            PixelFormat::Yuyv => *b"YUYV",
            PixelFormat::Mjpg => *b"MJPG",
        }
    }

    /// From a V4L2 four-character code.
    pub fn from_fourcc(code: [u8; 4]) -> Option<Self> {
        match &code {
            b"GREY" => Some(PixelFormat::Grey),
            b"Y16 " => Some(PixelFormat::Y16),
            b"YUYV" => Some(PixelFormat::Yuyv),
            b"MJPG" => Some(PixelFormat::Mjpg),
            _ => None,
        }
    }

    /// Bytes per pixel of the packed formats (MJPG is compressed: none).
    fn bytes_per_pixel(self) -> Option<usize> {
        match self {
            PixelFormat::Grey => Some(1),
            PixelFormat::Y16 | PixelFormat::Yuyv => Some(2),
            PixelFormat::Mjpg => None,
        }
    }
}

impl fmt::Display for PixelFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(String::from_utf8_lossy(&self.fourcc()).trim_end())
    }
}

impl FromStr for PixelFormat {
    type Err = FrameError;
    fn from_str(s: &str) -> Result<Self, FrameError> {
        match s.to_ascii_uppercase().as_str() {
            "GREY" | "GRAY" => Ok(PixelFormat::Grey),
            "Y16" => Ok(PixelFormat::Y16),
            "YUYV" => Ok(PixelFormat::Yuyv),
            "MJPG" | "MJPEG" => Ok(PixelFormat::Mjpg),
            other => Err(FrameError::Format(format!(
                "unknown pixel format {other:?} (expected GREY, Y16, YUYV or MJPG)"
            ))),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("{0}")]
    Format(String),
    #[error("{format} frame {width}x{height} needs {needed} bytes, got {got}")]
    Short { format: PixelFormat, width: u32, height: u32, needed: usize, got: usize },
    #[error("MJPG frame: {0}")]
    Jpeg(String),
}

/// Bytes from the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawFrame {
    pub format: PixelFormat,
    pub width: u32,
    pub height: u32,
    /// Bytes per row (0: packed, `width × bytes per pixel`).
    pub stride: u32,
    pub data: Vec<u8>,
}

/// A grey picture, full 16-bit range, row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gray16 {
    pub width: u32,
    pub height: u32,
    pub pixels: Vec<u16>,
}

impl RawFrame {
    /// The frame as 16-bit grey (8-bit sources are scaled by 257, so white stays white).
    pub fn to_gray16(&self) -> Result<Gray16, FrameError> {
        let (w, h) = (self.width as usize, self.height as usize);
        let Some(bpp) = self.format.bytes_per_pixel() else {
            return self.decode_mjpg();
        };
        let stride = if self.stride == 0 { w * bpp } else { self.stride as usize };
        let needed = stride * h.saturating_sub(1) + w * bpp;
        if w == 0 || h == 0 || stride < w * bpp || self.data.len() < needed {
            return Err(FrameError::Short {
                format: self.format,
                width: self.width,
                height: self.height,
                needed,
                got: self.data.len(),
            });
        }
        let mut pixels = Vec::with_capacity(w * h);
        for row in self.data.chunks(stride).take(h) {
            let row = &row[..w * bpp];
            match self.format {
                PixelFormat::Grey => pixels.extend(row.iter().map(|&v| u16::from(v) * 257)),
                PixelFormat::Y16 => {
                    pixels.extend(row.chunks_exact(2).map(|p| u16::from_le_bytes([p[0], p[1]])))
                }
                // Y0 U Y1 V: the luma is every other byte.
                PixelFormat::Yuyv => {
                    pixels.extend(row.chunks_exact(2).map(|p| u16::from(p[0]) * 257))
                }
                PixelFormat::Mjpg => unreachable!("compressed formats return above"),
            }
        }
        Ok(Gray16 { width: self.width, height: self.height, pixels })
    }

    fn decode_mjpg(&self) -> Result<Gray16, FrameError> {
        let img = image::load_from_memory_with_format(&self.data, image::ImageFormat::Jpeg)
            .map_err(|e| FrameError::Jpeg(e.to_string()))?;
        let luma = img.to_luma16();
        Ok(Gray16 { width: luma.width(), height: luma.height(), pixels: luma.into_raw() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(format: PixelFormat, w: u32, h: u32, stride: u32, data: Vec<u8>) -> RawFrame {
        RawFrame { format, width: w, height: h, stride, data }
    }

    #[test]
    fn packed_formats_convert_with_padding() {
        let grey = frame(PixelFormat::Grey, 2, 2, 3, vec![0, 255, 9, 128, 1, 9]);
        assert_eq!(grey.to_gray16().expect("grey").pixels, vec![0, 65535, 128 * 257, 257]);
        let y16 = frame(PixelFormat::Y16, 2, 1, 0, vec![0x34, 0x12, 0xff, 0xff]);
        assert_eq!(y16.to_gray16().expect("y16").pixels, vec![0x1234, 0xffff]);
        let yuyv = frame(PixelFormat::Yuyv, 2, 1, 0, vec![10, 99, 20, 77]);
        assert_eq!(yuyv.to_gray16().expect("yuyv").pixels, vec![10 * 257, 20 * 257]);
        let short = frame(PixelFormat::Y16, 4, 4, 0, vec![0; 10]);
        assert!(matches!(short.to_gray16(), Err(FrameError::Short { .. })));
    }

    #[test]
    fn mjpg_decodes_and_garbage_is_an_error() {
        let img = image::GrayImage::from_pixel(16, 8, image::Luma([200]));
        let mut jpeg = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut jpeg), image::ImageFormat::Jpeg)
            .expect("encode");
        let g = frame(PixelFormat::Mjpg, 16, 8, 0, jpeg).to_gray16().expect("mjpg");
        assert_eq!((g.width, g.height), (16, 8));
        assert!(g.pixels.iter().all(|&v| (v as i32 - 200 * 257).abs() < 3 * 257));
        assert!(frame(PixelFormat::Mjpg, 16, 8, 0, vec![1, 2, 3]).to_gray16().is_err());
        assert_eq!("y16".parse::<PixelFormat>().expect("parse"), PixelFormat::Y16);
        assert_eq!(PixelFormat::from_fourcc(*b"YUYV"), Some(PixelFormat::Yuyv));
    }
}
