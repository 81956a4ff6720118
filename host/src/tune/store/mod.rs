//! The study store: studies, trials (values and full `--hyp` TOML), jobs (a trial trained up to
//! a rung: state, worker, lease, metric), a log of every claim, and per-epoch metrics. Local
//! SQLite ([`sqlite`], the default) or PostgreSQL ([`postgres`], for workers on several
//! machines). Claims and results go through one transaction that locks the study, and the
//! decision inside it ([`claim_in`], [`finish_in`]) is the same code for both backends.

pub mod postgres;
pub mod sqlite;

use serde::{Deserialize, Serialize};

use super::asha::{Decision, JobRow, JobState, decide};
use super::study::StudySpec;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("postgresql: {0}")]
    Postgres(#[from] ::postgres::Error),
    #[error("stored JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("{0}")]
    Invalid(String),
}

/// How a job was claimed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClaimKind {
    /// A new trial at rung 0.
    New,
    /// A trial moving up a rung.
    Promote,
    /// A job whose worker died (its lease ran out).
    Reclaim,
}

impl ClaimKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ClaimKind::New => "new",
            ClaimKind::Promote => "promote",
            ClaimKind::Reclaim => "reclaim",
        }
    }
}

/// A job handed to a worker.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub trial: usize,
    pub rung: usize,
    /// Train until this many epochs are done.
    pub epochs: usize,
    pub kind: ClaimKind,
    /// The trial's values (JSON object) and configuration (TOML for `fracture train --hyp`).
    pub params: serde_json::Value,
    pub hyp: String,
}

/// The answer to a worker asking for work.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    Run(Job),
    /// Jobs are running elsewhere; ask again later.
    Wait,
    /// The study is complete.
    Done,
}

/// Trial state as stored: `running`, `waiting` (finished a rung, may move up), `complete`
/// (finished the last rung) or `failed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrialRow {
    pub id: usize,
    pub params: serde_json::Value,
    pub hyp: String,
    pub state: String,
}

/// A job with its results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    #[serde(flatten)]
    pub row: JobRow,
    pub epochs: usize,
    /// Per fold: the last epoch's numbers (JSON array).
    pub result: Option<serde_json::Value>,
    pub error: Option<String>,
}

/// One entry of the claim log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClaimRow {
    pub trial: usize,
    pub rung: usize,
    pub worker: String,
    pub kind: String,
    pub at: f64,
}

/// Validation numbers of one epoch of one fold of a trial.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRow {
    pub trial: usize,
    pub fold: usize,
    pub epoch: usize,
    pub precision: f64,
    pub recall: f64,
    pub map50: f64,
    pub map50_95: f64,
    pub fitness: f64,
    pub val_loss: f64,
    pub seconds: f64,
}

/// How a job ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Done { metric: f64, result: serde_json::Value },
    Failed { error: String },
}

/// A study store.
pub trait Store: Send {
    /// Creates the study unless it exists; returns the stored definition (which the caller
    /// compares with its own).
    fn ensure_study(&mut self, spec: &StudySpec) -> Result<StudySpec, StoreError>;
    fn study(&mut self, name: &str) -> Result<Option<StudySpec>, StoreError>;
    /// Decides and records the next job for `worker` in one transaction (see
    /// [`super::asha::decide`]); a claimed job is leased for `lease_s` seconds.
    fn claim(&mut self, spec: &StudySpec, worker: &str, lease_s: f64) -> Result<Claim, StoreError>;
    /// Extends the lease; false when the job is no longer this worker's.
    fn renew(
        &mut self,
        study: &str,
        trial: usize,
        rung: usize,
        worker: &str,
        lease_s: f64,
    ) -> Result<bool, StoreError>;
    /// Records the result and the epochs; false (nothing recorded) when the job is no longer
    /// this worker's.
    fn finish(
        &mut self,
        spec: &StudySpec,
        trial: usize,
        rung: usize,
        worker: &str,
        outcome: &Outcome,
        epochs: &[EpochRow],
    ) -> Result<bool, StoreError>;
    fn trials(&mut self, study: &str) -> Result<Vec<TrialRow>, StoreError>;
    fn jobs(&mut self, study: &str) -> Result<Vec<JobRecord>, StoreError>;
    fn claims(&mut self, study: &str) -> Result<Vec<ClaimRow>, StoreError>;
    fn epochs(&mut self, study: &str) -> Result<Vec<EpochRow>, StoreError>;
}

