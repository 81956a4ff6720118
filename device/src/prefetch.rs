//! Decode-ahead: while the model analyses one radiograph, the next queued one is read,
//! hashed and decoded on a second thread, so the file I/O and decoding overlap the forward
//! pass instead of adding to it.
//!
//! Nothing about the queue changes: the next job is only *looked at*, never claimed, so a
//! crash leaves it queued exactly as before. A prefetched image is used only when the job
//! later claimed is the same job, at the same path, and the bytes read hash to the SHA-256 it
//! was queued with; any error (vanished, unreadable, corrupt) is dropped here and the normal
//! path reads the file again and reports, quarantines or fails it as it always has.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::ingest::decode::{DecodeOptions, Decoded, decode};
use crate::queue::{ClaimedJob, NextJob};

/// The next job's file, read and decoded ahead of its claim.
pub struct Prefetched {
    job_id: i64,
    source_path: PathBuf,
    sha256: String,
    pub decoded: Decoded,
    /// Time spent reading + hashing, and decoding (on the prefetch thread).
    pub read: Duration,
    pub decode: Duration,
}

impl Prefetched {
    /// Whether this is `job`'s file with the content it was queued with.
    pub fn is_for(&self, job: &ClaimedJob) -> bool {
        self.job_id == job.job_id
            && self.source_path == job.source_path
            && self.sha256 == job.sha256
    }
}

/// Reads, hashes and decodes `next`; `None` on any problem (the normal path will see it).
pub fn prefetch(next: NextJob, max_file_bytes: u64, opts: &DecodeOptions) -> Option<Prefetched> {
    let t = Instant::now();
    let bytes = crate::worker::read_file(&next.source_path, max_file_bytes).ok()?;
    let sha256 = hex::encode(Sha256::digest(&bytes));
    if sha256 != next.sha256 {
        return None;
    }
    let read = t.elapsed();
    let t = Instant::now();
    let decoded = decode(&bytes, opts).ok()?;
    Some(Prefetched {
        job_id: next.job_id,
        source_path: next.source_path,
        sha256,
        decoded,
        read,
        decode: t.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn png(dir: &std::path::Path) -> (PathBuf, String) {
        let p = dir.join("a.png");
        image::GrayImage::from_fn(8, 6, |x, y| image::Luma([(x * 20 + y) as u8])).save(&p).unwrap();
        let sha = hex::encode(Sha256::digest(std::fs::read(&p).unwrap()));
        (p, sha)
    }

    fn job(id: i64, path: &std::path::Path, sha: &str) -> ClaimedJob {
        ClaimedJob {
            job_id: id,
            image_id: 1,
            sha256: sha.into(),
            source_path: path.into(),
            original_name: "a.png".into(),
            byte_size: 0,
            attempts: 1,
        }
    }

    #[test]
    fn used_only_for_the_same_job_path_and_content() {
        let dir = tempfile::tempdir().unwrap();
        let (p, sha) = png(dir.path());
        let next = NextJob { job_id: 7, sha256: sha.clone(), source_path: p.clone() };
        let got = prefetch(next, 1 << 20, &DecodeOptions::default()).unwrap();
        assert_eq!((got.decoded.image.width, got.decoded.image.height), (8, 6));
        assert!(got.is_for(&job(7, &p, &sha)));
        assert!(!got.is_for(&job(8, &p, &sha)), "another job");
        assert!(!got.is_for(&job(7, &dir.path().join("b.png"), &sha)), "another path");
        assert!(!got.is_for(&job(7, &p, "00")), "other content");
    }

    #[test]
    fn any_problem_is_left_to_the_normal_path() {
        let dir = tempfile::tempdir().unwrap();
        let (p, sha) = png(dir.path());
        let opts = DecodeOptions::default();
        // Changed since queued, vanished, over the size limit, not an image: nothing prefetched.
        let changed = NextJob { job_id: 1, sha256: "00".into(), source_path: p.clone() };
        assert!(prefetch(changed, 1 << 20, &opts).is_none());
        let gone = NextJob { job_id: 1, sha256: sha.clone(), source_path: dir.path().join("x") };
        assert!(prefetch(gone, 1 << 20, &opts).is_none());
        let big = NextJob { job_id: 1, sha256: sha, source_path: p };
        assert!(prefetch(big, 10, &opts).is_none());
        let junk = dir.path().join("junk.png");
        std::fs::write(&junk, b"not an image").unwrap();
        let sha = hex::encode(Sha256::digest(b"not an image"));
        assert!(
            prefetch(NextJob { job_id: 1, sha256: sha, source_path: junk }, 1 << 20, &opts)
                .is_none()
        );
    }
}
