//! `fractured`: the device daemon (ingest → infer → log → review screen).

use clap::Parser;
use fracture_device::{DEFAULT_LISTEN, StateDirArg};

/// Bone-fracture detection daemon: watches a capture folder, runs the detector, logs every
/// result to SQLite and serves the review screen. NOT FOR CLINICAL USE with phantom models.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    #[command(flatten)]
    state: StateDirArg,
    /// TOML configuration file.
    #[arg(long)]
    config: Option<std::path::PathBuf>,
    /// Address of the review screen (loopback by default).
    #[arg(long, default_value = DEFAULT_LISTEN)]
    listen: String,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::bail!(
        "the ingest/inference pipeline is not in this build yet (state dir {}, listen {}); \
         use `fracture` on the host meanwhile",
        args.state.state_dir.display(),
        args.listen
    )
}
