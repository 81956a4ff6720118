//! The durable job queue, in the same SQLite file as the log. One job per image, and one
//! image per content SHA-256, so a radiograph is processed exactly once however often it
//! arrives or the daemon restarts:
//!
//! ```text
//!  enqueue ──► queued ──claim_next──► running ──complete──► done
//!                ▲                      │ └──quarantine──► quarantined   (bad input)
//!                │                      └──fail─────────► failed        (not the input's fault)
//!                └──── requeue_running (at start-up) ◄── running   ── enqueue again ─┘
//! ```
//!
//! Every transition is one IMMEDIATE transaction; `complete` writes the run, its findings and
//! timings, the image's decoded facts, the job's new state and an audit row all at once.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde::Serialize;
use serde_json::json;

use crate::analyzer::{Analysis, ModelIdentity};
use crate::clock::now_rfc3339;
use crate::db::audit::{self, AuditEntry};
use crate::db::{Db, DbError, insert_error};

/// Who writes the queue's audit rows.
const ACTOR: &str = "fractured";

/// A job's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Queued,
    Running,
    Done,
    Failed,
    Quarantined,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Done => "done",
            Self::Failed => "failed",
            Self::Quarantined => "quarantined",
        }
    }

    pub fn parse(s: &str) -> Result<Self, DbError> {
        Ok(match s {
            "queued" => Self::Queued,
            "running" => Self::Running,
            "done" => Self::Done,
            "failed" => Self::Failed,
            "quarantined" => Self::Quarantined,
            other => return Err(DbError::Invalid(format!("unknown job state {other:?}"))),
        })
    }
}

/// A file about to be queued, known by its content.
#[derive(Debug, Clone)]
pub struct NewImage<'a> {
    /// Lower-case hex SHA-256 of the file's bytes.
    pub sha256: &'a str,
    pub source_path: &'a Path,
    pub original_name: &'a str,
    pub byte_size: u64,
}

/// What [`enqueue`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Enqueued {
    /// First time this content is seen: a new queued job.
    New { job_id: i64 },
    /// The content had failed for a reason not its own; it is queued again from this file.
    Retried { job_id: i64 },
    /// The content is already known; nothing changed.
    Known { job_id: i64, state: JobState, source_path: PathBuf, error: Option<String> },
}

/// A job that [`claim_next`] moved to running.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedJob {
    pub job_id: i64,
    pub image_id: i64,
    pub sha256: String,
    pub source_path: PathBuf,
    pub original_name: String,
    pub byte_size: u64,
    /// Including this one.
    pub attempts: u32,
}

/// Facts about the image learnt by decoding it.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedFacts {
    pub width: u32,
    pub height: u32,
    pub bit_depth: u8,
    /// `png`, `jpeg`, `tiff`, `dicom`.
    pub format: String,
    /// Acquisition metadata (DICOM UIDs and the like), never patient identifiers.
    pub acquisition: serde_json::Value,
}

/// Everything [`complete`] commits for a job.
#[derive(Debug, Clone)]
pub struct JobResult<'a> {
    pub decoded: DecodedFacts,
    /// `None`: no model, the run is logged as `not_analysed`.
    pub model: Option<&'a ModelIdentity>,
    /// Findings, and timings of every stage (the worker's and the analyzer's).
    pub analysis: Analysis,
}

/// What [`requeue_running`] found at start-up.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Requeued {
    /// Jobs put back in the queue.
    pub requeued: Vec<i64>,
    /// Jobs interrupted too often (they may be what kills the daemon): now quarantined.
    pub poisoned: Vec<(i64, PathBuf, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("job {0} is not running (was it requeued by another process?)")]
    NotRunning(i64),
}

impl From<rusqlite::Error> for QueueError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Db(DbError::Sqlite(e))
    }
}

/// Queues a file's content once. Known content is reported, not queued again, except a
/// `failed` job, which is retried from the new file.
pub fn enqueue(db: &mut Db, image: &NewImage<'_>) -> Result<Enqueued, QueueError> {
    // Not durable against a power cut on its own: the file is still in capture/ then.
    db.with_relaxed_sync(|db| enqueue_tx(db, image))
}

