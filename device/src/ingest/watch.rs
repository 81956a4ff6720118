//! File-system events on the capture folder (inotify through `notify`), used only to react
//! sooner: the periodic rescan stays the source of truth, so a lost or coalesced event costs
//! latency, never a radiograph.
//!
//! Events coalesce as they arrive: any number of creates/writes/removes become one "changed"
//! flag, and renamed-in paths collect in a set of at most [`MAX_RENAMED`] (beyond it they are
//! dropped; the rescan's stability rule still completes those files). Memory stays bounded
//! whatever the rate of arrivals.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind, RenameMode};
use notify::{RecommendedWatcher, RecursiveMode, Watcher};

/// Most renamed-in paths held between two looks.
pub const MAX_RENAMED: usize = 4096;

/// Something happened in the folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// Files were created, written, closed or removed (any number of them).
    Changed,
    /// A file was renamed into the folder: written elsewhere, so complete now.
    RenamedIn(PathBuf),
}

#[derive(Debug, Default)]
struct Pending {
    changed: bool,
    renamed: HashSet<PathBuf>,
}

impl Pending {
    fn is_empty(&self) -> bool {
        !self.changed && self.renamed.is_empty()
    }
}

#[derive(Debug, Default)]
struct Shared {
    pending: Mutex<Pending>,
    ready: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A running watch; dropping it stops watching.
pub struct FolderWatch {
    _watcher: RecommendedWatcher,
    shared: Arc<Shared>,
}

impl FolderWatch {
    /// Watches `dir` (not its subfolders).
    pub fn start(dir: &Path) -> Result<Self, notify::Error> {
        let shared = Arc::new(Shared::default());
        let sink = shared.clone();
        let mut watcher = notify::recommended_watcher(move |res| forward(&sink, res))?;
        watcher.watch(dir, RecursiveMode::NonRecursive)?;
        Ok(Self { _watcher: watcher, shared })
    }

    /// Waits up to `timeout` for something to happen, then takes everything that has
    /// (coalesced: at most one [`WatchEvent::Changed`]).
    pub fn wait(&self, timeout: Duration) -> Vec<WatchEvent> {
        let deadline = Instant::now() + timeout;
        let mut pending = self.shared.lock();
        while pending.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Vec::new();
            }
            pending = self
                .shared
                .ready
                .wait_timeout(pending, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        let taken = std::mem::take(&mut *pending);
        let mut events: Vec<WatchEvent> =
            taken.renamed.into_iter().map(WatchEvent::RenamedIn).collect();
        if taken.changed {
            events.push(WatchEvent::Changed);
        }
        events
    }
}

fn forward(shared: &Shared, res: notify::Result<notify::Event>) {
    let mut pending = shared.lock();
    let Ok(event) = res else {
        // Overflow or a watch error: a plain wake-up makes the daemon rescan.
        pending.changed = true;
        shared.ready.notify_one();
        return;
    };
    let renamed = match event.kind {
        EventKind::Modify(ModifyKind::Name(RenameMode::To)) => event.paths.first().cloned(),
        EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => event.paths.get(1).cloned(),
        // Our own reads open and close files too: only a writer closing one matters.
        EventKind::Access(AccessKind::Close(AccessMode::Write))
        | EventKind::Create(_)
        | EventKind::Modify(_)
        | EventKind::Remove(_) => {
            pending.changed = true;
            None
        }
        _ => return,
    };
    if let Some(path) = renamed {
        if pending.renamed.len() < MAX_RENAMED {
            pending.renamed.insert(path);
        } else {
            pending.changed = true;
        }
    }
    shared.ready.notify_one();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_coalesce() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let watch = FolderWatch::start(tmp.path()).expect("watch");
        for i in 0..200 {
            std::fs::write(tmp.path().join(format!("f{i}.png")), b"x").expect("write");
        }
        let elsewhere = tmp.path().join(".incoming");
        std::fs::write(&elsewhere, b"y").expect("write");
        std::fs::rename(&elsewhere, tmp.path().join("done.png")).expect("rename");
        std::thread::sleep(Duration::from_millis(100));
        let mut events = watch.wait(Duration::from_secs(2));
        events.extend(watch.wait(Duration::from_millis(50)));
        let changed = events.iter().filter(|e| **e == WatchEvent::Changed).count();
        assert!((1..=2).contains(&changed), "{} changes coalesced to {changed}", 200);
        assert!(events.contains(&WatchEvent::RenamedIn(tmp.path().join("done.png"))), "{events:?}");
        assert!(watch.wait(Duration::from_millis(20)).is_empty());
    }
}
