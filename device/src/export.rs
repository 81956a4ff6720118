//! The auditor export: every image logged between two dates with its findings, review
//! decisions and reasons, reviewers, model identity and timings, as CSV or JSON Lines.
//!
//! An export is itself an audit event, and the file carries the audit chain's head hash
//! *including that event*: an auditor can later prove the log they were given was intact up
//! to that point (`fracturectl audit verify` must reach the same hash at that row). The
//! export and its audit row are one transaction; the file is written beside its final name
//! and renamed into place only after the audit row is committed.
//!
//! - JSON Lines: the first line is `{"export": {...}}` (range, counts, `audit_head`,
//!   `audit_seq`), then one [`ImageRecord`] per line.
//! - CSV: the first line is a `#` comment with the same facts, then a header and one row per
//!   finding, per missed box, and one row for an image with neither.

use std::io::Write;
use std::path::Path;

use rusqlite::{TransactionBehavior, params};
use serde::Serialize;

use crate::db::audit::{self, AuditEntry};
use crate::db::{Db, DbError};
use crate::review::record::{ImageRecord, image_record};

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("{0}")]
    Invalid(String),
    #[error("writing {path}: {source}")]
    Write { path: String, source: std::io::Error },
    #[error("csv: {0}")]
    Csv(#[from] csv::Error),
}

impl From<rusqlite::Error> for ExportError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Db(DbError::Sqlite(e))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Csv,
    Jsonl,
}

impl Format {
    pub fn parse(s: &str) -> Result<Self, ExportError> {
        match s {
            "csv" => Ok(Format::Csv),
            "jsonl" => Ok(Format::Jsonl),
            other => Err(ExportError::Invalid(format!(
                "unknown export format {other:?} (expected csv or jsonl)"
            ))),
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Jsonl => "jsonl",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Csv => "text/csv; charset=utf-8",
            Format::Jsonl => "application/jsonl; charset=utf-8",
        }
    }
}

/// Days `from` to `to`, both included (UTC), as given by the user (`YYYY-MM-DD`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DateRange {
    pub from: String,
    pub to: String,
}

impl DateRange {
    pub fn parse(from: &str, to: &str) -> Result<Self, ExportError> {
        for (what, d) in [("--from", from), ("--to", to)] {
            if !is_date(d) {
                return Err(ExportError::Invalid(format!(
                    "{what} {d:?} is not a date: use YYYY-MM-DD (UTC, both ends included)"
                )));
            }
        }
        if from > to {
            return Err(ExportError::Invalid(format!("--from {from} is after --to {to}")));
        }
        Ok(Self { from: from.to_string(), to: to.to_string() })
    }

    /// The range as bounds on the log's RFC 3339 timestamps (which sort as text).
    fn bounds(&self) -> (String, String) {
        (format!("{}T00:00:00.000Z", self.from), format!("{}T23:59:59.999Z", self.to))
    }
}

fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| r.into_iter().all(|i| b[i].is_ascii_digit());
    if b.len() != 10
        || b[4] != b'-'
        || b[7] != b'-'
        || !digits(0..4)
        || !digits(5..7)
        || !digits(8..10)
    {
        return false;
    }
    let month: u32 = s[5..7].parse().unwrap_or(0);
    let day: u32 = s[8..10].parse().unwrap_or(0);
    (1..=12).contains(&month) && (1..=31).contains(&day)
}

/// What an export wrote.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExportSummary {
    pub format: Format,
    pub range: DateRange,
    pub images: usize,
    pub rows: usize,
    pub generated_at: String,
    pub generated_by: String,
    /// The audit row recording this export, and the chain's head hash (that row's hash).
    pub audit_seq: i64,
    pub audit_head: String,
}

/// Exports to bytes (for the screen's download) and records the audit event.
pub fn export_bytes(
    db: &mut Db,
    range: &DateRange,
    format: Format,
    actor: &str,
) -> Result<(Vec<u8>, ExportSummary), ExportError> {
    let mut out = Vec::new();
    let summary = export_with(db, range, format, actor, |bytes| {
        out = bytes;
        Ok(())
    })?;
    Ok((out, summary))
}

