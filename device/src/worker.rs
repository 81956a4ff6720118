//! The daemon's loop: scan the capture folder, hash and queue complete files, claim jobs,
//! read, verify, decode, analyze, commit, and only then move the file to `archive/` (or to
//! `quarantine/` with a reason). SQLite is the only state that matters, so the process may
//! be killed at any instant and the next start carries on:
//!
//! - killed before commit: the job is still `running`; [`Worker::start`] requeues it;
//! - killed after commit, before the move: the file is still in `capture/`; the next scan
//!   hashes it, the queue says `done`, and it is archived without a second result.
//!
//! One loop owns the database; while it analyses a job, two scoped helper threads overlap
//! the I/O: the previous job's result is committed and its file moved ([`Worker::drain`]'s
//! pipeline; a crash then leaves at most two jobs `running`, both requeued), and the next
//! queued file is read and decoded ([`crate::prefetch`]).
//!
//! In daemon mode ([`Worker::run`]) nothing stops the loop but the stop flag:
//! - the state directory's free space is checked before every scan and every job; below the
//!   minimum, ingestion **pauses** (health `paused`, files wait in capture/) and resumes by
//!   itself once there is room;
//! - a database write that fails because the disk is full pauses the same way; any other
//!   error marks the daemon `degraded`; both are retried with exponential backoff, and the
//!   job that was interrupted goes back to the queue;
//! - **backpressure**: a scan queues new files only while fewer than `max_pending_jobs` wait.
//!
//! Health, counters and stage timings go to a shared [`Telemetry`] for `/healthz`,
//! `/metrics` and systemd.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use crate::analyzer::{Analysis, Analyzer, ModelIdentity, NoModel, StageTiming};
use crate::config::Config;
use crate::db::audit::{self, AuditEntry};
use crate::db::{Db, DbError};
use crate::ingest::decode::{DecodeOptions, Decoded, decode};
use crate::ingest::disposal::Disposal;
use crate::ingest::folder::{CaptureFolder, Entry, FolderRules};
use crate::ingest::watch::{FolderWatch, WatchEvent};
use crate::prefetch::{Prefetched, prefetch};
use crate::queue::{self, ClaimedJob, DecodedFacts, Enqueued, JobResult, JobState, QueueError};
use crate::space::{Space, SpaceGuard, SpaceProbe, Statvfs};
use crate::state_dir::StateDir;
use crate::telemetry::Telemetry;
use crate::telemetry::metrics::Totals;

/// Who the worker is in the audit log.
const ACTOR: &str = "fractured";
/// The longest the loop sleeps without looking at the stop flag.
const STOP_CHECK: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("ingestion paused: {0}")]
    LowSpace(String),
}

impl WorkerError {
    /// Whether the error says the state directory cannot take more writes (disk or quota
    /// full, read-only, I/O failure): a reason to pause, not to give up.
    pub fn is_storage(&self) -> bool {
        let sqlite = |e: &rusqlite::Error| {
            matches!(
                e.sqlite_error_code(),
                Some(
                    rusqlite::ErrorCode::DiskFull
                        | rusqlite::ErrorCode::SystemIoFailure
                        | rusqlite::ErrorCode::ReadOnly
                        | rusqlite::ErrorCode::CannotOpen
                )
            )
        };
        let io = |e: &std::io::Error| {
            matches!(
                e.kind(),
                std::io::ErrorKind::StorageFull
                    | std::io::ErrorKind::QuotaExceeded
                    | std::io::ErrorKind::ReadOnlyFilesystem
            )
        };
        match self {
            Self::Db(DbError::Sqlite(e)) | Self::Queue(QueueError::Db(DbError::Sqlite(e))) => {
                sqlite(e)
            }
            Self::Db(DbError::Migration(rusqlite_migration::Error::RusqliteError {
                err, ..
            })) => sqlite(err),
            Self::Io { source, .. } => io(source),
            Self::LowSpace(_) => true,
            _ => false,
        }
    }
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

impl From<&Stats> for Totals {
    fn from(s: &Stats) -> Self {
        Self {
            enqueued: s.enqueued,
            processed: s.processed,
            archived: s.archived,
            duplicates: s.duplicates,
            quarantined: s.quarantined,
            failed: s.failed,
            requeued: s.requeued,
        }
    }
}

/// What one scan did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScanSummary {
    /// Entries seen but not complete yet.
    pub pending: usize,
    /// Entries offered (queued, recognised or rejected).
    pub offered: usize,
    /// Complete entries held back by backpressure.
    pub waiting: usize,
    /// Entries not looked at yet (the tracking limit was reached).
    pub untracked: usize,
}

