//! fracture-e2e: helpers for end-to-end tests and benchmarks (test crate; see tests/ and src/bin/).

pub mod backends_bench;
pub mod bench_inputs;
pub mod daemon_bench;
pub mod frcnn_bench;
pub mod int8_bundle;
