//! The daemon's health: `ok`, `paused` (ingestion stopped on purpose, e.g. the state
//! directory is full; it resumes by itself) or `degraded` (something is wrong: database
//! errors being retried, or work queued and nothing finishing), with a reason, the queue
//! depth and when the pipeline last made progress.
//!
//! Progress is what the systemd watchdog is fed by: a job that finished (whatever its
//! outcome), a file queued, or a scan that found the queue idle. A pause for space counts as
//! alive while its check keeps running (a restart cannot free disk space); a degraded
//! daemon that makes no progress stops feeding the watchdog, so systemd restarts it.

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use crate::analyzer::ModelIdentity;
use crate::clock::rfc3339;

/// What `/healthz` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthState {
    Ok,
    Paused,
    Degraded,
}

impl HealthState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Paused => "paused",
            Self::Degraded => "degraded",
        }
    }
}

/// A snapshot, as `/healthz` serves it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HealthReport {
    pub state: HealthState,
    /// Why the state is not `ok` (`None` when it is).
    pub reason: Option<String>,
    pub queue_depth: u64,
    /// RFC 3339 time of the last progress (`None` before the first).
    pub last_progress: Option<String>,
    /// Seconds since then.
    pub last_progress_age_s: Option<f64>,
    /// Bytes free for the daemon on the state directory's file system, when last checked.
    pub state_dir_free_bytes: Option<u64>,
    /// The model the images are analysed with; `None`: logged as not analysed.
    pub model: Option<ModelIdentity>,
    /// False until start-up (database checks, migrations, requeue) is done.
    pub ready: bool,
    pub started_at: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Condition {
    Running,
    Paused(String),
    Degraded(String),
}

#[derive(Debug)]
struct Inner {
    condition: Condition,
    ready: bool,
    queue_depth: u64,
    last_progress: Option<(Instant, SystemTime)>,
    /// The last time the loop ran while paused.
    last_alive: Option<Instant>,
    free_bytes: Option<u64>,
    model: Option<ModelIdentity>,
}

/// Shared, lock-protected health state.
#[derive(Debug)]
pub struct Health {
    inner: Mutex<Inner>,
    stall_after: Duration,
    started: SystemTime,
}

impl Health {
    pub fn new(stall_after: Duration) -> Self {
        Self {
            inner: Mutex::new(Inner {
                condition: Condition::Running,
                ready: false,
                queue_depth: 0,
                last_progress: None,
                last_alive: None,
                free_bytes: None,
                model: None,
            }),
            stall_after,
            started: SystemTime::now(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave it inconsistent (plain fields).
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Start-up is done; the model (or none) is known.
    pub fn set_ready(&self, model: Option<ModelIdentity>) {
        let mut g = self.lock();
        g.ready = true;
        g.model = model;
    }

    /// Back to normal; returns the reason of the pause or degradation that ended, if any.
    pub fn set_running(&self) -> Option<String> {
        match std::mem::replace(&mut self.lock().condition, Condition::Running) {
            Condition::Running => None,
            Condition::Paused(r) | Condition::Degraded(r) => Some(r),
        }
    }

    /// Ingestion is paused on purpose; the loop keeps checking.
    pub fn set_paused(&self, reason: impl Into<String>) {
        let mut g = self.lock();
        g.condition = Condition::Paused(reason.into());
        g.last_alive = Some(Instant::now());
    }

    /// Something is wrong and being retried.
    pub fn set_degraded(&self, reason: impl Into<String>) {
        self.lock().condition = Condition::Degraded(reason.into());
    }

    /// The pipeline moved: a job finished, a file was queued, or an idle scan ran.
    pub fn progress(&self) {
        self.lock().last_progress = Some((Instant::now(), SystemTime::now()));
    }

    pub fn set_queue_depth(&self, depth: u64) {
        self.lock().queue_depth = depth;
    }

    pub fn set_free_bytes(&self, free: u64) {
        self.lock().free_bytes = Some(free);
    }

    /// Whether the watchdog may be fed: progress within `interval`, or a pause whose check
    /// ran within `interval`.
    pub fn alive_within(&self, interval: Duration) -> bool {
        let g = self.lock();
        let recent = |t: Option<Instant>| t.is_some_and(|t| t.elapsed() <= interval);
        match g.condition {
            Condition::Paused(_) => recent(g.last_alive) || recent(g.last_progress.map(|p| p.0)),
            Condition::Running | Condition::Degraded(_) => recent(g.last_progress.map(|p| p.0)),
        }
    }

    /// The current state, with stall detection: work queued and no progress for
    /// `stall_after` is `degraded`.
    pub fn report(&self) -> HealthReport {
        let g = self.lock();
        let age = g.last_progress.map(|(t, _)| t.elapsed());
        let (state, reason) = match &g.condition {
            Condition::Paused(r) => (HealthState::Paused, Some(r.clone())),
            Condition::Degraded(r) => (HealthState::Degraded, Some(r.clone())),
            Condition::Running if !g.ready => {
                (HealthState::Degraded, Some("starting up".to_string()))
            }
            Condition::Running => {
                let since = age.unwrap_or_else(|| self.started.elapsed().unwrap_or_default());
                if g.queue_depth > 0 && since > self.stall_after {
                    (
                        HealthState::Degraded,
                        Some(format!(
                            "stalled: {} job(s) queued and no progress for {} s",
                            g.queue_depth,
                            since.as_secs()
                        )),
                    )
                } else {
                    (HealthState::Ok, None)
                }
            }
        };
        HealthReport {
            state,
            reason,
            queue_depth: g.queue_depth,
            last_progress: g.last_progress.map(|(_, wall)| rfc3339(wall)),
            last_progress_age_s: age.map(|a| (a.as_secs_f64() * 1e3).round() / 1e3),
            state_dir_free_bytes: g.free_bytes,
            model: g.model.clone(),
            ready: g.ready,
            started_at: rfc3339(self.started),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_and_watchdog_feeding() {
        let h = Health::new(Duration::from_millis(50));
        assert_eq!(h.report().state, HealthState::Degraded, "not ready yet");
        h.set_ready(None);
        assert_eq!(h.report().state, HealthState::Ok);
        assert!(!h.alive_within(Duration::from_secs(1)), "no progress yet");
        h.progress();
        assert!(h.alive_within(Duration::from_secs(1)));
        h.set_paused("state directory full: 1 MB free");
        let r = h.report();
        assert_eq!(
            (r.state, r.reason.as_deref()),
            (HealthState::Paused, Some("state directory full: 1 MB free"))
        );
        assert_eq!(h.set_running().as_deref(), Some("state directory full: 1 MB free"));
        h.set_degraded("database is locked");
        assert_eq!(h.report().state, HealthState::Degraded);
        h.set_running();
        // Work queued and nothing finishing: stalled.
        h.set_queue_depth(3);
        std::thread::sleep(Duration::from_millis(80));
        let r = h.report();
        assert_eq!(r.state, HealthState::Degraded);
        assert!(r.reason.as_deref().is_some_and(|s| s.starts_with("stalled")), "{r:?}");
        assert!(!h.alive_within(Duration::from_millis(20)));
        h.set_queue_depth(0);
        assert_eq!(h.report().state, HealthState::Ok, "idle is not stalled");
    }
}
