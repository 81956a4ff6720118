//! The scanner source: frames from a V4L2 device (or a replay folder standing in for one)
//! become 16-bit PNG files in `capture/`, so a scanned radiograph takes exactly the path a
//! dropped file takes (exactly-once queue, decoding, inference, archive). A frame is
//! captured when the picture has changed and then held still ([`stability`]), or on a
//! trigger (SIGUSR1), as `[scanner] mode` says. The file is written under a hidden name and
//! renamed into place, so ingestion never sees it half-written.
//!
//! - [`frame`]: driver bytes (GREY, Y16, YUYV, MJPG) to 16-bit grey;
//! - [`source`]: the [`source::FrameSource`] trait and the replay fake;
//! - [`v4l2`]: the real device.

pub mod frame;
pub mod source;
pub mod stability;
pub mod v4l2;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use frame::{Gray16, PixelFormat};
use source::{FrameSource, ReplaySource, SourceError};
use stability::{StabilityConfig, StabilityDetector};

/// `[scanner]` in the configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScannerConfig {
    /// Off by default: the capture folder is the only source.
    pub enabled: bool,
    /// The V4L2 device (`/dev/video0`), or `replay:DIR` to play frame files from DIR
    /// (tests, demos; see [`source::ReplaySource`]).
    pub device: String,
    /// Pixel format to ask the driver for: GREY, Y16, YUYV or MJPG.
    pub format: String,
    /// Frame size to ask for (0 keeps the driver's).
    pub width: u32,
    pub height: u32,
    /// `stable`: capture when the picture changed and then held still; `trigger`: capture
    /// the next frame after SIGUSR1.
    pub mode: String,
    /// Still frames in a row before a capture.
    pub stable_frames: u32,
    /// Mean frame-to-frame change (fraction of full scale) that still counts as still.
    pub stable_threshold: f64,
    /// Change that marks a new picture after a capture.
    pub change_threshold: f64,
    /// Pause between replayed frames (a camera paces itself).
    pub replay_interval_ms: u64,
}

impl Default for ScannerConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            device: "/dev/video0".into(),
            format: "Y16".into(),
            width: 0,
            height: 0,
            mode: "stable".into(),
            stable_frames: 8,
            stable_threshold: 0.004,
            change_threshold: 0.03,
            replay_interval_ms: 30,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ScannerError {
    #[error("scanner: {0}")]
    Source(#[from] SourceError),
    #[error("scanner: {0}")]
    Config(String),
    #[error("scanner: cannot start its thread: {0}")]
    Thread(std::io::Error),
}

/// When to capture.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CapturePolicy {
    Stable(StabilityConfig),
    Trigger,
}

impl ScannerConfig {
    pub fn policy(&self) -> Result<CapturePolicy, ScannerError> {
        match self.mode.as_str() {
            "stable" => Ok(CapturePolicy::Stable(StabilityConfig {
                stable_frames: self.stable_frames.max(1),
                stable_threshold: self.stable_threshold,
                change_threshold: self.change_threshold,
            })),
            "trigger" => Ok(CapturePolicy::Trigger),
            other => Err(ScannerError::Config(format!(
                "[scanner] mode {other:?}: expected \"stable\" or \"trigger\""
            ))),
        }
    }

    /// Opens the configured source.
    pub fn open_source(&self) -> Result<Box<dyn FrameSource>, ScannerError> {
        if let Some(dir) = self.device.strip_prefix("replay:") {
            let interval = Duration::from_millis(self.replay_interval_ms);
            return Ok(Box::new(ReplaySource::open(Path::new(dir), interval)?));
        }
        let format: PixelFormat = self
            .format
            .parse()
            .map_err(|e: frame::FrameError| ScannerError::Config(e.to_string()))?;
        Ok(Box::new(v4l2::V4l2Source::open(
            Path::new(&self.device),
            format,
            self.width,
            self.height,
        )?))
    }
}

/// What a scanner run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ScannerStats {
    pub frames: u64,
    pub captured: u64,
    pub bad_frames: u64,
    pub source_errors: u64,
}

/// Starts the scanner thread; it ends when `stop` is set or the source ends.
pub fn spawn(
    config: &ScannerConfig,
    capture_dir: PathBuf,
    stop: Arc<AtomicBool>,
    trigger: Arc<AtomicBool>,
) -> Result<JoinHandle<ScannerStats>, ScannerError> {
    let policy = config.policy()?;
    let mut source = config.open_source()?;
    info!(source = %source.describe(), mode = %config.mode, "scanner started");
    std::thread::Builder::new()
        .name("scanner".into())
        .spawn(move || run(source.as_mut(), policy, &capture_dir, &stop, &trigger))
        .map_err(ScannerError::Thread)
}

/// The capture loop (blocking): frames in, PNG files into `capture_dir` out.
pub fn run(
    source: &mut dyn FrameSource,
    policy: CapturePolicy,
    capture_dir: &Path,
    stop: &AtomicBool,
    trigger: &AtomicBool,
) -> ScannerStats {
    let mut stats = ScannerStats::default();
    let mut detector = match policy {
        CapturePolicy::Stable(c) => Some(StabilityDetector::new(c)),
        CapturePolicy::Trigger => None,
    };
    let mut backoff = Duration::from_millis(200);
    while !stop.load(Ordering::Relaxed) {
        let raw = match source.next_frame() {
            Ok(Some(raw)) => {
                backoff = Duration::from_millis(200);
                raw
            }
            Ok(None) => break,
            Err(e) => {
                stats.source_errors += 1;
                warn!(error = %e, "scanner frame not read; retrying in {backoff:?}");
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(30));
                continue;
            }
        };
        stats.frames += 1;
        let gray = match raw.to_gray16() {
            Ok(g) => g,
            Err(e) => {
                stats.bad_frames += 1;
                warn!(error = %e, "scanner frame unusable");
                continue;
            }
        };
        let capture = match &mut detector {
            Some(d) => d.feed(&gray),
            None => trigger.swap(false, Ordering::Relaxed),
        };
        if capture {
            stats.captured += 1;
            match write_capture(capture_dir, &gray, stats.captured) {
                Ok(path) => info!(file = %path.display(), "scanner captured a frame"),
                Err(e) => warn!(error = %e, "scanner capture not written"),
            }
        }
    }
    info!(frames = stats.frames, captured = stats.captured, "scanner stopped");
    stats
}

/// Writes `capture_dir/scan-<time>-<n>.png` (16-bit) through a hidden temporary name.
pub fn write_capture(capture_dir: &Path, gray: &Gray16, n: u64) -> std::io::Result<PathBuf> {
    let stamp: String = crate::clock::now_rfc3339()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '.')
        .collect();
    let name = format!("scan-{stamp}-{n}.png");
    let tmp = capture_dir.join(format!(".{name}.partial"));
    let img = image::ImageBuffer::<image::Luma<u16>, _>::from_raw(
        gray.width,
        gray.height,
        gray.pixels.clone(),
    )
    .ok_or_else(|| std::io::Error::other("frame size does not match its pixels"))?;
    img.save_with_format(&tmp, image::ImageFormat::Png).map_err(std::io::Error::other)?;
    std::fs::File::open(&tmp)?.sync_all()?;
    let dst = capture_dir.join(name);
    std::fs::rename(&tmp, &dst)?;
    Ok(dst)
}
