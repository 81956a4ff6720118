//! The daemon's loop: scan the capture folder, hash and queue complete files, claim jobs,
//! read, verify, decode, analyze, commit, and only then move the file to `archive/` (or to
//! `quarantine/` with a reason). One thread; SQLite is the only state that matters, so the
//! process may be killed at any instant and the next start carries on:
//!
//! - killed before commit: the job is still `running`; [`Worker::start`] requeues it;
//! - killed after commit, before the move: the file is still in `capture/`; the next scan
//!   hashes it, the queue says `done`, and it is archived without a second result.

use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use crate::analyzer::{Analysis, Analyzer, NoModel, StageTiming};
use crate::config::Config;
use crate::db::audit::{self, AuditEntry};
use crate::db::{Db, DbError};
use crate::ingest::decode::{DecodeOptions, decode};
use crate::ingest::disposal::Disposal;
use crate::ingest::folder::{CaptureFolder, Entry, FolderRules};
use crate::ingest::watch::{FolderWatch, WatchEvent};
use crate::queue::{self, ClaimedJob, DecodedFacts, Enqueued, JobResult, JobState, QueueError};
use crate::state_dir::StateDir;

/// Who the worker is in the audit log.
const ACTOR: &str = "fractured";

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> WorkerError {
    let what = what.into();
    move |source| WorkerError::Io { what, source }
}

/// Counters since the worker started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// New jobs queued (or failed jobs queued again).
    pub enqueued: u64,
    /// Jobs whose result was committed.
    pub processed: u64,
    /// Files moved to archive/ (processed, or duplicates of processed content).
    pub archived: u64,
    /// Files that were duplicates of content already seen.
    pub duplicates: u64,
    /// Files and jobs quarantined.
    pub quarantined: u64,
    /// Jobs failed for reasons not their input's.
    pub failed: u64,
    /// Jobs found running at start and put back in the queue.
    pub requeued: u64,
}

/// Owns the database, the folder state and the analyzer.
pub struct Worker<A: Analyzer> {
    state: StateDir,
    config: Config,
    db: Db,
    analyzer: A,
    folder: CaptureFolder,
    disposal: Disposal,
    decode: DecodeOptions,
    stats: Stats,
    last_scan: Option<Instant>,
}

/// Processes everything in the capture folder with no model (every image `not_analysed`)
/// and returns: what `fractured --once` does without a bundle.
pub fn ingest_once(state_root: &Path, config: Config) -> Result<Stats, WorkerError> {
    Worker::open(state_root, config, NoModel)?.run_once()
}

