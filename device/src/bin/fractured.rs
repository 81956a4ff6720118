//! `fractured`: the device daemon (ingest → queue → decode → analyze → log). A thin shell over
//! [`fracture_device::worker`]: flags, configuration, logging.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use anyhow::Context;
use clap::Parser;
use fracture_device::StateDirArg;
use fracture_device::analyzer::NoModel;
use fracture_device::config::Config;
use fracture_device::worker::Worker;

/// Bone-fracture detection daemon: watches a capture folder, runs the detector, logs every
/// result to SQLite and serves the review screen. NOT FOR CLINICAL USE with phantom models.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    #[command(flatten)]
    state: StateDirArg,
    /// TOML configuration file (every key optional; see --print-config).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Address of the review screen (default 127.0.0.1:8470, loopback only).
    #[arg(long)]
    listen: Option<String>,
    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    print_config: bool,
    /// Process what is in the capture folder now, then exit (prints a JSON summary).
    #[arg(long)]
    once: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if args.print_config {
        print!("{}", config.to_toml()?);
        return Ok(());
    }
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();

    // No bundle loading yet: inference plugs in through the Analyzer trait.
    let state_dir = &args.state.state_dir;
    let mut worker = Worker::open(state_dir, config.clone(), NoModel)
        .with_context(|| format!("opening state directory {}", state_dir.display()))?;
    if args.once {
        let stats = worker.run_once()?;
        println!("{}", serde_json::to_string(&stats)?);
        return Ok(());
    }
    tracing::info!(
        state_dir = %state_dir.display(),
        listen = %config.listen,
        "fractured running (review screen not in this build yet)"
    );
    // Killing the process at any instant is safe (see the worker's docs), so no signal
    // handler is needed for correctness; a clean stop flag is kept for the future.
    let stop = AtomicBool::new(false);
    worker.run(&stop)?;
    Ok(())
}
