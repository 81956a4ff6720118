//! The state directory: one folder holds everything the daemon keeps (DESIGN.md's contract).
//!
//! ```text
//! STATE/capture/      radiographs arrive here (watched)
//! STATE/archive/      processed files, moved here after their result is committed
//! STATE/quarantine/   rejected files, each with `<name>.reason.txt` beside it
//! STATE/bundles/      installed model bundles
//! STATE/engines/      TensorRT engines built from them, keyed by bundle, GPU, TensorRT, precision
//! STATE/fractured.sqlite3   the job queue and the log (plus its -wal and -shm files)
//! ```

use std::path::{Path, PathBuf};

/// File name of the SQLite database inside the state directory.
pub const DATABASE_FILE: &str = "fractured.sqlite3";

/// Paths of everything under one state directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateDir {
    pub root: PathBuf,
    pub capture: PathBuf,
    pub archive: PathBuf,
    pub quarantine: PathBuf,
    pub bundles: PathBuf,
    /// The TensorRT engine cache ([`fracture_runtime::engine_cache`]).
    pub engines: PathBuf,
    pub database: PathBuf,
}

impl StateDir {
    /// The layout under `root`, without touching the file system.
    pub fn at(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
            capture: root.join("capture"),
            archive: root.join("archive"),
            quarantine: root.join("quarantine"),
            bundles: root.join("bundles"),
            engines: root.join("engines"),
            database: root.join(DATABASE_FILE),
        }
    }

    /// The layout under `root` (made absolute, so logged paths stay meaningful), creating
    /// any folder that is missing.
    pub fn create(root: &Path) -> std::io::Result<Self> {
        let dir = Self::at(&std::path::absolute(root)?);
        for folder in
            [&dir.root, &dir.capture, &dir.archive, &dir.quarantine, &dir.bundles, &dir.engines]
        {
            std::fs::create_dir_all(folder).map_err(|e| {
                std::io::Error::new(e.kind(), format!("cannot create {}: {e}", folder.display()))
            })?;
        }
        Ok(dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_every_folder_and_is_idempotent() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().join("state");
        let a = StateDir::create(&root).expect("create");
        assert!(a.root.is_absolute());
        let b = StateDir::create(&root).expect("again");
        assert_eq!(a, b);
        for p in [&a.capture, &a.archive, &a.quarantine, &a.bundles, &a.engines] {
            assert!(p.is_dir(), "{}", p.display());
        }
        assert_eq!(a.database, root.join(DATABASE_FILE));
    }
}