fn enqueue_tx(db: &mut Db, image: &NewImage<'_>) -> Result<Enqueued, QueueError> {
    let tx = db.conn_mut().transaction_with_behavior(TransactionBehavior::Immediate)?;
    let now = now_rfc3339();
    let source = image.source_path.to_string_lossy();
    let known: Option<(i64, i64, String, String, Option<String>)> = tx
        .query_row(
            "SELECT images.id, jobs.id, jobs.state, images.source_path, jobs.error
             FROM images JOIN jobs ON jobs.image_id = images.id WHERE images.sha256 = ?1",
            params![image.sha256],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .optional()?;
    let outcome = match known {
        None => {
            tx.execute(
                "INSERT INTO images (sha256, source_path, original_name, byte_size, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![image.sha256, source, image.original_name, image.byte_size as i64, now],
            )?;
            let image_id = tx.last_insert_rowid();
            tx.execute(
                "INSERT INTO jobs (image_id, state, created_at, updated_at)
                 VALUES (?1, 'queued', ?2, ?2)",
                params![image_id, now],
            )?;
            Enqueued::New { job_id: tx.last_insert_rowid() }
        }
        Some((image_id, job_id, state, _, _)) if state == "failed" => {
            tx.execute(
                "UPDATE images SET source_path = ?2, original_name = ?3 WHERE id = ?1",
                params![image_id, source, image.original_name],
            )?;
            tx.execute(
                "UPDATE jobs SET state = 'queued', attempts = 0, error = NULL,
                 disposed_path = NULL, updated_at = ?2 WHERE id = ?1",
                params![job_id, now],
            )?;
            Enqueued::Retried { job_id }
        }
        Some((_, job_id, state, source_path, error)) => Enqueued::Known {
            job_id,
            state: JobState::parse(&state)?,
            source_path: PathBuf::from(source_path),
            error,
        },
    };
    tx.commit()?;
    Ok(outcome)
}

/// Moves the oldest queued job to running (atomically: two workers never get the same job).
pub fn claim_next(db: &mut Db) -> Result<Option<ClaimedJob>, QueueError> {
    // A claim lost in a power cut leaves the job queued: it runs again.
    db.with_relaxed_sync(claim_next_tx)
}

fn claim_next_tx(db: &mut Db) -> Result<Option<ClaimedJob>, QueueError> {
    let tx = db.conn_mut().transaction_with_behavior(TransactionBehavior::Immediate)?;
    let now = now_rfc3339();
    let claimed: Option<(i64, i64, i64)> = tx
        .query_row(
            "UPDATE jobs SET state = 'running', attempts = attempts + 1,
                             started_at = ?1, updated_at = ?1
             WHERE id = (SELECT id FROM jobs WHERE state = 'queued' ORDER BY id LIMIT 1)
             RETURNING id, image_id, attempts",
            params![now],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    let Some((job_id, image_id, attempts)) = claimed else {
        return Ok(None);
    };
    let job = tx.query_row(
        "SELECT sha256, source_path, original_name, byte_size FROM images WHERE id = ?1",
        params![image_id],
        |r| {
            Ok(ClaimedJob {
                job_id,
                image_id,
                sha256: r.get(0)?,
                source_path: PathBuf::from(r.get::<_, String>(1)?),
                original_name: r.get(2)?,
                byte_size: r.get::<_, i64>(3)? as u64,
                attempts: attempts as u32,
            })
        },
    )?;
    tx.commit()?;
    Ok(Some(job))
}

/// The job [`claim_next`] would claim now, without claiming it (for decode-ahead).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextJob {
    pub job_id: i64,
    pub sha256: String,
    pub source_path: PathBuf,
}

/// Looks at the next queued job; changes nothing.
pub fn peek_next(db: &Db) -> Result<Option<NextJob>, QueueError> {
    Ok(db
        .conn()
        .query_row(
            "SELECT jobs.id, images.sha256, images.source_path FROM jobs
             JOIN images ON images.id = jobs.image_id
             WHERE jobs.state = 'queued' ORDER BY jobs.id LIMIT 1",
            [],
            |r| {
                Ok(NextJob {
                    job_id: r.get(0)?,
                    sha256: r.get(1)?,
                    source_path: PathBuf::from(r.get::<_, String>(2)?),
                })
            },
        )
        .optional()?)
}

/// Commits a job's result in one transaction: image facts, run, findings, timings, job done,
/// audit row. Returns the run id.
pub fn complete(db: &mut Db, job: &ClaimedJob, result: &JobResult<'_>) -> Result<i64, QueueError> {
    let tx = db.conn_mut().transaction_with_behavior(TransactionBehavior::Immediate)?;
    let now = now_rfc3339();
    finish_job(&tx, job.job_id, "done", None, &now)?;
    let d = &result.decoded;
    tx.execute(
        "UPDATE images SET width = ?2, height = ?3, bit_depth = ?4, format = ?5, acquisition = ?6
         WHERE id = ?1",
        params![
            job.image_id,
            d.width,
            d.height,
            d.bit_depth,
            d.format,
            serde_json::to_string(&d.acquisition).map_err(DbError::from)?
        ],
    )?;
    let status = if result.model.is_some() { "analysed" } else { "not_analysed" };
    tx.execute(
        "INSERT INTO runs (image_id, job_id, bundle_id, bundle_sha256, backend, precision,
                           status, created_at, backend_reason)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            job.image_id,
            job.job_id,
            result.model.map(|m| &m.bundle_id),
            result.model.map(|m| &m.bundle_sha256),
            result.model.map(|m| &m.backend),
            result.model.map(|m| &m.precision),
            status,
            now,
            result.model.map(|m| &m.backend_reason)
        ],
    )?;
    let run_id = tx.last_insert_rowid();
    {
        let mut insert = tx.prepare(
            "INSERT INTO findings (run_id, x1, y1, x2, y2, score, class_id, class_name,
                                   operating_point)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?;
        for f in &result.analysis.findings {
            insert.execute(params![
                run_id,
                f.x1,
                f.y1,
                f.x2,
                f.y2,
                f.score,
                f.class_id,
                f.class_name,
                f.operating_point.as_str()
            ])?;
        }
        let mut insert =
            tx.prepare("INSERT INTO timings (run_id, stage, ms) VALUES (?1, ?2, ?3)")?;
        for t in &result.analysis.timings {
            insert.execute(params![run_id, t.stage, t.ms])?;
        }
    }
    audit::append(
        &tx,
        &AuditEntry {
            actor: ACTOR,
            action: "run.recorded",
            subject: &job.sha256,
            detail: json!({
                "job_id": job.job_id,
                "run_id": run_id,
                "status": status,
                "findings": result.analysis.findings.len(),
                "model": result.model,
            }),
        },
    )?;
    tx.commit()?;
    Ok(run_id)
}

