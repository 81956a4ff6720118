//! The database schema as an ordered list of migrations (SQLite's `user_version` records how
//! many have run). Never edit a released migration: append a new one.

use rusqlite_migration::{M, Migrations};

/// Version 1: images, the job queue, runs with their findings and timings, errors, and the
/// append-only audit chain.
const V1: &str = r#"
CREATE TABLE images (
    id             INTEGER PRIMARY KEY,
    sha256         TEXT    NOT NULL UNIQUE CHECK (length(sha256) = 64),
    source_path    TEXT    NOT NULL,
    original_name  TEXT    NOT NULL,
    byte_size      INTEGER NOT NULL,
    -- known once decoded
    width          INTEGER,
    height         INTEGER,
    bit_depth      INTEGER,
    format         TEXT,
    -- JSON; DICOM study/series/instance UIDs and acquisition facts, never patient identifiers
    acquisition    TEXT,
    created_at     TEXT    NOT NULL
);

CREATE TABLE jobs (
    id             INTEGER PRIMARY KEY,
    image_id       INTEGER NOT NULL UNIQUE REFERENCES images(id),
    state          TEXT    NOT NULL
                   CHECK (state IN ('queued', 'running', 'done', 'failed', 'quarantined')),
    attempts       INTEGER NOT NULL DEFAULT 0,
    error          TEXT,
    -- where the source file went after the job ended (archive/ or quarantine/)
    disposed_path  TEXT,
    created_at     TEXT    NOT NULL,
    updated_at     TEXT    NOT NULL,
    started_at     TEXT,
    finished_at    TEXT
);
CREATE INDEX jobs_by_state ON jobs(state, id);

CREATE TABLE runs (
    id             INTEGER PRIMARY KEY,
    image_id       INTEGER NOT NULL REFERENCES images(id),
    job_id         INTEGER NOT NULL REFERENCES jobs(id),
    bundle_id      TEXT,
    bundle_sha256  TEXT,
    backend        TEXT,
    precision      TEXT,
    status         TEXT    NOT NULL CHECK (status IN ('analysed', 'not_analysed')),
    created_at     TEXT    NOT NULL,
    CHECK ((status = 'analysed') = (bundle_id IS NOT NULL))
);
CREATE INDEX runs_by_image ON runs(image_id);

CREATE TABLE findings (
    id              INTEGER PRIMARY KEY,
    run_id          INTEGER NOT NULL REFERENCES runs(id),
    -- box in the original image's pixels
    x1 REAL NOT NULL, y1 REAL NOT NULL, x2 REAL NOT NULL, y2 REAL NOT NULL,
    score           REAL    NOT NULL CHECK (score >= 0 AND score <= 1),
    class_id        INTEGER NOT NULL,
    class_name      TEXT    NOT NULL,
    operating_point TEXT    NOT NULL CHECK (operating_point IN ('suspicious', 'definite'))
);
CREATE INDEX findings_by_run ON findings(run_id);

CREATE TABLE timings (
    id      INTEGER PRIMARY KEY,
    run_id  INTEGER NOT NULL REFERENCES runs(id),
    stage   TEXT    NOT NULL,
    ms      REAL    NOT NULL
);
CREATE INDEX timings_by_run ON timings(run_id);

CREATE TABLE errors (
    id           INTEGER PRIMARY KEY,
    job_id       INTEGER REFERENCES jobs(id),
    source_path  TEXT,
    stage        TEXT NOT NULL,
    message      TEXT NOT NULL,
    created_at   TEXT NOT NULL
);

-- Append-only: hash = SHA-256(prev_hash bytes || canonical JSON of the row), see db::audit.
CREATE TABLE audit (
    seq        INTEGER PRIMARY KEY,
    at         TEXT NOT NULL,
    actor      TEXT NOT NULL,
    action     TEXT NOT NULL,
    subject    TEXT NOT NULL,
    detail     TEXT NOT NULL,
    prev_hash  TEXT NOT NULL CHECK (length(prev_hash) = 64),
    hash       TEXT NOT NULL UNIQUE CHECK (length(hash) = 64)
);
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN
    SELECT RAISE(ABORT, 'audit rows are append-only: UPDATE refused');
END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
BEGIN
    SELECT RAISE(ABORT, 'audit rows are append-only: DELETE refused');
END;
"#;

/// Version 2: the review screen's accounts and the decisions people record on images.
const V2: &str = r#"
CREATE TABLE users (
    id           INTEGER PRIMARY KEY,
    name         TEXT    NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 64),
    role         TEXT    NOT NULL CHECK (role IN ('reviewer', 'auditor', 'admin')),
    -- a short numeric PIN (loopback logins only) or a password (any login)
    secret_kind  TEXT    NOT NULL CHECK (secret_kind IN ('pin', 'password')),
    -- argon2id, PHC string format
    secret_hash  TEXT    NOT NULL,
    disabled     INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
    created_at   TEXT    NOT NULL
);

-- Every decision a person records; the newest one per finding counts, older ones are history.
CREATE TABLE decisions (
    id          INTEGER PRIMARY KEY,
    image_id    INTEGER NOT NULL REFERENCES images(id),
    finding_id  INTEGER REFERENCES findings(id),
    kind        TEXT    NOT NULL
                CHECK (kind IN ('accept', 'reject', 'missed', 'no_fracture', 'note')),
    -- why a finding was rejected, a missed box's note, or a free-text note
    text        TEXT,
    -- a missed fracture's box, in the original image's pixels
    x1 REAL, y1 REAL, x2 REAL, y2 REAL,
    reviewer    TEXT    NOT NULL,
    created_at  TEXT    NOT NULL,
    CHECK ((kind IN ('accept', 'reject')) = (finding_id IS NOT NULL)),
    CHECK ((kind = 'missed') = (x1 IS NOT NULL AND y1 IS NOT NULL AND x2 IS NOT NULL
                                AND y2 IS NOT NULL)),
    CHECK (kind <> 'reject' OR length(text) > 0)
);
CREATE INDEX decisions_by_image ON decisions(image_id, id);
CREATE INDEX decisions_by_finding ON decisions(finding_id, id);
"#;

/// Version 3: why the run's backend was chosen (`auto` falls back from TensorRT to ONNX
/// Runtime to libtorch and says why at each step).
const V3: &str = r#"
ALTER TABLE runs ADD COLUMN backend_reason TEXT;
"#;

/// All migrations, oldest first.
pub fn migrations() -> Migrations<'static> {
    Migrations::from_slice(MIGRATIONS)
}

const MIGRATIONS: &[M<'static>] = &[M::up(V1), M::up(V2), M::up(V3)];

/// The schema version this build writes and expects.
pub const LATEST_VERSION: usize = MIGRATIONS.len();

#[cfg(test)]
mod tests {
    #[test]
    fn migrations_are_valid() {
        super::migrations().validate().expect("migrations apply to an empty database");
    }
}
