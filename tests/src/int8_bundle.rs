//! An INT8 model for the benchmarks' timing rows: phantoms synthesised, split, and the bundle
//! calibrated by `fracture calibrate` itself (max method, 16 phantoms, any accuracy drop
//! accepted: the rows time the model, the calibration report judges its accuracy).

use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};

/// Adds `model.int8.onnx` to the bundle at `bundle`; `tag` names the scratch files in `tmp`.
pub fn calibrate(fracture: &Path, tmp: &Path, tag: &str, bundle: &Path) -> anyhow::Result<()> {
    let data = tmp.join(format!("phantoms-{tag}"));
    let split = tmp.join(format!("split-{tag}.json"));
    let report = tmp.join(format!("calibration-{tag}"));
    let d = data.to_string_lossy().into_owned();
    let sp = split.to_string_lossy().into_owned();
    let synth = ["synth", "--out", &d, "--count", "40", "--seed", "3"];
    run_quiet(fracture, &[&synth[..], &["--size-min", "380", "--size-max", "480"]].concat())?;
    run_quiet(fracture, &["split", "--data", &d, "--out", &sp, "--seed", "1"])?;
    println!("  calibrating an INT8 model (fracture calibrate, 16 phantoms) ...");
    let b = bundle.to_string_lossy().into_owned();
    let r = report.to_string_lossy().into_owned();
    let args = ["calibrate", "--bundle", &b, "--data", &d, "--split-file", &sp, "--images", "16"];
    let settings = ["--method", "max", "--max-drop", "1", "--out", &r];
    run_quiet(fracture, &[&args[..], &settings[..]].concat())
}

/// Says which INT8 weights ONNX Runtime's rows run with on this machine (`opts.int8_weights`).
pub fn print_weight_form(opts: &fracture_runtime::OrtOptions) {
    let form = if opts.int8_weights.reduced() {
        "7-bit (re-quantised at load: this CPU's u8×s8 kernels saturate on 8-bit ones)"
    } else {
        "8-bit, as in the bundle"
    };
    println!("  INT8 weights in ONNX Runtime: {form}");
}

/// Runs `fracture ARGS`, showing its output only when it fails.
pub fn run_quiet(fracture: &Path, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new(fracture).args(args).output().context("running fracture")?;
    if !out.status.success() {
        bail!("fracture {} failed:\n{}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}
