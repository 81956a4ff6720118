//! The records of a FracAtlas-style dataset: per-image metadata (a `dataset.csv` row) and
//! fracture boxes in pixels. Shared by the phantom writer and the loader.

use serde::{Deserialize, Serialize};

/// The body-part columns of `dataset.csv`, in the order FracAtlas lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BodyPart {
    Hand,
    Leg,
    Hip,
    Shoulder,
}

impl BodyPart {
    pub const ALL: [BodyPart; 4] =
        [BodyPart::Hand, BodyPart::Leg, BodyPart::Hip, BodyPart::Shoulder];

    pub fn name(self) -> &'static str {
        match self {
            BodyPart::Hand => "hand",
            BodyPart::Leg => "leg",
            BodyPart::Hip => "hip",
            BodyPart::Shoulder => "shoulder",
        }
    }
}

/// The projection columns of `dataset.csv`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum View {
    Frontal,
    Lateral,
    Oblique,
}

/// One row of `dataset.csv`:
/// `image_id,hand,leg,hip,shoulder,mixed,hardware,multiscan,fractured,fracture_count,frontal,lateral,oblique`.
/// FracAtlas stores every flag as 0/1 and `image_id` with its file extension (`IMG0000019.jpg`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageMeta {
    pub image_id: String,
    pub hand: u8,
    pub leg: u8,
    pub hip: u8,
    pub shoulder: u8,
    /// More than one body part in the picture.
    pub mixed: u8,
    /// Metal implants, plates or screws visible.
    pub hardware: u8,
    /// Several views stitched into one image.
    pub multiscan: u8,
    pub fractured: u8,
    pub fracture_count: u32,
    pub frontal: u8,
    pub lateral: u8,
    pub oblique: u8,
}

impl ImageMeta {
    /// Column names exactly as FracAtlas' `dataset.csv` header has them.
    pub const COLUMNS: [&'static str; 13] = [
        "image_id",
        "hand",
        "leg",
        "hip",
        "shoulder",
        "mixed",
        "hardware",
        "multiscan",
        "fractured",
        "fracture_count",
        "frontal",
        "lateral",
        "oblique",
    ];

    /// Body parts flagged on this image, in `BodyPart::ALL` order.
    pub fn body_parts(&self) -> Vec<BodyPart> {
        BodyPart::ALL.into_iter().filter(|p| self.has_part(*p)).collect()
    }

    pub fn has_part(&self, part: BodyPart) -> bool {
        match part {
            BodyPart::Hand => self.hand != 0,
            BodyPart::Leg => self.leg != 0,
            BodyPart::Hip => self.hip != 0,
            BodyPart::Shoulder => self.shoulder != 0,
        }
    }

    /// The single stratum used for splitting: the first flagged part, `mixed` when several,
    /// `unknown` when none.
    pub fn primary_part_name(&self) -> &'static str {
        let parts = self.body_parts();
        match parts.as_slice() {
            [] => "unknown",
            [one] if self.mixed == 0 => one.name(),
            _ => "mixed",
        }
    }

    pub fn is_fractured(&self) -> bool {
        self.fractured != 0
    }
}

/// A fracture box in pixel coordinates of the original image, corners `x1 <= x2`, `y1 <= y2`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PixelBox {
    pub x1: f32,
    pub y1: f32,
    pub x2: f32,
    pub y2: f32,
}

impl PixelBox {
    pub fn width(&self) -> f32 {
        self.x2 - self.x1
    }
    pub fn height(&self) -> f32 {
        self.y2 - self.y1
    }
    pub fn area(&self) -> f32 {
        self.width() * self.height()
    }
    pub fn center(&self) -> (f32, f32) {
        ((self.x1 + self.x2) / 2.0, (self.y1 + self.y2) / 2.0)
    }
}
