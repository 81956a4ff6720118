//! Reading a FracAtlas-style dataset: `dataset.csv`, the image folders and the YOLO labels,
//! cross-checked against each other. Problems that make the data unusable are errors naming the
//! file and line; disagreements a person should look at are collected as integrity issues.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use sha2::{Digest, Sha256};

use super::duplicates::duplicate_groups;
use super::labels::parse_yolo;
use super::layout::{Layout, METADATA_CSV};
use super::metadata::read_metadata;

use super::record::{ImageMeta, PixelBox};

/// One image of the dataset with everything known about it.
#[derive(Debug, Clone)]
pub struct ImageRecord {
    pub meta: ImageMeta,
    /// Absolute or root-relative path of the image file.
    pub path: PathBuf,
    /// Pixel size read from the file header.
    pub width: u32,
    pub height: u32,
    /// Fracture boxes from the YOLO label, in pixels of this image.
    pub boxes: Vec<PixelBox>,
    /// SHA-256 of the file's bytes, lowercase hex.
    pub sha256: String,
    /// Which image folder the file was found in (`images/Fractured` = true).
    pub in_fractured_folder: bool,
}

/// A disagreement inside the dataset that does not stop loading.
#[derive(Debug, Clone, PartialEq)]
pub enum IntegrityIssue {
    /// Byte-identical files (same SHA-256); indices into `Dataset::images`.
    Duplicate { sha256: String, images: Vec<usize> },
    /// `fractured` flag in dataset.csv disagrees with the folder the image is in.
    FolderMismatch { image_id: String, csv_fractured: bool, in_fractured_folder: bool },
    /// `fracture_count` disagrees with the number of boxes in the YOLO label.
    CountMismatch { image_id: String, csv_count: u32, label_boxes: usize },
    /// Image flagged fractured without any box, or non-fractured with boxes.
    LabelFlagMismatch { image_id: String, fractured: bool, label_boxes: usize },
    /// No YOLO label file for an image (treated as no boxes).
    MissingLabel { image_id: String, path: PathBuf },
    /// A file in an image folder that dataset.csv does not list.
    Unlisted { path: PathBuf },
}

/// A loaded dataset.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub root: PathBuf,
    pub images: Vec<ImageRecord>,
    pub issues: Vec<IntegrityIssue>,
}

/// Why a dataset could not be loaded; always names the file (and line where there is one).
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}:{line}: {message}")]
    Malformed { path: PathBuf, line: usize, message: String },
    #[error("{path}: cannot read image header: {message}")]
    Image { path: PathBuf, message: String },
    #[error(
        "{csv}:{line}: image {image_id} is listed but found in neither images/Fractured nor images/Non_fractured"
    )]
    MissingImage { csv: PathBuf, line: usize, image_id: String },
    #[error("{path}: not a FracAtlas-style dataset folder ({message})")]
    NotADataset { path: PathBuf, message: String },
}

impl Dataset {
    /// Loads the dataset at `root`. Reads every image's header and bytes (for its hash) in
    /// parallel; never decodes pixels.
    pub fn load(root: &Path) -> Result<Dataset, DatasetError> {
        let layout = Layout::new(root);
        let csv = layout.metadata_csv();
        if !root.is_dir() {
            return Err(DatasetError::NotADataset {
                path: root.to_path_buf(),
                message: "no such folder".into(),
            });
        }
        if !csv.is_file() {
            return Err(DatasetError::NotADataset {
                path: root.to_path_buf(),
                message: format!("{METADATA_CSV} is missing"),
            });
        }
        let rows = read_metadata(&csv)?;

        // Locate each listed image in one of the two folders.
        let mut located = Vec::with_capacity(rows.len());
        for row in rows {
            let id = &row.meta.image_id;
            let in_fractured = layout.image_path(id, true);
            let in_non = layout.image_path(id, false);
            let (path, in_fractured_folder) = if in_fractured.is_file() {
                (in_fractured, true)
            } else if in_non.is_file() {
                (in_non, false)
            } else {
                return Err(DatasetError::MissingImage {
                    csv: csv.clone(),
                    line: row.line,
                    image_id: id.clone(),
                });
            };
            located.push((row, path, in_fractured_folder));
        }

        let loaded: Vec<(ImageRecord, Option<IntegrityIssue>)> = located
            .into_par_iter()
            .map(|(row, path, in_fractured_folder)| {
                load_one(&layout, row.meta, path, in_fractured_folder)
            })
            .collect::<Result<_, _>>()?;

        let mut images = Vec::with_capacity(loaded.len());
        let mut issues = Vec::new();
        for (record, issue) in loaded {
            issues.extend(issue);
            issues.extend(record_issues(&record));
            images.push(record);
        }
        for group in duplicate_groups(images.iter().map(|r| r.sha256.as_str())) {
            issues.push(IntegrityIssue::Duplicate {
                sha256: images[group[0]].sha256.clone(),
                images: group,
            });
        }
        issues.extend(unlisted_files(&layout, &images)?);
        Ok(Dataset { root: root.to_path_buf(), images, issues })
    }

