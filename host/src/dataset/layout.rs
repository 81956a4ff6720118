//! Where things live in a FracAtlas-style dataset folder (the real FracAtlas and `fracture
//! synth` output alike).
//!
//! ```text
//! images/Fractured/*.jpg            images/Non_fractured/*.jpg
//! Annotations/YOLO/<stem>.txt       class cx cy w h (normalised); empty for negatives
//! Annotations/COCO JSON/COCO_fracture_masks.json
//! Annotations/PASCAL VOC/<stem>.xml
//! dataset.csv                       image_id,hand,leg,hip,shoulder,mixed,hardware,...
//! Utilities/Fracture Split/{train,valid,test}.csv   (fractured images only; column image_id)
//! ```

use std::path::{Path, PathBuf};

pub const FRACTURED_DIR: &str = "images/Fractured";
pub const NON_FRACTURED_DIR: &str = "images/Non_fractured";
pub const YOLO_DIR: &str = "Annotations/YOLO";
pub const COCO_DIR: &str = "Annotations/COCO JSON";
pub const COCO_FILE: &str = "COCO_fracture_masks.json";
pub const VOC_DIR: &str = "Annotations/PASCAL VOC";
pub const METADATA_CSV: &str = "dataset.csv";
pub const SPLIT_DIR: &str = "Utilities/Fracture Split";
pub const SPLIT_NAMES: [&str; 3] = ["train", "valid", "test"];
/// FracAtlas' single class.
pub const CLASS_NAME: &str = "fracture";

/// Paths inside one dataset root.
#[derive(Debug, Clone)]
pub struct Layout {
    pub root: PathBuf,
}

impl Layout {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn image_dir(&self, fractured: bool) -> PathBuf {
        self.root.join(if fractured { FRACTURED_DIR } else { NON_FRACTURED_DIR })
    }

    pub fn image_path(&self, image_id: &str, fractured: bool) -> PathBuf {
        self.image_dir(fractured).join(image_id)
    }

    pub fn yolo_label(&self, image_id: &str) -> PathBuf {
        self.root.join(YOLO_DIR).join(format!("{}.txt", stem(image_id)))
    }

    pub fn voc_xml(&self, image_id: &str) -> PathBuf {
        self.root.join(VOC_DIR).join(format!("{}.xml", stem(image_id)))
    }

    pub fn coco_json(&self) -> PathBuf {
        self.root.join(COCO_DIR).join(COCO_FILE)
    }

    pub fn metadata_csv(&self) -> PathBuf {
        self.root.join(METADATA_CSV)
    }

    pub fn split_csv(&self, split: &str) -> PathBuf {
        self.root.join(SPLIT_DIR).join(format!("{split}.csv"))
    }

    /// Every folder the layout has, for writers that create it.
    pub fn dirs(&self) -> [PathBuf; 6] {
        [
            self.root.join(FRACTURED_DIR),
            self.root.join(NON_FRACTURED_DIR),
            self.root.join(YOLO_DIR),
            self.root.join(COCO_DIR),
            self.root.join(VOC_DIR),
            self.root.join(SPLIT_DIR),
        ]
    }
}

/// `IMG0000019.jpg` -> `IMG0000019`.
pub fn stem(image_id: &str) -> &str {
    Path::new(image_id).file_stem().and_then(|s| s.to_str()).unwrap_or(image_id)
}
