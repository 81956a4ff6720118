//! The study's embedding analysis (`fracture eda --weights W`): what a trained detector's
//! backbone "sees" in each image, reduced to a vector, and how those vectors spread.
//!
//! - [`extract`]: per-image embeddings (YOLO11 layer 10 / Faster R-CNN C5, average-pooled),
//!   preprocessed as `fracture predict` does;
//! - [`matrix`]: the images × dimensions matrix the analyses share;
//! - [`pca`]: the two directions of largest variance (linear structure);
//! - [`tsne`]: exact t-SNE to 2-D (neighbourhoods, clusters);
//! - [`isolation_forest`]: anomaly scores, and the most outlying images;
//! - [`plots`]: `embedding_pca.png` and `embedding_tsne.png`, each two panels, coloured by
//!   class (left) and by body part (right), outliers ringed;
//! - [`grid`]: `outliers_grid.png`, the most outlying images with their captions;
//! - [`table`]: `embeddings.csv`, every image's coordinates and score.
//!
//! [`run`] does all of it and returns the numbers (for `eda.json` and `report.md`) and the
//! figures.

pub mod extract;
pub mod grid;
pub mod isolation_forest;
pub mod matrix;
pub mod pca;
pub mod plots;
pub mod table;
pub mod tsne;

use std::path::{Path, PathBuf};
use std::time::Instant;

use fracture_models::frcnn::predictor::FrcnnPredictError;
use fracture_models::weights_file::WeightsFileError;
use fracture_models::yolo::PredictError;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use super::charts::Figure;
use super::intensity::Unreadable;
use crate::dataset::Dataset;
use crate::plot::PlotError;
use extract::{Embedder, ModelSpec};
use isolation_forest::{IsolationForest, IsolationForestConfig, top_k};
use matrix::{Matrix, RaggedRows};
use plots::Colouring;
use tsne::{TsneConfig, tsne};

/// Files written into the EDA folder.
pub const PCA_FILE: &str = "embedding_pca.png";
pub const TSNE_FILE: &str = "embedding_tsne.png";
pub const OUTLIERS_FILE: &str = "outliers_grid.png";
pub const CSV_FILE: &str = "embeddings.csv";

/// Knobs of [`run`].
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingOptions {
    pub model: ModelSpec,
    /// How many of the most outlying images to show (K).
    pub outliers: usize,
    /// t-SNE perplexity (capped at `(n − 1) / 3`).
    pub perplexity: f64,
    /// Seed of the Isolation Forest (and of t-SNE's random start, which is not the default).
    pub seed: u64,
    /// Progress bars on stderr (when it is a terminal).
    pub progress: bool,
}

impl EmbeddingOptions {
    /// Defaults for `weights`: CPU, its own input size, 16 outliers, perplexity 30, seed 0.
    pub fn new(weights: PathBuf) -> Self {
        Self {
            model: ModelSpec {
                weights,
                arch: None,
                nc: None,
                imgsz: None,
                device: tch::Device::Cpu,
            },
            outliers: 16,
            perplexity: 30.0,
            seed: 0,
            progress: false,
        }
    }
}

/// One of the most outlying images.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outlier {
    pub image_id: String,
    pub body_part: String,
    pub fractured: bool,
    pub score: f64,
}

/// Seconds each step took (not in `eda.json`: it would differ run to run).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Timings {
    pub embed: f64,
    pub pca: f64,
    pub tsne: f64,
    pub isolation_forest: f64,
}

/// What the embedding analysis found: its part of `eda.json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EmbeddingStats {
    pub weights: String,
    pub arch: String,
    /// The pooled feature map.
    pub layer: String,
    pub dimensions: usize,
    /// Images embedded (rows of `embeddings.csv`).
    pub images: usize,
    pub unreadable: Vec<Unreadable>,
    /// Share of the variance along PC1 and PC2.
    pub pca_explained_variance_ratio: Vec<f64>,
    pub tsne_perplexity: f64,
    pub tsne_iterations: usize,
    pub tsne_kl_divergence: f64,
    pub isolation_forest_trees: usize,
    pub isolation_forest_subsample: usize,
    pub seed: u64,
    /// Most outlying first.
    pub outliers: Vec<Outlier>,
    /// `embeddings.csv`, inside the output folder.
    pub csv: String,
    #[serde(skip)]
    pub timings: Timings,
}