/// Opens `sqlite:PATH` or `postgres://...` (also `postgresql://`).
pub fn open(url: &str) -> Result<Box<dyn Store>, StoreError> {
    if let Some(path) = url.strip_prefix("sqlite:") {
        let path = path.strip_prefix("//").unwrap_or(path);
        return Ok(Box::new(sqlite::SqliteStore::open(std::path::Path::new(path))?));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Box::new(postgres::PgStore::connect(url)?));
    }
    Err(StoreError::Invalid(format!(
        "--store {url}: use sqlite:PATH (one machine) or postgres://USER@HOST:PORT/DB (several)"
    )))
}

/// Seconds since the Unix epoch on this machine.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The statements a claim and a result need, inside a transaction that holds the study's lock.
pub(crate) trait Tx {
    fn now(&mut self) -> Result<f64, StoreError>;
    fn job_rows(&mut self, study: &str) -> Result<Vec<JobRow>, StoreError>;
    fn trial_count(&mut self, study: &str) -> Result<usize, StoreError>;
    /// Values (JSON text) and hyp TOML of a trial.
    fn trial(&mut self, study: &str, trial: usize) -> Result<(String, String), StoreError>;
    fn insert_trial(
        &mut self,
        study: &str,
        trial: usize,
        params: &str,
        hyp: &str,
        now: f64,
    ) -> Result<(), StoreError>;
    fn set_trial_state(&mut self, study: &str, trial: usize, state: &str)
    -> Result<(), StoreError>;
    #[allow(clippy::too_many_arguments)]
    fn insert_job(
        &mut self,
        study: &str,
        trial: usize,
        rung: usize,
        epochs: usize,
        worker: &str,
        lease_until: f64,
        now: f64,
    ) -> Result<(), StoreError>;
    /// Gives a running job to `worker` (one more attempt); false if it is no longer running.
    fn reclaim_job(
        &mut self,
        study: &str,
        trial: usize,
        rung: usize,
        worker: &str,
        lease_until: f64,
    ) -> Result<bool, StoreError>;
    /// Ends a running job of `worker` (any worker when `None`); false when there was none.
    #[allow(clippy::too_many_arguments)]
    fn end_job(
        &mut self,
        study: &str,
        trial: usize,
        rung: usize,
        worker: Option<&str>,
        state: JobState,
        metric: Option<f64>,
        result: Option<&str>,
        error: Option<&str>,
        now: f64,
    ) -> Result<bool, StoreError>;
    fn log_claim(
        &mut self,
        study: &str,
        trial: usize,
        rung: usize,
        worker: &str,
        kind: ClaimKind,
        now: f64,
    ) -> Result<(), StoreError>;
    fn put_epoch(&mut self, study: &str, e: &EpochRow) -> Result<(), StoreError>;
}

/// The claim decision and its bookkeeping (inside the caller's locked transaction).
pub(crate) fn claim_in(
    tx: &mut dyn Tx,
    spec: &StudySpec,
    worker: &str,
    lease_s: f64,
) -> Result<Claim, StoreError> {
    let ladder = spec.ladder();
    let study = spec.name.as_str();
    loop {
        let now = tx.now()?;
        let jobs = tx.job_rows(study)?;
        let count = tx.trial_count(study)?;
        let (trial, rung, kind) = match decide(&ladder, &jobs, count, now) {
            Decision::Wait => return Ok(Claim::Wait),
            Decision::Done => return Ok(Claim::Done),
            Decision::GiveUp { trial, rung } => {
                let error = format!(
                    "its worker stopped renewing the lease {} times (killed, or crashed)",
                    ladder.max_attempts
                );
                tx.end_job(
                    study,
                    trial,
                    rung,
                    None,
                    JobState::Failed,
                    None,
                    None,
                    Some(&error),
                    now,
                )?;
                tx.set_trial_state(study, trial, "failed")?;
                continue;
            }
            Decision::Reclaim { trial, rung } => {
                if !tx.reclaim_job(study, trial, rung, worker, now + lease_s)? {
                    continue;
                }
                (trial, rung, ClaimKind::Reclaim)
            }
            Decision::Promote { trial, rung } => {
                tx.insert_job(study, trial, rung, spec.rungs[rung], worker, now + lease_s, now)?;
                (trial, rung, ClaimKind::Promote)
            }
            Decision::NewTrial { trial } => {
                let (values, cfg) =
                    spec.trial(trial).map_err(|e| StoreError::Invalid(format!("{e:#}")))?;
                let params = super::space::values_json(&values).to_string();
                tx.insert_trial(study, trial, &params, &cfg.to_toml(), now)?;
                tx.insert_job(study, trial, 0, spec.rungs[0], worker, now + lease_s, now)?;
                (trial, 0, ClaimKind::New)
            }
        };
        tx.set_trial_state(study, trial, "running")?;
        tx.log_claim(study, trial, rung, worker, kind, now)?;
        let (params, hyp) = tx.trial(study, trial)?;
        return Ok(Claim::Run(Job {
            trial,
            rung,
            epochs: spec.rungs[rung],
            kind,
            params: serde_json::from_str(&params)?,
            hyp,
        }));
    }
}

