//! What a training run folder says about itself, read for the comparison: its best weights
//! (architecture, input size, parameter count), `hyp.toml` (epoch budget, image size),
//! `metrics.csv` (epochs trained, training time), `split.json` (its three image lists and
//! SHA-256) and whether `fracture tune` trained it (a tune trial keeps `trial.toml`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::Context;
use fracture_models::weights_file;
use sha2::{Digest, Sha256};

use crate::train::config::TrainConfig;

/// Tensors of a state_dict that are buffers, not parameters (batch-norm statistics).
const BUFFER_SUFFIXES: [&str; 3] = ["running_mean", "running_var", "num_batches_tracked"];

/// A split file's lists, as sets of image ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitLists {
    pub path: PathBuf,
    pub sha256: String,
    pub train: BTreeSet<String>,
    pub val: BTreeSet<String>,
    pub test: BTreeSet<String>,
}

/// One run folder.
#[derive(Debug, Clone)]
pub struct RunInfo {
    /// Unique among the compared runs (the folder's name, suffixed on clashes).
    pub name: String,
    pub dir: PathBuf,
    /// `weights/best.safetensors`.
    pub weights: PathBuf,
    pub arch: String,
    /// Parameters of the network (tensors of the weights file less batch-norm statistics).
    pub parameters: u64,
    /// `hyp.toml` as read, when it parses.
    pub hyp: Option<TrainConfig>,
    /// The input size in the weights' metadata.
    pub weights_imgsz: Option<u32>,
    /// Rows of `metrics.csv` (epochs completed).
    pub epochs_trained: Option<usize>,
    /// Sum of `metrics.csv`'s `train_time` (training steps alone), seconds.
    pub train_seconds: Option<f64>,
    /// Sum of `metrics.csv`'s `time` (whole epochs, validation included), seconds.
    pub wall_seconds: Option<f64>,
    pub split: Option<SplitLists>,
    /// `trial.toml`, when `fracture tune` trained this folder.
    pub tune_trial: Option<PathBuf>,
    /// `curves_losses.png`, `curves_metrics.png` that exist.
    pub curves: Vec<PathBuf>,
}

impl RunInfo {
    /// The epoch budget (`hyp.toml`'s `epochs`).
    pub fn epoch_budget(&self) -> Option<usize> {
        self.hyp.as_ref().map(|h| h.epochs)
    }

    /// Whether this is a Faster R-CNN run.
    pub fn is_frcnn(&self) -> bool {
        self.arch == fracture_models::frcnn::ARCH
    }

    /// The input size as the network sees it: YOLO's letterbox side, Faster R-CNN's resize
    /// rule (min size of the short side, cap on the long side).
    pub fn input_size(&self) -> String {
        let imgsz = self.hyp.as_ref().map(|h| h.imgsz).or(self.weights_imgsz);
        let Some(imgsz) = imgsz else {
            return "unknown".into();
        };
        if self.is_frcnn() {
            let f = self.hyp.as_ref().map(|h| &h.frcnn);
            let min = f.and_then(|f| f.min_size).unwrap_or(imgsz);
            let max = f.and_then(|f| f.max_size).unwrap_or(imgsz);
            format!("long side ≤ {max} (resize: short side {min}, long side ≤ {max})")
        } else {
            format!("long side ≤ {imgsz} (letterbox {imgsz})")
        }
    }

    /// The longest side the network sees, the number the image-size verdict compares.
    pub fn long_side(&self) -> Option<u32> {
        let imgsz = self.hyp.as_ref().map(|h| h.imgsz).or(self.weights_imgsz)?;
        if self.is_frcnn() {
            Some(self.hyp.as_ref().and_then(|h| h.frcnn.max_size).unwrap_or(imgsz))
        } else {
            Some(imgsz)
        }
    }
}

/// Reads the run folders; names clash-free.
pub fn read_runs(dirs: &[PathBuf]) -> anyhow::Result<Vec<RunInfo>> {
    let mut runs: Vec<RunInfo> = Vec::with_capacity(dirs.len());
    for dir in dirs {
        let mut info = read_run(dir)?;
        let base = info.name.clone();
        let mut k = 2;
        while runs.iter().any(|r| r.name == info.name) {
            info.name = format!("{base}-{k}");
            k += 1;
        }
        runs.push(info);
    }
    Ok(runs)
}