/// What went wrong last time round the loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trouble {
    /// The state directory was full or refused writes.
    Storage,
    /// Anything else.
    Other,
}

/// Exponential backoff between retries.
#[derive(Debug, Clone)]
struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    fn new(initial: Duration, max: Duration) -> Self {
        let initial = initial.max(Duration::from_millis(1));
        Self { initial, max: max.max(initial), next: initial }
    }

    fn reset(&mut self) {
        self.next = self.initial;
    }

    /// The wait before the next try (and doubles the one after).
    fn step(&mut self) -> Duration {
        let now = self.next;
        self.next = (self.next * 2).min(self.max);
        now
    }
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
    telemetry: Arc<Telemetry>,
    space: SpaceGuard,
    /// The next job's image, decoded while the previous one was analysed.
    prefetched: Option<Prefetched>,
    /// The last job analysed by [`Worker::drain`], not committed yet: its result is written
    /// and its file moved while the next job is analysed.
    finished: Option<Finished>,
}

/// A job analysed but not yet committed. It stays `running` in the database until
/// [`commit_finished`] writes it, so a crash meanwhile requeues it like any job in hand.
struct Finished {
    job: ClaimedJob,
    decoded: DecodedFacts,
    model: Option<ModelIdentity>,
    analysis: Analysis,
}

/// What writing a job's end needs, borrowed apart from the analyzer so that it can run on
/// another thread while the analyzer works.
struct Books<'a> {
    db: &'a mut Db,
    disposal: &'a Disposal,
    stats: &'a mut Stats,
}

/// Processes everything in the capture folder with no model (every image `not_analysed`)
/// and returns: what `fractured --once` does without a bundle.
pub fn ingest_once(state_root: &Path, config: Config) -> Result<Stats, WorkerError> {
    Worker::open(state_root, config, NoModel)?.run_once()
}

/// Sleeps for `d`, or less if `stop` is set meanwhile.
fn sleep_unless_stopped(stop: &AtomicBool, d: Duration) {
    let end = Instant::now() + d;
    while !stop.load(Ordering::Relaxed) {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        std::thread::sleep(left.min(STOP_CHECK));
    }
}

