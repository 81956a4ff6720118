//! Exploratory data analysis of a FracAtlas-style dataset, as in the study's EDA: class
//! balance, body parts and metadata by class, fractures per image, box geometry and position,
//! image sizes, pixel intensities, an example grid with boxes, and the integrity issues. Writes
//! PNG charts, `eda.json` (every number) and `report.md` (tables plus the charts) to a folder.
//!
//! - [`stats`]: the numbers from labels and metadata;
//! - [`intensity`]: the numbers that need pixels (every image decoded, in parallel);
//! - [`charts`]: one PNG per view;
//! - [`grid`]: the example grid with boxes drawn;
//! - [`report`]: the Markdown;
//! - [`embedding`]: with trained weights (`--weights`), the study's embedding analysis: PCA,
//!   t-SNE and Isolation Forest outliers of per-image backbone features.

pub mod charts;
pub mod embedding;
pub mod grid;
pub mod intensity;
pub mod report;
pub mod stats;

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::dataset::Dataset;
use crate::plot::PlotError;
use charts::Figure;
use embedding::{EmbeddingError, EmbeddingOptions, EmbeddingStats};
use intensity::IntensityStats;
use stats::DatasetStats;

/// File names written into the output folder besides the charts.
pub const REPORT_FILE: &str = "report.md";
pub const JSON_FILE: &str = "eda.json";
pub const GRID_FILE: &str = "examples.png";

/// Knobs of [`run_eda`].
#[derive(Debug, Clone, PartialEq)]
pub struct EdaOptions {
    /// Images in the example grid.
    pub grid_size: usize,
    /// Seed of the example grid's choice.
    pub seed: u64,
    /// The embedding analysis, when trained weights are given.
    pub embedding: Option<EmbeddingOptions>,
}

impl Default for EdaOptions {
    fn default() -> Self {
        Self { grid_size: 16, seed: 0, embedding: None }
    }
}

/// Everything the EDA found: the content of `eda.json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EdaStats {
    /// The dataset folder, as given.
    pub root: String,
    pub dataset: DatasetStats,
    /// `None` only when pixels were not read.
    pub intensity: Option<IntensityStats>,
    /// `image_id`s shown in the example grid, in grid order.
    pub example_grid: Vec<String>,
    /// The charts written, with what each shows.
    pub figures: Vec<Figure>,
    /// The embedding analysis (`--weights`), when run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub embedding: Option<EmbeddingStats>,
}

