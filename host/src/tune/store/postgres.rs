//! The study store in PostgreSQL, for workers on several machines (`--store
//! postgres://USER@HOST:PORT/DB`; plain TCP, no TLS). Every claim and result runs in one
//! transaction that first locks the study's row (`SELECT ... FOR UPDATE`), so two workers never
//! take the same job; times are the server's clock, so leases do not depend on the workers'.

use postgres::{Client, NoTls, Row, Transaction};

use super::{
    Claim, ClaimKind, ClaimRow, EpochRow, JobRecord, Outcome, Store, StoreError, TrialRow, Tx,
    bad_state, claim_in, finish_in, schema,
};
use crate::tune::asha::{JobRow, JobState};
use crate::tune::study::StudySpec;

pub struct PgStore {
    client: Client,
}

/// Serialises schema creation between workers starting at once (an arbitrary constant).
const SCHEMA_LOCK: i64 = 0x6672_6163_7475_6e65; // "fractune"

const NOW: &str = "SELECT extract(epoch FROM clock_timestamp())::float8";

impl PgStore {
    pub fn connect(url: &str) -> Result<Self, StoreError> {
        let mut client = Client::connect(url, NoTls)?;
        let mut tx = client.transaction()?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])?;
        for s in schema("BIGINT", "DOUBLE PRECISION", "BIGSERIAL PRIMARY KEY") {
            tx.batch_execute(&s)?;
        }
        tx.commit()?;
        Ok(Self { client })
    }

    /// A transaction holding the study's row lock (the study must exist).
    fn locked(&mut self, study: &str) -> Result<Transaction<'_>, StoreError> {
        let mut tx = self.client.transaction()?;
        let found =
            tx.query_opt("SELECT name FROM studies WHERE name = $1 FOR UPDATE", &[&study])?;
        if found.is_none() {
            return Err(StoreError::Invalid(format!("no study {study:?} in the store")));
        }
        Ok(tx)
    }
}

fn idx(v: i64) -> usize {
    usize::try_from(v).unwrap_or(0)
}

fn job_record(r: &Row) -> Result<JobRecord, StoreError> {
    let state: String = r.get("state");
    let result: Option<String> = r.get("result");
    Ok(JobRecord {
        row: JobRow {
            trial: idx(r.get("trial")),
            rung: idx(r.get("rung")),
            state: JobState::parse(&state).ok_or_else(|| bad_state(&state))?,
            worker: r.get("worker"),
            lease_until: r.get("lease_until"),
            attempts: u32::try_from(r.get::<_, i64>("attempts")).unwrap_or(u32::MAX),
            metric: r.get("metric"),
        },
        epochs: idx(r.get("epochs")),
        result: result.map(|s| serde_json::from_str(&s)).transpose()?,
        error: r.get("error"),
    })
}

const JOBS: &str = "SELECT trial, rung, state, worker, lease_until, attempts, metric, epochs, \
                    result, error FROM jobs WHERE study = $1 ORDER BY trial, rung";

impl Tx for Transaction<'_> {
    fn now(&mut self) -> Result<f64, StoreError> {
        Ok(self.query_one(NOW, &[])?.get(0))
    }

    fn job_rows(&mut self, study: &str) -> Result<Vec<JobRow>, StoreError> {
        self.query(JOBS, &[&study])?.iter().map(|r| job_record(r).map(|j| j.row)).collect()
    }

    fn trial_count(&mut self, study: &str) -> Result<usize, StoreError> {
        let n: i64 =
            self.query_one("SELECT COUNT(*) FROM trials WHERE study = $1", &[&study])?.get(0);
        Ok(idx(n))
    }

    fn trial(&mut self, study: &str, trial: usize) -> Result<(String, String), StoreError> {
        let r = self.query_one(
            "SELECT params, hyp FROM trials WHERE study = $1 AND id = $2",
            &[&study, &(trial as i64)],
        )?;
        Ok((r.get(0), r.get(1)))
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
             VALUES ($1, $2, $3, $4, 'running', $5)",
            &[&study, &(trial as i64), &params, &hyp, &now],
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
            "UPDATE trials SET state = $3 WHERE study = $1 AND id = $2",
            &[&study, &(trial as i64), &state],
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
             VALUES ($1, $2, $3, $4, 'running', $5, $6, 1, $7)",
            &[
                &study,
                &(trial as i64),
                &(rung as i64),
                &(epochs as i64),
                &worker,
                &lease_until,
                &now,
            ],
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
            "UPDATE jobs SET worker = $4, lease_until = $5, attempts = attempts + 1
             WHERE study = $1 AND trial = $2 AND rung = $3 AND state = 'running'",
            &[&study, &(trial as i64), &(rung as i64), &worker, &lease_until],
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
            "UPDATE jobs SET state = $5, metric = $6, result = $7, error = $8, finished = $9
             WHERE study = $1 AND trial = $2 AND rung = $3 AND state = 'running'
               AND ($4::text IS NULL OR worker = $4)",
            &[
                &study,
                &(trial as i64),
                &(rung as i64),
                &worker,
                &state.as_str(),
                &metric,
                &result,
                &error,
                &now,
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
            "INSERT INTO claims (study, trial, rung, worker, kind, at) VALUES ($1, $2, $3, $4, $5, $6)",
            &[&study, &(trial as i64), &(rung as i64), &worker, &kind.as_str(), &now],
        )?;
        Ok(())
    }

    fn put_epoch(&mut self, study: &str, e: &EpochRow) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO epochs (study, trial, fold, epoch, val_precision, val_recall, map50,
                                 map50_95, fitness, val_loss, seconds)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
             ON CONFLICT (study, trial, fold, epoch) DO UPDATE SET
                val_precision = EXCLUDED.val_precision, val_recall = EXCLUDED.val_recall,
                map50 = EXCLUDED.map50, map50_95 = EXCLUDED.map50_95,
                fitness = EXCLUDED.fitness, val_loss = EXCLUDED.val_loss,
                seconds = EXCLUDED.seconds",
            &[
                &study,
                &(e.trial as i64),
                &(e.fold as i64),
                &(e.epoch as i64),
                &e.precision,
                &e.recall,
                &e.map50,
                &e.map50_95,
                &e.fitness,
                &e.val_loss,
                &e.seconds,
            ],
        )?;
        Ok(())
    }
}

