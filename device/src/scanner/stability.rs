//! When is the picture worth capturing? After it has changed (a new exposure or a plate
//! placed) and then held still for `stable_frames` consecutive frames. The change between
//! frames is the mean absolute difference of a subsampled grid, as a fraction of full
//! scale; a change in size counts as a change.

use super::frame::Gray16;

/// Every how many pixels (in x and y) the difference is sampled.
const GRID: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StabilityConfig {
    /// Frames in a row whose change stays at or below `stable_threshold`.
    pub stable_frames: u32,
    /// Mean absolute frame-to-frame change (fraction of full scale) that still counts as
    /// still.
    pub stable_threshold: f64,
    /// Change that re-arms the detector after a capture (the next picture).
    pub change_threshold: f64,
}

/// Feeds frames, says when to capture: once per change-then-still episode.
#[derive(Debug, Clone)]
pub struct StabilityDetector {
    config: StabilityConfig,
    prev: Option<Gray16>,
    still_for: u32,
    /// A change happened since the last capture (not at start: a static scene at start-up
    /// is not a new picture).
    armed: bool,
}

impl StabilityDetector {
    pub fn new(config: StabilityConfig) -> Self {
        Self { config, prev: None, still_for: 0, armed: false }
    }

    /// True when this frame should be captured.
    pub fn feed(&mut self, frame: &Gray16) -> bool {
        let change = match &self.prev {
            Some(prev) => mean_abs_change(prev, frame),
            None => 0.0,
        };
        if self.prev.is_some() && change >= self.config.change_threshold {
            self.armed = true;
        }
        if self.prev.is_some() && change <= self.config.stable_threshold {
            self.still_for += 1;
        } else {
            self.still_for = 0;
        }
        self.prev = Some(frame.clone());
        if self.armed && self.still_for >= self.config.stable_frames {
            self.armed = false;
            return true;
        }
        false
    }
}

/// Mean |a − b| over a grid, in [0, 1]; 1 when the sizes differ.
pub fn mean_abs_change(a: &Gray16, b: &Gray16) -> f64 {
    if (a.width, a.height) != (b.width, b.height) || a.pixels.is_empty() {
        return 1.0;
    }
    let w = a.width as usize;
    let (mut sum, mut n) = (0_u64, 0_u64);
    for y in (0..a.height as usize).step_by(GRID) {
        for x in (0..w).step_by(GRID) {
            let i = y * w + x;
            sum += u64::from(a.pixels[i].abs_diff(b.pixels[i]));
            n += 1;
        }
    }
    sum as f64 / (n.max(1) as f64 * 65535.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flat(v: u16) -> Gray16 {
        Gray16 { width: 8, height: 8, pixels: vec![v; 64] }
    }

    #[test]
    fn captures_once_per_change_then_still() {
        let mut d = StabilityDetector::new(StabilityConfig {
            stable_frames: 3,
            stable_threshold: 0.001,
            change_threshold: 0.05,
        });
        // A static scene at start is not captured.
        assert!((0..10).all(|_| !d.feed(&flat(100))));
        // A new picture: captured after three still frames, once.
        let caught: Vec<bool> = (0..8).map(|_| d.feed(&flat(40_000))).collect();
        assert_eq!(caught.iter().filter(|c| **c).count(), 1);
        assert_eq!(caught.iter().position(|c| *c), Some(3));
        // Small noise does not re-arm it.
        assert!((0..8).all(|i| !d.feed(&flat(40_000 + (i % 2) * 10))));
        // Another picture: captured again.
        assert!((0..8).any(|_| d.feed(&flat(5_000))));
    }
}
