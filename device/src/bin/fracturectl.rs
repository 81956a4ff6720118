//! `fracturectl`: status, export and audit tooling for a `fractured` state directory.

use clap::{Parser, Subcommand};
use fracture_device::StateDirArg;

/// Control and audit tool for the fracture-detection appliance.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    #[command(flatten)]
    state: StateDirArg,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Counts by state, model, backend and queue depth.
    Status {
        #[arg(long)]
        json: bool,
    },
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    match args.command {
        Command::Status { .. } => anyhow::bail!(
            "no daemon state at {} yet: the daemon is not in this build",
            args.state.state_dir.display()
        ),
    }
}