/// Records a job's end (inside the caller's locked transaction).
pub(crate) fn finish_in(
    tx: &mut dyn Tx,
    spec: &StudySpec,
    trial: usize,
    rung: usize,
    worker: &str,
    outcome: &Outcome,
    epochs: &[EpochRow],
) -> Result<bool, StoreError> {
    let study = spec.name.as_str();
    let now = tx.now()?;
    let (state, metric, result, error) = match outcome {
        Outcome::Done { metric, result } => {
            (JobState::Done, Some(*metric), Some(result.to_string()), None)
        }
        Outcome::Failed { error } => (JobState::Failed, None, None, Some(error.as_str())),
    };
    if !tx.end_job(
        study,
        trial,
        rung,
        Some(worker),
        state,
        metric,
        result.as_deref(),
        error,
        now,
    )? {
        return Ok(false);
    }
    for e in epochs {
        tx.put_epoch(study, e)?;
    }
    let trial_state = match state {
        JobState::Failed => "failed",
        _ if rung + 1 == spec.rungs.len() => "complete",
        _ => "waiting",
    };
    tx.set_trial_state(study, trial, trial_state)?;
    Ok(true)
}

/// Schema statements; `{int}`, `{real}` and `{serial}` become the backend's types.
pub(crate) fn schema(int: &str, real: &str, serial: &str) -> Vec<String> {
    [
        "CREATE TABLE IF NOT EXISTS studies (
            name TEXT PRIMARY KEY,
            config TEXT NOT NULL,
            created {real} NOT NULL)",
        "CREATE TABLE IF NOT EXISTS trials (
            study TEXT NOT NULL REFERENCES studies(name),
            id {int} NOT NULL,
            params TEXT NOT NULL,
            hyp TEXT NOT NULL,
            state TEXT NOT NULL,
            created {real} NOT NULL,
            PRIMARY KEY (study, id))",
        "CREATE TABLE IF NOT EXISTS jobs (
            study TEXT NOT NULL,
            trial {int} NOT NULL,
            rung {int} NOT NULL,
            epochs {int} NOT NULL,
            state TEXT NOT NULL,
            worker TEXT NOT NULL,
            lease_until {real} NOT NULL,
            attempts {int} NOT NULL,
            metric {real},
            result TEXT,
            error TEXT,
            started {real} NOT NULL,
            finished {real},
            PRIMARY KEY (study, trial, rung),
            FOREIGN KEY (study, trial) REFERENCES trials(study, id))",
        "CREATE TABLE IF NOT EXISTS claims (
            id {serial},
            study TEXT NOT NULL,
            trial {int} NOT NULL,
            rung {int} NOT NULL,
            worker TEXT NOT NULL,
            kind TEXT NOT NULL,
            at {real} NOT NULL)",
        "CREATE TABLE IF NOT EXISTS epochs (
            study TEXT NOT NULL,
            trial {int} NOT NULL,
            fold {int} NOT NULL,
            epoch {int} NOT NULL,
            val_precision {real} NOT NULL,
            val_recall {real} NOT NULL,
            map50 {real} NOT NULL,
            map50_95 {real} NOT NULL,
            fitness {real} NOT NULL,
            val_loss {real} NOT NULL,
            seconds {real} NOT NULL,
            PRIMARY KEY (study, trial, fold, epoch))",
    ]
    .iter()
    .map(|s| s.replace("{int}", int).replace("{real}", real).replace("{serial}", serial))
    .collect()
}

pub(crate) fn bad_state(s: &str) -> StoreError {
    StoreError::Invalid(format!("unknown job state {s:?} in the store"))
}
