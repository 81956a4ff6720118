//! fracture-device: the appliance side. The daemon (ingest, durable queue, inference, SQLite
//! log, review screen) is built in the device-daemon work; this crate fixes its command-line
//! contract (DESIGN.md) so the binaries exist and say honestly what they cannot do yet.

use std::path::PathBuf;

/// Default state directory when none is given (systemd's StateDirectory=fractured).
pub const DEFAULT_STATE_DIR: &str = "/var/lib/fractured";
/// The review screen listens on loopback only unless configured otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8470";

/// Flags shared by `fractured` and `fracturectl`.
#[derive(Debug, Clone, clap::Args)]
pub struct StateDirArg {
    /// State directory (capture/, archive/, quarantine/, bundles/ and the SQLite database).
    #[arg(long, default_value = DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
}
