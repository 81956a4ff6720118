//! One image as the review screen and the auditor export see it: the file's facts, the
//! job's outcome, the newest run's model identity, findings with their current decisions,
//! missed boxes, notes, the no-fracture confirmation, timings and the full decision history.

use std::collections::BTreeMap;
use std::path::PathBuf;

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use super::worklist::status_of;
use crate::db::DbError;

/// The model that analysed the image.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelIdentity {
    pub bundle_id: String,
    /// The bundle's identity (SHA-256 of its manifest), shortened for display.
    pub version: String,
    pub bundle_sha256: String,
    pub backend: Option<String>,
    pub precision: Option<String>,
    pub analysed_at: String,
}

/// A person's decision on a finding.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    pub kind: String,
    pub reason: Option<String>,
    pub reviewer: String,
    pub at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    pub id: i64,
    pub x1: f64,
    pub y1: f64,
    pub x2: f64,
    pub y2: f64,
    pub score: f64,
    pub class_name: String,
    pub operating_point: String,
    /// The newest decision, if any.
    pub decision: Option<Decision>,
}

/// A fracture the model missed, drawn by a reviewer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MissedBox {
    pub id: i64,
    pub x1: f64,
    pub y1: f64,
    pub x2: f64,
    pub y2: f64,
    pub note: Option<String>,
    pub reviewer: String,
    pub at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Note {
    pub id: i64,
    pub text: String,
    pub reviewer: String,
    pub at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Negative {
    pub reviewer: String,
    pub at: String,
}

/// Any decision row, for the history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryRow {
    pub id: i64,
    pub kind: String,
    pub finding_id: Option<i64>,
    pub text: Option<String>,
    pub reviewer: String,
    pub at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImageRecord {
    pub id: i64,
    pub sha256: String,
    pub name: String,
    pub created_at: String,
    pub width: Option<i64>,
    pub height: Option<i64>,
    pub format: Option<String>,
    pub acquisition: Option<serde_json::Value>,
    pub status: String,
    pub reviewed: bool,
    pub job_state: String,
    pub error: Option<String>,
    pub model: Option<ModelIdentity>,
    pub findings: Vec<Finding>,
    pub missed: Vec<MissedBox>,
    pub notes: Vec<Note>,
    pub negative: Option<Negative>,
    /// Milliseconds per stage of the newest run.
    pub timings: BTreeMap<String, f64>,
    /// Every decision on the image, oldest first.
    pub history: Vec<HistoryRow>,
}

/// The record of image `id`, or `None`.
pub fn image_record(conn: &Connection, id: i64) -> Result<Option<ImageRecord>, DbError> {
    let base = conn
        .query_row(
            "SELECT i.sha256, i.original_name, i.created_at, i.width, i.height, i.format,
                    i.acquisition, j.state, j.error
             FROM images i JOIN jobs j ON j.image_id = i.id WHERE i.id = ?1",
            params![id],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, Option<i64>>(3)?,
                    r.get::<_, Option<i64>>(4)?,
                    r.get::<_, Option<String>>(5)?,
                    r.get::<_, Option<String>>(6)?,
                    r.get::<_, String>(7)?,
                    r.get::<_, Option<String>>(8)?,
                ))
            },
        )
        .optional()?;
    let Some((sha256, name, created_at, width, height, format, acquisition, job_state, error)) =
        base
    else {
        return Ok(None);
    };
    let (status, reviewed) = status_of(conn, id)?.unwrap_or_else(|| ("pending".into(), false));
    let run = conn
        .query_row(
            "SELECT id, bundle_id, bundle_sha256, backend, precision, created_at FROM runs
             WHERE image_id = ?1 ORDER BY id DESC LIMIT 1",
            params![id],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, Option<String>>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, Option<String>>(3)?,
                    r.get::<_, Option<String>>(4)?,
                    r.get::<_, String>(5)?,
                ))
            },
        )
        .optional()?;
    let mut model = None;
    let mut findings = Vec::new();
    let mut timings = BTreeMap::new();
    if let Some((run_id, bundle_id, bundle_sha256, backend, precision, analysed_at)) = run {
        if let (Some(bundle_id), Some(bundle_sha256)) = (bundle_id, bundle_sha256) {
            model = Some(ModelIdentity {
                bundle_id,
                version: bundle_sha256.chars().take(12).collect(),
                bundle_sha256,
                backend,
                precision,
                analysed_at,
            });
        }
        findings = run_findings(conn, run_id)?;
        let mut stmt = conn.prepare("SELECT stage, ms FROM timings WHERE run_id = ?1")?;
        let mut rows = stmt.query(params![run_id])?;
        while let Some(r) = rows.next()? {
            *timings.entry(r.get::<_, String>(0)?).or_insert(0.0) += r.get::<_, f64>(1)?;
        }
    }
    let history = history(conn, id)?;
    let mut missed = Vec::new();
    let mut notes = Vec::new();
    let mut negative = None;
    let mut stmt = conn.prepare(
        "SELECT id, kind, text, x1, y1, x2, y2, reviewer, created_at FROM decisions
         WHERE image_id = ?1 AND kind IN ('missed', 'note', 'no_fracture') ORDER BY id",
    )?;
    let mut rows = stmt.query(params![id])?;
    while let Some(r) = rows.next()? {
        let kind: String = r.get(1)?;
        let text: Option<String> = r.get(2)?;
        let reviewer: String = r.get(7)?;
        let at: String = r.get(8)?;
        match kind.as_str() {
            "missed" => missed.push(MissedBox {
                id: r.get(0)?,
                x1: r.get(3)?,
                y1: r.get(4)?,
                x2: r.get(5)?,
                y2: r.get(6)?,
                note: text,
                reviewer,
                at,
            }),
            "note" => {
                notes.push(Note { id: r.get(0)?, text: text.unwrap_or_default(), reviewer, at })
            }
            _ => negative = Some(Negative { reviewer, at }),
        }
    }
    Ok(Some(ImageRecord {
        id,
        sha256,
        name,
        created_at,
        width,
        height,
        format,
        acquisition: acquisition.and_then(|a| serde_json::from_str(&a).ok()),
        status,
        reviewed,
        job_state,
        error,
        model,
        findings,
        missed,
        notes,
        negative,
        timings,
        history,
    }))
}

