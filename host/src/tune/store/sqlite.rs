//! The study store in a local SQLite file (the default, `sqlite:DIR/study.sqlite3`): WAL, a
//! generous busy timeout, and `BEGIN IMMEDIATE` around claims and results, so several workers
//! on one machine share it safely. Refused on network file systems (NFS, SMB, ...), where
//! SQLite's locks are not reliable: use PostgreSQL there.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};

use super::{
    Claim, ClaimKind, ClaimRow, EpochRow, JobRecord, Outcome, Store, StoreError, TrialRow, Tx,
    bad_state, claim_in, finish_in, schema, unix_now,
};
use crate::tune::asha::{JobRow, JobState};
use crate::tune::study::StudySpec;

pub struct SqliteStore {
    conn: Connection,
}

/// `statfs` magic numbers of network file systems (linux/magic.h and the file systems' own).
const NETWORK_FS: [(u64, &str); 10] = [
    (0x6969, "NFS"),
    (0x517B, "SMB"),
    (0xFF53_4D42, "CIFS"),
    (0xFE53_4D42, "SMB2"),
    (0x5346_414F, "AFS"),
    (0x0102_1997, "9P"),
    (0x00C3_6400, "CephFS"),
    (0x0BD0_0BD0, "Lustre"),
    (0x4750_4653, "GPFS"),
    (0x7375_7245, "Coda"),
];

/// The network file system `dir` is on, if it is on one.
pub fn network_fs(dir: &Path) -> Option<&'static str> {
    let st = rustix::fs::statfs(dir).ok()?;
    let magic = u64::try_from(st.f_type).unwrap_or(0) & 0xFFFF_FFFF;
    NETWORK_FS.iter().find(|(m, _)| *m == magic).map(|(_, n)| *n)
}

impl SqliteStore {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => std::path::PathBuf::from("."),
        };
        std::fs::create_dir_all(&dir)
            .map_err(|e| StoreError::Invalid(format!("creating {}: {e}", dir.display())))?;
        if let Some(fs) = network_fs(&dir) {
            return Err(StoreError::Invalid(format!(
                "{} is on a network file system ({fs}); SQLite's locking is not safe there. \
                 Workers on several machines share a PostgreSQL store: \
                 --store postgres://USER@HOST:PORT/DB",
                path.display()
            )));
        }
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(120))?;
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Invalid(format!(
                "{}: could not switch to WAL (journal mode {mode})",
                path.display()
            )));
        }
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        let mut store = Self { conn };
        let tx = store.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        for s in schema("INTEGER", "REAL", "INTEGER PRIMARY KEY AUTOINCREMENT") {
            tx.execute(&s, [])?;
        }
        tx.commit()?;
        Ok(store)
    }

    fn locked(&mut self) -> Result<Transaction<'_>, StoreError> {
        Ok(self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?)
    }
}

fn idx(v: i64) -> usize {
    usize::try_from(v).unwrap_or(0)
}