impl<A: Analyzer> Worker<A> {
    /// Creates the state directory's layout if needed and opens (checks, migrates) the database.
    pub fn open(state_root: &Path, config: Config, analyzer: A) -> Result<Self, WorkerError> {
        let state = StateDir::create(state_root).map_err(io_err("state directory"))?;
        let db = Db::open(&state.database)?;
        let rules = FolderRules {
            stable: Duration::from_millis(config.ingest.stable_ms),
            max_file_bytes: config.ingest.max_file_bytes,
        };
        let folder = CaptureFolder::new(&state.capture, rules).map_err(io_err("capture folder"))?;
        Ok(Self {
            disposal: Disposal::new(&state),
            decode: DecodeOptions::from_config(&config.ingest),
            state,
            config,
            db,
            analyzer,
            folder,
            stats: Stats::default(),
            last_scan: None,
        })
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    pub fn state(&self) -> &StateDir {
        &self.state
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Start-up: logs the start, requeues interrupted jobs, quarantines poisoned ones.
    pub fn start(&mut self, mode: &str) -> Result<(), WorkerError> {
        let model = self.analyzer.model().cloned();
        if model.is_none() {
            warn!("no model bundle: images are logged as not analysed");
        }
        audit::append_now(
            &mut self.db,
            &AuditEntry {
                actor: ACTOR,
                action: "daemon.start",
                subject: env!("CARGO_PKG_VERSION"),
                detail: json!({ "mode": mode, "model": model }),
            },
        )?;
        let requeued = queue::requeue_running(&mut self.db, self.config.ingest.max_attempts)?;
        self.stats.requeued += requeued.requeued.len() as u64;
        if !requeued.requeued.is_empty() {
            info!(jobs = requeued.requeued.len(), "requeued work interrupted by the last stop");
        }
        for (job_id, source, reason) in requeued.poisoned {
            warn!(job_id, %reason, "quarantined");
            self.stats.quarantined += 1;
            self.dispose(job_id, &source, Some(&reason));
        }
        Ok(())
    }

    /// `--once`: start, then scan and process until the folder holds nothing pending and the
    /// queue is empty.
    pub fn run_once(mut self) -> Result<Stats, WorkerError> {
        self.start("once")?;
        let poll = Duration::from_millis((self.config.ingest.stable_ms / 4).clamp(10, 250));
        loop {
            let (pending, offered) = self.scan()?;
            self.drain(None)?;
            if pending == 0 && offered == 0 && queue::depth(&self.db)? == 0 {
                break;
            }
            if offered == 0 {
                std::thread::sleep(poll);
            }
        }
        Ok(self.stats)
    }

    /// The daemon: runs until `stop` is set, reacting to file-system events and rescanning
    /// every `rescan_ms`.
    pub fn run(&mut self, stop: &AtomicBool) -> Result<(), WorkerError> {
        self.start("daemon")?;
        let watch = match FolderWatch::start(&self.state.capture) {
            Ok(w) => Some(w),
            Err(e) => {
                warn!(error = %e, "no file-system events; relying on the periodic rescan");
                None
            }
        };
        let rescan = Duration::from_millis(self.config.ingest.rescan_ms.max(10));
        while !stop.load(Ordering::Relaxed) {
            let (pending, _) = self.scan()?;
            self.drain(Some(stop))?;
            let wait = if pending > 0 {
                Duration::from_millis((self.config.ingest.stable_ms / 4).clamp(10, 250)).min(rescan)
            } else {
                rescan
            };
            match &watch {
                Some(w) => {
                    for event in w.wait(wait) {
                        if let WatchEvent::RenamedIn(path) = event {
                            self.folder.note_renamed_in(path);
                        }
                    }
                }
                None => std::thread::sleep(wait),
            }
        }
        Ok(())
    }

    /// One scan: complete files are hashed and queued, rejected entries quarantined.
    /// Returns (entries still pending, entries offered).
    pub fn scan(&mut self) -> Result<(usize, usize), WorkerError> {
        self.last_scan = Some(Instant::now());
        let scan = self.folder.scan().map_err(io_err("scanning the capture folder"))?;
        let offered = scan.entries.len();
        for entry in scan.entries {
            match entry {
                Entry::Rejected { path, name, reason } => {
                    self.reject_file(&path, &name, &reason)?
                }
                Entry::Ready { path, name, size } => self.admit(&path, &name, size)?,
            }
        }
        Ok((scan.pending, offered))
    }

    /// Processes queued jobs until none is left (rescanning on the way when a rescan is due).
    pub fn drain(&mut self, stop: Option<&AtomicBool>) -> Result<(), WorkerError> {
        let rescan = Duration::from_millis(self.config.ingest.rescan_ms.max(10));
        while self.process_next()? {
            if stop.is_some_and(|s| s.load(Ordering::Relaxed)) {
                break;
            }
            if self.last_scan.is_none_or(|t| t.elapsed() >= rescan) {
                self.scan()?;
            }
        }
        Ok(())
    }

    fn admit(&mut self, path: &Path, name: &str, size: u64) -> Result<(), WorkerError> {
        let sha256 = match hash_file(path, self.config.ingest.max_file_bytes) {
            Ok((sha, read)) if read == size => sha,
            Ok(_) => {
                // It changed while being read: not complete after all.
                self.folder.reoffer(path);
                return Ok(());
            }
            Err(e) => return self.reject_file(path, name, &format!("cannot read: {e}")),
        };
        let outcome = queue::enqueue(
            &mut self.db,
            &queue::NewImage {
                sha256: &sha256,
                source_path: path,
                original_name: name,
                byte_size: size,
            },
        )?;
        match outcome {
            Enqueued::New { job_id } | Enqueued::Retried { job_id } => {
                self.stats.enqueued += 1;
                info!(job_id, file = name, "queued");
            }
            Enqueued::Known { job_id, state, source_path, error } => {
                if source_path != path {
                    self.stats.duplicates += 1;
                }
                match state {
                    JobState::Done => {
                        info!(job_id, file = name, "already processed; archiving");
                        self.dispose(job_id, path, None);
                    }
                    JobState::Quarantined | JobState::Failed => {
                        let reason = format!(
                            "same content as job {job_id}, which was {}: {}",
                            state.as_str(),
                            error.unwrap_or_default()
                        );
                        self.stats.quarantined += 1;
                        self.dispose(job_id, path, Some(&reason));
                    }
                    JobState::Queued | JobState::Running if source_path != path => {
                        // Decide once the original's result is known.
                        self.folder.reoffer(path);
                    }
                    JobState::Queued | JobState::Running => {}
                }
            }
        }
        Ok(())
    }

    /// Claims and processes one job; false when the queue is empty.
    pub fn process_next(&mut self) -> Result<bool, WorkerError> {
        let Some(job) = queue::claim_next(&mut self.db)? else {
            return Ok(false);
        };
        let started = Instant::now();
        let mut timings = Vec::new();

        let t = Instant::now();
        let bytes = match read_file(&job.source_path, self.config.ingest.max_file_bytes) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.fail(&job, "read", "source file vanished before it was processed", false)?;
                return Ok(true);
            }
            Err(e) => {
                self.quarantine_job(&job, "read", &format!("cannot read: {e}"))?;
                return Ok(true);
            }
        };
        let sha256 = hex::encode(Sha256::digest(&bytes));
        timings.push(StageTiming::new("read", t.elapsed()));
        if sha256 != job.sha256 {
            self.fail(&job, "read", "the file's content changed after it was queued", false)?;
            self.folder.reoffer(&job.source_path);
            return Ok(true);
        }

        let t = Instant::now();
        let decoded = match decode(&bytes, &self.decode) {
            Ok(d) => d,
            Err(e) => {
                self.quarantine_job(&job, "decode", &e.to_string())?;
                return Ok(true);
            }
        };
        drop(bytes);
        timings.push(StageTiming::new("decode", t.elapsed()));

        let t = Instant::now();
        let analysis = match self.analyzer.analyze(&decoded.image) {
            Ok(a) => a,
            Err(e) => {
                self.fail(&job, "analyze", &format!("analysis failed: {e}"), true)?;
                return Ok(true);
            }
        };
        timings.push(StageTiming::new("analyze", t.elapsed()));
        timings.extend(analysis.timings);
        timings.push(StageTiming::new("total", started.elapsed()));

        let model = self.analyzer.model().cloned();
        let result = JobResult {
            decoded: DecodedFacts {
                width: decoded.image.width,
                height: decoded.image.height,
                bit_depth: decoded.image.bit_depth,
                format: decoded.format.as_str().to_string(),
                acquisition: decoded.acquisition,
            },
            model: model.as_ref(),
            analysis: Analysis { findings: analysis.findings, timings },
        };
        let run_id = queue::complete(&mut self.db, &job, &result)?;
        self.stats.processed += 1;
        info!(
            job_id = job.job_id,
            run_id,
            findings = result.analysis.findings.len(),
            analysed = model.is_some(),
            "recorded"
        );
        self.dispose(job.job_id, &job.source_path, None);
        Ok(true)
    }

