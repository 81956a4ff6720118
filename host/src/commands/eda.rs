//! `fracture eda`: load a dataset, report its integrity issues, and write the EDA (charts,
//! `eda.json`, `report.md`) to a folder.

use std::path::PathBuf;

use anyhow::Context;

use crate::dataset::Dataset;
use crate::eda::{EdaOptions, run_eda};

/// Exploratory data analysis: class balance, body parts, box sizes and positions, image sizes
/// and intensities, an example grid, and integrity issues, as PNG charts plus report.md.
#[derive(clap::Args, Debug)]
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
    /// Seed for choosing the example images.
    #[arg(long, value_name = "S", default_value_t = 0)]
    pub seed: u64,
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
    let options = EdaOptions { grid_size: args.grid, seed: args.seed };
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
    println!("wrote {} charts and {}", summary.charts.len(), summary.json.display());
    println!("report: {}", summary.report.display());
    Ok(())
}
