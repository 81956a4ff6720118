//! Review-screen accounts: who may log in, with which role, and how their secret is checked.
//!
//! A secret is either a short numeric PIN (for the bedside screen on loopback: each decision
//! gets a reviewer identity without a keyboard-heavy password) or a password (required for
//! logins that arrive over the network, which the server only accepts with TLS). Secrets are
//! stored as argon2id PHC strings; the plain secret never reaches the database or a log.
//! Adding or disabling an account is an audit row.

use std::fmt;
use std::str::FromStr;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use rand::RngCore;
use rusqlite::{OptionalExtension, TransactionBehavior, params};
use serde::Serialize;

use crate::db::audit::{self, AuditEntry};
use crate::db::{Db, DbError};

/// What an account may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Views images and records decisions.
    Reviewer,
    /// Views images and exports the log; records no decisions.
    Auditor,
    /// Everything.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Reviewer => "reviewer",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
        }
    }

    /// May record review decisions.
    pub fn can_review(self) -> bool {
        matches!(self, Role::Reviewer | Role::Admin)
    }

    /// May export the log.
    pub fn can_export(self) -> bool {
        matches!(self, Role::Auditor | Role::Admin)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = AccountError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "reviewer" => Ok(Role::Reviewer),
            "auditor" => Ok(Role::Auditor),
            "admin" => Ok(Role::Admin),
            other => Err(AccountError::Invalid(format!(
                "unknown role {other:?} (expected reviewer, auditor or admin)"
            ))),
        }
    }
}

/// How the account's secret looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SecretKind {
    /// 4 to 12 digits; accepted only from loopback clients.
    Pin,
    /// At least [`MIN_PASSWORD_CHARS`] characters; accepted from anywhere the server listens.
    Password,
}

impl SecretKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SecretKind::Pin => "pin",
            SecretKind::Password => "password",
        }
    }

    fn parse(s: &str) -> Result<Self, AccountError> {
        match s {
            "pin" => Ok(SecretKind::Pin),
            "password" => Ok(SecretKind::Password),
            other => Err(AccountError::Invalid(format!("unknown secret kind {other:?}"))),
        }
    }

    /// Refuses a secret that does not have this kind's shape.
    pub fn check_shape(self, secret: &str) -> Result<(), AccountError> {
        match self {
            SecretKind::Pin => {
                let digits = secret.chars().all(|c| c.is_ascii_digit());
                if !digits || !(4..=12).contains(&secret.len()) {
                    return Err(AccountError::Invalid("a PIN is 4 to 12 digits".into()));
                }
            }
            SecretKind::Password => {
                if secret.chars().count() < MIN_PASSWORD_CHARS {
                    return Err(AccountError::Invalid(format!(
                        "a password has at least {MIN_PASSWORD_CHARS} characters"
                    )));
                }
            }
        }
        Ok(())
    }
}

/// Shortest password accepted.
pub const MIN_PASSWORD_CHARS: usize = 12;

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("{0}")]
    Invalid(String),
    #[error("an account named {0:?} already exists")]
    Exists(String),
    #[error("no account named {0:?}")]
    Unknown(String),
    #[error("password hashing failed: {0}")]
    Hash(String),
}

impl From<rusqlite::Error> for AccountError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Db(DbError::Sqlite(e))
    }
}

/// A stored account (without its hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Account {
    pub name: String,
    pub role: Role,
    pub secret_kind: SecretKind,
    pub disabled: bool,
    pub created_at: String,
}

/// An account name: 1–64 characters of letters, digits, `.`, `_`, `-`.
pub fn check_name(name: &str) -> Result<(), AccountError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(AccountError::Invalid(format!(
            "account name {name:?}: use 1 to 64 letters, digits, '.', '_' or '-'"
        )))
    }
}

/// argon2id (the crate's defaults: 19 MiB, 2 passes) with a random 16-byte salt.
pub fn hash_secret(secret: &str) -> Result<String, AccountError> {
    let mut salt = [0_u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| AccountError::Hash(e.to_string()))?;
    Argon2::default()
        .hash_password(secret.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AccountError::Hash(e.to_string()))
}

/// Whether `secret` matches the stored PHC string (false for a malformed hash).
pub fn verify_secret(secret: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => Argon2::default().verify_password(secret.as_bytes(), &parsed).is_ok(),
        Err(_) => false,
    }
}

