//! The real binaries: `fractured --once` on a folder of PNGs, `fracturectl status --json` and
//! `audit verify`, `--print-config`, and SIGKILL at arbitrary moments with nothing lost.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use common::{State, count, names, png};

const FRACTURED: &str = env!("CARGO_BIN_EXE_fractured");
const FRACTURECTL: &str = env!("CARGO_BIN_EXE_fracturectl");

fn run(bin: &str, args: &[&str]) -> Output {
    Command::new(bin).args(args).output().expect("spawn")
}

fn fast_config_file(dir: &Path) -> String {
    let path = dir.join("fractured.toml");
    std::fs::write(&path, "[ingest]\nstable_ms = 100\nrescan_ms = 100\n").expect("config");
    path.to_string_lossy().into_owned()
}

#[test]
fn once_then_status_and_audit_verify() {
    let state = State::new();
    for i in 0..6 {
        std::fs::write(state.capture().join(format!("img{i}.png")), png(i)).expect("write");
    }
    let config = fast_config_file(state.tmp.path());
    let root = state.root.to_string_lossy().into_owned();
    let out = run(FRACTURED, &["--state-dir", &root, "--config", &config, "--once"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stats json");
    assert_eq!(stats["processed"], 6);
    assert!(String::from_utf8_lossy(&out.stderr).contains("not analysed"), "says it has no model");

    let out = run(FRACTURECTL, &["status", "--json", "--state-dir", &root]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status json");
    assert_eq!(status["jobs"]["done"], 6);
    assert_eq!(status["jobs"]["quarantined"], 0);
    assert_eq!(status["queue_depth"], 0);
    assert_eq!(status["runs"]["not_analysed"], 6);
    assert_eq!(status["images"], 6);
    assert_eq!(status["models"][0]["bundle_id"], serde_json::Value::Null);
    let text = run(FRACTURECTL, &["--state-dir", &root, "status"]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("queue depth   0"));

    let out = run(FRACTURECTL, &["--state-dir", &root, "audit", "verify", "--json"]);
    assert!(out.status.success());
    let verdict: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(verdict["ok"], true);
    assert_eq!(verdict["head"], status["audit"]["head"]);

    // Tamper with the log behind the triggers' back: verify fails with exit 1.
    let db = state.db();
    db.conn()
        .execute_batch(
            "DROP TRIGGER audit_no_update;
             UPDATE audit SET detail = '{\"findings\":1}' WHERE seq = 2;",
        )
        .expect("tamper");
    drop(db);
    let out = run(FRACTURECTL, &["--state-dir", &root, "audit", "verify"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("broken at row 2"));
}

#[test]
fn print_config_and_missing_state() {
    let out = run(FRACTURED, &["--print-config", "--listen", "127.0.0.1:9999"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let config: fracture_device::config::Config = toml::from_str(&text).expect("toml");
    assert_eq!(config.listen, "127.0.0.1:9999");
    assert_eq!(config.ingest, fracture_device::config::IngestConfig::default());

    let tmp = tempfile::tempdir().expect("tempdir");
    let out = run(FRACTURECTL, &["--state-dir", &tmp.path().to_string_lossy(), "status"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no database"));
}

#[test]
fn sigkill_at_any_moment_loses_nothing_and_doubles_nothing() {
    let state = State::new();
    let n = 120_u32;
    for i in 0..n {
        std::fs::write(state.capture().join(format!("p{i:03}.png")), png(i)).expect("write");
    }
    let config = fast_config_file(state.tmp.path());
    let root = state.root.to_string_lossy().into_owned();
    let db_file = state.root.join("fractured.sqlite3");
    for delay_ms in [40_u64, 300, 700, 400, 10, 900] {
        let mut child = Command::new(FRACTURED)
            .args(["--state-dir", &root, "--config", &config, "--listen", "127.0.0.1:0"])
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn daemon");
        // Start-up (loading libtorch) takes a while: count from the database's existence.
        for _ in 0..500 {
            if db_file.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(delay_ms));
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        let db = state.db();
        eprintln!(
            "killed after {delay_ms} ms: {} queued, {} runs, {} jobs running",
            count(&db, "SELECT count(*) FROM jobs"),
            count(&db, "SELECT count(*) FROM runs"),
            count(&db, "SELECT count(*) FROM jobs WHERE state = 'running'")
        );
    }
    let out = run(FRACTURED, &["--state-dir", &root, "--config", &config, "--once"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let db = state.db();
    assert_eq!(count(&db, "SELECT count(*) FROM images"), i64::from(n));
    assert_eq!(count(&db, "SELECT count(*) FROM runs"), i64::from(n), "one result per image");
    assert_eq!(count(&db, "SELECT count(DISTINCT image_id) FROM runs"), i64::from(n));
    assert_eq!(count(&db, "SELECT count(*) FROM jobs WHERE state != 'done'"), 0);
    assert!(names(&state.capture()).is_empty());
    assert!(names(&state.quarantine()).is_empty());
    // Every file is archived; a file killed between commit and move may be archived as a
    // second copy of the same content (never a second result).
    let archived = names(&state.archive());
    assert!(archived.len() >= n as usize, "{} archived", archived.len());
    fracture_device::db::audit::verify_audit_chain(db.conn()).expect("audit chain");
}