impl<A: Analyzer> Worker<A> {
    /// Creates the state directory's layout if needed and opens (checks, migrates) the database.
    pub fn open(state_root: &Path, config: Config, analyzer: A) -> Result<Self, WorkerError> {
        let state = StateDir::create(state_root).map_err(io_err("state directory"))?;
        let db = Db::open(&state.database)?;
        let rules = FolderRules {
            stable: Duration::from_millis(config.ingest.stable_ms),
            max_file_bytes: config.ingest.max_file_bytes,
            max_tracked: config.ingest.max_tracked_files.max(1),
        };
        let folder = CaptureFolder::new(&state.capture, rules).map_err(io_err("capture folder"))?;
        let telemetry = Arc::new(Telemetry::new(Duration::from_secs(config.health.stall_after_s)));
        let space = SpaceGuard::new(&state.root, config.storage.min_free_mb, Box::new(Statvfs));
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
            telemetry,
            space,
            prefetched: None,
            finished: None,
        })
    }

    /// Reports health and metrics to `telemetry` (shared with the HTTP server and systemd)
    /// instead of a private one.
    pub fn with_telemetry(mut self, telemetry: Arc<Telemetry>) -> Self {
        self.telemetry = telemetry;
        self
    }

    /// Measures free space with `probe` instead of `statvfs` (tests).
    pub fn with_space_probe(mut self, probe: Box<dyn SpaceProbe>) -> Self {
        self.space.set_probe(probe);
        self
    }

    pub fn telemetry(&self) -> &Arc<Telemetry> {
        &self.telemetry
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

    /// Start-up: logs the start, requeues interrupted jobs, quarantines poisoned ones; the
    /// daemon is ready after this (health `ready`, systemd READY=1).
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
        self.requeue()?;
        self.telemetry.health.set_ready(model);
        self.publish()?;
        self.telemetry.health.progress();
        Ok(())
    }

    /// Jobs left running go back to the queue (those interrupted too often to quarantine).
    fn requeue(&mut self) -> Result<(), WorkerError> {
        let requeued = queue::requeue_running(&mut self.db, self.config.ingest.max_attempts)?;
        self.stats.requeued += requeued.requeued.len() as u64;
        if !requeued.requeued.is_empty() {
            info!(jobs = requeued.requeued.len(), "requeued interrupted work");
        }
        for (job_id, source, reason) in requeued.poisoned {
            warn!(job_id, %reason, "quarantined");
            self.stats.quarantined += 1;
            self.dispose(job_id, &source, Some(&reason));
        }
        Ok(())
    }

    /// Queue depth and totals to the telemetry.
    fn publish(&mut self) -> Result<u64, WorkerError> {
        let depth = queue::depth(&self.db)?;
        self.telemetry.health.set_queue_depth(depth);
        self.telemetry.metrics.set_totals(Totals::from(&self.stats));
        Ok(depth)
    }

    /// Free space against the configured minimum (also recorded for `/healthz`).
    fn space_ok(&self) -> Result<(), String> {
        match self.space.check() {
            Space::Enough { free } => {
                self.telemetry.health.set_free_bytes(free);
                Ok(())
            }
            Space::Low { free, reason } => {
                self.telemetry.health.set_free_bytes(free);
                Err(reason)
            }
        }
    }

    /// `--once`: start, then scan and process until the folder holds nothing pending and the
    /// queue is empty. A state directory short of space is an error here (nothing waits).
    pub fn run_once(mut self) -> Result<Stats, WorkerError> {
        self.space_ok().map_err(WorkerError::LowSpace)?;
        self.start("once")?;
        let poll = Duration::from_millis((self.config.ingest.stable_ms / 4).clamp(10, 250));
        loop {
            self.space_ok().map_err(WorkerError::LowSpace)?;
            let scan = self.scan()?;
            self.drain(None)?;
            if scan.pending == 0
                && scan.offered == 0
                && scan.waiting == 0
                && scan.untracked == 0
                && queue::depth(&self.db)? == 0
            {
                break;
            }
            if scan.offered == 0 && scan.waiting == 0 {
                std::thread::sleep(poll);
            }
        }
        Ok(self.stats)
    }

    /// The daemon: starts, then runs until `stop` is set, reacting to file-system events
    /// and rescanning every `rescan_ms`; pauses and retries instead of failing (see the
    /// module docs). Returns after the job in hand is finished once `stop` is set.
    pub fn run(&mut self, stop: &AtomicBool) -> Result<(), WorkerError> {
        let storage = &self.config.storage;
        let mut backoff = Backoff::new(
            Duration::from_millis(storage.retry_initial_ms),
            Duration::from_millis(storage.retry_max_ms),
        );
        // Start-up writes to the database too: a full disk waits here, anything else is fatal.
        let mut trouble = None;
        loop {
            if stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            let result = match self.space_ok() {
                Ok(()) => self.start("daemon"),
                Err(reason) => Err(WorkerError::LowSpace(reason)),
            };
            match result {
                Ok(()) => break,
                Err(e) if e.is_storage() => {
                    trouble = Some(Trouble::Storage);
                    let wait = backoff.step();
                    self.pause_for(&e, wait);
                    sleep_unless_stopped(stop, wait);
                }
                Err(e) => return Err(e),
            }
        }
        backoff.reset();
        let start_watch = |dir: &Path| match FolderWatch::start(dir) {
            Ok(w) => Some(w),
            Err(e) => {
                warn!(error = %e, "no file-system events; relying on the periodic rescan");
                None
            }
        };
        let mut watch = start_watch(&self.state.capture);
        let rescan = Duration::from_millis(self.config.ingest.rescan_ms.max(10));
        let poll = Duration::from_millis((self.config.ingest.stable_ms / 4).clamp(10, 250));
        while !stop.load(Ordering::Relaxed) {
            match self.step(stop, trouble) {
                Ok(scan) => {
                    if let Some(was) = trouble.take() {
                        backoff.reset();
                        self.resumed();
                        if was == Trouble::Other {
                            // The folder may have been replaced meanwhile: watch it afresh.
                            watch = start_watch(&self.state.capture);
                        }
                    }
                    if scan.waiting > 0 {
                        continue; // backpressure: the queue has room again
                    }
                    let busy = scan.pending > 0 || scan.untracked > 0;
                    let wait = if busy { poll.min(rescan) } else { rescan };
                    self.wait_for_events(watch.as_ref(), wait, stop, true);
                }
                Err(e) => {
                    trouble = Some(if e.is_storage() { Trouble::Storage } else { Trouble::Other });
                    let wait = backoff.step();
                    self.pause_for(&e, wait);
                    self.wait_for_events(watch.as_ref(), wait, stop, false);
                }
            }
        }
        info!("stop requested; the job in hand is finished");
        if let Err(e) = audit::append_now(
            &mut self.db,
            &AuditEntry {
                actor: ACTOR,
                action: "daemon.stop",
                subject: env!("CARGO_PKG_VERSION"),
                detail: json!({ "stats": self.stats }),
            },
        ) {
            warn!(error = %e, "could not log the stop");
        }
        Ok(())
    }

    /// Waits `wait` (less once `stop` is set), noting files renamed into the folder; with
    /// `wake_early`, the first file-system event ends the wait.
    fn wait_for_events(
        &mut self,
        watch: Option<&FolderWatch>,
        wait: Duration,
        stop: &AtomicBool,
        wake_early: bool,
    ) {
        let until = Instant::now() + wait;
        while !stop.load(Ordering::Relaxed) {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            let Some(w) = watch else {
                std::thread::sleep(left.min(STOP_CHECK));
                continue;
            };
            let events = w.wait(left.min(STOP_CHECK));
            let woke = !events.is_empty();
            for event in events {
                if let WatchEvent::RenamedIn(path) = event {
                    self.folder.note_renamed_in(path);
                }
            }
            if woke && wake_early {
                return;
            }
        }
    }

    /// One round of the daemon loop: space check, (after trouble) the interrupted job back
    /// in the queue, a scan, then jobs until the queue is empty, space runs low or `stop`.
    ///
    /// After a storage failure the job goes back uncounted (the disk was full, not the file
    /// at fault); after any other failure the attempt counts, so a job that keeps failing
    /// is quarantined after `max_attempts` instead of blocking the queue.
    fn step(
        &mut self,
        stop: &AtomicBool,
        after: Option<Trouble>,
    ) -> Result<ScanSummary, WorkerError> {
        self.space_ok().map_err(WorkerError::LowSpace)?;
        match after {
            Some(Trouble::Storage) => {
                let released = queue::release_running(&mut self.db)?;
                if released > 0 {
                    info!(jobs = released, "interrupted job(s) back in the queue");
                }
            }
            Some(Trouble::Other) => self.requeue()?,
            None => {}
        }
        let scan = self.scan()?;
        self.drain(Some(stop))?;
        let depth = self.publish()?;
        if depth == 0 {
            // Idle and the scan loop is running: that is progress too (for the watchdog).
            self.telemetry.health.progress();
        }
        Ok(scan)
    }

    /// Health and logs for an error of the loop, retried after `wait`.
    fn pause_for(&self, e: &WorkerError, wait: Duration) {
        self.telemetry.metrics.count_error();
        let retry = format!("retrying in {:.1} s", wait.as_secs_f64());
        match e {
            WorkerError::LowSpace(reason) => {
                warn!(%reason, "ingestion paused; {retry}");
                self.telemetry.health.set_paused(reason.clone());
            }
            e if e.is_storage() => {
                let reason = format!("cannot write to the state directory ({e}); {retry}");
                warn!(%reason, "ingestion paused");
                self.telemetry.health.set_paused(reason);
            }
            e => {
                let reason = format!("{e}; {retry}");
                warn!(%reason, "degraded");
                self.telemetry.health.set_degraded(reason);
            }
        }
    }

    /// Back to normal after a pause or error: logged and audited.
    fn resumed(&mut self) {
        let Some(after) = self.telemetry.health.set_running() else { return };
        info!(%after, "ingestion resumed");
        if let Err(e) = audit::append_now(
            &mut self.db,
            &AuditEntry {
                actor: ACTOR,
                action: "ingest.resumed",
                subject: env!("CARGO_PKG_VERSION"),
                detail: json!({ "after": after }),
            },
        ) {
            warn!(error = %e, "could not log the resume");
        }
    }

    /// One scan: complete files are hashed and queued (while fewer than `max_pending_jobs`
    /// wait), rejected entries quarantined.
    pub fn scan(&mut self) -> Result<ScanSummary, WorkerError> {
        self.last_scan = Some(Instant::now());
        let depth = queue::depth(&self.db)?;
        let room = self.config.ingest.max_pending_jobs.max(1).saturating_sub(depth);
        let room = usize::try_from(room).unwrap_or(usize::MAX);
        let scan = self.folder.scan(room).map_err(io_err("scanning the capture folder"))?;
        let offered = scan.entries.len();
        let mut entries = scan.entries.into_iter();
        while let Some(entry) = entries.next() {
            let (path, result) = match entry {
                Entry::Rejected { path, name, reason } => {
                    let r = self.reject_file(&path, &name, &reason);
                    (path, r)
                }
                Entry::Ready { path, name, size } => {
                    let r = self.admit(&path, &name, size);
                    (path, r)
                }
            };
            if let Err(e) = result {
                // Nothing offered and not acted on may be forgotten: the next scan offers
                // this entry and the rest again.
                self.folder.offer_again(&path);
                for rest in entries {
                    let (Entry::Rejected { path, .. } | Entry::Ready { path, .. }) = rest;
                    self.folder.offer_again(&path);
                }
                return Err(e);
            }
        }
        self.publish()?;
        Ok(ScanSummary {
            pending: scan.pending,
            offered,
            waiting: scan.waiting,
            untracked: scan.untracked,
        })
    }

    /// Processes queued jobs until none is left (rescanning on the way when a rescan is due),
    /// `stop` is set, or the state directory runs short of space.
    ///
    /// Jobs are pipelined: each job's result is committed and its file moved while the next
    /// job is analysed (the commit's fsync and the move are I/O waits, not CPU). Every job is
    /// committed before this returns `Ok`; on an error the job not yet committed is dropped
    /// from memory and stays `running` in the database, which the error path requeues.
    pub fn drain(&mut self, stop: Option<&AtomicBool>) -> Result<(), WorkerError> {
        let result = self.drain_pipelined(stop).and_then(|()| self.commit_pending());
        if result.is_err() {
            self.finished = None;
        }
        result
    }

    fn drain_pipelined(&mut self, stop: Option<&AtomicBool>) -> Result<(), WorkerError> {
        let rescan = Duration::from_millis(self.config.ingest.rescan_ms.max(10));
        loop {
            if stop.is_some_and(|s| s.load(Ordering::Relaxed)) || self.space_ok().is_err() {
                break;
            }
            if !self.process_one()? {
                break;
            }
            self.telemetry.health.progress();
            self.publish()?;
            if self.last_scan.is_none_or(|t| t.elapsed() >= rescan) {
                self.scan()?;
            }
        }
        Ok(())
    }

    /// Claims and processes one job, its result committed before this returns; false when
    /// the queue is empty.
    pub fn process_next(&mut self) -> Result<bool, WorkerError> {
        let worked = self.process_one().and_then(|w| self.commit_pending().map(|()| w));
        if worked.is_err() {
            self.finished = None;
        }
        if worked? {
            self.telemetry.health.progress();
            self.publish()?;
            return Ok(true);
        }
        Ok(false)
    }

    /// Commits the job analysed last, if any.
    fn commit_pending(&mut self) -> Result<(), WorkerError> {
        let Some(f) = self.finished.take() else { return Ok(()) };
        // Field by field: the telemetry is borrowed next to the books.
        let books = Books { db: &mut self.db, disposal: &self.disposal, stats: &mut self.stats };
        commit_finished(books, &self.telemetry, f)
    }

    /// Claims one job and analyses it, committing the previous job meanwhile; the new job's
    /// result is left in `self.finished`. False when the queue is empty.
    fn process_one(&mut self) -> Result<bool, WorkerError> {
        let Some(job) = queue::claim_next(&mut self.db)? else {
            self.commit_pending()?;
            return Ok(false);
        };
        let started = Instant::now();
        let mut timings = Vec::new();
        let decoded = match self.prefetched.take().filter(|p| p.is_for(&job)) {
            Some(p) => {
                timings.push(StageTiming::new("read", p.read));
                timings.push(StageTiming::new("decode", p.decode));
                p.decoded
            }
            None => match self.read_and_decode(&job, &mut timings)? {
                Some(d) => d,
                None => return Ok(true),
            },
        };

        // While this image is analysed: the previous job is committed and its file moved,
        // and the next queued file is read and decoded.
        let next = if self.config.ingest.decode_ahead { queue::peek_next(&self.db)? } else { None };
        let previous = self.finished.take();
        let t = Instant::now();
        let (analysis, prefetched, committed) = std::thread::scope(|s| {
            let (max_bytes, opts) = (self.config.ingest.max_file_bytes, &self.decode);
            let ahead = next.map(|n| s.spawn(move || prefetch(n, max_bytes, opts)));
            let books =
                Books { db: &mut self.db, disposal: &self.disposal, stats: &mut self.stats };
            let telemetry = &self.telemetry;
            let commit = previous.map(|f| s.spawn(move || commit_finished(books, telemetry, f)));
            let analysis = self.analyzer.analyze(&decoded.image);
            let committed = match commit.map(|h| h.join()) {
                None | Some(Ok(Ok(()))) => Ok(()),
                Some(Ok(Err(e))) => Err(e),
                Some(Err(_)) => Err(WorkerError::Io {
                    what: "committing a result".into(),
                    source: std::io::Error::other("the commit thread panicked"),
                }),
            };
            (analysis, ahead.and_then(|h| h.join().ok().flatten()), committed)
        });
        self.prefetched = prefetched;
        committed?;
        let analysis = match analysis {
            Ok(a) => a,
            Err(e) => {
                self.fail(&job, "analyze", &format!("analysis failed: {e}"), true)?;
                return Ok(true);
            }
        };
        timings.push(StageTiming::new("analyze", t.elapsed()));
        timings.extend(analysis.timings);
        timings.push(StageTiming::new("total", started.elapsed()));

        self.finished = Some(Finished {
            job,
            decoded: DecodedFacts {
                width: decoded.image.width,
                height: decoded.image.height,
                bit_depth: decoded.image.bit_depth,
                format: decoded.format.as_str().to_string(),
                acquisition: decoded.acquisition,
            },
            model: self.analyzer.model().cloned(),
            analysis: Analysis { findings: analysis.findings, timings },
        });
        Ok(true)
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
                self.telemetry.health.progress();
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
                        warn!(file = name, %reason, "quarantined");
                        self.db.record_error(Some(job_id), Some(path), "scan", &reason)?;
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

    /// Reads, verifies and decodes a claimed job's file; `None` when the job was failed or
    /// quarantined instead (already recorded).
    fn read_and_decode(
        &mut self,
        job: &ClaimedJob,
        timings: &mut Vec<StageTiming>,
    ) -> Result<Option<Decoded>, WorkerError> {
        let t = Instant::now();
        let bytes = match read_file(&job.source_path, self.config.ingest.max_file_bytes) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.fail(job, "read", "source file vanished before it was processed", false)?;
                return Ok(None);
            }
            Err(e) => {
                self.quarantine_job(job, "read", &format!("cannot read: {e}"))?;
                return Ok(None);
            }
        };
        let sha256 = hex::encode(Sha256::digest(&bytes));
        timings.push(StageTiming::new("read", t.elapsed()));
        if sha256 != job.sha256 {
            self.fail(job, "read", "the file's content changed after it was queued", false)?;
            self.folder.reoffer(&job.source_path);
            return Ok(None);
        }

        let t = Instant::now();
        let decoded = match decode(&bytes, &self.decode) {
            Ok(d) => d,
            Err(e) => {
                self.quarantine_job(job, "decode", &e.to_string())?;
                return Ok(None);
            }
        };
        timings.push(StageTiming::new("decode", t.elapsed()));
        Ok(Some(decoded))
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

    /// Moves a job's file out of capture/ and records where it went (see [`Books::dispose`]).
    fn dispose(&mut self, job_id: i64, path: &Path, reason: Option<&str>) {
        self.books().dispose(job_id, path, reason);
    }

    fn move_failed(&mut self, job_id: Option<i64>, path: &Path, e: &std::io::Error) {
        self.books().move_failed(job_id, path, e);
    }

    /// The record keeping a disposed job touches. (`commit_pending` and `process_one` borrow
    /// the fields one by one instead: the telemetry or the analyzer is in use at the same time.)
    fn books(&mut self) -> Books<'_> {
        Books { db: &mut self.db, disposal: &self.disposal, stats: &mut self.stats }
    }
}

impl Books<'_> {
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
                if let Err(e) = queue::set_disposed(self.db, job_id, &to) {
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

/// Commits an analysed job's result, then moves its file to archive/.
fn commit_finished(
    mut books: Books<'_>,
    telemetry: &Telemetry,
    f: Finished,
) -> Result<(), WorkerError> {
    let result = JobResult { decoded: f.decoded, model: f.model.as_ref(), analysis: f.analysis };
    let run_id = queue::complete(books.db, &f.job, &result)?;
    books.stats.processed += 1;
    telemetry.metrics.observe(&result.analysis.timings);
    info!(
        job_id = f.job.job_id,
        run_id,
        findings = result.analysis.findings.len(),
        analysed = f.model.is_some(),
        "recorded"
    );
    books.dispose(f.job.job_id, &f.job.source_path, None);
    Ok(())
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
pub(crate) fn read_file(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
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
