//! `fracture`: the host tool. A thin shell: parse the command line, hand over to
//! `fracture_host::commands`.

use clap::{Parser, Subcommand};
use fracture_host::commands;

/// Host tools of the bone-fracture detection appliance: synthetic data, dataset checks and
/// splits, exploratory analysis, detection metrics, YOLO11 training and prediction
/// (evaluation, Faster R-CNN, export and engine building are still to come).
///
/// Typical first run:
///   fracture synth --out data/phantoms --count 500 --seed 1
///   fracture check --data data/phantoms
///   fracture eda --data data/phantoms --out reports/eda
///   fracture train --arch yolo11n --data data/phantoms --out runs/n --epochs 30
///   fracture predict --weights runs/n/weights/best.safetensors scan.png
#[derive(Parser, Debug)]
#[command(version, verbatim_doc_comment)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Write synthetic radiograph phantoms in the FracAtlas layout (tests and demos, never clinical).
    Synth(commands::synth::SynthArgs),
    /// Load a dataset, cross-check images, labels and dataset.csv, and report problems.
    Check(commands::split::CheckArgs),
    /// Stratified train/val/test split or k-fold assignment, duplicates kept together.
    Split(commands::split::SplitArgs),
    /// Train a detector (YOLO11 n/s/m/l/x) with checkpoints, curves and resume.
    Train(Box<commands::train::TrainArgs>),
    /// Hyperparameter search (quasi-random trials, successive halving, optional k-fold) with a
    /// resumable study store; workers on several machines share a PostgreSQL store.
    Tune(Box<commands::tune::TuneArgs>),
    /// Run trained weights on images; boxes in original pixels as a table or JSON.
    Predict(commands::predict::PredictArgs),
    /// Package weights as a model bundle for the device (manifest + weights).
    Export(commands::export::ExportArgs),
    /// Model bundle tools (verify).
    Bundle(commands::export::BundleArgs),
    /// Exploratory data analysis: plots and report.md.
    Eda(commands::eda::EdaArgs),
    /// COCO-style detection metrics (the 12 stats, P/R/F1) from COCO json files.
    Metrics(commands::metrics::MetricsArgs),
    /// Evaluate weights on a dataset split: mAP, P/R/F1, body parts, sizes, operating points.
    #[command(long_about = commands::eval::LONG_ABOUT)]
    Eval(Box<commands::eval::EvalArgs>),
    /// INT8-calibrate a YOLO11 bundle (entropy, percentile, max) and compare FP32/FP16/INT8.
    #[command(long_about = commands::calibrate::LONG_ABOUT)]
    Calibrate(Box<commands::calibrate::CalibrateArgs>),
    /// Compare training runs: the results table, fairness, learning curves and qualitative
    /// figures as compare.md, a self-contained compare.html and compare.json.
    Compare(Box<commands::compare::CompareArgs>),
    /// TensorRT engines: build one from a bundle, benchmark one (needs TensorRT 10 and a GPU).
    Engine(commands::engine::EngineArgs),
}

fn main() -> std::process::ExitCode {
    // Before libtorch starts its threads: subnormal floats would slow fresh networks ~6x.
    fracture_models::denormals::flush_denormals();
    // Freed tensors stay in the heap for the next step instead of being re-faulted page by page.
    fracture_models::heap::keep_freed_memory();
    // Errors print as one readable chain of causes (no backtrace, whatever RUST_BACKTRACE says).
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Synth(args) => commands::synth::run(&args),
        Command::Check(args) => commands::split::run_check(&args),
        Command::Split(args) => commands::split::run(&args),
        Command::Train(args) => commands::train::run(&args),
        Command::Tune(args) => commands::tune::run(&args),
        Command::Predict(args) => commands::predict::run(&args),
        Command::Export(args) => commands::export::run_export(&args),
        Command::Bundle(args) => commands::export::run_bundle(&args),
        Command::Eda(args) => commands::eda::run(&args),
        Command::Metrics(args) => commands::metrics::run(&args),
        Command::Eval(args) => commands::eval::run(&args),
        Command::Calibrate(args) => commands::calibrate::run(&args),
        Command::Compare(args) => commands::compare::run(&args),
        Command::Engine(args) => commands::engine::run(&args),
    }
}
