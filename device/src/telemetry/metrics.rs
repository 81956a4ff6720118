//! Counters and per-stage latency histograms, rendered in the Prometheus text exposition
//! format (version 0.0.4) for `GET /metrics`:
//!
//! ```text
//! fractured_queue_depth                       gauge      jobs waiting to run
//! fractured_jobs_enqueued_total               counter    files queued (new or retried content)
//! fractured_jobs_processed_total              counter    results committed
//! fractured_files_archived_total              counter    files moved to archive/
//! fractured_files_duplicate_total             counter    files whose content was already known
//! fractured_files_quarantined_total           counter    files and jobs quarantined
//! fractured_jobs_failed_total                 counter    jobs failed for reasons not their input's
//! fractured_jobs_requeued_total               counter    jobs found running at start and requeued
//! fractured_pipeline_errors_total             counter    loop errors retried with backoff
//! fractured_stage_duration_seconds{stage}     histogram  read, decode, analyze, the analyzer's
//!                                                        own stages, total
//! fractured_health{state}                     gauge      1 for the current state, else 0
//! fractured_state_dir_free_bytes              gauge
//! fractured_last_progress_age_seconds         gauge
//! fractured_build_info{version}               gauge      always 1
//! ```
//!
//! Counters count since the daemon started (Prometheus handles restarts). Memory is fixed:
//! at most [`MAX_STAGES`] stage labels, a fixed set of buckets each.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use super::health::{HealthReport, HealthState};
use crate::analyzer::StageTiming;

/// Upper bounds of the latency buckets, in seconds (+Inf is implied).
pub const BUCKETS: [f64; 14] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
/// Most distinct stage names kept; later names are counted under `other`.
pub const MAX_STAGES: usize = 32;

/// Totals since start, as the worker counts them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub enqueued: u64,
    pub processed: u64,
    pub archived: u64,
    pub duplicates: u64,
    pub quarantined: u64,
    pub failed: u64,
    pub requeued: u64,
}

#[derive(Debug, Clone, Default)]
struct Histogram {
    /// Per bucket, not cumulative; the last slot is +Inf.
    counts: [u64; BUCKETS.len() + 1],
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        let slot = BUCKETS.iter().position(|&b| seconds <= b).unwrap_or(BUCKETS.len());
        self.counts[slot] += 1;
        self.sum += seconds;
        self.count += 1;
    }
}