/// The findings of one run, each with its newest decision.
fn run_findings(conn: &Connection, run_id: i64) -> Result<Vec<Finding>, DbError> {
    let mut stmt = conn.prepare(
        "SELECT f.id, f.x1, f.y1, f.x2, f.y2, f.score, f.class_name, f.operating_point,
                d.kind, d.text, d.reviewer, d.created_at
         FROM findings f
         LEFT JOIN decisions d ON d.id = (SELECT max(id) FROM decisions
                                          WHERE finding_id = f.id)
         WHERE f.run_id = ?1 ORDER BY f.score DESC, f.id",
    )?;
    let rows = stmt.query_map(params![run_id], |r| {
        let kind: Option<String> = r.get(8)?;
        let decision = match kind {
            Some(kind) => {
                Some(Decision { kind, reason: r.get(9)?, reviewer: r.get(10)?, at: r.get(11)? })
            }
            None => None,
        };
        Ok(Finding {
            id: r.get(0)?,
            x1: r.get(1)?,
            y1: r.get(2)?,
            x2: r.get(3)?,
            y2: r.get(4)?,
            score: r.get(5)?,
            class_name: r.get(6)?,
            operating_point: r.get(7)?,
            decision,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn history(conn: &Connection, image_id: i64) -> Result<Vec<HistoryRow>, DbError> {
    let mut stmt = conn.prepare(
        "SELECT id, kind, finding_id, text, reviewer, created_at FROM decisions
         WHERE image_id = ?1 ORDER BY id",
    )?;
    let rows = stmt.query_map(params![image_id], |r| {
        Ok(HistoryRow {
            id: r.get(0)?,
            kind: r.get(1)?,
            finding_id: r.get(2)?,
            text: r.get(3)?,
            reviewer: r.get(4)?,
            at: r.get(5)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Where the image's file lies now (archive/ or quarantine/), if it was moved there.
pub fn stored_file(conn: &Connection, image_id: i64) -> Result<Option<PathBuf>, DbError> {
    let path: Option<Option<String>> = conn
        .query_row("SELECT disposed_path FROM jobs WHERE image_id = ?1", params![image_id], |r| {
            r.get(0)
        })
        .optional()?;
    Ok(path.flatten().map(PathBuf::from))
}
