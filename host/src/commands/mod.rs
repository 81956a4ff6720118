//! One module per `fracture` subcommand: its clap arguments and the thin glue from them to the
//! libraries. Nothing here holds logic other commands need.

pub mod calibrate;
pub mod compare;
pub mod eda;
pub mod engine;
pub mod eval;
pub mod export;
pub mod metrics;
pub mod predict;
pub mod split;
pub mod synth;
pub mod train;
pub mod tune;
