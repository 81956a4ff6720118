//! File-system events on the capture folder (inotify through `notify`), used only to react
//! sooner: the periodic rescan stays the source of truth, so a lost or coalesced event costs
//! latency, never a radiograph. Events go through a bounded channel; when it is full, later
//! events are dropped (the next scan sees the files anyway), so memory stays bounded.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::time::Duration;

use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind, RenameMode};
use notify::{RecommendedWatcher, RecursiveMode, Watcher};

/// Most events held between two looks.
const CAPACITY: usize = 1024;

/// Something happened in the folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// A file was created, written, closed or removed.
    Changed,
    /// A file was renamed into the folder: written elsewhere, so complete now.
    RenamedIn(PathBuf),
}

/// A running watch; dropping it stops watching.
pub struct FolderWatch {
    _watcher: RecommendedWatcher,
    rx: Receiver<WatchEvent>,
}

impl FolderWatch {
    /// Watches `dir` (not its subfolders).
    pub fn start(dir: &Path) -> Result<Self, notify::Error> {
        let (tx, rx) = sync_channel(CAPACITY);
        let mut watcher = notify::recommended_watcher(move |res| forward(&tx, res))?;
        watcher.watch(dir, RecursiveMode::NonRecursive)?;
        Ok(Self { _watcher: watcher, rx })
    }

    /// Waits up to `timeout` for a first event, then takes whatever else is queued.
    pub fn wait(&self, timeout: Duration) -> Vec<WatchEvent> {
        let mut events = Vec::new();
        match self.rx.recv_timeout(timeout) {
            Ok(e) => events.push(e),
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return events,
        }
        events.extend(self.rx.try_iter());
        events
    }
}

fn forward(tx: &SyncSender<WatchEvent>, res: notify::Result<notify::Event>) {
    let Ok(event) = res else {
        // Overflow or a watch error: a plain wake-up makes the daemon rescan.
        let _ = tx.try_send(WatchEvent::Changed);
        return;
    };
    let out = match event.kind {
        EventKind::Modify(ModifyKind::Name(RenameMode::To)) => {
            event.paths.first().cloned().map(WatchEvent::RenamedIn)
        }
        EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => {
            event.paths.get(1).cloned().map(WatchEvent::RenamedIn)
        }
        // Our own reads open and close files too: only a writer closing one matters.
        EventKind::Access(AccessKind::Close(AccessMode::Write))
        | EventKind::Create(_)
        | EventKind::Modify(_)
        | EventKind::Remove(_) => Some(WatchEvent::Changed),
        _ => None,
    };
    if let Some(out) = out {
        let _ = tx.try_send(out);
    }
}
