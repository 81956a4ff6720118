//! SIGTERM and SIGINT ask the daemon to stop: they set a flag the worker checks between
//! jobs, so the job in hand is finished and committed and the process exits 0. A second
//! signal while stopping exits at once (status 1) — safe too, since the queue survives
//! any kill (see [`crate::worker`]).

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use signal_hook::consts::signal::{SIGINT, SIGTERM};
use signal_hook::flag;

/// Installs the handlers and returns the flag they set.
pub fn stop_flag() -> std::io::Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [SIGTERM, SIGINT] {
        // Order matters: the conditional exit runs first, so only a second signal (when the
        // flag is already set) exits at once.
        flag::register_conditional_shutdown(signal, 1, stop.clone())?;
        flag::register(signal, stop.clone())?;
    }
    Ok(stop)
}

/// Installs the SIGUSR1 handler (the scanner's capture trigger) and returns its flag:
/// `systemctl kill -s USR1 fractured` captures the next frame.
pub fn trigger_flag() -> std::io::Result<Arc<AtomicBool>> {
    let trigger = Arc::new(AtomicBool::new(false));
    flag::register(signal_hook::consts::signal::SIGUSR1, trigger.clone())?;
    Ok(trigger)
}