#[derive(Debug, thiserror::Error)]
pub enum EmbeddingError {
    #[error(transparent)]
    File(#[from] WeightsFileError),
    #[error(transparent)]
    Yolo(#[from] Box<PredictError>),
    #[error(transparent)]
    Frcnn(#[from] Box<FrcnnPredictError>),
    #[error(transparent)]
    Tensor(#[from] tch::TchError),
    #[error("{0}")]
    Arch(String),
    #[error("no image could be decoded ({0} tried), so there is nothing to embed")]
    NoImages(usize),
    #[error("embeddings of different lengths: {0}")]
    Shape(#[from] RaggedRows),
    #[error(transparent)]
    Plot(#[from] PlotError),
    #[error("{path}: {source}")]
    Csv { path: PathBuf, source: csv::Error },
}

impl From<PredictError> for EmbeddingError {
    fn from(e: PredictError) -> Self {
        Self::Yolo(Box::new(e))
    }
}

impl From<FrcnnPredictError> for EmbeddingError {
    fn from(e: FrcnnPredictError) -> Self {
        Self::Frcnn(Box::new(e))
    }
}

fn seconds_since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64()
}

/// Body-part strata in legend order.
const PART_ORDER: [&str; 6] = ["hand", "leg", "hip", "shoulder", "mixed", "unknown"];

/// Embeds every image of `dataset` with the model `options` names, runs PCA, t-SNE and the
/// Isolation Forest, and writes the two scatter figures, the outlier grid and
/// `embeddings.csv` into `out` (which must exist).
pub fn run(
    dataset: &Dataset,
    out: &Path,
    options: &EmbeddingOptions,
) -> Result<(EmbeddingStats, Vec<Figure>), EmbeddingError> {
    let mut timings = Timings::default();
    let embedder = Embedder::load(&options.model)?;
    let t = Instant::now();
    let extract::Embedded { rows: embedded, unreadable } =
        extract::embed_dataset(dataset, &embedder, options.progress)?;
    timings.embed = seconds_since(t);
    if embedded.is_empty() {
        return Err(EmbeddingError::NoImages(unreadable.len()));
    }
    let rows: Vec<Vec<f64>> = embedded.iter().map(|(_, e)| e.clone()).collect();
    let x = Matrix::from_rows(&rows)?;
    drop(rows);
    let n = x.rows();
    let records: Vec<_> = embedded.iter().map(|(i, _)| &dataset.images[*i]).collect();

    let t = Instant::now();
    let pca = pca::pca(&x, 2);
    timings.pca = seconds_since(t);
    let pca_points: Vec<[f64; 2]> = pca
        .scores
        .iter()
        .map(|s| [s.first().copied().unwrap_or(0.0), s.get(1).copied().unwrap_or(0.0)])
        .collect();

    let t = Instant::now();
    let cfg =
        TsneConfig { perplexity: options.perplexity, seed: options.seed, ..TsneConfig::default() };
    let bar = if options.progress {
        ProgressBar::new(cfg.iterations as u64)
    } else {
        ProgressBar::hidden()
    };
    if let Ok(style) = ProgressStyle::with_template(
        "{msg} {bar:40} {pos}/{len} iterations [{elapsed_precise}, eta {eta}]",
    ) {
        bar.set_style(style);
    }
    bar.set_message(format!("t-SNE of {n} images"));
    let map = tsne(&x, &cfg, |k| bar.set_position(k as u64));
    bar.finish_and_clear();
    timings.tsne = seconds_since(t);

    let t = Instant::now();
    let forest_cfg =
        IsolationForestConfig { seed: options.seed, ..IsolationForestConfig::default() };
    let forest = IsolationForest::fit(&x, &forest_cfg);
    let scores = forest.score_all(&x);
    let top = top_k(&scores, options.outliers);
    timings.isolation_forest = seconds_since(t);

    // Colourings: class (the study's blue fractured, orange non-fractured) and body part.
    let class = Colouring::new(
        "by class",
        vec!["fractured".into(), "non-fractured".into()],
        records.iter().map(|r| usize::from(!r.meta.is_fractured())).collect(),
        0,
    );
    let parts: Vec<&str> = PART_ORDER
        .into_iter()
        .filter(|p| records.iter().any(|r| r.meta.primary_part_name() == *p))
        .collect();
    let part = Colouring::new(
        "by body part",
        parts.iter().map(|p| p.to_string()).collect(),
        records
            .iter()
            .map(|r| parts.iter().position(|p| *p == r.meta.primary_part_name()).unwrap_or(0))
            .collect(),
        2,
    );

    let arch = embedder.arch().to_string();
    let ratio = &pca.explained_variance_ratio;
    let pct = |k: usize| 100.0 * ratio.get(k).copied().unwrap_or(0.0);
    plots::scatter_panels(
        &out.join(PCA_FILE),
        &format!("PCA of {arch} embeddings ({n} images, {} dimensions)", x.cols()),
        (
            &format!("PC1 ({:.1}% of variance)", pct(0)),
            &format!("PC2 ({:.1}% of variance)", pct(1)),
        ),
        &pca_points,
        [&class, &part],
        &top,
    )?;
    plots::scatter_panels(
        &out.join(TSNE_FILE),
        &format!(
            "t-SNE of {arch} embeddings ({n} images, perplexity {})",
            crate::plot::tick(map.perplexity)
        ),
        ("t-SNE 1", "t-SNE 2"),
        &map.points,
        [&class, &part],
        &top,
    )?;
    let shown: Vec<grid::Shown> =
        top.iter().map(|&k| grid::Shown { image: embedded[k].0, score: scores[k] }).collect();
    grid::draw(
        dataset,
        &shown,
        &format!(
            "Most outlying images by Isolation Forest on {arch} embeddings (top {} of {n}; red boxes = fracture labels)",
            shown.len()
        ),
        &out.join(OUTLIERS_FILE),
    )?;

    let csv_rows: Vec<table::Row> = records
        .iter()
        .enumerate()
        .map(|(k, r)| table::Row {
            image_id: r.meta.image_id.clone(),
            body_part: r.meta.primary_part_name().into(),
            fractured: u8::from(r.meta.is_fractured()),
            pca1: pca_points[k][0],
            pca2: pca_points[k][1],
            tsne1: map.points[k][0],
            tsne2: map.points[k][1],
            anomaly_score: scores[k],
        })
        .collect();
    let csv_path = out.join(CSV_FILE);
    table::write(&csv_path, &csv_rows)
        .map_err(|source| EmbeddingError::Csv { path: csv_path.clone(), source })?;

    let outliers: Vec<Outlier> = top
        .iter()
        .map(|&k| Outlier {
            image_id: records[k].meta.image_id.clone(),
            body_part: records[k].meta.primary_part_name().into(),
            fractured: records[k].meta.is_fractured(),
            score: scores[k],
        })
        .collect();
    let layer = embedder.layer();
    let figures =
        figures(&arch, &layer, &pca.explained_variance_ratio, &map, &outliers, &forest_cfg, n);
    let stats = EmbeddingStats {
        weights: options.model.weights.display().to_string(),
        arch,
        layer,
        dimensions: x.cols(),
        images: n,
        unreadable,
        pca_explained_variance_ratio: pca.explained_variance_ratio,
        tsne_perplexity: map.perplexity,
        tsne_iterations: cfg.iterations,
        tsne_kl_divergence: map.kl_divergence,
        isolation_forest_trees: forest_cfg.trees,
        isolation_forest_subsample: forest_cfg.subsample.min(n),
        seed: options.seed,
        outliers,
        csv: CSV_FILE.into(),
        timings,
    };
    Ok((stats, figures))
}

/// The three figures with their captions.
fn figures(
    arch: &str,
    layer: &str,
    ratio: &[f64],
    map: &tsne::Tsne,
    outliers: &[Outlier],
    forest: &IsolationForestConfig,
    n: usize,
) -> Vec<Figure> {
    let pct = |k: usize| 100.0 * ratio.get(k).copied().unwrap_or(0.0);
    let score_range = match (outliers.last(), outliers.first()) {
        (Some(lo), Some(hi)) => format!(", anomaly scores {:.3}–{:.3}", lo.score, hi.score),
        _ => String::new(),
    };
    let fractured = outliers.iter().filter(|o| o.fractured).count();
    vec![
        Figure {
            file: PCA_FILE.into(),
            title: format!("PCA of {arch} embeddings"),
            caption: format!(
                "Each dot is one image's {arch} embedding ({layer}, average-pooled) projected on the first two principal components, which explain {:.1}% and {:.1}% of the variance; left coloured by class, right by body part, the {} most outlying images (Isolation Forest) ringed. Look for linear separation of the classes, and for spread explained by body part or exposure rather than by class.",
                pct(0),
                pct(1),
                outliers.len()
            ),
        },
        Figure {
            file: TSNE_FILE.into(),
            title: format!("t-SNE of {arch} embeddings"),
            caption: format!(
                "Exact t-SNE of the same {n} embeddings (perplexity {}, early exaggeration 12 for 250 of 1000 iterations, PCA start; final KL divergence {:.3}); left coloured by class, right by body part, outliers ringed. Clusters that follow body part rather than class suggest the features encode anatomy more than fractures.",
                crate::plot::tick(map.perplexity),
                map.kl_divergence
            ),
        },
        Figure {
            file: OUTLIERS_FILE.into(),
            title: "Most outlying images (Isolation Forest)".into(),
            caption: format!(
                "The {} images with the highest Isolation Forest anomaly score s(x) = 2^(−E[h(x)]/c(ψ)) ({} trees, ψ = {}, seed {}){score_range}; {fractured} of them fractured. In the study such outliers were over- or under-exposed scans, implants, casts and multi-view images.",
                outliers.len(),
                forest.trees,
                forest.subsample.min(n),
                forest.seed
            ),
        },
    ]
}
