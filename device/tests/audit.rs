//! The audit chain on a real SQLite file: verification, tamper detection, and triggers that
//! refuse UPDATE and DELETE.

mod common;

use common::State;
use fracture_device::db::Db;
use fracture_device::db::audit::{self, AuditEntry, ChainError, GENESIS, verify_audit_chain};
use serde_json::json;

fn filled(rows: usize) -> (State, Db) {
    let state = State::new();
    let mut db = Db::open(&state.root.join("fractured.sqlite3")).expect("open");
    for i in 0..rows {
        audit::append_now(
            &mut db,
            &AuditEntry {
                actor: "reviewer-1",
                action: "finding.accepted",
                subject: &format!("run-{i}"),
                detail: json!({ "finding": i, "note": "ok", "nested": {"b": 2, "a": 1} }),
            },
        )
        .expect("append");
    }
    (state, db)
}

#[test]
fn an_empty_chain_verifies_to_genesis_and_rows_chain_up() {
    let (_state, db) = filled(0);
    let head = verify_audit_chain(db.conn()).expect("verify");
    assert_eq!((head.rows, head.head.as_str()), (0, GENESIS));
    let (_state, db) = filled(5);
    let head = verify_audit_chain(db.conn()).expect("verify");
    assert_eq!(head.rows, 5);
    assert_eq!(head, audit::head(db.conn()).expect("head"));
    let prev: String = db
        .conn()
        .query_row("SELECT prev_hash FROM audit WHERE seq = 2", [], |r| r.get(0))
        .expect("row");
    let first: String =
        db.conn().query_row("SELECT hash FROM audit WHERE seq = 1", [], |r| r.get(0)).expect("row");
    assert_eq!(prev, first);
}

#[test]
fn update_and_delete_are_refused() {
    let (_state, db) = filled(3);
    let update = db.conn().execute("UPDATE audit SET actor = 'mallory' WHERE seq = 2", []);
    assert!(format!("{:?}", update.expect_err("update refused")).contains("append-only"));
    let delete = db.conn().execute("DELETE FROM audit WHERE seq = 3", []);
    assert!(format!("{:?}", delete.expect_err("delete refused")).contains("append-only"));
    verify_audit_chain(db.conn()).expect("still intact");
}

#[test]
fn tampering_past_the_triggers_is_detected() {
    // Edit a row's content.
    let (_state, db) = filled(5);
    db.conn()
        .execute_batch(
            "DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete;
             UPDATE audit SET detail = '{\"finding\":2,\"note\":\"rejected\"}' WHERE seq = 3;",
        )
        .expect("tamper");
    match verify_audit_chain(db.conn()) {
        Err(ChainError::Broken { seq: 3, .. }) => {}
        other => panic!("expected a break at row 3, got {other:?}"),
    }

    // Remove a row in the middle.
    let (_state, db) = filled(5);
    db.conn()
        .execute_batch("DROP TRIGGER audit_no_delete; DELETE FROM audit WHERE seq = 2;")
        .expect("tamper");
    assert!(matches!(verify_audit_chain(db.conn()), Err(ChainError::Broken { seq: 3, .. })));

    // Rewrite a row and recompute its own hash: the next row's link breaks.
    let (_state, db) = filled(4);
    let (at, detail): (String, String) = db
        .conn()
        .query_row("SELECT at, detail FROM audit WHERE seq = 1", [], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("row");
    let detail: serde_json::Value = serde_json::from_str(&detail).expect("json");
    let canonical = audit::canonical_row(1, &at, "mallory", "finding.accepted", "run-0", &detail);
    let forged = {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update([0_u8; 32]);
        h.update(canonical.as_bytes());
        hex::encode(h.finalize())
    };
    db.conn().execute_batch("DROP TRIGGER audit_no_update;").expect("drop");
    db.conn()
        .execute("UPDATE audit SET actor = 'mallory', hash = ?1 WHERE seq = 1", [forged])
        .expect("forge");
    assert!(matches!(verify_audit_chain(db.conn()), Err(ChainError::Broken { seq: 2, .. })));
}
