//! COCO json in and out: ground-truth files (images, annotations, categories) and result files
//! (a list of `{image_id, category_id, bbox, score}`), with errors that name the file.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CocoImage {
    pub id: i64,
    #[serde(default)]
    pub file_name: String,
    #[serde(default)]
    pub width: u32,
    #[serde(default)]
    pub height: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CocoAnnotation {
    pub id: i64,
    pub image_id: i64,
    pub category_id: i64,
    /// `[x, y, w, h]` in pixels.
    pub bbox: [f64; 4],
    /// Used for the small/medium/large ranges (pycocotools reads this field, not the box).
    pub area: f64,
    /// 0 or 1 (`false`/`true` accepted); optional, default 0.
    #[serde(default, deserialize_with = "flag")]
    pub iscrowd: u8,
}

/// An integer flag that some writers emit as a boolean.
fn flag<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u8, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Flag {
        Int(u8),
        Bool(bool),
    }
    Ok(match Flag::deserialize(d)? {
        Flag::Int(v) => v,
        Flag::Bool(b) => u8::from(b),
    })
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CocoCategory {
    pub id: i64,
    #[serde(default)]
    pub name: String,
}

/// A ground-truth file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CocoDataset {
    pub images: Vec<CocoImage>,
    #[serde(default)]
    pub annotations: Vec<CocoAnnotation>,
    #[serde(default)]
    pub categories: Vec<CocoCategory>,
}

/// One detection of a result file.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Detection {
    pub image_id: i64,
    pub category_id: i64,
    /// `[x, y, w, h]` in pixels.
    pub bbox: [f64; 4],
    pub score: f64,
}

/// A file that cannot be read or is not COCO json; the underlying error (with line and column
/// for json) is the `source`.
#[derive(Debug, thiserror::Error)]
pub enum CocoJsonError {
    #[error("cannot read {path}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a COCO {what} file")]
    Parse { path: PathBuf, what: &'static str, source: serde_json::Error },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

fn read(path: &Path) -> Result<String, CocoJsonError> {
    std::fs::read_to_string(path)
        .map_err(|source| CocoJsonError::Io { path: path.to_path_buf(), source })
}

/// Loads a ground-truth file; every number must be finite.
pub fn load_ground_truth(path: &Path) -> Result<CocoDataset, CocoJsonError> {
    let gt: CocoDataset = serde_json::from_str(&read(path)?).map_err(|source| {
        CocoJsonError::Parse { path: path.to_path_buf(), what: "ground-truth", source }
    })?;
    if let Some(a) =
        gt.annotations.iter().find(|a| a.bbox.iter().any(|v| !v.is_finite()) || !a.area.is_finite())
    {
        return Err(CocoJsonError::Invalid {
            path: path.to_path_buf(),
            message: format!("annotation {} has a non-finite box or area", a.id),
        });
    }
    Ok(gt)
}

/// Loads a result file (a json list of detections); scores and boxes must be finite.
pub fn load_detections(path: &Path) -> Result<Vec<Detection>, CocoJsonError> {
    let dets: Vec<Detection> = serde_json::from_str(&read(path)?).map_err(|source| {
        CocoJsonError::Parse { path: path.to_path_buf(), what: "results", source }
    })?;
    if let Some((i, _)) = dets
        .iter()
        .enumerate()
        .find(|(_, d)| !d.score.is_finite() || d.bbox.iter().any(|v| !v.is_finite()))
    {
        return Err(CocoJsonError::Invalid {
            path: path.to_path_buf(),
            message: format!("detection #{i} has a non-finite score or box"),
        });
    }
    Ok(dets)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn loads_ground_truth_with_optional_fields() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "gt.json",
            r#"{"images": [{"id": 3, "file_name": "a.jpg", "width": 10, "height": 20}],
                "annotations": [
                  {"id": 1, "image_id": 3, "category_id": 1, "bbox": [1, 2, 3, 4], "area": 12},
                  {"id": 2, "image_id": 3, "category_id": 1, "bbox": [1, 2, 3, 4], "area": 12,
                   "iscrowd": true, "segmentation": []}],
                "categories": [{"id": 1, "name": "fracture", "supercategory": "bone"}],
                "info": {}}"#,
        );
        let gt = load_ground_truth(&p).unwrap();
        assert_eq!(gt.images[0].id, 3);
        assert_eq!(gt.annotations[0].iscrowd, 0);
        assert_eq!(gt.annotations[1].iscrowd, 1);
        assert_eq!(gt.annotations[0].bbox, [1.0, 2.0, 3.0, 4.0]);
    }

    /// The error with its causes, as the CLI prints it.
    fn chain(e: &dyn std::error::Error) -> String {
        let mut s = e.to_string();
        let mut cause = e.source();
        while let Some(c) = cause {
            s += &format!(": {c}");
            cause = c.source();
        }
        s
    }

    #[test]
    fn errors_name_the_file_and_the_place() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "dt.json",
            "[\n {\"image_id\": 1, \"category_id\": 1,\n  \"score\": 0.5}\n]",
        );
        let e = chain(&load_detections(&p).unwrap_err());
        assert!(e.contains("dt.json") && e.contains("bbox") && e.contains("line 3"), "{e}");
        let p = write(dir.path(), "gt.json", "{\"images\": [}");
        let e = chain(&load_ground_truth(&p).unwrap_err());
        assert!(e.contains("gt.json") && e.contains("column"), "{e}");
        let e = chain(&load_ground_truth(&dir.path().join("missing.json")).unwrap_err());
        assert!(e.contains("missing.json"), "{e}");
    }
}
