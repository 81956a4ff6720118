//! `fracture eda`: load a dataset, report its integrity issues, and write the EDA (charts,
//! `eda.json`, `report.md`) to a folder; with `--weights`, also the embedding analysis (PCA,
//! t-SNE, Isolation Forest outliers of a trained detector's backbone features).

use std::path::PathBuf;

use anyhow::{Context, bail};
use fracture_models::compute_device::parse_device;

use crate::dataset::Dataset;
use crate::eda::embedding::extract::ModelSpec;
use crate::eda::embedding::{CSV_FILE, EmbeddingOptions};
use crate::eda::{EdaOptions, run_eda};

/// Exploratory data analysis: class balance, body parts, box sizes and positions, image sizes
/// and intensities, an example grid, and integrity issues, as PNG charts plus report.md.
/// With --weights, also the embedding analysis: each image's backbone features (YOLO11 layer
/// 10 or Faster R-CNN C5, average-pooled) as PCA and t-SNE maps coloured by class and body part
/// (embedding_pca.png, embedding_tsne.png), the most outlying images by Isolation Forest
/// (outliers_grid.png), and embeddings.csv.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  \
  fracture eda --data FracAtlas --out reports/eda\n  \
  fracture eda --data FracAtlas --out reports/eda --weights runs/s416/weights/best.safetensors\n  \
  fracture eda --data FracAtlas --out reports/eda --weights frcnn-coco.safetensors --arch frcnn-r50-fpn-v2 --nc 90")]
pub struct EdaArgs {
    /// Dataset folder in the FracAtlas layout (dataset.csv, images/, Annotations/).
    #[arg(long, value_name = "DIR")]
    pub data: PathBuf,
    /// Output folder for the charts, eda.json and report.md (created if needed).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Images in the example grid.
    #[arg(long, value_name = "N", default_value_t = 16)]
    pub grid: usize,
    /// Seed for choosing the example images (and of the Isolation Forest).
    #[arg(long, value_name = "S", default_value_t = 0)]
    pub seed: u64,
    /// Trained weights (safetensors) whose backbone embeds each image: adds the embedding
    /// analysis. Files written by `fracture train` say their architecture; a plain ultralytics
    /// or torchvision state_dict also needs --arch and --nc.
    #[arg(long, value_name = "W")]
    pub weights: Option<PathBuf>,
    /// Architecture of a plain state_dict (yolo11n|s|m|l|x|frcnn-r50-fpn-v2).
    #[arg(long, requires_all = ["nc", "weights"])]
    pub arch: Option<String>,
    /// Number of classes of a plain state_dict (Faster R-CNN: without the background).
    #[arg(long, requires = "arch")]
    pub nc: Option<i64>,
    /// Network input size for the embeddings (default: the size the weights were trained at).
    /// Faster R-CNN: the resize rule's min and max size both.
    #[arg(long, requires = "weights")]
    pub imgsz: Option<u32>,
    /// Device for the embeddings: cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Most outlying images (Isolation Forest) to show in outliers_grid.png.
    #[arg(long, value_name = "K", default_value_t = 16)]
    pub outliers: usize,
    /// t-SNE perplexity (capped at a third of the images); t-SNE is exact, O(n²) in time and
    /// memory: fine for a few thousand images.
    #[arg(long, default_value_t = 30.0)]
    pub perplexity: f64,
}

pub fn run(args: &EdaArgs) -> anyhow::Result<()> {
    let dataset = Dataset::load(&args.data)
        .with_context(|| format!("loading dataset {}", args.data.display()))?;
    println!(
        "{}: {} images ({} fractured), {} fracture boxes, {} integrity issues",
        args.data.display(),
        dataset.images.len(),
        dataset.fractured_count(),
        dataset.box_count(),
        dataset.issues.len()
    );
    let embedding = match &args.weights {
        Some(weights) => {
            if !(args.perplexity.is_finite() && args.perplexity > 0.0) {
                bail!("--perplexity {}: must be a positive number", args.perplexity);
            }
            Some(EmbeddingOptions {
                model: ModelSpec {
                    weights: weights.clone(),
                    arch: args.arch.clone(),
                    nc: args.nc,
                    imgsz: args.imgsz,
                    device: parse_device(&args.device)?,
                },
                outliers: args.outliers,
                perplexity: args.perplexity,
                seed: args.seed,
                progress: true,
            })
        }
        None => None,
    };
    let options = EdaOptions { grid_size: args.grid, seed: args.seed, embedding };
    let summary = run_eda(&dataset, &args.out, &options)
        .with_context(|| format!("writing the EDA to {}", args.out.display()))?;
    if let Some(i) = &summary.stats.intensity
        && !i.unreadable.is_empty()
    {
        eprintln!(
            "warning: {} images could not be decoded (listed in the report)",
            i.unreadable.len()
        );
    }
    if let Some(e) = &summary.stats.embedding {
        let t = &e.timings;
        println!(
            "embeddings: {} images x {} dimensions from {} ({}); embedding {:.1} s, PCA {:.1} s, t-SNE {:.1} s, Isolation Forest {:.1} s",
            e.images, e.dimensions, e.arch, e.layer, t.embed, t.pca, t.tsne, t.isolation_forest
        );
        if !e.unreadable.is_empty() {
            eprintln!("warning: {} images could not be embedded", e.unreadable.len());
        }
        println!("embedding table: {}", args.out.join(CSV_FILE).display());
    }
    println!("wrote {} charts and {}", summary.charts.len(), summary.json.display());
    println!("report: {}", summary.report.display());
    Ok(())
}
