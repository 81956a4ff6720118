//! The capture folder: which entries count, and when.
//!
//! Each [`CaptureFolder::scan`] lists the folder (not its subfolders) and applies the rules:
//! - hidden names (`.x`) and temporary ones (`*.tmp`, `*.part`, `*.partial`, `*.crdownload`,
//!   `~x`) are ignored: a writer's work in progress;
//! - an entry counts only once **complete**: renamed into the folder (reported by
//!   [`super::watch`]), or with size and modification time unchanged for `stable`;
//! - complete entries are then offered once as [`Entry::Ready`] (a regular file, or a
//!   symlink to one inside the folder) or [`Entry::Rejected`] with a reason: a directory named
//!   like an image, a symlink leading outside the folder or nowhere, anything not a regular
//!   file, an empty file, a file over the size limit (refused before any byte is read).
//!
//! Other subdirectories are ignored. State lives in memory only: after a restart every file
//! is offered again, and the queue (keyed by content) recognises what it has seen.
//!
//! Memory stays bounded whatever arrives: at most `max_tracked` entries are tracked (others
//! wait on disk until earlier ones have left the folder), and a scan offers at most the
//! number of entries its caller asks for — the oldest complete ones first; the rest stay
//! complete and are offered by a later scan without waiting again (backpressure).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

/// File name extensions that mark an image (for spotting directories named like one).
const IMAGE_EXTENSIONS: [&str; 7] = ["png", "jpg", "jpeg", "tif", "tiff", "dcm", "dicom"];
/// Extensions of files still being written by common tools.
const TEMP_EXTENSIONS: [&str; 4] = ["tmp", "part", "partial", "crdownload"];

/// The rules' parameters.
#[derive(Debug, Clone, Copy)]
pub struct FolderRules {
    /// How long size and mtime must stay unchanged.
    pub stable: Duration,
    /// Largest file accepted.
    pub max_file_bytes: u64,
    /// Most entries tracked at once.
    pub max_tracked: usize,
}

/// A complete entry, offered once.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    Ready { path: PathBuf, name: String, size: u64 },
    Rejected { path: PathBuf, name: String, reason: String },
}

/// One scan's outcome.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scan {
    pub entries: Vec<Entry>,
    /// Entries seen but not yet complete.
    pub pending: usize,
    /// The soonest a pending entry can become complete.
    pub next_due: Option<Duration>,
    /// Complete entries held back because the scan's offer limit was reached.
    pub waiting: usize,
    /// Entries not looked at because `max_tracked` entries are tracked already.
    pub untracked: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Signature {
    len: u64,
    modified: Option<SystemTime>,
    kind: u8,
}

#[derive(Debug)]
struct Seen {
    signature: Signature,
    since: Instant,
    /// Known complete (renamed in, or stable); stays so until the signature changes.
    complete: bool,
    offered: bool,
}

/// The watched folder and what has been seen in it.
#[derive(Debug)]
pub struct CaptureFolder {
    dir: PathBuf,
    canonical: PathBuf,
    rules: FolderRules,
    seen: HashMap<PathBuf, Seen>,
    renamed_in: HashSet<PathBuf>,
}