impl Tx for Transaction<'_> {
    fn now(&mut self) -> Result<f64, StoreError> {
        Ok(unix_now())
    }

    fn job_rows(&mut self, study: &str) -> Result<Vec<JobRow>, StoreError> {
        Ok(read_jobs(self, study)?.into_iter().map(|j| j.row).collect())
    }

    fn trial_count(&mut self, study: &str) -> Result<usize, StoreError> {
        let n: i64 =
            self.query_row("SELECT COUNT(*) FROM trials WHERE study = ?1", [study], |r| r.get(0))?;
        Ok(idx(n))
    }

    fn trial(&mut self, study: &str, trial: usize) -> Result<(String, String), StoreError> {
        Ok(self.query_row(
            "SELECT params, hyp FROM trials WHERE study = ?1 AND id = ?2",
            params![study, trial as i64],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?)
    }

    fn insert_trial(
        &mut self,
        study: &str,
        trial: usize,
        params: &str,
        hyp: &str,
        now: f64,
    ) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO trials (study, id, params, hyp, state, created)
             VALUES (?1, ?2, ?3, ?4, 'running', ?5)",
            params![study, trial as i64, params, hyp, now],
        )?;
        Ok(())
    }

    fn set_trial_state(
        &mut self,
        study: &str,
        trial: usize,
        state: &str,
    ) -> Result<(), StoreError> {
        self.execute(
            "UPDATE trials SET state = ?3 WHERE study = ?1 AND id = ?2",
            params![study, trial as i64, state],
        )?;
        Ok(())
    }

    fn insert_job(
        &mut self,
        study: &str,
        trial: usize,
        rung: usize,
        epochs: usize,
        worker: &str,
        lease_until: f64,
        now: f64,
    ) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO jobs (study, trial, rung, epochs, state, worker, lease_until, attempts,
                               started)
             VALUES (?1, ?2, ?3, ?4, 'running', ?5, ?6, 1, ?7)",
            params![study, trial as i64, rung as i64, epochs as i64, worker, lease_until, now],
        )?;
        Ok(())
    }

    fn reclaim_job(
        &mut self,
        study: &str,
        trial: usize,
        rung: usize,
        worker: &str,
        lease_until: f64,
    ) -> Result<bool, StoreError> {
        let n = self.execute(
            "UPDATE jobs SET worker = ?4, lease_until = ?5, attempts = attempts + 1
             WHERE study = ?1 AND trial = ?2 AND rung = ?3 AND state = 'running'",
            params![study, trial as i64, rung as i64, worker, lease_until],
        )?;
        Ok(n == 1)
    }

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
    ) -> Result<bool, StoreError> {
        let n = self.execute(
            "UPDATE jobs SET state = ?5, metric = ?6, result = ?7, error = ?8, finished = ?9
             WHERE study = ?1 AND trial = ?2 AND rung = ?3 AND state = 'running'
               AND (?4 IS NULL OR worker = ?4)",
            params![
                study,
                trial as i64,
                rung as i64,
                worker,
                state.as_str(),
                metric,
                result,
                error,
                now
            ],
        )?;
        Ok(n == 1)
    }

    fn log_claim(
        &mut self,
        study: &str,
        trial: usize,
        rung: usize,
        worker: &str,
        kind: ClaimKind,
        now: f64,
    ) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO claims (study, trial, rung, worker, kind, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![study, trial as i64, rung as i64, worker, kind.as_str(), now],
        )?;
        Ok(())
    }

    fn put_epoch(&mut self, study: &str, e: &EpochRow) -> Result<(), StoreError> {
        self.execute(
            "INSERT OR REPLACE INTO epochs (study, trial, fold, epoch, val_precision, val_recall,
                                            map50, map50_95, fitness, val_loss, seconds)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            params![
                study,
                e.trial as i64,
                e.fold as i64,
                e.epoch as i64,
                e.precision,
                e.recall,
                e.map50,
                e.map50_95,
                e.fitness,
                e.val_loss,
                e.seconds
            ],
        )?;
        Ok(())
    }
}

fn read_jobs(conn: &Connection, study: &str) -> Result<Vec<JobRecord>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT trial, rung, state, worker, lease_until, attempts, metric, epochs, result, error
         FROM jobs WHERE study = ?1 ORDER BY trial, rung",
    )?;
    let rows = stmt.query_map([study], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, f64>(4)?,
            r.get::<_, i64>(5)?,
            r.get::<_, Option<f64>>(6)?,
            r.get::<_, i64>(7)?,
            r.get::<_, Option<String>>(8)?,
            r.get::<_, Option<String>>(9)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (trial, rung, state, worker, lease_until, attempts, metric, epochs, result, error) =
            row?;
        out.push(JobRecord {
            row: JobRow {
                trial: idx(trial),
                rung: idx(rung),
                state: JobState::parse(&state).ok_or_else(|| bad_state(&state))?,
                worker,
                lease_until,
                attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
                metric,
            },
            epochs: idx(epochs),
            result: result.map(|s| serde_json::from_str(&s)).transpose()?,
            error,
        });
    }
    Ok(out)
}

