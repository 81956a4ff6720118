//! Which images of a dataset make up the split being evaluated. Two sources:
//!
//! - a split file (`--split-file`): the JSON `fracture split` writes and every training run
//!   keeps as `RUN/split.json` (`{"train": [ids], "val": [ids], "test": [ids]}`), fractured
//!   and fracture-free images alike — what a model trained on that split must be scored on;
//! - otherwise the dataset's own lists, `Utilities/Fracture Split/{train,valid,test}.csv`
//!   (column `image_id`). In FracAtlas (and phantoms) they hold fractured images only, so
//!   image-level specificity is undefined on them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::dataset::Dataset;
use crate::dataset::layout::Layout;

use super::EvalError;

/// A partition of the dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SplitName {
    Train,
    Val,
    Test,
}

impl SplitName {
    /// The key in split files and reports.
    pub fn name(self) -> &'static str {
        match self {
            SplitName::Train => "train",
            SplitName::Val => "val",
            SplitName::Test => "test",
        }
    }

    /// The file stem of FracAtlas' split lists (`valid` for val).
    pub fn csv_stem(self) -> &'static str {
        match self {
            SplitName::Val => "valid",
            other => other.name(),
        }
    }
}

/// The images of one split.
#[derive(Debug, Clone, PartialEq)]
pub struct SplitImages {
    pub split: SplitName,
    /// Indices into `Dataset::images`, ascending, without repeats.
    pub indices: Vec<usize>,
    /// The file the list came from.
    pub source: PathBuf,
}

/// The images of `split`, from `split_file` when given, else from the dataset's split lists.
pub fn select(
    ds: &Dataset,
    split: SplitName,
    split_file: Option<&Path>,
) -> Result<SplitImages, EvalError> {
    let position: HashMap<&str, usize> =
        ds.images.iter().enumerate().map(|(i, r)| (r.meta.image_id.as_str(), i)).collect();
    let (ids, source) = match split_file {
        Some(path) => (from_json(path, split)?, path.to_path_buf()),
        None => {
            let path = Layout::new(&ds.root).split_csv(split.csv_stem());
            (from_csv(&path)?, path)
        }
    };
    let mut indices = Vec::with_capacity(ids.len());
    for (line, id) in ids {
        let i = position.get(id.as_str()).ok_or_else(|| EvalError::UnknownImage {
            path: source.clone(),
            line,
            image_id: id.clone(),
        })?;
        indices.push(*i);
    }
    indices.sort_unstable();
    indices.dedup();
    if indices.is_empty() {
        return Err(EvalError::EmptySplit { split: split.name(), path: source });
    }
    Ok(SplitImages { split, indices, source })
}

/// `(line, image_id)` pairs; the line is 0 for JSON.
type Ids = Vec<(usize, String)>;

fn from_json(path: &Path, split: SplitName) -> Result<Ids, EvalError> {
    let bad = |message: String| EvalError::SplitFile { path: path.to_path_buf(), message };
    let text = std::fs::read_to_string(path)
        .map_err(|source| EvalError::Io { path: path.to_path_buf(), source })?;
    let doc: serde_json::Value = serde_json::from_str(&text)
        .map_err(|source| EvalError::Json { path: path.to_path_buf(), source })?;
    if doc.get("fold_of").is_some() {
        return Err(bad("a k-fold assignment, not a train/val/test split".into()));
    }
    let list = doc
        .get(split.name())
        .and_then(|v| v.as_array())
        .ok_or_else(|| bad(format!("no \"{}\" list of image ids", split.name())))?;
    list.iter()
        .map(|v| {
            v.as_str()
                .map(|s| (0, s.to_string()))
                .ok_or_else(|| bad(format!("\"{}\" holds {v}, not an image id", split.name())))
        })
        .collect()
}

fn from_csv(path: &Path) -> Result<Ids, EvalError> {
    let csv_err = |source| EvalError::Csv { path: path.to_path_buf(), source };
    if !path.is_file() {
        return Err(EvalError::SplitFile {
            path: path.to_path_buf(),
            message: "missing; pass --split-file with a split from `fracture split`".into(),
        });
    }
    let mut reader =
        csv::ReaderBuilder::new().trim(csv::Trim::All).from_path(path).map_err(csv_err)?;
    let column =
        reader.headers().map_err(csv_err)?.iter().position(|h| h == "image_id").ok_or_else(
            || EvalError::SplitFile {
                path: path.to_path_buf(),
                message: "no image_id column".into(),
            },
        )?;
    let mut ids = Vec::new();
    for record in reader.records() {
        let record = record.map_err(csv_err)?;
        let line = record.position().map_or(0, |p| p.line() as usize);
        if let Some(id) = record.get(column).filter(|s| !s.is_empty()) {
            ids.push((line, id.to_string()));
        }
    }
    Ok(ids)
}