/// Creates an account; `actor` is who did it (for the audit row).
pub fn add(
    db: &mut Db,
    name: &str,
    role: Role,
    kind: SecretKind,
    secret: &str,
    actor: &str,
) -> Result<Account, AccountError> {
    check_name(name)?;
    kind.check_shape(secret)?;
    let hash = hash_secret(secret)?;
    let now = crate::clock::now_rfc3339();
    let tx = db.conn_mut().transaction_with_behavior(TransactionBehavior::Immediate)?;
    let exists: Option<i64> =
        tx.query_row("SELECT id FROM users WHERE name = ?1", [name], |r| r.get(0)).optional()?;
    if exists.is_some() {
        return Err(AccountError::Exists(name.to_string()));
    }
    tx.execute(
        "INSERT INTO users (name, role, secret_kind, secret_hash, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![name, role.as_str(), kind.as_str(), hash, now],
    )?;
    audit::append(
        &tx,
        &AuditEntry {
            actor,
            action: "account.add",
            subject: name,
            detail: serde_json::json!({ "role": role.as_str(), "secret_kind": kind.as_str() }),
        },
    )?;
    tx.commit()?;
    Ok(Account {
        name: name.to_string(),
        role,
        secret_kind: kind,
        disabled: false,
        created_at: now,
    })
}

/// Disables (or re-enables) an account; its sessions end at their next request.
pub fn set_disabled(
    db: &mut Db,
    name: &str,
    disabled: bool,
    actor: &str,
) -> Result<(), AccountError> {
    let tx = db.conn_mut().transaction_with_behavior(TransactionBehavior::Immediate)?;
    let changed = tx.execute(
        "UPDATE users SET disabled = ?2 WHERE name = ?1",
        params![name, i64::from(disabled)],
    )?;
    if changed == 0 {
        return Err(AccountError::Unknown(name.to_string()));
    }
    let action = if disabled { "account.disable" } else { "account.enable" };
    audit::append(
        &tx,
        &AuditEntry { actor, action, subject: name, detail: serde_json::Value::Null },
    )?;
    tx.commit()?;
    Ok(())
}

/// Every account, by name.
pub fn list(db: &Db) -> Result<Vec<Account>, AccountError> {
    let mut stmt = db
        .conn()
        .prepare("SELECT name, role, secret_kind, disabled, created_at FROM users ORDER BY name")?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, i64>(3)?,
            r.get::<_, String>(4)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (name, role, kind, disabled, created_at) = row?;
        out.push(Account {
            name,
            role: role.parse()?,
            secret_kind: SecretKind::parse(&kind)?,
            disabled: disabled != 0,
            created_at,
        });
    }
    Ok(out)
}

/// What a login needs to know about an enabled account.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub name: String,
    pub role: Role,
    pub secret_kind: SecretKind,
    pub secret_hash: String,
}

/// The enabled account `name`, if any.
pub fn credentials(db: &Db, name: &str) -> Result<Option<Credentials>, AccountError> {
    let row = db
        .conn()
        .query_row(
            "SELECT name, role, secret_kind, secret_hash FROM users
             WHERE name = ?1 AND disabled = 0",
            [name],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                ))
            },
        )
        .optional()?;
    row.map(|(name, role, kind, secret_hash)| {
        Ok(Credentials {
            name,
            role: role.parse()?,
            secret_kind: SecretKind::parse(&kind)?,
            secret_hash,
        })
    })
    .transpose()
}

/// Whether at least one enabled password account exists (a network listener needs one).
pub fn has_password_account(db: &Db) -> Result<bool, AccountError> {
    let n: i64 = db.conn().query_row(
        "SELECT count(*) FROM users WHERE secret_kind = 'password' AND disabled = 0",
        [],
        |r| r.get(0),
    )?;
    Ok(n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_differ_per_salt() {
        let a = hash_secret("123456").expect("hash");
        let b = hash_secret("123456").expect("hash");
        assert_ne!(a, b, "fresh salt each time");
        assert!(a.starts_with("$argon2id$"), "{a}");
        assert!(verify_secret("123456", &a));
        assert!(!verify_secret("123457", &a));
        assert!(!verify_secret("123456", "not a phc string"));
    }

    #[test]
    fn shapes_and_names_are_checked() {
        assert!(SecretKind::Pin.check_shape("1234").is_ok());
        assert!(SecretKind::Pin.check_shape("12a4").is_err());
        assert!(SecretKind::Pin.check_shape("123").is_err());
        assert!(SecretKind::Password.check_shape("short").is_err());
        assert!(SecretKind::Password.check_shape("long enough pass").is_ok());
        assert!(check_name("dr.jones-2").is_ok());
        for bad in ["", "a b", "../x", "é"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn add_list_disable_and_audit() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut db = Db::open(&tmp.path().join("t.sqlite3")).expect("db");
        add(&mut db, "alice", Role::Reviewer, SecretKind::Pin, "2468", "test").expect("add");
        assert!(matches!(
            add(&mut db, "alice", Role::Admin, SecretKind::Pin, "2468", "test"),
            Err(AccountError::Exists(_))
        ));
        let creds = credentials(&db, "alice").expect("read").expect("present");
        assert!(verify_secret("2468", &creds.secret_hash));
        assert!(!has_password_account(&db).expect("count"));
        set_disabled(&mut db, "alice", true, "test").expect("disable");
        assert!(credentials(&db, "alice").expect("read").is_none());
        assert!(list(&db).expect("list")[0].disabled);
        let head = audit::verify_audit_chain(db.conn()).expect("chain");
        assert_eq!(head.rows, 2);
    }
}