    pub fn fractured_count(&self) -> usize {
        self.images.iter().filter(|r| r.meta.is_fractured()).count()
    }

    pub fn box_count(&self) -> usize {
        self.images.iter().map(|r| r.boxes.len()).sum()
    }

    /// Index of an image by its `image_id`.
    pub fn position(&self, image_id: &str) -> Option<usize> {
        self.images.iter().position(|r| r.meta.image_id == image_id)
    }
}

fn load_one(
    layout: &Layout,
    meta: super::record::ImageMeta,
    path: PathBuf,
    in_fractured_folder: bool,
) -> Result<(ImageRecord, Option<IntegrityIssue>), DatasetError> {
    let bytes =
        std::fs::read(&path).map_err(|source| DatasetError::Io { path: path.clone(), source })?;
    let sha256 = hex::encode(Sha256::digest(&bytes));
    let (width, height) = image::ImageReader::new(std::io::Cursor::new(&bytes))
        .with_guessed_format()
        .map_err(|e| DatasetError::Image { path: path.clone(), message: e.to_string() })?
        .into_dimensions()
        .map_err(|e| DatasetError::Image { path: path.clone(), message: e.to_string() })?;
    let label_path = layout.yolo_label(&meta.image_id);
    let (boxes, issue) = match std::fs::read_to_string(&label_path) {
        Ok(text) => (parse_yolo(&text, width, height, &label_path)?, None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (
            Vec::new(),
            Some(IntegrityIssue::MissingLabel {
                image_id: meta.image_id.clone(),
                path: label_path,
            }),
        ),
        Err(source) => return Err(DatasetError::Io { path: label_path, source }),
    };
    Ok((ImageRecord { meta, path, width, height, boxes, sha256, in_fractured_folder }, issue))
}

/// Disagreements between the csv row, the folder and the label of one image.
fn record_issues(r: &ImageRecord) -> Vec<IntegrityIssue> {
    let id = &r.meta.image_id;
    let fractured = r.meta.is_fractured();
    let mut issues = Vec::new();
    if fractured != r.in_fractured_folder {
        issues.push(IntegrityIssue::FolderMismatch {
            image_id: id.clone(),
            csv_fractured: fractured,
            in_fractured_folder: r.in_fractured_folder,
        });
    }
    if r.meta.fracture_count as usize != r.boxes.len() {
        issues.push(IntegrityIssue::CountMismatch {
            image_id: id.clone(),
            csv_count: r.meta.fracture_count,
            label_boxes: r.boxes.len(),
        });
    }
    if fractured == r.boxes.is_empty() {
        issues.push(IntegrityIssue::LabelFlagMismatch {
            image_id: id.clone(),
            fractured,
            label_boxes: r.boxes.len(),
        });
    }
    issues
}

/// Files in the image folders that dataset.csv does not list (hidden files ignored).
fn unlisted_files(
    layout: &Layout,
    images: &[ImageRecord],
) -> Result<Vec<IntegrityIssue>, DatasetError> {
    let listed: HashSet<&Path> = images.iter().map(|r| r.path.as_path()).collect();
    let mut out = Vec::new();
    for fractured in [true, false] {
        let dir = layout.image_dir(fractured);
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => return Err(DatasetError::Io { path: dir, source }),
        };
        let mut found: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.is_file()
                    && !p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.'))
                    && !listed.contains(p.as_path())
            })
            .collect();
        found.sort();
        out.extend(found.into_iter().map(|path| IntegrityIssue::Unlisted { path }));
    }
    Ok(out)
}

impl std::fmt::Display for IntegrityIssue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IntegrityIssue::Duplicate { sha256, images } => {
                write!(
                    f,
                    "duplicate: {} byte-identical images (sha256 {})",
                    images.len(),
                    &sha256[..12.min(sha256.len())]
                )
            }
            IntegrityIssue::FolderMismatch { image_id, csv_fractured, in_fractured_folder } => {
                write!(
                    f,
                    "{image_id}: dataset.csv says fractured={}, but the file is in {}",
                    u8::from(*csv_fractured),
                    if *in_fractured_folder { "images/Fractured" } else { "images/Non_fractured" }
                )
            }
            IntegrityIssue::CountMismatch { image_id, csv_count, label_boxes } => write!(
                f,
                "{image_id}: dataset.csv says fracture_count={csv_count}, the YOLO label has {label_boxes} box(es)"
            ),
            IntegrityIssue::LabelFlagMismatch { image_id, fractured, label_boxes } => write!(
                f,
                "{image_id}: fractured={} but the YOLO label has {label_boxes} box(es)",
                u8::from(*fractured)
            ),
            IntegrityIssue::MissingLabel { image_id, path } => {
                write!(
                    f,
                    "{image_id}: no label file {} (treated as no fracture boxes)",
                    path.display()
                )
            }
            IntegrityIssue::Unlisted { path } => {
                write!(f, "{}: not listed in dataset.csv", path.display())
            }
        }
    }
}