    fn quarantine_job(
        &mut self,
        job: &ClaimedJob,
        stage: &str,
        reason: &str,
    ) -> Result<(), WorkerError> {
        warn!(job_id = job.job_id, stage, reason, "quarantined");
        queue::quarantine(&mut self.db, job, stage, reason)?;
        self.stats.quarantined += 1;
        self.dispose(job.job_id, &job.source_path, Some(reason));
        Ok(())
    }

    fn fail(
        &mut self,
        job: &ClaimedJob,
        stage: &str,
        reason: &str,
        move_file: bool,
    ) -> Result<(), WorkerError> {
        warn!(job_id = job.job_id, stage, reason, "failed");
        queue::fail(&mut self.db, job, stage, reason)?;
        self.stats.failed += 1;
        if move_file {
            self.dispose(job.job_id, &job.source_path, Some(reason));
        }
        Ok(())
    }

    /// An entry refused before it became a job (never read, or unreadable).
    fn reject_file(&mut self, path: &Path, name: &str, reason: &str) -> Result<(), WorkerError> {
        warn!(file = name, reason, "quarantined");
        self.stats.quarantined += 1;
        let tx = self
            .db
            .conn_mut()
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(DbError::from)?;
        crate::db::insert_error(&tx, None, Some(path), "scan", reason)?;
        audit::append(
            &tx,
            &AuditEntry {
                actor: ACTOR,
                action: "file.quarantined",
                subject: name,
                detail: json!({ "reason": reason }),
            },
        )?;
        tx.commit().map_err(DbError::from)?;
        match self.disposal.quarantine(path, reason) {
            Ok(to) => info!(to = %to.display(), "moved to quarantine"),
            Err(e) => self.move_failed(None, path, &e),
        }
        Ok(())
    }

    /// Moves a job's file out of capture/ (quarantine when `reason` is given, else archive)
    /// and records where it went. A failed move is logged; the file stays and is retried
    /// when it is next offered.
    fn dispose(&mut self, job_id: i64, path: &Path, reason: Option<&str>) {
        if std::fs::symlink_metadata(path).is_err() {
            return;
        }
        let moved = match reason {
            Some(r) => self.disposal.quarantine(path, r),
            None => self.disposal.archive(path),
        };
        match moved {
            Ok(to) => {
                if reason.is_none() {
                    self.stats.archived += 1;
                }
                if let Err(e) = queue::set_disposed(&self.db, job_id, &to) {
                    warn!(job_id, error = %e, "could not record where the file went");
                }
            }
            Err(e) => self.move_failed(Some(job_id), path, &e),
        }
    }

    fn move_failed(&mut self, job_id: Option<i64>, path: &Path, e: &std::io::Error) {
        let message = format!("could not move {} out of the capture folder: {e}", path.display());
        warn!(%message);
        if let Err(db) = self.db.record_error(job_id, Some(path), "dispose", &message) {
            warn!(error = %db, "could not record an error");
        }
    }
}

/// Streams a file through SHA-256; returns the hex digest and the bytes read.
fn hash_file(path: &Path, limit: u64) -> std::io::Result<(String, u64)> {
    let file = std::fs::File::open(path)?;
    let mut reader = file.take(limit.saturating_add(1));
    let mut hasher = Sha256::new();
    let mut buf = vec![0_u8; 1 << 16];
    let mut total = 0_u64;
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((hex::encode(hasher.finalize()), total))
}

/// Reads a whole file, refusing it before reading when over `limit`.
fn read_file(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    let file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    if len > limit {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("file is {len} bytes, over the {limit}-byte limit"),
        ));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "file grew over the limit",
        ));
    }
    Ok(bytes)
}
