//! The SQLite log: one database file holds the job queue, images, runs, findings, timings,
//! errors and the audit chain.
//!
//! Opening checks the file before anything is written: `PRAGMA integrity_check` must say
//! `ok`, then migrations bring the schema to [`schema::LATEST_VERSION`]. The connection runs
//! in WAL mode with `synchronous=FULL` (a committed result survives power loss), foreign
//! keys on, and a busy timeout so `fracturectl` and the daemon can share the file.

pub mod audit;
pub mod schema;
pub mod status;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

/// How long a statement waits for another connection's lock before giving up.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("schema migration: {0}")]
    Migration(#[from] rusqlite_migration::Error),
    #[error("database {path} failed its integrity check: {report}")]
    Integrity { path: PathBuf, report: String },
    #[error("no database at {0} (has `fractured` run with this --state-dir?)")]
    Missing(PathBuf),
    #[error("database {path} has schema version {found}; this build knows {expected}")]
    SchemaVersion { path: PathBuf, found: usize, expected: usize },
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    #[error("{0}")]
    Invalid(String),
}

/// An open, checked, migrated database.
#[derive(Debug)]
pub struct Db {
    conn: Connection,
    path: PathBuf,
}

impl Db {
    /// Opens (creating if needed) and migrates the database: what the daemon does.
    pub fn open(path: &Path) -> Result<Self, DbError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut conn = Connection::open_with_flags(path, flags)?;
        configure(&conn)?;
        integrity_check(&conn, path)?;
        schema::migrations().to_latest(&mut conn)?;
        Ok(Self { conn, path: path.to_path_buf() })
    }

    /// Opens an existing database without creating or migrating it: what `fracturectl` does.
    /// Refuses a schema version other than this build's.
    pub fn open_existing(path: &Path) -> Result<Self, DbError> {
        if !path.is_file() {
            return Err(DbError::Missing(path.to_path_buf()));
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags)?;
        configure(&conn)?;
        integrity_check(&conn, path)?;
        let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        let found = usize::try_from(found).unwrap_or(usize::MAX);
        if found != schema::LATEST_VERSION {
            return Err(DbError::SchemaVersion {
                path: path.to_path_buf(),
                found,
                expected: schema::LATEST_VERSION,
            });
        }
        Ok(Self { conn, path: path.to_path_buf() })
    }

    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    pub fn conn_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` with `synchronous=NORMAL`, then restores `FULL`. For commits whose loss in a
    /// power cut is harmless: in WAL mode such a commit survives any process crash (a
    /// SIGKILL included) and only a power cut before the next FULL commit (which syncs the
    /// whole WAL, earlier commits with it) can lose it. The queue uses it for enqueueing
    /// (the file is still in capture/ and is queued again), claiming (the job is still
    /// queued) and recording where a file was moved; results and audit rows stay FULL.
    pub fn with_relaxed_sync<T, E: From<DbError>>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, E>,
    ) -> Result<T, E> {
        let set = |conn: &Connection, level: &str| {
            conn.execute_batch(&format!("PRAGMA synchronous = {level}"))
                .map_err(|e| E::from(DbError::Sqlite(e)))
        };
        set(&self.conn, "NORMAL")?;
        let out = f(self);
        set(&self.conn, "FULL")?;
        out
    }

    /// Records an error row (a failure that is not a job's own, or more detail on one).
    pub fn record_error(
        &self,
        job_id: Option<i64>,
        source_path: Option<&Path>,
        stage: &str,
        message: &str,
    ) -> Result<(), DbError> {
        insert_error(&self.conn, job_id, source_path, stage, message)
    }
}

/// Inserts an error row on any connection or transaction.
pub(crate) fn insert_error(
    conn: &Connection,
    job_id: Option<i64>,
    source_path: Option<&Path>,
    stage: &str,
    message: &str,
) -> Result<(), DbError> {
    conn.execute(
        "INSERT INTO errors (job_id, source_path, stage, message, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        rusqlite::params![
            job_id,
            source_path.map(|p| p.to_string_lossy().into_owned()),
            stage,
            message,
            crate::clock::now_rfc3339()
        ],
    )?;
    Ok(())
}

fn configure(conn: &Connection) -> Result<(), DbError> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(DbError::Invalid(format!("could not enable WAL (journal_mode is {mode})")));
    }
    conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")?;
    Ok(())
}

fn integrity_check(conn: &Connection, path: &Path) -> Result<(), DbError> {
    let mut stmt = conn.prepare("PRAGMA integrity_check")?;
    let rows: Vec<String> =
        stmt.query_map([], |r| r.get::<_, String>(0))?.collect::<Result<_, _>>()?;
    if rows.len() == 1 && rows[0] == "ok" {
        Ok(())
    } else {
        Err(DbError::Integrity { path: path.to_path_buf(), report: rows.join("; ") })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_sets_wal_full_sync_and_latest_schema() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("t.sqlite3");
        let db = Db::open(&path).expect("open");
        let mode: String =
            db.conn().query_row("PRAGMA journal_mode", [], |r| r.get(0)).expect("mode");
        assert_eq!(mode, "wal");
        let sync: i64 = db.conn().query_row("PRAGMA synchronous", [], |r| r.get(0)).expect("sync");
        assert_eq!(sync, 2, "FULL");
        drop(db);
        Db::open_existing(&path).expect("reopen");
    }

    #[test]
    fn relaxed_sync_is_restored_to_full() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut db = Db::open(&tmp.path().join("t.sqlite3")).expect("open");
        let level = |db: &Db| -> i64 {
            db.conn().query_row("PRAGMA synchronous", [], |r| r.get(0)).expect("sync")
        };
        let inside = db.with_relaxed_sync(|db| Ok::<_, DbError>(level(db))).expect("relaxed");
        assert_eq!(inside, 1, "NORMAL inside");
        assert_eq!(level(&db), 2, "FULL after");
        let failed = db.with_relaxed_sync(|_| Err::<(), _>(DbError::Invalid("x".into())));
        assert!(failed.is_err());
        assert_eq!(level(&db), 2, "FULL after an error too");
    }

    #[test]
    fn missing_and_garbage_files_are_errors() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let missing = tmp.path().join("none.sqlite3");
        assert!(matches!(Db::open_existing(&missing), Err(DbError::Missing(_))));
        let garbage = tmp.path().join("garbage.sqlite3");
        std::fs::write(&garbage, vec![0x5a; 8192]).expect("write");
        assert!(Db::open(&garbage).is_err());
    }
}
