//! Counts for `fracturectl status`: jobs by state, queue depth, runs by status and by model,
//! findings, errors and the audit head. Read-only.

use std::collections::BTreeMap;

use serde::Serialize;

use super::audit::{self, ChainHead};
use super::{Db, DbError};

/// One model (bundle + backend + precision) and how many runs it made.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelCount {
    pub bundle_id: Option<String>,
    pub backend: Option<String>,
    pub precision: Option<String>,
    pub runs: u64,
    /// Why this backend ran the bundle (and why the ones tried before it did not), from the
    /// latest of these runs: e.g. the TensorRT fallback's reason, or where its engine came
    /// from.
    pub backend_reason: Option<String>,
}

/// What `fracturectl status --json` prints.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatusReport {
    pub database: String,
    pub schema_version: usize,
    pub images: u64,
    /// Every state appears, with 0 when empty: queued, running, done, failed, quarantined.
    pub jobs: BTreeMap<String, u64>,
    /// Jobs waiting to run (queued).
    pub queue_depth: u64,
    /// `analysed` and `not_analysed`.
    pub runs: BTreeMap<String, u64>,
    pub models: Vec<ModelCount>,
    pub findings: u64,
    pub errors: u64,
    pub audit: ChainHead,
}

/// Job states, in the order they are reported.
pub const JOB_STATES: [&str; 5] = ["queued", "running", "done", "failed", "quarantined"];

impl StatusReport {
    pub fn read(db: &Db) -> Result<Self, DbError> {
        let conn = db.conn();
        let count = |sql: &str| -> Result<u64, DbError> {
            Ok(conn.query_row(sql, [], |r| r.get::<_, i64>(0))? as u64)
        };
        let mut jobs: BTreeMap<String, u64> =
            JOB_STATES.iter().map(|s| (s.to_string(), 0)).collect();
        {
            let mut stmt = conn.prepare("SELECT state, count(*) FROM jobs GROUP BY state")?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
            for row in rows {
                let (state, n) = row?;
                jobs.insert(state, n as u64);
            }
        }
        let mut runs: BTreeMap<String, u64> =
            ["analysed", "not_analysed"].iter().map(|s| (s.to_string(), 0)).collect();
        {
            let mut stmt = conn.prepare("SELECT status, count(*) FROM runs GROUP BY status")?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
            for row in rows {
                let (status, n) = row?;
                runs.insert(status, n as u64);
            }
        }
        let mut models = Vec::new();
        {
            let mut stmt = conn.prepare(
                // SQLite takes the bare `backend_reason` from the row holding max(id).
                "SELECT bundle_id, backend, precision, count(*), backend_reason, max(id) FROM runs
                 GROUP BY bundle_id, backend, precision ORDER BY bundle_id, backend, precision",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(ModelCount {
                    bundle_id: r.get(0)?,
                    backend: r.get(1)?,
                    precision: r.get(2)?,
                    runs: r.get::<_, i64>(3)? as u64,
                    backend_reason: r.get(4)?,
                })
            })?;
            for row in rows {
                models.push(row?);
            }
        }
        let schema_version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        Ok(Self {
            database: db.path().display().to_string(),
            schema_version: schema_version as usize,
            images: count("SELECT count(*) FROM images")?,
            queue_depth: jobs.get("queued").copied().unwrap_or(0),
            jobs,
            runs,
            models,
            findings: count("SELECT count(*) FROM findings")?,
            errors: count("SELECT count(*) FROM errors")?,
            audit: audit::head(conn)?,
        })
    }

    /// A few human-readable lines.
    pub fn to_text(&self) -> String {
        let mut out = format!("database      {}\n", self.database);
        out += &format!("images        {}\n", self.images);
        out += &format!("queue depth   {}\n", self.queue_depth);
        let jobs: Vec<String> = JOB_STATES
            .iter()
            .map(|s| format!("{s} {}", self.jobs.get(*s).copied().unwrap_or(0)))
            .collect();
        out += &format!("jobs          {}\n", jobs.join(", "));
        let runs: Vec<String> = self.runs.iter().map(|(k, v)| format!("{k} {v}")).collect();
        out += &format!("runs          {}\n", runs.join(", "));
        if self.models.is_empty() {
            out += "models        none yet\n";
        }
        for m in &self.models {
            out += &format!(
                "model         {} ({}, {}): {} runs\n",
                m.bundle_id.as_deref().unwrap_or("no model (not analysed)"),
                m.backend.as_deref().unwrap_or("-"),
                m.precision.as_deref().unwrap_or("-"),
                m.runs
            );
            if let Some(why) = &m.backend_reason {
                out += &format!("  backend     {why}\n");
            }
        }
        out += &format!("findings      {}\n", self.findings);
        out += &format!("errors        {}\n", self.errors);
        out += &format!("audit         {} rows, head {}\n", self.audit.rows, self.audit.head);
        out
    }
}
