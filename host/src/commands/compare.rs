//! `fracture compare`: training runs side by side — the study's results table, fairness, learning
//! curves and qualitative figures as compare.md, a self-contained compare.html and
//! compare.json. The logic is in [`crate::compare`]; each run is evaluated by `fracture eval`
//! itself, with its arguments parsed as on its command line (same defaults, same numbers).

use std::ffi::OsString;
use std::path::PathBuf;

use clap::Parser;

use crate::commands::eval::EvalArgs;
use crate::compare::{CompareOptions, EvalJob, compare};
use crate::eval::split::SplitName;

#[derive(clap::Args, Debug)]
#[command(after_help = "Example:\n  \
  fracture compare runs/yolo11s runs/frcnn --data FracAtlas --out reports/compare\n\n\
Writes OUT/compare.md, OUT/compare.html (self-contained: images embedded), OUT/compare.json,\n\
OUT/qualitative_<run>_{found,multiple,missed,true_negatives}.png and, per run, OUT/<run>/\n\
eval.json with the files of `fracture eval`.")]
pub struct CompareArgs {
    /// Training run folders (weights/best.safetensors, metrics.csv, hyp.toml, split.json).
    #[arg(required = true, value_name = "RUN")]
    pub runs: Vec<PathBuf>,
    /// Dataset root (FracAtlas layout).
    #[arg(long)]
    pub data: PathBuf,
    /// Output folder.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// The split to score every run on.
    #[arg(long, value_enum, default_value_t = SplitName::Test)]
    pub split: SplitName,
    /// Score every run on this split.json (default: the runs' own split.json when they all
    /// trained on the same split; else each its own).
    #[arg(long, value_name = "SPLIT.json")]
    pub split_file: Option<PathBuf>,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// CPU threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
}

/// `fracture eval`'s arguments, parsed exactly as on its command line.
#[derive(Parser)]
struct EvalCommand {
    #[command(flatten)]
    args: EvalArgs,
}

pub fn run(args: &CompareArgs) -> anyhow::Result<()> {
    let opts = CompareOptions {
        runs: args.runs.clone(),
        data: args.data.clone(),
        out: args.out.clone(),
        split: args.split,
        split_file: args.split_file.clone(),
    };
    let evaluate = |job: &EvalJob| -> anyhow::Result<()> {
        let mut argv: Vec<OsString> = vec!["eval".into()];
        for (flag, value) in [
            ("--weights", job.run.weights.as_os_str()),
            ("--data", job.data.as_os_str()),
            ("--json", job.json.as_os_str()),
            ("--out", job.out_dir.as_os_str()),
        ] {
            argv.push(flag.into());
            argv.push(value.to_os_string());
        }
        argv.extend(["--split".into(), job.split.name().into()]);
        if let Some(f) = job.split_file {
            argv.extend(["--split-file".into(), f.as_os_str().to_os_string()]);
        }
        argv.extend(["--device".into(), args.device.clone().into()]);
        if let Some(t) = args.threads {
            argv.extend(["--threads".into(), t.to_string().into()]);
        }
        let eval = EvalCommand::try_parse_from(&argv)
            .map_err(|e| anyhow::anyhow!("fracture eval arguments: {e}"))?
            .args;
        crate::commands::eval::run(&eval)
    };
    let c = compare(&opts, evaluate)?;
    print!("{}", crate::compare::table::markdown(&c.rows));
    eprintln!(
        "wrote {}, {}, {}",
        c.files.markdown.display(),
        c.files.html.display(),
        c.files.json.display()
    );
    Ok(())
}
