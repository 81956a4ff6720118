//! systemd's notify protocol (`Type=notify`), through `sd-notify`: `READY=1` once start-up is
//! done (database opened, checked and migrated, interrupted work requeued), `STATUS=` lines
//! that follow the health state, `WATCHDOG=1` only while the pipeline makes progress (see
//! [`crate::telemetry::health`]), and `STOPPING=1` on the way out. Without `NOTIFY_SOCKET`
//! (not started by systemd) every message is a no-op.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sd_notify::NotifyState;
use tracing::{debug, warn};

use crate::telemetry::{HealthState, Telemetry};

/// How often the notifier looks at the health state.
const TICK: Duration = Duration::from_millis(100);

fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        debug!(error = %e, "sd_notify failed");
    }
}

/// The one-line status systemd shows (`systemctl status fractured`).
pub fn status_line(telemetry: &Telemetry) -> String {
    let h = telemetry.health.report();
    let t = telemetry.metrics.totals();
    let counts = format!(
        "{} queued, {} processed, {} quarantined, {} failed",
        h.queue_depth, t.processed, t.quarantined, t.failed
    );
    match (h.state, h.reason) {
        (HealthState::Ok, _) => format!("running: {counts}"),
        (state, Some(reason)) => format!("{}: {reason} ({counts})", state.as_str()),
        (state, None) => format!("{}: {counts}", state.as_str()),
    }
}

/// The thread that talks to systemd for the daemon's whole life.
pub struct Notifier {
    done: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Notifier {
    /// Starts notifying; `None` when systemd is not listening (`NOTIFY_SOCKET` unset).
    /// STOPPING=1 goes out as soon as `stop` is set (the worker then finishes its job).
    pub fn spawn(telemetry: Arc<Telemetry>, stop: Arc<AtomicBool>) -> Option<Self> {
        std::env::var_os("NOTIFY_SOCKET")?;
        let watchdog = sd_notify::watchdog_enabled();
        let done = Arc::new(AtomicBool::new(false));
        let flag = done.clone();
        let thread = std::thread::Builder::new()
            .name("systemd-notify".into())
            .spawn(move || notify_loop(&telemetry, watchdog, &stop, &flag))
            .ok()?;
        Some(Self { done, thread: Some(thread) })
    }

    /// The daemon is exiting: STOPPING=1 (if not said yet) and the thread ends.
    pub fn finish(mut self) {
        self.done.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn notify_loop(
    telemetry: &Telemetry,
    watchdog: Option<Duration>,
    stop: &AtomicBool,
    done: &AtomicBool,
) {
    let mut ready = false;
    let mut last_status = String::new();
    // Ping at half the interval, as sd_watchdog_enabled(3) advises.
    let ping_every = watchdog.map(|w| w / 2);
    let mut last_ping: Option<Instant> = None;
    let mut starved = false;
    loop {
        if stop.load(Ordering::SeqCst) || done.load(Ordering::SeqCst) {
            send(&[
                NotifyState::Stopping,
                NotifyState::Status("stopping: finishing the job in hand"),
            ]);
            break;
        }
        let report = telemetry.health.report();
        let status = status_line(telemetry);
        if report.ready && !ready {
            ready = true;
            send(&[NotifyState::Ready, NotifyState::Status(&status)]);
            last_status = status;
        } else if ready && status != last_status {
            send(&[NotifyState::Status(&status)]);
            last_status = status;
        }
        if let (true, Some(interval), Some(every)) = (ready, watchdog, ping_every)
            && last_ping.is_none_or(|t| t.elapsed() >= every)
        {
            if telemetry.health.alive_within(interval) {
                send(&[NotifyState::Watchdog]);
                last_ping = Some(Instant::now());
                starved = false;
            } else if !starved {
                starved = true;
                warn!(
                    "no pipeline progress within the watchdog interval ({:.0} s): not feeding \
                     the watchdog",
                    interval.as_secs_f64()
                );
            }
        }
        std::thread::sleep(TICK);
    }
}
