//! Recording what a reviewer decides — accept or reject a finding, draw a missed fracture,
//! write a note, confirm a whole image as negative — and what they look at. Each decision
//! row and its audit row are written in one transaction: either both exist or neither.

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use serde_json::json;

use super::worklist::status_of;
use crate::db::audit::{self, AuditEntry};
use crate::db::{Db, DbError};

/// Longest reason or note kept (characters).
pub const MAX_TEXT_CHARS: usize = 2000;

#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("{0}")]
    NotFound(String),
    /// The request is well formed but the image's state forbids it.
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
}

impl From<rusqlite::Error> for ReviewError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Db(DbError::Sqlite(e))
    }
}

/// Accept or reject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    /// Rejecting needs a reason.
    Reject {
        reason: String,
    },
}

/// A box in the original image's pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PixelBox {
    pub x1: f64,
    pub y1: f64,
    pub x2: f64,
    pub y2: f64,
}

/// Records a verdict on a finding of the image's newest run; returns the image id.
pub fn decide_finding(
    db: &mut Db,
    finding_id: i64,
    verdict: &Verdict,
    reviewer: &str,
) -> Result<i64, ReviewError> {
    let tx = begin(db)?;
    let row: Option<(i64, i64, i64, String)> = tx
        .query_row(
            "SELECT r.image_id, r.id, (SELECT max(id) FROM runs WHERE image_id = r.image_id),
                    i.sha256
             FROM findings f JOIN runs r ON r.id = f.run_id JOIN images i ON i.id = r.image_id
             WHERE f.id = ?1",
            params![finding_id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()?;
    let (image_id, run_id, newest_run, sha256) =
        row.ok_or_else(|| ReviewError::NotFound(format!("no finding {finding_id}")))?;
    if run_id != newest_run {
        return Err(ReviewError::Conflict(format!(
            "finding {finding_id} belongs to an older analysis of this image"
        )));
    }
    let (kind, reason) = match verdict {
        Verdict::Accept => ("accept", None),
        Verdict::Reject { reason } => ("reject", Some(clean_text(reason, "a rejection reason")?)),
    };
    tx.execute(
        "INSERT INTO decisions (image_id, finding_id, kind, text, reviewer, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![image_id, finding_id, kind, reason, reviewer, crate::clock::now_rfc3339()],
    )?;
    let detail = json!({ "image_id": image_id, "finding_id": finding_id, "reason": reason });
    log(&tx, reviewer, &format!("review.{kind}"), &sha256, detail)?;
    tx.commit()?;
    Ok(image_id)
}

/// Records a fracture the model missed.
pub fn add_missed(
    db: &mut Db,
    image_id: i64,
    bx: PixelBox,
    note: Option<&str>,
    reviewer: &str,
) -> Result<(), ReviewError> {
    let tx = begin(db)?;
    let (sha256, width, height) = reviewable(&tx, image_id)?;
    let finite = [bx.x1, bx.y1, bx.x2, bx.y2].iter().all(|v| v.is_finite());
    if !finite || bx.x2 <= bx.x1 || bx.y2 <= bx.y1 {
        return Err(ReviewError::Invalid("a box needs x1 < x2 and y1 < y2".into()));
    }
    if let (Some(w), Some(h)) = (width, height) {
        let (w, h) = (w as f64, h as f64);
        if bx.x1 < 0.0 || bx.y1 < 0.0 || bx.x2 > w || bx.y2 > h {
            return Err(ReviewError::Invalid(format!("the box lies outside the {w}x{h} image")));
        }
    }
    let note =
        note.filter(|n| !n.trim().is_empty()).map(|n| clean_text(n, "a note")).transpose()?;
    tx.execute(
        "INSERT INTO decisions (image_id, kind, text, x1, y1, x2, y2, reviewer, created_at)
         VALUES (?1, 'missed', ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![image_id, note, bx.x1, bx.y1, bx.x2, bx.y2, reviewer, crate::clock::now_rfc3339()],
    )?;
    let detail = json!({
        "image_id": image_id, "box": [bx.x1, bx.y1, bx.x2, bx.y2], "note": note,
    });
    log(&tx, reviewer, "review.missed", &sha256, detail)?;
    tx.commit()?;
    Ok(())
}

/// Records a free-text note on the image.
pub fn add_note(db: &mut Db, image_id: i64, text: &str, reviewer: &str) -> Result<(), ReviewError> {
    let tx = begin(db)?;
    let (sha256, _, _) = image_facts(&tx, image_id)?;
    let text = clean_text(text, "a note")?;
    tx.execute(
        "INSERT INTO decisions (image_id, kind, text, reviewer, created_at)
         VALUES (?1, 'note', ?2, ?3, ?4)",
        params![image_id, text, reviewer, crate::clock::now_rfc3339()],
    )?;
    log(&tx, reviewer, "review.note", &sha256, json!({ "image_id": image_id, "text": text }))?;
    tx.commit()?;
    Ok(())
}

/// Confirms the whole image as negative. Refused while a finding is not rejected or a
/// missed box exists: the confirmation must not contradict a decision on the same image.
pub fn confirm_negative(db: &mut Db, image_id: i64, reviewer: &str) -> Result<(), ReviewError> {
    let tx = begin(db)?;
    let (sha256, _, _) = reviewable(&tx, image_id)?;
    let open: i64 = tx.query_row(
        "SELECT count(*) FROM findings f
         WHERE f.run_id = (SELECT max(id) FROM runs WHERE image_id = ?1)
           AND coalesce((SELECT kind FROM decisions d WHERE d.finding_id = f.id
                         ORDER BY d.id DESC LIMIT 1), '') <> 'reject'",
        params![image_id],
        |r| r.get(0),
    )?;
    if open > 0 {
        return Err(ReviewError::Conflict(format!(
            "{open} finding(s) on this image are not rejected: reject each one (with a reason) \
             before confirming the image has no fracture"
        )));
    }
    let missed: i64 = tx.query_row(
        "SELECT count(*) FROM decisions WHERE image_id = ?1 AND kind = 'missed'",
        params![image_id],
        |r| r.get(0),
    )?;
    if missed > 0 {
        return Err(ReviewError::Conflict(
            "a missed fracture was marked on this image: it cannot also be confirmed negative"
                .into(),
        ));
    }
    tx.execute(
        "INSERT INTO decisions (image_id, kind, reviewer, created_at)
         VALUES (?1, 'no_fracture', ?2, ?3)",
        params![image_id, reviewer, crate::clock::now_rfc3339()],
    )?;
    log(&tx, reviewer, "review.no_fracture", &sha256, json!({ "image_id": image_id }))?;
    tx.commit()?;
    Ok(())
}

/// Records that `who` opened the image.
pub fn log_view(db: &mut Db, image_id: i64, who: &str) -> Result<(), ReviewError> {
    let tx = begin(db)?;
    let (sha256, _, _) = image_facts(&tx, image_id)?;
    log(&tx, who, "review.view", &sha256, json!({ "image_id": image_id }))?;
    tx.commit()?;
    Ok(())
}

fn begin(db: &mut Db) -> Result<Transaction<'_>, ReviewError> {
    Ok(db.conn_mut().transaction_with_behavior(TransactionBehavior::Immediate)?)
}

fn log(
    tx: &Connection,
    actor: &str,
    action: &str,
    subject: &str,
    detail: serde_json::Value,
) -> Result<(), ReviewError> {
    audit::append(tx, &AuditEntry { actor, action, subject, detail })?;
    Ok(())
}

/// SHA-256, width and height of an existing image.
fn image_facts(
    conn: &Connection,
    image_id: i64,
) -> Result<(String, Option<i64>, Option<i64>), ReviewError> {
    conn.query_row(
        "SELECT sha256, width, height FROM images WHERE id = ?1",
        params![image_id],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )
    .optional()?
    .ok_or_else(|| ReviewError::NotFound(format!("no image {image_id}")))
}

/// As [`image_facts`], for an image whose processing ended (decisions need a result).
fn reviewable(
    conn: &Connection,
    image_id: i64,
) -> Result<(String, Option<i64>, Option<i64>), ReviewError> {
    let facts = image_facts(conn, image_id)?;
    match status_of(conn, image_id)?.map(|(s, _)| s).as_deref() {
        Some("failed") => Err(ReviewError::Conflict(
            "this image could not be processed: nothing to review".into(),
        )),
        Some("pending") => Err(ReviewError::Conflict("this image is still being analysed".into())),
        _ => Ok(facts),
    }
}

/// Trims, refuses empty or overlong text and control characters other than newlines.
fn clean_text(text: &str, what: &str) -> Result<String, ReviewError> {
    let t = text.trim();
    if t.is_empty() {
        return Err(ReviewError::Invalid(format!("{what} cannot be empty")));
    }
    if t.chars().count() > MAX_TEXT_CHARS {
        return Err(ReviewError::Invalid(format!(
            "{what} is longer than {MAX_TEXT_CHARS} characters"
        )));
    }
    if t.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(ReviewError::Invalid(format!("{what} contains control characters")));
    }
    Ok(t.to_string())
}
