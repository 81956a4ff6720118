//! Where frames come from: the [`FrameSource`] trait, with two implementations — the real
//! V4L2 device ([`super::v4l2::V4l2Source`]) and [`ReplaySource`], which plays frame files
//! from a folder (the fake used by tests and demos where no scanner is attached).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::frame::{PixelFormat, RawFrame};

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{0}")]
    Invalid(String),
}

/// A stream of frames.
pub trait FrameSource: Send {
    /// The next frame; `Ok(None)` when the source has ended (a replay ran out).
    fn next_frame(&mut self) -> Result<Option<RawFrame>, SourceError>;
    /// For logs: what this source is.
    fn describe(&self) -> String;
}

/// Frame files played in name order. Each file holds one frame's bytes as the driver
/// would deliver them; its name says how to read them: `NAME.WIDTHxHEIGHT.FORMAT`, e.g.
/// `0001.640x480.Y16` or `0002.1024x768.MJPG` (FORMAT: GREY, Y16, YUYV, MJPG). Frames are
/// paced `interval` apart, like a camera's frame rate.
pub struct ReplaySource {
    dir: PathBuf,
    files: Vec<PathBuf>,
    next: usize,
    interval: Duration,
}

impl ReplaySource {
    pub fn open(dir: &Path, interval: Duration) -> Result<Self, SourceError> {
        let io = |source| SourceError::Io { path: dir.display().to_string(), source };
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(io)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        Ok(Self { dir: dir.to_path_buf(), files, next: 0, interval })
    }
}

/// Width, height and format from `NAME.WxH.FORMAT`.
pub fn parse_frame_name(path: &Path) -> Result<(u32, u32, PixelFormat), SourceError> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let bad = || {
        SourceError::Invalid(format!(
            "{}: a replay frame is named NAME.WIDTHxHEIGHT.FORMAT (e.g. 0001.640x480.Y16)",
            path.display()
        ))
    };
    let mut parts = name.rsplitn(3, '.');
    let format = parts.next().ok_or_else(bad)?;
    let size = parts.next().ok_or_else(bad)?;
    parts.next().ok_or_else(bad)?;
    let (w, h) = size.split_once('x').ok_or_else(bad)?;
    let format: PixelFormat = format.parse().map_err(|_| bad())?;
    Ok((w.parse().map_err(|_| bad())?, h.parse().map_err(|_| bad())?, format))
}

impl FrameSource for ReplaySource {
    fn next_frame(&mut self) -> Result<Option<RawFrame>, SourceError> {
        let Some(path) = self.files.get(self.next).cloned() else {
            return Ok(None);
        };
        self.next += 1;
        if self.next > 1 {
            std::thread::sleep(self.interval);
        }
        let (width, height, format) = parse_frame_name(&path)?;
        let data = std::fs::read(&path)
            .map_err(|source| SourceError::Io { path: path.display().to_string(), source })?;
        Ok(Some(RawFrame { format, width, height, stride: 0, data }))
    }

    fn describe(&self) -> String {
        format!("replay of {} frame(s) from {}", self.files.len(), self.dir.display())
    }
}