impl Store for PgStore {
    fn ensure_study(&mut self, spec: &StudySpec) -> Result<StudySpec, StoreError> {
        let mut tx = self.client.transaction()?;
        let now: f64 = tx.query_one(NOW, &[])?.get(0);
        tx.execute(
            "INSERT INTO studies (name, config, created) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO NOTHING",
            &[&spec.name, &serde_json::to_string(spec)?, &now],
        )?;
        let config: String =
            tx.query_one("SELECT config FROM studies WHERE name = $1", &[&spec.name])?.get(0);
        tx.commit()?;
        Ok(serde_json::from_str(&config)?)
    }

    fn study(&mut self, name: &str) -> Result<Option<StudySpec>, StoreError> {
        let row = self.client.query_opt("SELECT config FROM studies WHERE name = $1", &[&name])?;
        Ok(row.map(|r| serde_json::from_str(&r.get::<_, String>(0))).transpose()?)
    }

    fn claim(&mut self, spec: &StudySpec, worker: &str, lease_s: f64) -> Result<Claim, StoreError> {
        let mut tx = self.locked(&spec.name)?;
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
        let n = self.client.execute(
            "UPDATE jobs SET lease_until = extract(epoch FROM clock_timestamp())::float8 + $5
             WHERE study = $1 AND trial = $2 AND rung = $3 AND worker = $4 AND state = 'running'",
            &[&study, &(trial as i64), &(rung as i64), &worker, &lease_s],
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
        let mut tx = self.locked(&spec.name)?;
        let ok = finish_in(&mut tx, spec, trial, rung, worker, outcome, epochs)?;
        tx.commit()?;
        Ok(ok)
    }

    fn trials(&mut self, study: &str) -> Result<Vec<TrialRow>, StoreError> {
        self.client
            .query(
                "SELECT id, params, hyp, state FROM trials WHERE study = $1 ORDER BY id",
                &[&study],
            )?
            .iter()
            .map(|r| {
                Ok(TrialRow {
                    id: idx(r.get(0)),
                    params: serde_json::from_str(&r.get::<_, String>(1))?,
                    hyp: r.get(2),
                    state: r.get(3),
                })
            })
            .collect()
    }

    fn jobs(&mut self, study: &str) -> Result<Vec<JobRecord>, StoreError> {
        self.client.query(JOBS, &[&study])?.iter().map(job_record).collect()
    }

    fn claims(&mut self, study: &str) -> Result<Vec<ClaimRow>, StoreError> {
        Ok(self
            .client
            .query(
                "SELECT trial, rung, worker, kind, at FROM claims WHERE study = $1 ORDER BY id",
                &[&study],
            )?
            .iter()
            .map(|r| ClaimRow {
                trial: idx(r.get(0)),
                rung: idx(r.get(1)),
                worker: r.get(2),
                kind: r.get(3),
                at: r.get(4),
            })
            .collect())
    }

    fn epochs(&mut self, study: &str) -> Result<Vec<EpochRow>, StoreError> {
        Ok(self
            .client
            .query(
                "SELECT trial, fold, epoch, val_precision, val_recall, map50, map50_95, fitness,
                        val_loss, seconds
                 FROM epochs WHERE study = $1 ORDER BY trial, fold, epoch",
                &[&study],
            )?
            .iter()
            .map(|r| EpochRow {
                trial: idx(r.get(0)),
                fold: idx(r.get(1)),
                epoch: idx(r.get(2)),
                precision: r.get(3),
                recall: r.get(4),
                map50: r.get(5),
                map50_95: r.get(6),
                fitness: r.get(7),
                val_loss: r.get(8),
                seconds: r.get(9),
            })
            .collect())
    }
}
