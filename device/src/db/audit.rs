//! The audit chain: an append-only table whose rows are linked by SHA-256,
//! `h_n = SHA-256(h_{n-1} || canonical_json(row_n))` with `h_0` = 32 zero bytes (the hashes
//! are the raw 32 bytes in the formula and lower-case hex in the table).
//!
//! The canonical JSON of a row is the object `{action, actor, at, detail, seq, subject}` with
//! keys sorted (recursively, by bytes), no whitespace, serde_json's escaping and numbers. A
//! changed, inserted or removed row breaks every hash after it; removing rows at the end is
//! only visible against a head hash kept elsewhere (exports carry it). Triggers refuse UPDATE
//! and DELETE so honest code cannot rewrite history by accident.

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{Db, DbError};

/// `h_0`, the hash before the first row.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What a caller asks to log.
#[derive(Debug, Clone)]
pub struct AuditEntry<'a> {
    /// Who: `fractured`, `fracturectl`, or a reviewer's login.
    pub actor: &'a str,
    /// What, as a dotted verb: `daemon.start`, `run.recorded`, `job.quarantined`, ...
    pub action: &'a str,
    /// On what: an image SHA-256, a run id, a file name.
    pub subject: &'a str,
    /// Anything else, as JSON (never patient identifiers).
    pub detail: Value,
}

/// A stored row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditRow {
    pub seq: i64,
    pub at: String,
    pub actor: String,
    pub action: String,
    pub subject: String,
    pub detail: Value,
    pub prev_hash: String,
    pub hash: String,
}

/// The end of a verified (or merely read) chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainHead {
    pub rows: u64,
    /// Hash of the last row ([`GENESIS`] when empty).
    pub head: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("audit chain broken at row {seq}: {reason}")]
    Broken { seq: i64, reason: String },
}

impl From<rusqlite::Error> for ChainError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Db(DbError::Sqlite(e))
    }
}

/// Appends a row inside the caller's transaction (which must be IMMEDIATE, or otherwise
/// hold the write lock, so that two writers cannot both extend the same head).
pub fn append(conn: &Connection, entry: &AuditEntry<'_>) -> Result<AuditRow, DbError> {
    let last: Option<(i64, String)> = conn
        .query_row("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    let (seq, prev_hash) = match last {
        Some((seq, hash)) => (seq + 1, hash),
        None => (1, GENESIS.to_string()),
    };
    let at = crate::clock::now_rfc3339();
    let canonical =
        canonical_row(seq, &at, entry.actor, entry.action, entry.subject, &entry.detail);
    let hash = link(&prev_hash, &canonical)
        .ok_or_else(|| DbError::Invalid(format!("audit head hash {prev_hash:?} is not hex")))?;
    conn.execute(
        "INSERT INTO audit (seq, at, actor, action, subject, detail, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            seq,
            at,
            entry.actor,
            entry.action,
            entry.subject,
            canonical_json(&entry.detail),
            prev_hash,
            hash
        ],
    )?;
    Ok(AuditRow {
        seq,
        at,
        actor: entry.actor.to_string(),
        action: entry.action.to_string(),
        subject: entry.subject.to_string(),
        detail: entry.detail.clone(),
        prev_hash,
        hash,
    })
}

/// Appends a row in its own transaction.
pub fn append_now(db: &mut Db, entry: &AuditEntry<'_>) -> Result<AuditRow, DbError> {
    let tx = db.conn_mut().transaction_with_behavior(TransactionBehavior::Immediate)?;
    let row = append(&tx, entry)?;
    tx.commit()?;
    Ok(row)
}

/// The last row's hash and the row count, without verifying anything.
pub fn head(conn: &Connection) -> Result<ChainHead, DbError> {
    let rows: i64 = conn.query_row("SELECT count(*) FROM audit", [], |r| r.get(0))?;
    let head: Option<String> = conn
        .query_row("SELECT hash FROM audit ORDER BY seq DESC LIMIT 1", [], |r| r.get(0))
        .optional()?;
    Ok(ChainHead { rows: rows as u64, head: head.unwrap_or_else(|| GENESIS.to_string()) })
}

/// Recomputes every link from the first row; the first mismatch is an error naming the row.
pub fn verify_audit_chain(conn: &Connection) -> Result<ChainHead, ChainError> {
    let mut stmt = conn.prepare(
        "SELECT seq, at, actor, action, subject, detail, prev_hash, hash FROM audit ORDER BY seq",
    )?;
    let mut rows = stmt.query([])?;
    let mut expected_seq = 1_i64;
    let mut prev = GENESIS.to_string();
    let mut count = 0_u64;
    while let Some(row) = rows.next()? {
        let seq: i64 = row.get(0)?;
        let at: String = row.get(1)?;
        let actor: String = row.get(2)?;
        let action: String = row.get(3)?;
        let subject: String = row.get(4)?;
        let detail_text: String = row.get(5)?;
        let prev_hash: String = row.get(6)?;
        let hash: String = row.get(7)?;
        let broken = |reason: String| ChainError::Broken { seq, reason };
        if seq != expected_seq {
            return Err(broken(format!("expected row {expected_seq} here (rows missing)")));
        }
        if prev_hash != prev {
            return Err(broken(format!("prev_hash {prev_hash} does not match {prev}")));
        }
        let detail: Value = serde_json::from_str(&detail_text)
            .map_err(|e| broken(format!("detail is not JSON: {e}")))?;
        let canonical = canonical_row(seq, &at, &actor, &action, &subject, &detail);
        let recomputed =
            link(&prev, &canonical).ok_or_else(|| broken("prev_hash is not hex".into()))?;
        if recomputed != hash {
            return Err(broken(format!("content does not match its hash {hash}")));
        }
        prev = hash;
        expected_seq += 1;
        count += 1;
    }
    Ok(ChainHead { rows: count, head: prev })
}

/// The canonical JSON of one row (what is hashed).
pub fn canonical_row(
    seq: i64,
    at: &str,
    actor: &str,
    action: &str,
    subject: &str,
    detail: &Value,
) -> String {
    let row = serde_json::json!({
        "seq": seq,
        "at": at,
        "actor": actor,
        "action": action,
        "subject": subject,
        "detail": detail,
    });
    canonical_json(&row)
}

/// JSON with object keys sorted at every depth and no whitespace. Sorting here (not relying
/// on serde_json's map type, whose order depends on a crate feature) keeps hashes stable.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                if let Some(v) = map.get(key) {
                    write_canonical(v, out);
                }
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(v, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// `hex(SHA-256(bytes(prev_hex) || canonical))`, or None when `prev_hex` is not 32 hex bytes.
fn link(prev_hex: &str, canonical: &str) -> Option<String> {
    let prev = hex::decode(prev_hex).ok()?;
    if prev.len() != 32 {
        return None;
    }
    let mut hasher = Sha256::new();
    hasher.update(&prev);
    hasher.update(canonical.as_bytes());
    Some(hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_sorts_keys_at_every_depth() {
        let v = serde_json::json!({"b": 1, "a": {"z": [true, null], "y": "é\"q"}});
        assert_eq!(canonical_json(&v), r#"{"a":{"y":"é\"q","z":[true,null]},"b":1}"#);
    }

    #[test]
    fn first_link_is_sha256_of_zero_block_and_row() {
        let canonical = canonical_row(1, "t", "a", "b", "c", &Value::Null);
        let mut h = Sha256::new();
        h.update([0_u8; 32]);
        h.update(canonical.as_bytes());
        assert_eq!(link(GENESIS, &canonical), Some(hex::encode(h.finalize())));
    }
}