/// What [`run_eda`] wrote.
#[derive(Debug, Clone)]
pub struct EdaSummary {
    pub stats: EdaStats,
    pub report: PathBuf,
    pub json: PathBuf,
    /// Every PNG written, in report order.
    pub charts: Vec<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum EdaError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Plot(#[from] PlotError),
    #[error("cannot serialise the EDA numbers: {0}")]
    Json(#[from] serde_json::Error),
    #[error("embedding analysis: {0}")]
    Embedding(#[from] EmbeddingError),
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), EdaError> {
    std::fs::write(path, bytes).map_err(|source| EdaError::Io { path: path.to_path_buf(), source })
}

/// Runs the whole EDA on a loaded dataset and writes charts, `eda.json` and `report.md` into
/// `out` (created if needed). Decodes every image once for the intensity statistics, showing a
/// progress bar on a terminal; with `options.embedding`, once more for the embeddings.
pub fn run_eda(
    dataset: &Dataset,
    out: &Path,
    options: &EdaOptions,
) -> Result<EdaSummary, EdaError> {
    std::fs::create_dir_all(out)
        .map_err(|source| EdaError::Io { path: out.to_path_buf(), source })?;
    let dataset_stats = DatasetStats::compute(dataset);
    let intensity = intensity::measure_all(dataset, true);

    let mut figures = charts::draw_dataset_charts(dataset, &dataset_stats, out)?;
    figures.extend(charts::draw_intensity_charts(&intensity, out)?);

    let chosen = grid::choose(dataset, options.grid_size, options.seed);
    let shown = grid::draw(dataset, &chosen, &out.join(GRID_FILE))?;
    let example_grid: Vec<String> =
        chosen.iter().map(|&i| dataset.images[i].meta.image_id.clone()).collect();
    let fractured_shown = chosen.iter().filter(|&&i| dataset.images[i].meta.is_fractured()).count();
    figures.push(Figure {
        file: GRID_FILE.into(),
        title: "Example images with fracture boxes".into(),
        caption: format!(
            "{} images chosen with seed {} ({} fractured first, then {} non-fractured{}), contrast-stretched, with their label boxes in red; look for varying box sizes, rotations, burnt-in text and varying exposure.",
            chosen.len(),
            options.seed,
            fractured_shown,
            chosen.len() - fractured_shown,
            if shown < chosen.len() { format!("; {} could not be read", chosen.len() - shown) } else { String::new() }
        ),
    });

    let embedding = match &options.embedding {
        Some(opts) => {
            let (stats, embedding_figures) = embedding::run(dataset, out, opts)?;
            figures.extend(embedding_figures);
            Some(stats)
        }
        None => None,
    };

    let stats = EdaStats {
        root: dataset.root.display().to_string(),
        dataset: dataset_stats,
        intensity: Some(intensity),
        example_grid,
        figures,
        embedding,
    };
    let json = out.join(JSON_FILE);
    write(&json, &serde_json::to_vec_pretty(&stats)?)?;
    let report = out.join(REPORT_FILE);
    write(&report, report::render(&stats, &stats.figures).as_bytes())?;
    let charts = stats.figures.iter().map(|f| out.join(&f.file)).collect();
    Ok(EdaSummary { stats, report, json, charts })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eda::stats::tests::{bx, meta, record};

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    /// Five real image files (8- and 16-bit PNG, one corrupt) in a temporary folder.
    fn dataset_on_disk(dir: &Path) -> Result<Dataset, Box<dyn std::error::Error>> {
        let mut images = Vec::new();
        let specs: [(&str, bool, (u32, u32)); 5] = [
            ("IMG1.png", true, (120, 90)),
            ("IMG2.png", true, (64, 128)),
            ("IMG3.png", false, (100, 100)),
            ("IMG4.png", false, (80, 60)),
            ("IMG5.png", false, (50, 50)),
        ];
        for (k, (id, fractured, (w, h))) in specs.into_iter().enumerate() {
            let path = dir.join(id);
            match k {
                1 => image::ImageBuffer::<image::Luma<u16>, Vec<u16>>::from_fn(w, h, |x, y| {
                    image::Luma([((x * 500 + y * 37) % 4096) as u16])
                })
                .save(&path)?,
                4 => std::fs::write(&path, b"not an image")?,
                _ => {
                    image::GrayImage::from_fn(w, h, |x, y| image::Luma([((x + y) * 3 % 256) as u8]))
                        .save(&path)?
                }
            }
            let boxes = if fractured { vec![bx(5.0, 6.0, 40.0, 30.0)] } else { vec![] };
            let mut r =
                record(meta(id, [1, 0, 0, 0, 0], fractured, boxes.len() as u32), (w, h), boxes);
            r.path = path;
            images.push(r);
        }
        Ok(Dataset { root: dir.to_path_buf(), images, issues: vec![] })
    }

    #[test]
    fn run_eda_writes_every_file() -> TestResult {
        let dir = tempfile::tempdir()?;
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data)?;
        let ds = dataset_on_disk(&data)?;
        let out = dir.path().join("out");
        let summary = run_eda(&ds, &out, &EdaOptions { grid_size: 4, seed: 3, embedding: None })?;

        let expected = [
            "class_balance.png",
            "body_parts.png",
            "metadata_flags.png",
            "fractures_per_image.png",
            "box_width_px.png",
            "box_height_px.png",
            "box_area_px.png",
            "box_aspect.png",
            "box_width_rel.png",
            "box_height_rel.png",
            "box_area_rel.png",
            "box_centres.png",
            "image_sizes.png",
            "intensity_mean.png",
            "intensity_std.png",
            GRID_FILE,
        ];
        let report = std::fs::read_to_string(&summary.report)?;
        for name in expected {
            let img = image::open(out.join(name)).map_err(|e| format!("{name}: {e}"))?;
            assert!(img.width() > 100 && img.height() > 100, "{name}");
            assert!(report.contains(&format!("]({name})")), "report lacks {name}");
        }
        assert_eq!(summary.charts.len(), expected.len());

        let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&summary.json)?)?;
        assert_eq!(json["dataset"]["classes"]["fractured"], 2);
        assert_eq!(json["intensity"]["bit_depth_16"], 1);
        assert_eq!(json["intensity"]["bit_depth_8"], 3);
        assert_eq!(json["intensity"]["unreadable"][0]["image_id"], "IMG5.png");
        assert_eq!(json["example_grid"].as_array().map(Vec::len), Some(4));
        assert!(
            json["example_grid"][0].as_str().is_some_and(|id| id == "IMG1.png" || id == "IMG2.png")
        );
        Ok(())
    }

    #[test]
    fn run_eda_on_an_empty_dataset() -> TestResult {
        let dir = tempfile::tempdir()?;
        let ds = Dataset { root: dir.path().to_path_buf(), images: vec![], issues: vec![] };
        let summary = run_eda(&ds, &dir.path().join("out"), &EdaOptions::default())?;
        assert!(summary.charts.iter().all(|p| p.is_file()));
        Ok(())
    }
}
