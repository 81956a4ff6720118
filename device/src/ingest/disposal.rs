//! Where a capture-folder entry goes when the daemon is done with it: `archive/` after its
//! result is committed, `quarantine/` with a `<name>.reason.txt` beside it when it was
//! refused. Nothing already there is ever overwritten: a taken name becomes `stem-1.ext`,
//! `stem-2.ext`, ... Files move by hard link + unlink (the link fails if the name is taken,
//! atomically); directories, and file systems without hard links, by rename after a check.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use crate::state_dir::StateDir;

/// Suffix of the reason file written beside a quarantined entry.
pub const REASON_SUFFIX: &str = ".reason.txt";

/// The archive and quarantine folders.
#[derive(Debug, Clone)]
pub struct Disposal {
    archive: PathBuf,
    quarantine: PathBuf,
}

impl Disposal {
    pub fn new(state: &StateDir) -> Self {
        Self { archive: state.archive.clone(), quarantine: state.quarantine.clone() }
    }

    /// Moves `src` into `archive/`; returns where it went.
    pub fn archive(&self, src: &Path) -> std::io::Result<PathBuf> {
        move_no_clobber(src, &self.archive, None)
    }

    /// Moves `src` (file, directory or symlink itself) into `quarantine/` and writes
    /// `<final name>.reason.txt` beside it; returns where it went.
    pub fn quarantine(&self, src: &Path, reason: &str) -> std::io::Result<PathBuf> {
        let dst = move_no_clobber(src, &self.quarantine, Some(REASON_SUFFIX))?;
        let text = format!(
            "reason: {reason}\nsource: {}\nquarantined_at: {}\n",
            src.display(),
            crate::clock::now_rfc3339()
        );
        std::fs::write(reason_path(&dst), text)?;
        Ok(dst)
    }
}

/// `<path>.reason.txt`.
pub fn reason_path(quarantined: &Path) -> PathBuf {
    let mut name = quarantined.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(REASON_SUFFIX);
    quarantined.with_file_name(name)
}

/// Moves `src` into `dir` under its own name, or the first free `stem-N.ext`. With
/// `companion`, a name is free only if `name + companion` is free too.
pub fn move_no_clobber(
    src: &Path,
    dir: &Path,
    companion: Option<&str>,
) -> std::io::Result<PathBuf> {
    let name = src
        .file_name()
        .ok_or_else(|| std::io::Error::new(ErrorKind::InvalidInput, "source has no file name"))?
        .to_string_lossy()
        .into_owned();
    let is_dir = std::fs::symlink_metadata(src)?.is_dir();
    for n in 0..100_000_u32 {
        let candidate = dir.join(numbered(&name, n));
        if let Some(suffix) = companion {
            let mut c = candidate.as_os_str().to_os_string();
            c.push(suffix);
            if exists(Path::new(&c)) {
                continue;
            }
        }
        if is_dir {
            if exists(&candidate) {
                continue;
            }
            std::fs::rename(src, &candidate)?;
            return Ok(candidate);
        }
        match std::fs::hard_link(src, &candidate) {
            Ok(()) => {
                std::fs::remove_file(src)?;
                return Ok(candidate);
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
            Err(_) => {
                // No hard links here (another file system, or one without them).
                if exists(&candidate) {
                    continue;
                }
                std::fs::rename(src, &candidate)?;
                return Ok(candidate);
            }
        }
    }
    Err(std::io::Error::new(ErrorKind::AlreadyExists, format!("no free name for {name}")))
}

/// `name` for 0, else `stem-N.ext` (`name-N` without an extension).
fn numbered(name: &str, n: u32) -> String {
    if n == 0 {
        return name.to_string();
    }
    match name.rfind('.') {
        Some(dot) if dot > 0 => format!("{}-{n}{}", &name[..dot], &name[dot..]),
        _ => format!("{name}-{n}"),
    }
}

/// Exists as anything, a dangling symlink included.
fn exists(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbering() {
        assert_eq!(numbered("a.png", 0), "a.png");
        assert_eq!(numbered("a.png", 2), "a-2.png");
        assert_eq!(numbered("a.b.dcm", 1), "a.b-1.dcm");
        assert_eq!(numbered("IM0001", 1), "IM0001-1");
    }

    #[test]
    fn collisions_never_overwrite() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (src_dir, dst_dir) = (tmp.path().join("src"), tmp.path().join("dst"));
        std::fs::create_dir_all(&src_dir).expect("mkdir");
        std::fs::create_dir_all(&dst_dir).expect("mkdir");
        let mut moved = Vec::new();
        for content in ["one", "two", "three"] {
            let src = src_dir.join("x.png");
            std::fs::write(&src, content).expect("write");
            moved.push(move_no_clobber(&src, &dst_dir, Some(REASON_SUFFIX)).expect("move"));
            assert!(!src.exists());
        }
        let names: Vec<_> = moved
            .iter()
            .map(|p| p.file_name().expect("name").to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["x.png", "x-1.png", "x-2.png"]);
        for (p, content) in moved.iter().zip(["one", "two", "three"]) {
            assert_eq!(std::fs::read_to_string(p).expect("read"), content);
        }
        // A taken reason-file name makes the entry's name taken too.
        std::fs::write(dst_dir.join("y.png.reason.txt"), "old").expect("write");
        let src = src_dir.join("y.png");
        std::fs::write(&src, "y").expect("write");
        let got = move_no_clobber(&src, &dst_dir, Some(REASON_SUFFIX)).expect("move");
        assert_eq!(got, dst_dir.join("y-1.png"));
    }
}
