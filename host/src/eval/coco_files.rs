//! An evaluation's inputs as COCO json: the split's ground truth (`gt.json`: every image of the
//! split, fracture-free ones included, ids 1..n in split order; one category per dataset class,
//! id = class + 1; boxes from the YOLO labels in pixels, area = w·h) and the detections
//! (`detections.json`, COCO results: `{image_id, category_id, bbox [x,y,w,h], score}`).
//!
//! Every metric of `fracture eval` is computed from these files as read back, through the same
//! functions `fracture metrics` uses, so `fracture metrics --gt gt.json --pred
//! detections.json` reports the same numbers, and pycocotools can check them.

use std::path::{Path, PathBuf};

use fracture_models::metrics::coco_json::{CocoAnnotation, CocoCategory, CocoImage};
use fracture_models::metrics::{CocoDataset, Detection, load_detections, load_ground_truth};
use serde::Serialize;

use crate::dataset::Dataset;
use crate::dataset::layout::CLASS_NAME;

use super::EvalError;
use super::inference::ImageRun;

/// The ground truth of `ds.images[i]` for `i` in `indices`.
pub fn ground_truth(ds: &Dataset, indices: &[usize]) -> CocoDataset {
    let mut images = Vec::with_capacity(indices.len());
    let mut annotations = Vec::new();
    for (n, &i) in indices.iter().enumerate() {
        let r = &ds.images[i];
        let image_id = n as i64 + 1;
        images.push(CocoImage {
            id: image_id,
            file_name: r.meta.image_id.clone(),
            width: r.width,
            height: r.height,
        });
        for b in &r.boxes {
            let (w, h) = (f64::from(b.width()), f64::from(b.height()));
            annotations.push(CocoAnnotation {
                id: annotations.len() as i64 + 1,
                image_id,
                category_id: 1,
                bbox: [f64::from(b.x1), f64::from(b.y1), w, h],
                area: w * h,
                iscrowd: 0,
            });
        }
    }
    let categories = vec![CocoCategory { id: 1, name: CLASS_NAME.to_string() }];
    CocoDataset { images, annotations, categories }
}

/// The detections of `runs` (in the order of the ground truth's images).
pub fn detections(runs: &[ImageRun]) -> Vec<Detection> {
    runs.iter()
        .enumerate()
        .flat_map(|(n, run)| {
            run.findings.iter().map(move |f| {
                let (x1, y1) = (f64::from(f.x1), f64::from(f.y1));
                Detection {
                    image_id: n as i64 + 1,
                    category_id: f.class + 1,
                    bbox: [x1, y1, f64::from(f.x2) - x1, f64::from(f.y2) - y1],
                    score: f64::from(f.score),
                }
            })
        })
        .collect()
}

/// The files as written and read back.
#[derive(Debug, Clone)]
pub struct CocoFiles {
    pub gt_path: PathBuf,
    pub dets_path: PathBuf,
    pub gt: CocoDataset,
    pub dets: Vec<Detection>,
}

/// Writes `{prefix}gt.json` and `{prefix}detections.json` into `dir` and reads them back.
pub fn write_and_reload(
    dir: &Path,
    prefix: &str,
    ds: &Dataset,
    indices: &[usize],
    runs: &[ImageRun],
) -> Result<CocoFiles, EvalError> {
    let gt_path = dir.join(format!("{prefix}gt.json"));
    let dets_path = dir.join(format!("{prefix}detections.json"));
    write_json(&gt_path, &ground_truth(ds, indices))?;
    write_json(&dets_path, &detections(runs))?;
    Ok(CocoFiles {
        gt: load_ground_truth(&gt_path)?,
        dets: load_detections(&dets_path)?,
        gt_path,
        dets_path,
    })
}

/// Pretty JSON with a final newline.
pub fn write_json<T: Serialize + ?Sized>(path: &Path, value: &T) -> Result<(), EvalError> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|source| EvalError::Json { path: path.to_path_buf(), source })?;
    std::fs::write(path, text + "\n")
        .map_err(|source| EvalError::Io { path: path.to_path_buf(), source })
}
