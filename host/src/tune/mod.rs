//! `fracture tune`: hyperparameter search. Trials are quasi-random points ([`halton`]) of a
//! TOML search space ([`space`]) applied to a base configuration; asynchronous successive
//! halving ([`asha`]) trains every trial for a few epochs and continues only the best; each
//! job is a `fracture train` run ([`worker`]) claimed from a study store ([`store`]: SQLite on
//! one machine, PostgreSQL for several) that keeps every trial's configuration, per-epoch
//! metrics and state, so a study resumes after an interruption; [`report`] ranks the trials and
//! writes the best configuration. A study's definition is in [`study`].

pub mod asha;
pub mod halton;
pub mod report;
pub mod space;
pub mod store;
pub mod study;
pub mod worker;