/// The job failed for a reason that is not its input's (the analyzer broke, the source file
/// vanished): state `failed`, an error row and an audit row. Arriving again retries it.
pub fn fail(db: &mut Db, job: &ClaimedJob, stage: &str, message: &str) -> Result<(), QueueError> {
    end_badly(db, job, "failed", "job.failed", stage, message)
}

/// The input is bad (corrupt, truncated, too large, unsupported): state `quarantined`, an
/// error row and an audit row. The same content arriving again is quarantined at once.
pub fn quarantine(
    db: &mut Db,
    job: &ClaimedJob,
    stage: &str,
    reason: &str,
) -> Result<(), QueueError> {
    end_badly(db, job, "quarantined", "job.quarantined", stage, reason)
}

fn end_badly(
    db: &mut Db,
    job: &ClaimedJob,
    state: &str,
    action: &str,
    stage: &str,
    message: &str,
) -> Result<(), QueueError> {
    let tx = db.conn_mut().transaction_with_behavior(TransactionBehavior::Immediate)?;
    let now = now_rfc3339();
    finish_job(&tx, job.job_id, state, Some(message), &now)?;
    insert_error(&tx, Some(job.job_id), Some(&job.source_path), stage, message)?;
    audit::append(
        &tx,
        &AuditEntry {
            actor: ACTOR,
            action,
            subject: &job.sha256,
            detail: json!({ "job_id": job.job_id, "stage": stage, "reason": message }),
        },
    )?;
    tx.commit()?;
    Ok(())
}

fn finish_job(
    tx: &Connection,
    job_id: i64,
    state: &str,
    error: Option<&str>,
    now: &str,
) -> Result<(), QueueError> {
    let changed = tx.execute(
        "UPDATE jobs SET state = ?2, error = ?3, finished_at = ?4, updated_at = ?4
         WHERE id = ?1 AND state = 'running'",
        params![job_id, state, error, now],
    )?;
    if changed == 1 { Ok(()) } else { Err(QueueError::NotRunning(job_id)) }
}