/// The daemon's metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    totals: Mutex<Totals>,
    errors: AtomicU64,
    stages: Mutex<BTreeMap<String, Histogram>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Metrics {
    pub fn new() -> Self {
        Self::default()
    }

    /// The worker's totals since start.
    pub fn set_totals(&self, totals: Totals) {
        *lock(&self.totals) = totals;
    }

    pub fn totals(&self) -> Totals {
        *lock(&self.totals)
    }

    /// One error of the loop (retried with backoff).
    pub fn count_error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    /// One image's stage timings.
    pub fn observe(&self, timings: &[StageTiming]) {
        let mut stages = lock(&self.stages);
        for t in timings {
            let known = stages.contains_key(&t.stage);
            let name = if known || stages.len() < MAX_STAGES { t.stage.as_str() } else { "other" };
            stages.entry(name.to_string()).or_default().observe(t.ms / 1e3);
        }
    }

    /// Everything, in the Prometheus text format.
    pub fn render(&self, health: &HealthReport) -> String {
        let totals = self.totals();
        let mut out = String::with_capacity(4096);
        let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, f64)]| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (labels, value) in samples {
                let _ = writeln!(out, "{name}{labels} {}", number(*value));
            }
        };
        let one = |v: u64| vec![(String::new(), v as f64)];
        metric("fractured_queue_depth", "gauge", "Jobs waiting to run.", &one(health.queue_depth));
        for (name, help, value) in [
            (
                "fractured_jobs_enqueued_total",
                "Files queued (new or retried content).",
                totals.enqueued,
            ),
            ("fractured_jobs_processed_total", "Results committed.", totals.processed),
            ("fractured_files_archived_total", "Files moved to archive/.", totals.archived),
            (
                "fractured_files_duplicate_total",
                "Files whose content was already known.",
                totals.duplicates,
            ),
            (
                "fractured_files_quarantined_total",
                "Files and jobs quarantined (bad input).",
                totals.quarantined,
            ),
            (
                "fractured_jobs_failed_total",
                "Jobs failed for reasons not their input's.",
                totals.failed,
            ),
            (
                "fractured_jobs_requeued_total",
                "Jobs found running at start and put back in the queue.",
                totals.requeued,
            ),
            (
                "fractured_pipeline_errors_total",
                "Errors of the ingest loop, retried with backoff.",
                self.errors.load(Ordering::Relaxed),
            ),
        ] {
            metric(name, "counter", help, &one(value));
        }
        let states = [HealthState::Ok, HealthState::Paused, HealthState::Degraded];
        let health_samples: Vec<(String, f64)> = states
            .iter()
            .map(|s| {
                (format!("{{state=\"{}\"}}", s.as_str()), f64::from(u8::from(*s == health.state)))
            })
            .collect();
        metric("fractured_health", "gauge", "1 for the current health state.", &health_samples);
        if let Some(free) = health.state_dir_free_bytes {
            metric(
                "fractured_state_dir_free_bytes",
                "gauge",
                "Bytes free on the state directory's file system.",
                &one(free),
            );
        }
        if let Some(age) = health.last_progress_age_s {
            metric(
                "fractured_last_progress_age_seconds",
                "gauge",
                "Seconds since the pipeline last made progress.",
                &[(String::new(), age)],
            );
        }
        metric(
            "fractured_build_info",
            "gauge",
            "The daemon's version.",
            &[(format!("{{version=\"{}\"}}", env!("CARGO_PKG_VERSION")), 1.0)],
        );

        let _ = writeln!(
            out,
            "# HELP fractured_stage_duration_seconds Time per image in each pipeline stage."
        );
        let _ = writeln!(out, "# TYPE fractured_stage_duration_seconds histogram");
        for (stage, h) in lock(&self.stages).iter() {
            let stage = escape_label(stage);
            let mut cumulative = 0;
            for (i, c) in h.counts.iter().enumerate() {
                cumulative += c;
                let le = BUCKETS.get(i).map_or_else(|| "+Inf".to_string(), |b| number(*b));
                let _ = writeln!(
                    out,
                    "fractured_stage_duration_seconds_bucket{{stage=\"{stage}\",le=\"{le}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "fractured_stage_duration_seconds_sum{{stage=\"{stage}\"}} {}",
                number(h.sum)
            );
            let _ = writeln!(
                out,
                "fractured_stage_duration_seconds_count{{stage=\"{stage}\"}} {}",
                h.count
            );
        }
        out
    }
}

/// A sample value as Prometheus writes it (integers without a fraction).
fn number(v: f64) -> String {
    if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// Label values escape backslash, double quote and newline.
fn escape_label(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::Health;
    use std::time::Duration;

    #[test]
    fn renders_counters_and_cumulative_histograms() {
        let m = Metrics::new();
        m.set_totals(Totals { processed: 7, quarantined: 2, ..Totals::default() });
        m.observe(&[
            StageTiming { stage: "decode".into(), ms: 0.5 },
            StageTiming { stage: "decode".into(), ms: 40.0 },
            StageTiming { stage: "total".into(), ms: 60_000.0 },
        ]);
        let health = Health::new(Duration::from_secs(60));
        health.set_ready(None);
        health.set_queue_depth(4);
        let text = m.render(&health.report());
        for line in [
            "fractured_queue_depth 4",
            "fractured_jobs_processed_total 7",
            "fractured_files_quarantined_total 2",
            "fractured_health{state=\"ok\"} 1",
            "fractured_health{state=\"paused\"} 0",
            "fractured_stage_duration_seconds_bucket{stage=\"decode\",le=\"0.001\"} 1",
            "fractured_stage_duration_seconds_bucket{stage=\"decode\",le=\"0.025\"} 1",
            "fractured_stage_duration_seconds_bucket{stage=\"decode\",le=\"0.05\"} 2",
            "fractured_stage_duration_seconds_bucket{stage=\"decode\",le=\"+Inf\"} 2",
            "fractured_stage_duration_seconds_count{stage=\"decode\"} 2",
            "fractured_stage_duration_seconds_bucket{stage=\"total\",le=\"30\"} 0",
            "fractured_stage_duration_seconds_bucket{stage=\"total\",le=\"+Inf\"} 1",
            "fractured_stage_duration_seconds_sum{stage=\"total\"} 60",
            "# TYPE fractured_stage_duration_seconds histogram",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
    }

    #[test]
    fn stage_labels_are_bounded_and_escaped() {
        let m = Metrics::new();
        let many: Vec<StageTiming> =
            (0..100).map(|i| StageTiming { stage: format!("s{i}\"x"), ms: 1.0 }).collect();
        m.observe(&many);
        let text = m.render(&Health::new(Duration::from_secs(1)).report());
        let stages = text
            .lines()
            .filter(|l| l.starts_with("fractured_stage_duration_seconds_count"))
            .count();
        assert_eq!(stages, MAX_STAGES + 1, "{MAX_STAGES} names and `other`");
        assert!(text.contains("stage=\"s0\\\"x\""));
    }
}