impl CaptureFolder {
    pub fn new(dir: &Path, rules: FolderRules) -> std::io::Result<Self> {
        let canonical = dir.canonicalize()?;
        Ok(Self {
            dir: dir.to_path_buf(),
            canonical,
            rules,
            seen: HashMap::new(),
            renamed_in: HashSet::new(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A file was renamed into the folder: it is complete now.
    pub fn note_renamed_in(&mut self, path: PathBuf) {
        let parent = path.parent();
        let ours = parent == Some(self.dir.as_path()) || parent == Some(self.canonical.as_path());
        if let (true, Some(name)) = (ours, path.file_name()) {
            self.renamed_in.insert(self.dir.join(name));
        }
    }

    /// Offer `path` again on the next scan, without waiting for it to be complete again
    /// (its offer could not be acted on, e.g. the database refused the write).
    pub fn offer_again(&mut self, path: &Path) {
        if let Some(seen) = self.seen.get_mut(path) {
            seen.offered = false;
        }
    }

    /// Offer `path` again on the next scan once complete (e.g. its content changed).
    pub fn reoffer(&mut self, path: &Path) {
        self.seen.remove(path);
    }

    /// Lists the folder and returns up to `max_offers` entries that became complete since
    /// they were last offered, oldest first.
    pub fn scan(&mut self, max_offers: usize) -> std::io::Result<Scan> {
        let now = Instant::now();
        let mut out = Scan::default();
        let mut present = HashSet::new();
        let mut candidates: Vec<(Instant, PathBuf, String, std::fs::Metadata)> = Vec::new();
        // Entries gone since the last scan free their tracking slots first.
        self.seen.retain(|p, _| std::fs::symlink_metadata(p).is_ok());
        for dirent in std::fs::read_dir(&self.dir)? {
            let Ok(dirent) = dirent else { continue };
            let name = dirent.file_name().to_string_lossy().into_owned();
            if is_ignored_name(&name) {
                continue;
            }
            let path = self.dir.join(dirent.file_name());
            let Ok(meta) = std::fs::symlink_metadata(&path) else { continue };
            if meta.is_dir() && !looks_like_image(&name) {
                continue;
            }
            if !self.seen.contains_key(&path) && self.seen.len() >= self.rules.max_tracked {
                out.untracked += 1;
                continue;
            }
            present.insert(path.clone());
            let signature = Signature {
                len: meta.len(),
                modified: meta.modified().ok(),
                kind: if meta.is_dir() {
                    1
                } else if meta.file_type().is_symlink() {
                    2
                } else {
                    0
                },
            };
            let renamed = self.renamed_in.remove(&path);
            let seen = self.seen.entry(path.clone()).or_insert(Seen {
                signature,
                since: now,
                complete: false,
                offered: false,
            });
            if seen.signature != signature {
                *seen = Seen { signature, since: now, complete: false, offered: false };
            }
            if seen.offered {
                continue;
            }
            let waited = now.duration_since(seen.since);
            seen.complete |= renamed || waited >= self.rules.stable;
            if !seen.complete {
                out.pending += 1;
                let due = self.rules.stable - waited;
                out.next_due = Some(out.next_due.map_or(due, |d| d.min(due)));
                continue;
            }
            candidates.push((seen.since, path, name, meta));
        }
        self.seen.retain(|p, _| present.contains(p));
        self.renamed_in.retain(|p| present.contains(p));
        candidates.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        for (i, (_, path, name, meta)) in candidates.into_iter().enumerate() {
            if i >= max_offers {
                out.waiting += 1;
                continue;
            }
            if let Some(seen) = self.seen.get_mut(&path) {
                seen.offered = true;
            }
            out.entries.push(classify(&path, name, &meta, &self.canonical, &self.rules));
        }
        Ok(out)
    }
}

fn classify(
    path: &Path,
    name: String,
    meta: &std::fs::Metadata,
    canonical_dir: &Path,
    rules: &FolderRules,
) -> Entry {
    let rejected =
        |reason: String| Entry::Rejected { path: path.to_path_buf(), name: name.clone(), reason };
    let target_meta = if meta.file_type().is_symlink() {
        let Ok(target) = path.canonicalize() else {
            return rejected("symlink leads nowhere (dangling)".into());
        };
        if !target.starts_with(canonical_dir) {
            return rejected("symlink points outside the capture folder; refused".into());
        }
        match std::fs::metadata(&target) {
            Ok(m) => m,
            Err(e) => return rejected(format!("symlink target unreadable: {e}")),
        }
    } else {
        meta.clone()
    };
    if target_meta.is_dir() {
        return rejected("a directory named like an image file".into());
    }
    if !target_meta.is_file() {
        return rejected("not a regular file (device, pipe or socket)".into());
    }
    let size = target_meta.len();
    if size == 0 {
        return rejected("empty file (0 bytes)".into());
    }
    if size > rules.max_file_bytes {
        return rejected(format!(
            "file is {size} bytes, over the {}-byte limit; not read",
            rules.max_file_bytes
        ));
    }
    Entry::Ready { path: path.to_path_buf(), name, size }
}

/// Hidden and temporary names: never touched.
pub fn is_ignored_name(name: &str) -> bool {
    if name.starts_with('.') || name.starts_with('~') {
        return true;
    }
    let lower = name.to_ascii_lowercase();
    TEMP_EXTENSIONS.iter().any(|ext| lower.ends_with(&format!(".{ext}")))
}

/// Whether the name ends in an image extension.
pub fn looks_like_image(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    IMAGE_EXTENSIONS.iter().any(|ext| lower.ends_with(&format!(".{ext}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ignored_names() {
        for name in [".hidden.png", "x.png.tmp", "x.PART", "~lock.png", "a.crdownload"] {
            assert!(is_ignored_name(name), "{name}");
        }
        for name in ["x.png", "IM0001", "scan.dcm", "tmp.png"] {
            assert!(!is_ignored_name(name), "{name}");
        }
    }

    #[test]
    fn offered_once_after_stable_and_again_after_change() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let rules = FolderRules {
            stable: Duration::from_millis(150),
            max_file_bytes: 1 << 20,
            max_tracked: 100,
        };
        let mut folder = CaptureFolder::new(tmp.path(), rules).expect("folder");
        let file = tmp.path().join("a.png");
        std::fs::write(&file, b"abc").expect("write");
        let first = folder.scan(usize::MAX).expect("scan");
        assert!(first.entries.is_empty());
        assert_eq!(first.pending, 1);
        std::thread::sleep(Duration::from_millis(200));
        let second = folder.scan(usize::MAX).expect("scan");
        assert_eq!(second.entries.len(), 1);
        assert!(folder.scan(usize::MAX).expect("scan").entries.is_empty(), "offered once");
        std::fs::write(&file, b"abcdef").expect("rewrite");
        assert_eq!(folder.scan(usize::MAX).expect("scan").pending, 1, "changed: waits again");
        folder.note_renamed_in(file.clone());
        // Reported as renamed in: complete at once, no waiting.
        let third = folder.scan(usize::MAX).expect("scan");
        assert_eq!(third.entries.len(), 1);
    }

    #[test]
    fn offers_are_limited_oldest_first_and_tracking_is_bounded() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let rules = FolderRules { stable: Duration::ZERO, max_file_bytes: 1 << 20, max_tracked: 4 };
        let mut folder = CaptureFolder::new(tmp.path(), rules).expect("folder");
        for i in 0..3 {
            std::fs::write(tmp.path().join(format!("old{i}.png")), b"x").expect("write");
        }
        let first = folder.scan(0).expect("scan");
        assert_eq!((first.entries.len(), first.waiting), (0, 3));
        for i in 0..3 {
            std::fs::write(tmp.path().join(format!("new{i}.png")), b"x").expect("write");
        }
        // Four tracked (three old, one new), two not looked at yet; the old ones first.
        let second = folder.scan(2).expect("scan");
        assert_eq!((second.waiting, second.untracked), (2, 2), "{second:?}");
        let offered: Vec<String> = second
            .entries
            .iter()
            .map(|e| match e {
                Entry::Ready { name, .. } | Entry::Rejected { name, .. } => name.clone(),
            })
            .collect();
        assert_eq!(offered, ["old0.png", "old1.png"]);
        // Offered entries leave the folder; the others follow, still without waiting.
        for name in &offered {
            std::fs::remove_file(tmp.path().join(name)).expect("rm");
        }
        let third = folder.scan(usize::MAX).expect("scan");
        assert_eq!(third.untracked, 0);
        assert_eq!(third.entries.len() + third.pending, 4, "{third:?}");
    }
}