/// Exports to `path` (written to a temporary name, renamed once the audit row is committed).
pub fn export_file(
    db: &mut Db,
    range: &DateRange,
    format: Format,
    actor: &str,
    path: &Path,
) -> Result<ExportSummary, ExportError> {
    let tmp = path.with_file_name(format!(
        ".{}.partial",
        path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
    ));
    let write_err = |source| ExportError::Write { path: path.display().to_string(), source };
    let summary = export_with(db, range, format, actor, |bytes| {
        let mut f = std::fs::File::create(&tmp).map_err(write_err)?;
        f.write_all(&bytes).and_then(|()| f.sync_all()).map_err(write_err)
    });
    match summary {
        Ok(s) => {
            std::fs::rename(&tmp, path).map_err(write_err)?;
            Ok(s)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Reads the range, appends the audit row, renders, hands the bytes to `sink`, and commits
/// only if the sink succeeded.
fn export_with(
    db: &mut Db,
    range: &DateRange,
    format: Format,
    actor: &str,
    sink: impl FnOnce(Vec<u8>) -> Result<(), ExportError>,
) -> Result<ExportSummary, ExportError> {
    let (lo, hi) = range.bounds();
    let tx = db.conn_mut().transaction_with_behavior(TransactionBehavior::Immediate)?;
    let ids: Vec<i64> = {
        let mut stmt = tx.prepare(
            "SELECT id FROM images WHERE created_at >= ?1 AND created_at <= ?2 ORDER BY id",
        )?;
        stmt.query_map(params![lo, hi], |r| r.get(0))?.collect::<Result<_, _>>()?
    };
    let mut records = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(r) = image_record(&tx, id)? {
            records.push(r);
        }
    }
    let rows = records.iter().map(csv_row_count).sum();
    let row = audit::append(
        &tx,
        &AuditEntry {
            actor,
            action: "export.create",
            subject: &format!("{}..{}", range.from, range.to),
            detail: serde_json::json!({
                "format": format, "from": range.from, "to": range.to,
                "images": records.len(), "rows": rows,
            }),
        },
    )?;
    let summary = ExportSummary {
        format,
        range: range.clone(),
        images: records.len(),
        rows,
        generated_at: row.at.clone(),
        generated_by: actor.to_string(),
        audit_seq: row.seq,
        audit_head: row.hash.clone(),
    };
    let bytes = match format {
        Format::Jsonl => render_jsonl(&summary, &records)?,
        Format::Csv => render_csv(&summary, &records)?,
    };
    sink(bytes)?;
    tx.commit()?;
    Ok(summary)
}

fn render_jsonl(summary: &ExportSummary, records: &[ImageRecord]) -> Result<Vec<u8>, ExportError> {
    let mut out = Vec::new();
    json_line(&mut out, &serde_json::json!({ "export": summary }))?;
    for r in records {
        json_line(&mut out, r)?;
    }
    Ok(out)
}

/// Appends one line of JSON and its newline.
fn json_line<T: Serialize>(out: &mut Vec<u8>, value: &T) -> Result<(), ExportError> {
    serde_json::to_writer(&mut *out, value).map_err(DbError::Json)?;
    out.push(b'\n');
    Ok(())
}

/// CSV columns, in order.
pub const CSV_COLUMNS: [&str; 27] = [
    "image_id",
    "image_sha256",
    "image_name",
    "received_at",
    "status",
    "reviewed",
    "job_state",
    "error",
    "bundle_id",
    "bundle_sha256",
    "backend",
    "precision",
    "total_ms",
    "row_kind",
    "finding_id",
    "x1",
    "y1",
    "x2",
    "y2",
    "score",
    "operating_point",
    "decision",
    "reason_or_note",
    "reviewer",
    "decided_at",
    "negative_confirmed_by",
    "notes",
];

fn csv_row_count(r: &ImageRecord) -> usize {
    (r.findings.len() + r.missed.len()).max(1)
}

fn render_csv(summary: &ExportSummary, records: &[ImageRecord]) -> Result<Vec<u8>, ExportError> {
    let mut out = format!(
        "# fracture-export format=csv from={} to={} images={} rows={} generated_at={} \
         generated_by={} audit_seq={} audit_head={}\n",
        summary.range.from,
        summary.range.to,
        summary.images,
        summary.rows,
        summary.generated_at,
        summary.generated_by,
        summary.audit_seq,
        summary.audit_head
    )
    .into_bytes();
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(CSV_COLUMNS)?;
    for r in records {
        let model = r.model.as_ref();
        let total_ms: f64 = r.timings.values().sum();
        let notes = r.notes.iter().map(|n| n.text.as_str()).collect::<Vec<_>>().join(" | ");
        let negative = r.negative.as_ref().map(|n| n.reviewer.clone()).unwrap_or_default();
        let image_cols = [
            r.id.to_string(),
            r.sha256.clone(),
            r.name.clone(),
            r.created_at.clone(),
            r.status.clone(),
            r.reviewed.to_string(),
            r.job_state.clone(),
            r.error.clone().unwrap_or_default(),
            model.map(|m| m.bundle_id.clone()).unwrap_or_default(),
            model.map(|m| m.bundle_sha256.clone()).unwrap_or_default(),
            model.and_then(|m| m.backend.clone()).unwrap_or_default(),
            model.and_then(|m| m.precision.clone()).unwrap_or_default(),
            if r.timings.is_empty() { String::new() } else { format!("{total_ms:.3}") },
        ];
        let mut emit = |kind: &str, rest: [String; 11]| -> Result<(), ExportError> {
            let mut row: Vec<String> = image_cols.to_vec();
            row.push(kind.to_string());
            row.extend(rest);
            row.push(negative.clone());
            row.push(notes.clone());
            w.write_record(&row)?;
            Ok(())
        };
        for f in &r.findings {
            let d = f.decision.as_ref();
            emit(
                "finding",
                [
                    f.id.to_string(),
                    f.x1.to_string(),
                    f.y1.to_string(),
                    f.x2.to_string(),
                    f.y2.to_string(),
                    f.score.to_string(),
                    f.operating_point.clone(),
                    d.map(|d| d.kind.clone()).unwrap_or_default(),
                    d.and_then(|d| d.reason.clone()).unwrap_or_default(),
                    d.map(|d| d.reviewer.clone()).unwrap_or_default(),
                    d.map(|d| d.at.clone()).unwrap_or_default(),
                ],
            )?;
        }
        for m in &r.missed {
            emit(
                "missed",
                [
                    String::new(),
                    m.x1.to_string(),
                    m.y1.to_string(),
                    m.x2.to_string(),
                    m.y2.to_string(),
                    String::new(),
                    String::new(),
                    "missed".into(),
                    m.note.clone().unwrap_or_default(),
                    m.reviewer.clone(),
                    m.at.clone(),
                ],
            )?;
        }
        if r.findings.is_empty() && r.missed.is_empty() {
            let (decision, reviewer, at) = match &r.negative {
                Some(n) => ("no_fracture".to_string(), n.reviewer.clone(), n.at.clone()),
                None => Default::default(),
            };
            emit(
                "image",
                [
                    String::new(),
                    String::new(),
                    String::new(),
                    String::new(),
                    String::new(),
                    String::new(),
                    String::new(),
                    decision,
                    String::new(),
                    reviewer,
                    at,
                ],
            )?;
        }
    }
    let body = w.into_inner().map_err(|e| ExportError::Invalid(e.to_string()))?;
    out.extend(body);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_checked() {
        assert!(DateRange::parse("2026-11-01", "2026-11-30").is_ok());
        assert!(DateRange::parse("2026-11-30", "2026-11-01").is_err());
        for bad in ["2026-13-01", "26-11-01", "2026/11/01", "", "2026-11-01T00:00"] {
            assert!(DateRange::parse(bad, "2026-11-30").is_err(), "{bad}");
        }
    }

    #[test]
    fn an_export_is_an_audit_row_and_carries_the_head() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut db = Db::open(&tmp.path().join("t.sqlite3")).expect("db");
        let range = DateRange::parse("2000-01-01", "2999-12-31").expect("range");
        let out = tmp.path().join("x.jsonl");
        let s = export_file(&mut db, &range, Format::Jsonl, "auditor", &out).expect("export");
        let head = audit::verify_audit_chain(db.conn()).expect("chain");
        assert_eq!(head.head, s.audit_head);
        assert_eq!(head.rows, s.audit_seq as u64);
        let text = std::fs::read_to_string(&out).expect("read");
        let first: serde_json::Value =
            serde_json::from_str(text.lines().next().expect("line")).expect("json");
        assert_eq!(first["export"]["audit_head"], s.audit_head.as_str());
    }
}
