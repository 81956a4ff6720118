//! The real scanner: a V4L2 capture device (`/dev/videoN`) through the `v4l` crate, memory-
//! mapped streaming, in the configured format and size (the driver may pick the nearest it
//! supports; the frame says what it delivered).

use std::path::Path;

use v4l::buffer::Type;
use v4l::io::mmap::Stream;
use v4l::io::traits::CaptureStream;
use v4l::video::Capture;
use v4l::{Device, FourCC};

use super::frame::{PixelFormat, RawFrame};
use super::source::{FrameSource, SourceError};

/// Buffers queued with the driver.
const BUFFERS: u32 = 4;

pub struct V4l2Source {
    path: String,
    format: PixelFormat,
    width: u32,
    height: u32,
    stride: u32,
    stream: Stream<'static>,
    // Keeps the device open for the stream's lifetime.
    _device: Device,
}

impl V4l2Source {
    /// Opens `path` and asks for `format` at `width`×`height` (0 keeps the driver's size).
    pub fn open(
        path: &Path,
        format: PixelFormat,
        width: u32,
        height: u32,
    ) -> Result<Self, SourceError> {
        let name = path.display().to_string();
        let io = |source| SourceError::Io { path: name.clone(), source };
        let device = Device::with_path(path).map_err(io)?;
        let mut fmt = device.format().map_err(io)?;
        fmt.fourcc = FourCC::new(&format.fourcc());
        if width > 0 && height > 0 {
            fmt.width = width;
            fmt.height = height;
        }
        let fmt = device.set_format(&fmt).map_err(io)?;
        let actual = PixelFormat::from_fourcc(fmt.fourcc.repr).ok_or_else(|| {
            SourceError::Invalid(format!(
                "{name}: asked for {format}, the driver offers {} (supported here: GREY, Y16, \
                 YUYV, MJPG)",
                fmt.fourcc
            ))
        })?;
        let stream = Stream::with_buffers(&device, Type::VideoCapture, BUFFERS).map_err(io)?;
        Ok(Self {
            path: name,
            format: actual,
            width: fmt.width,
            height: fmt.height,
            stride: fmt.stride,
            stream,
            _device: device,
        })
    }
}

impl FrameSource for V4l2Source {
    fn next_frame(&mut self) -> Result<Option<RawFrame>, SourceError> {
        let (buf, meta) = self
            .stream
            .next()
            .map_err(|source| SourceError::Io { path: self.path.clone(), source })?;
        let used = (meta.bytesused as usize).min(buf.len());
        let used = if used == 0 { buf.len() } else { used };
        Ok(Some(RawFrame {
            format: self.format,
            width: self.width,
            height: self.height,
            stride: if self.format == PixelFormat::Mjpg { 0 } else { self.stride },
            data: buf[..used].to_vec(),
        }))
    }

    fn describe(&self) -> String {
        format!("V4L2 {} ({} {}x{})", self.path, self.format, self.width, self.height)
    }
}
