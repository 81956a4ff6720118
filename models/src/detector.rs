//! What every detector hands back to its callers (`fracture predict`, evaluation, the device
//! daemon): boxes in original image pixels with a score and a class, and the trait that
//! turns one decoded radiograph into them, whatever the architecture or backend.

use serde::{Deserialize, Serialize};

use crate::boxes::Xyxy;
use crate::pixels::GrayF32;

/// One detected box in the original image's pixels.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub x1: f32,
    pub y1: f32,
    pub x2: f32,
    pub y2: f32,
    pub score: f32,
    pub class: i64,
}

impl Finding {
    pub fn new(bbox: Xyxy, score: f32, class: i64) -> Self {
        Self { x1: bbox[0], y1: bbox[1], x2: bbox[2], y2: bbox[3], score, class }
    }

    pub fn bbox(&self) -> Xyxy {
        [self.x1, self.y1, self.x2, self.y2]
    }
}

/// A loaded model that finds boxes on one gray radiograph at a time.
pub trait Detector {
    type Error: std::error::Error + Send + Sync + 'static;

    /// Class names, indexed by [`Finding::class`].
    fn classes(&self) -> &[String];

    /// Boxes on `image`, highest score first.
    fn detect(&self, image: &GrayF32) -> Result<Vec<Finding>, Self::Error>;
}