/// Reads one run folder. Only the best weights are required.
pub fn read_run(dir: &Path) -> anyhow::Result<RunInfo> {
    let weights = dir.join("weights").join("best.safetensors");
    if !weights.is_file() {
        anyhow::bail!("{}: not a training run (no weights/best.safetensors)", dir.display());
    }
    let meta = weights_file::read_meta(&weights)?;
    let parameters = count_parameters(&weights)?;
    let hyp_path = dir.join("hyp.toml");
    let hyp = if hyp_path.is_file() {
        match TrainConfig::from_toml_file(&hyp_path) {
            Ok(h) => Some(h),
            Err(e) => {
                eprintln!("note: {e}; epoch budget and image size unknown for this run");
                None
            }
        }
    } else {
        None
    };
    let (epochs_trained, train_seconds, wall_seconds) = match dir.join("metrics.csv") {
        p if p.is_file() => metrics_csv(&p)?,
        _ => (None, None, None),
    };
    let split_path = dir.join("split.json");
    let split = if split_path.is_file() { Some(read_split(&split_path)?) } else { None };
    let tune_trial = Some(dir.join("trial.toml")).filter(|p| p.is_file());
    let curves = ["curves_losses.png", "curves_metrics.png"]
        .iter()
        .map(|f| dir.join(f))
        .filter(|p| p.is_file())
        .collect();
    let name = std::fs::canonicalize(dir)
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .or_else(|| dir.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "run".into());
    Ok(RunInfo {
        name: safe_name(&name),
        dir: dir.to_path_buf(),
        weights,
        arch: meta.as_ref().map_or_else(|| "unknown".into(), |m| m.arch.clone()),
        parameters,
        hyp,
        weights_imgsz: meta.as_ref().map(|m| m.imgsz),
        epochs_trained,
        train_seconds,
        wall_seconds,
        split,
        tune_trial,
        curves,
    })
}

/// A run name fit for a file name: letters, digits, `-`, `_`, `.`; others become `_`.
pub fn safe_name(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' })
        .collect();
    if s.is_empty() || s.starts_with('.') { format!("run{s}") } else { s }
}

/// Elements of the tensors that are parameters (batch-norm running statistics left out).
pub fn count_parameters(weights: &Path) -> anyhow::Result<u64> {
    let tensors = weights_file::load_tensors(weights)?;
    Ok(tensors
        .iter()
        .filter(|(name, _)| !BUFFER_SUFFIXES.iter().any(|s| name.ends_with(s)))
        .map(|(_, t)| t.numel() as u64)
        .sum())
}

/// Epoch rows, the sum of `train_time` and the sum of `time` of a `metrics.csv`.
fn metrics_csv(path: &Path) -> anyhow::Result<(Option<usize>, Option<f64>, Option<f64>)> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_path(path)
        .with_context(|| format!("reading {}", path.display()))?;
    let headers = reader.headers().with_context(|| format!("reading {}", path.display()))?;
    let col = |name: &str| headers.iter().position(|h| h == name);
    let (train_col, time_col) = (col("train_time"), col("time"));
    let (mut rows, mut train, mut wall) = (0usize, 0.0f64, 0.0f64);
    for record in reader.records() {
        let record = record.with_context(|| format!("reading {}", path.display()))?;
        rows += 1;
        let value = |c: Option<usize>| {
            c.and_then(|c| record.get(c)).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0)
        };
        train += value(train_col);
        wall += value(time_col);
    }
    Ok((Some(rows), train_col.map(|_| train), time_col.map(|_| wall)))
}

/// A `split.json`'s three lists and the file's SHA-256.
pub fn read_split(path: &Path) -> anyhow::Result<SplitLists> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let doc: serde_json::Value = serde_json::from_slice(&bytes)
        .with_context(|| format!("{}: invalid JSON", path.display()))?;
    let list = |key: &str| -> BTreeSet<String> {
        doc.get(key)
            .and_then(|v| v.as_array())
            .map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect())
            .unwrap_or_default()
    };
    Ok(SplitLists {
        path: path.to_path_buf(),
        sha256: hex::encode(Sha256::digest(&bytes)),
        train: list("train"),
        val: list("val"),
        test: list("test"),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn names_are_file_safe() {
        assert_eq!(safe_name("runs/a b"), "runs_a_b");
        assert_eq!(safe_name(".."), "run..");
        assert_eq!(safe_name("y-11n_1.5"), "y-11n_1.5");
    }

    #[test]
    fn metrics_csv_sums_the_time_columns() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("metrics.csv");
        std::fs::write(
            &p,
            "epoch,train/box_loss,time,train_time\n1,0.5,10.0,8.25\n2,0.4,11.0,9.5\n",
        )
        .unwrap();
        let (rows, train, wall) = metrics_csv(&p).unwrap();
        assert_eq!(rows, Some(2));
        assert_eq!(train, Some(17.75));
        assert_eq!(wall, Some(21.0));
    }
}
