//! The worklist: every image with its review status, newest first, and the counts per
//! status the filter shows.
//!
//! An image's status follows from its job, its newest run, the findings of that run and
//! the newest decision on each finding (older decisions are history):
//!
//! | status         | when                                                                 |
//! |----------------|----------------------------------------------------------------------|
//! | `failed`       | the job failed or the file was quarantined                           |
//! | `pending`      | queued or being analysed                                             |
//! | `not_analysed` | no model ran (none installed) and no missed box was drawn            |
//! | `no_finding`   | the model found nothing and no missed box was drawn                  |
//! | `unreviewed`   | at least one finding has no decision                                 |
//! | `accepted`     | every finding decided, at least one accepted, or a missed box drawn  |
//! | `rejected`     | every finding rejected and no missed box                             |
//!
//! `reviewed` says whether a person has recorded any decision or a no-fracture confirmation;
//! the screen labels an image "AI-generated, unverified" until then.

use rusqlite::{Connection, params};
use serde::Serialize;

use crate::db::DbError;

/// Every status, in the order the filter lists them.
pub const STATUSES: [&str; 7] =
    ["unreviewed", "accepted", "rejected", "no_finding", "failed", "not_analysed", "pending"];

/// One worklist row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorklistItem {
    pub id: i64,
    pub sha256: String,
    pub name: String,
    pub created_at: String,
    pub status: String,
    pub reviewed: bool,
    pub findings: i64,
    pub max_score: Option<f64>,
}

/// The worklist page the screen shows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Worklist {
    pub images: Vec<WorklistItem>,
    /// Images per status, plus `all`.
    pub counts: serde_json::Map<String, serde_json::Value>,
    /// Changes whenever anything the list shows changes (the screen polls it).
    pub version: String,
}

/// Per image: its newest run, finding and decision tallies, and the status they imply.
/// `?1` filters by status (`all` keeps every image).
const STATUS_SQL: &str = r#"
WITH last_run AS (
    SELECT image_id, max(id) AS run_id FROM runs GROUP BY image_id
),
latest AS (
    SELECT d.finding_id, d.kind FROM decisions d
    WHERE d.kind IN ('accept', 'reject')
      AND d.id = (SELECT max(d2.id) FROM decisions d2 WHERE d2.finding_id = d.finding_id)
),
tally AS (
    SELECT i.id, i.sha256, i.original_name, i.created_at, j.state, r.status AS run_status,
        (SELECT count(*) FROM findings f WHERE f.run_id = lr.run_id) AS n_findings,
        (SELECT max(f.score) FROM findings f WHERE f.run_id = lr.run_id) AS max_score,
        (SELECT count(*) FROM findings f LEFT JOIN latest l ON l.finding_id = f.id
          WHERE f.run_id = lr.run_id AND l.kind IS NULL) AS undecided,
        (SELECT count(*) FROM findings f JOIN latest l ON l.finding_id = f.id
          WHERE f.run_id = lr.run_id AND l.kind = 'accept') AS accepted,
        (SELECT count(*) FROM decisions d WHERE d.image_id = i.id AND d.kind = 'missed')
          AS missed,
        EXISTS (SELECT 1 FROM decisions d WHERE d.image_id = i.id AND d.kind <> 'note')
          AS reviewed
    FROM images i
    JOIN jobs j ON j.image_id = i.id
    LEFT JOIN last_run lr ON lr.image_id = i.id
    LEFT JOIN runs r ON r.id = lr.run_id
),
status AS (
    SELECT *, CASE
        WHEN state IN ('failed', 'quarantined') THEN 'failed'
        WHEN state IN ('queued', 'running') OR run_status IS NULL THEN 'pending'
        WHEN run_status = 'not_analysed' AND missed = 0 THEN 'not_analysed'
        WHEN n_findings = 0 AND missed = 0 THEN 'no_finding'
        WHEN undecided > 0 THEN 'unreviewed'
        WHEN accepted > 0 OR missed > 0 THEN 'accepted'
        ELSE 'rejected'
    END AS status
    FROM tally
)
"#;

/// The review status of one image (`None` if there is no such image).
pub fn status_of(conn: &Connection, image_id: i64) -> Result<Option<(String, bool)>, DbError> {
    let sql = format!("{STATUS_SQL} SELECT status, reviewed FROM status WHERE id = ?1");
    let mut stmt = conn.prepare(&sql)?;
    let mut rows = stmt.query(params![image_id])?;
    match rows.next()? {
        Some(r) => Ok(Some((r.get(0)?, r.get::<_, i64>(1)? != 0))),
        None => Ok(None),
    }
}

/// The newest `limit` images with status `filter` (`all` for every one), and the counts.
pub fn worklist(conn: &Connection, filter: &str, limit: u32) -> Result<Worklist, DbError> {
    if filter != "all" && !STATUSES.contains(&filter) {
        return Err(DbError::Invalid(format!(
            "unknown status filter {filter:?} (expected all or one of {})",
            STATUSES.join(", ")
        )));
    }
    let sql = format!(
        "{STATUS_SQL} SELECT id, sha256, original_name, created_at, status, reviewed,
                             n_findings, max_score
         FROM status WHERE ?1 = 'all' OR status = ?1 ORDER BY id DESC LIMIT ?2"
    );
    let mut stmt = conn.prepare(&sql)?;
    let images = stmt
        .query_map(params![filter, limit], |r| {
            Ok(WorklistItem {
                id: r.get(0)?,
                sha256: r.get(1)?,
                name: r.get(2)?,
                created_at: r.get(3)?,
                status: r.get(4)?,
                reviewed: r.get::<_, i64>(5)? != 0,
                findings: r.get(6)?,
                max_score: r.get(7)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;

    let mut counts = serde_json::Map::new();
    let mut all = 0_i64;
    for s in STATUSES {
        counts.insert(s.to_string(), 0.into());
    }
    let sql = format!("{STATUS_SQL} SELECT status, count(*) FROM status GROUP BY status");
    let mut stmt = conn.prepare(&sql)?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let n: i64 = r.get(1)?;
        counts.insert(r.get(0)?, n.into());
        all += n;
    }
    counts.insert("all".into(), all.into());
    Ok(Worklist { images, counts, version: version(conn)? })
}

/// A token that changes when an image arrives, a job changes state or a decision is made.
pub fn version(conn: &Connection) -> Result<String, DbError> {
    let v: (i64, Option<String>, i64) = conn.query_row(
        "SELECT (SELECT coalesce(max(id), 0) FROM images),
                (SELECT max(updated_at) FROM jobs),
                (SELECT coalesce(max(id), 0) FROM decisions)",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    Ok(format!("{}-{}-{}", v.0, v.1.unwrap_or_default(), v.2))
}
