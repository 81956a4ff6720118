//! fracture-device: the appliance side. A daemon (`fractured`) watches a capture folder, keeps
//! a durable job queue and a tamper-evident log in SQLite, decodes radiographs (PNG, JPEG, TIFF,
//! DICOM) and hands them to an [`analyzer::Analyzer`]; `fracturectl` reads the same state.
//!
//! The modules, in the order data flows through them:
//! - [`scanner`]: a V4L2 scanner (or a replay of frame files) writing captures into the
//!   capture folder;
//! - [`state_dir`]: the folders and database file under one state directory;
//! - [`config`]: the TOML configuration and its safe defaults;
//! - [`ingest`]: the capture folder (stability, rejection rules), archive/quarantine moves,
//!   format sniffing and decoding (including DICOM);
//! - [`queue`]: the exactly-once job queue keyed by content SHA-256;
//! - [`analyzer`]: the seam where inference plugs in ([`analyzer::NoModel`] without a model);
//! - [`bundle_select`] and [`backend_tensorrt`], [`backend_ort`], [`backend_libtorch`]: the
//!   installed model bundle and the analyzer that runs it (a TensorRT engine from the engine
//!   cache, ONNX Runtime or libtorch);
//! - [`db`]: the SQLite log (schema, migrations, audit hash chain, status counts);
//! - [`worker`]: the loop that ties them together, pausing when [`space`] runs short;
//! - [`telemetry`]: health and metrics, served by [`http`] (`/healthz`, `/metrics`) and
//!   reported to systemd by [`systemd`]; [`signals`] turns SIGTERM/SIGINT into a clean stop;
//! - [`review`]: the worklist, image records and reviewers' decisions behind the review
//!   screen that [`http`] serves, with [`accounts`] for its logins;
//! - [`export`]: the auditor export (CSV / JSON Lines carrying the audit head hash).

pub mod accounts;
pub mod analyzer;
pub mod backend_libtorch;
pub mod backend_ort;
pub mod backend_tensorrt;
pub mod bundle_select;
pub mod clock;
pub mod config;
pub mod db;
pub mod export;
pub mod http;
pub mod ingest;
pub mod prefetch;
pub mod queue;
pub mod review;
pub mod scanner;
pub mod signals;
pub mod space;
pub mod state_dir;
pub mod systemd;
pub mod telemetry;
pub mod worker;

use std::path::PathBuf;

/// Default state directory when none is given (systemd's StateDirectory=fractured).
pub const DEFAULT_STATE_DIR: &str = "/var/lib/fractured";
/// The HTTP server (review screen, health, metrics) listens on loopback only unless TLS is
/// configured.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8470";

/// Flags shared by `fractured` and `fracturectl`.
#[derive(Debug, Clone, clap::Args)]
pub struct StateDirArg {
    /// State directory (capture/, archive/, quarantine/, bundles/ and the SQLite database).
    #[arg(long, default_value = DEFAULT_STATE_DIR, global = true)]
    pub state_dir: PathBuf,
}
