//! What the running daemon knows about itself, shared between the worker (which writes it),
//! the HTTP server (`/healthz`, `/metrics`) and the systemd notifier (STATUS=, WATCHDOG=1):
//! the [`health::Health`] state and the [`metrics::Metrics`] counters and histograms. One
//! [`Telemetry`] behind an `Arc`; every part locks briefly or is atomic, so readers never
//! hold up the pipeline.

pub mod health;
pub mod metrics;

use std::time::Duration;

pub use health::{Health, HealthReport, HealthState};
pub use metrics::Metrics;

/// Health and metrics of one daemon.
#[derive(Debug)]
pub struct Telemetry {
    pub health: Health,
    pub metrics: Metrics,
}

impl Telemetry {
    /// `stall_after`: with work queued and no job finished for this long, the daemon
    /// reports itself `degraded`.
    pub fn new(stall_after: Duration) -> Self {
        Self { health: Health::new(stall_after), metrics: Metrics::new() }
    }
}

impl Default for Telemetry {
    fn default() -> Self {
        Self::new(Duration::from_secs(crate::config::HealthConfig::default().stall_after_s))
    }
}