impl Store for SqliteStore {
    fn ensure_study(&mut self, spec: &StudySpec) -> Result<StudySpec, StoreError> {
        let tx = self.locked()?;
        tx.execute(
            "INSERT OR IGNORE INTO studies (name, config, created) VALUES (?1, ?2, ?3)",
            params![spec.name, serde_json::to_string(spec)?, unix_now()],
        )?;
        let config: String =
            tx.query_row("SELECT config FROM studies WHERE name = ?1", [&spec.name], |r| r.get(0))?;
        tx.commit()?;
        Ok(serde_json::from_str(&config)?)
    }

    fn study(&mut self, name: &str) -> Result<Option<StudySpec>, StoreError> {
        let config: Option<String> = self
            .conn
            .query_row("SELECT config FROM studies WHERE name = ?1", [name], |r| r.get(0))
            .optional()?;
        Ok(config.map(|c| serde_json::from_str(&c)).transpose()?)
    }

    fn claim(&mut self, spec: &StudySpec, worker: &str, lease_s: f64) -> Result<Claim, StoreError> {
        let mut tx = self.locked()?;
        let claim = claim_in(&mut tx, spec, worker, lease_s)?;
        tx.commit()?;
        Ok(claim)
    }

    fn renew(
        &mut self,
        study: &str,
        trial: usize,
        rung: usize,
        worker: &str,
        lease_s: f64,
    ) -> Result<bool, StoreError> {
        let n = self.conn.execute(
            "UPDATE jobs SET lease_until = ?5
             WHERE study = ?1 AND trial = ?2 AND rung = ?3 AND worker = ?4 AND state = 'running'",
            params![study, trial as i64, rung as i64, worker, unix_now() + lease_s],
        )?;
        Ok(n == 1)
    }

    fn finish(
        &mut self,
        spec: &StudySpec,
        trial: usize,
        rung: usize,
        worker: &str,
        outcome: &Outcome,
        epochs: &[EpochRow],
    ) -> Result<bool, StoreError> {
        let mut tx = self.locked()?;
        let ok = finish_in(&mut tx, spec, trial, rung, worker, outcome, epochs)?;
        tx.commit()?;
        Ok(ok)
    }

    fn trials(&mut self, study: &str) -> Result<Vec<TrialRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, params, hyp, state FROM trials WHERE study = ?1 ORDER BY id")?;
        let rows = stmt.query_map([study], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, params, hyp, state) = row?;
            out.push(TrialRow { id: idx(id), params: serde_json::from_str(&params)?, hyp, state });
        }
        Ok(out)
    }

    fn jobs(&mut self, study: &str) -> Result<Vec<JobRecord>, StoreError> {
        read_jobs(&self.conn, study)
    }

    fn claims(&mut self, study: &str) -> Result<Vec<ClaimRow>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT trial, rung, worker, kind, at FROM claims WHERE study = ?1 ORDER BY id",
        )?;
        let rows = stmt.query_map([study], |r| {
            Ok(ClaimRow {
                trial: idx(r.get(0)?),
                rung: idx(r.get(1)?),
                worker: r.get(2)?,
                kind: r.get(3)?,
                at: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn epochs(&mut self, study: &str) -> Result<Vec<EpochRow>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT trial, fold, epoch, val_precision, val_recall, map50, map50_95, fitness,
                    val_loss, seconds
             FROM epochs WHERE study = ?1 ORDER BY trial, fold, epoch",
        )?;
        let rows = stmt.query_map([study], |r| {
            Ok(EpochRow {
                trial: idx(r.get(0)?),
                fold: idx(r.get(1)?),
                epoch: idx(r.get(2)?),
                precision: r.get(3)?,
                recall: r.get(4)?,
                map50: r.get(5)?,
                map50_95: r.get(6)?,
                fitness: r.get(7)?,
                val_loss: r.get(8)?,
                seconds: r.get(9)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
