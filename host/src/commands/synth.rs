//! `fracture synth`: generate synthetic radiograph phantoms in parallel and write them as a
//! dataset in the FracAtlas layout, with a progress bar and a throughput summary.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;

use crate::dataset::writer::{DatasetWriter, ImageFormat, WriteError, WriterOptions};
use crate::synth::{Pattern, SynthConfig, generate};

/// Synthetic radiograph phantoms (hand, leg, hip, shoulder) with fracture boxes, written in
/// the FracAtlas layout. For tests, demos and benchmarks; never clinical. The same seed gives
/// byte-identical output whatever the thread count.
#[derive(clap::Args, Debug)]
pub struct SynthArgs {
    /// Output folder (created; must be empty unless --force).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Number of images.
    #[arg(long, value_name = "N", default_value_t = 500)]
    pub count: usize,
    /// Seed: the same seed gives the same dataset.
    #[arg(long, value_name = "S", default_value_t = 1)]
    pub seed: u64,
    /// Probability that an image is fractured (FracAtlas: about 0.18).
    #[arg(long, value_name = "P", default_value_t = 0.18)]
    pub fractured_fraction: f64,
    /// Write 16-bit PNG instead of 8-bit JPEG.
    #[arg(long)]
    pub png16: bool,
    /// Smallest image side in pixels.
    #[arg(long, value_name = "PX", default_value_t = 352)]
    pub size_min: u32,
    /// Largest image side in pixels.
    #[arg(long, value_name = "PX", default_value_t = 480)]
    pub size_max: u32,
    /// Fracture kinds to draw, comma-separated (shares renormalised over those named).
    /// `displaced` alone gives conspicuous fractures for learning tests and demos; `line`
    /// (hairline) fractures are barely visible at detector input sizes, as in FracAtlas.
    #[arg(
        long,
        value_name = "KINDS",
        value_enum,
        value_delimiter = ',',
        default_values_t = Pattern::ALL
    )]
    pub patterns: Vec<Pattern>,
    /// Scale of displaced fractures' shift and tilt, 0.25 to 4 (1 = the default spread). 2–3
    /// gives grossly displaced fractures, visible at small detector input sizes: for learning
    /// tests and demos.
    #[arg(long, value_name = "F", default_value_t = 1.0)]
    pub displacement: f32,
    /// Worker threads (0 = one per core).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub threads: usize,
    /// Write into a non-empty folder, first deleting the dataset already there (images/,
    /// Annotations/, Utilities/Fracture Split/, dataset.csv; other files stay).
    #[arg(long)]
    pub force: bool,
}

pub fn run(args: &SynthArgs) -> anyhow::Result<()> {
    let config = SynthConfig {
        count: args.count,
        seed: args.seed,
        fractured_fraction: args.fractured_fraction,
        png16: args.png16,
        size_min: args.size_min,
        size_max: args.size_max,
        patterns: args.patterns.clone(),
        displacement: args.displacement,
    };
    config.validate()?;
    let format = if args.png16 { ImageFormat::Png16 } else { ImageFormat::Jpeg8 };
    let options = WriterOptions { format, split_seed: args.seed, replace: args.force };
    let writer = DatasetWriter::create(&args.out, options).with_context(|| {
        format!("preparing {} (use --force to replace a dataset there)", args.out.display())
    })?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(args.threads)
        .build()
        .context("starting worker threads")?;

    let bar = ProgressBar::new(args.count as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} synth [{elapsed_precise}] {wide_bar} {pos}/{len} ({per_sec}, ETA {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let start = Instant::now();
    pool.install(|| {
        (0..args.count).into_par_iter().try_for_each(|index| {
            let phantom = generate(&config, index);
            writer.write(phantom.labelled())?;
            bar.inc(1);
            Ok::<(), WriteError>(())
        })
    })
    .with_context(|| format!("writing phantoms to {}", args.out.display()))?;
    bar.finish_and_clear();
    let summary = writer.finish().with_context(|| format!("finishing {}", args.out.display()))?;
    let secs = start.elapsed().as_secs_f64();

    println!(
        "wrote {} images in {:.2} s ({:.1} img/s)",
        summary.images,
        secs,
        summary.images as f64 / secs.max(1e-9)
    );
    println!(
        "{}: {} fractured ({} boxes), split train/valid/test {}/{}/{}; synthetic phantoms, not clinical data",
        args.out.display(),
        summary.fractured,
        summary.boxes,
        summary.splits[0],
        summary.splits[1],
        summary.splits[2]
    );
    Ok(())
}
