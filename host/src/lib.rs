//! fracture-host: the libraries behind the `fracture` command — dataset loading and splitting,
//! the phantom generator, exploratory data analysis, and one module per subcommand.

pub mod calibrate;
pub mod commands;
pub mod compare;
pub mod dataset;
pub mod detector_choice;
pub mod eda;
pub mod eval;
pub mod plot;
pub mod synth;
pub mod train;
pub mod tune;