/// At start-up: jobs left running by a daemon that died go back to the queue, except those
/// already tried `max_attempts` times, which are quarantined (a file that crashes the daemon
/// must not crash it forever).
pub fn requeue_running(db: &mut Db, max_attempts: u32) -> Result<Requeued, QueueError> {
    let tx = db.conn_mut().transaction_with_behavior(TransactionBehavior::Immediate)?;
    let now = now_rfc3339();
    let running: Vec<(i64, i64, String, String)> = {
        let mut stmt = tx.prepare(
            "SELECT jobs.id, jobs.attempts, images.sha256, images.source_path
             FROM jobs JOIN images ON images.id = jobs.image_id
             WHERE jobs.state = 'running' ORDER BY jobs.id",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
        rows.collect::<Result<_, _>>()?
    };
    let mut out = Requeued::default();
    for (job_id, attempts, sha256, source) in running {
        if attempts >= i64::from(max_attempts) {
            let reason = format!(
                "processing was interrupted {attempts} times (the daemon stopped, or hit an \
                 error it could not recover from, while this file was being processed); not \
                 retried"
            );
            finish_job(&tx, job_id, "quarantined", Some(&reason), &now)?;
            insert_error(&tx, Some(job_id), Some(Path::new(&source)), "requeue", &reason)?;
            audit::append(
                &tx,
                &AuditEntry {
                    actor: ACTOR,
                    action: "job.quarantined",
                    subject: &sha256,
                    detail: json!({ "job_id": job_id, "stage": "requeue", "reason": reason }),
                },
            )?;
            out.poisoned.push((job_id, PathBuf::from(source), reason));
        } else {
            tx.execute(
                "UPDATE jobs SET state = 'queued', updated_at = ?2 WHERE id = ?1",
                params![job_id, now],
            )?;
            out.requeued.push(job_id);
        }
    }
    tx.commit()?;
    Ok(out)
}

/// Puts jobs left running by this very process back in the queue without counting the
/// attempt: what the worker does after a write failed because the state directory was full
/// (not the file's fault). Only for a single worker: every running job is its own.
pub fn release_running(db: &mut Db) -> Result<u64, QueueError> {
    let n = db.conn().execute(
        "UPDATE jobs SET state = 'queued', attempts = max(attempts - 1, 0), updated_at = ?1
         WHERE state = 'running'",
        params![now_rfc3339()],
    )?;
    Ok(n as u64)
}

/// Where the job's source file went (archive/ or quarantine/), once moved. Relaxed sync:
/// the next result commit makes it durable.
pub fn set_disposed(db: &mut Db, job_id: i64, path: &Path) -> Result<(), QueueError> {
    db.with_relaxed_sync(|db| {
        db.conn().execute(
            "UPDATE jobs SET disposed_path = ?2 WHERE id = ?1",
            params![job_id, path.to_string_lossy()],
        )?;
        Ok(())
    })
}

/// Jobs waiting to run.
pub fn depth(db: &Db) -> Result<u64, QueueError> {
    let n: i64 =
        db.conn()
            .query_row("SELECT count(*) FROM jobs WHERE state = 'queued'", [], |r| r.get(0))?;
    Ok(n as u64)
}

/// A job's state and error, looked up by content.
pub fn state_of(db: &Db, sha256: &str) -> Result<Option<(JobState, Option<String>)>, QueueError> {
    let row: Option<(String, Option<String>)> = db
        .conn()
        .query_row(
            "SELECT jobs.state, jobs.error FROM jobs JOIN images ON images.id = jobs.image_id
             WHERE images.sha256 = ?1",
            params![sha256],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    match row {
        Some((state, error)) => Ok(Some((JobState::parse(&state)?, error))),
        None => Ok(None),
    }
}

/// Where the file of the job for this content went (archive/ or quarantine/), if moved yet.
pub fn disposed_path(db: &Db, sha256: &str) -> Result<Option<PathBuf>, QueueError> {
    let p: Option<Option<String>> = db
        .conn()
        .query_row(
            "SELECT jobs.disposed_path FROM jobs JOIN images ON images.id = jobs.image_id
             WHERE images.sha256 = ?1",
            params![sha256],
            |r| r.get(0),
        )
        .optional()?;
    Ok(p.flatten().map(PathBuf::from))
}
