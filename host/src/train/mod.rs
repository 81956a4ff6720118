//! Training: augmentation and (with the detectors) batching, the loop, optimisers, schedules,
//! checkpoints and curves shared by both architectures.

pub mod augment;
pub mod batch;
pub mod config;
pub mod ema;
pub mod optimizer;
pub mod record;
pub mod schedule;
pub mod validate;
pub mod yolo;
