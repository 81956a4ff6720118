//! Training: augmentation and batching, the loop ([`trainer`]: optimiser, schedule, EMA,
//! checkpoints, resume, records and curves) shared by both architectures, and what each
//! architecture plugs into it ([`yolo`], [`frcnn`]).

pub mod augment;
pub mod batch;
pub mod config;
pub mod ema;
pub mod frcnn;
pub mod optimizer;
pub mod record;
pub mod schedule;
pub mod trainer;
pub mod validate;
pub mod yolo;
