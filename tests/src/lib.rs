//! fracture-e2e: helpers for end-to-end tests and benchmarks (test crate; see tests/ and src/bin/).

pub mod daemon_bench;
