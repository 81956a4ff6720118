//! Free space on the state directory's file system, and the minimum the daemon wants before
//! it takes in more work. The probe is a trait so tests can make a disk "fill up" and
//! "empty" without root or a real full disk; [`Statvfs`] is the real one.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Tells how many bytes an unprivileged process can still write under a path.
pub trait SpaceProbe: Send + Sync {
    fn free_bytes(&self, path: &Path) -> std::io::Result<u64>;
}

/// `statvfs(2)`: blocks available to unprivileged users times the fragment size.
#[derive(Debug, Clone, Copy, Default)]
pub struct Statvfs;

impl SpaceProbe for Statvfs {
    fn free_bytes(&self, path: &Path) -> std::io::Result<u64> {
        let st = rustix::fs::statvfs(path).map_err(std::io::Error::from)?;
        Ok(st.f_bavail.saturating_mul(st.f_frsize))
    }
}

/// A probe that reports whatever the test sets.
#[derive(Debug, Clone, Default)]
pub struct FakeSpace(Arc<AtomicU64>);

impl FakeSpace {
    pub fn new(free_bytes: u64) -> Self {
        Self(Arc::new(AtomicU64::new(free_bytes)))
    }

    pub fn set(&self, free_bytes: u64) {
        self.0.store(free_bytes, Ordering::SeqCst);
    }
}

impl SpaceProbe for FakeSpace {
    fn free_bytes(&self, _path: &Path) -> std::io::Result<u64> {
        Ok(self.0.load(Ordering::SeqCst))
    }
}

/// The verdict of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Space {
    Enough {
        free: u64,
    },
    /// Below the minimum: the message is the health reason.
    Low {
        free: u64,
        reason: String,
    },
}

/// Checks a directory against a minimum.
pub struct SpaceGuard {
    dir: PathBuf,
    min_free: u64,
    probe: Box<dyn SpaceProbe>,
}

impl std::fmt::Debug for SpaceGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpaceGuard")
            .field("dir", &self.dir)
            .field("min_free", &self.min_free)
            .finish()
    }
}

const MIB: u64 = 1 << 20;

impl SpaceGuard {
    pub fn new(dir: &Path, min_free_mb: u64, probe: Box<dyn SpaceProbe>) -> Self {
        Self { dir: dir.to_path_buf(), min_free: min_free_mb.saturating_mul(MIB), probe }
    }

    pub fn set_probe(&mut self, probe: Box<dyn SpaceProbe>) {
        self.probe = probe;
    }

    /// Free space against the minimum. A probe that fails (the directory vanished, the file
    /// system went away) counts as no space.
    pub fn check(&self) -> Space {
        match self.probe.free_bytes(&self.dir) {
            Ok(free) if free >= self.min_free => Space::Enough { free },
            Ok(free) => Space::Low {
                free,
                reason: format!(
                    "state directory full: {} MB free, below the {} MB minimum ({})",
                    free / MIB,
                    self.min_free / MIB,
                    self.dir.display()
                ),
            },
            Err(e) => Space::Low {
                free: 0,
                reason: format!("cannot tell free space on {}: {e}", self.dir.display()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statvfs_reports_something_and_the_guard_compares() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let free = Statvfs.free_bytes(tmp.path()).expect("statvfs");
        assert!(free > 0);
        let fake = FakeSpace::new(10 * MIB);
        let guard = SpaceGuard::new(tmp.path(), 64, Box::new(fake.clone()));
        match guard.check() {
            Space::Low { free, reason } => {
                assert_eq!(free, 10 * MIB);
                assert!(reason.starts_with("state directory full: 10 MB free"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        fake.set(64 * MIB);
        assert_eq!(guard.check(), Space::Enough { free: 64 * MIB });
        let missing = SpaceGuard::new(&tmp.path().join("none"), 0, Box::new(Statvfs));
        assert!(matches!(missing.check(), Space::Low { .. }));
    }
}
