//! The review screen's access rules against the real daemon over real sockets: what is
//! refused without a session, without or with a wrong CSRF token, by role, by path, by size;
//! PIN logins only from loopback; the lockout after repeated failures; a network bind without
//! TLS (or without a password account) refused at start; HTTPS served with a configured
//! certificate; an API session's decisions landing in the database and the audit chain; the
//! auditor export carrying the chain's head; and `fracturectl audit verify` naming a row
//! edited behind the daemon's back.

mod common;

use std::process::Command;

use common::daemon::{self, Daemon, FAST};
use common::review::{Client, FRACTURECTL, add_user, analysed_daemon};
use fracture_device::db::Db;
use serde_json::{Value, json};

fn json_of(r: &daemon::Response) -> Value {
    serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{e}: {}", r.body))
}

#[test]
fn access_rules_decisions_export_and_tamper_detection() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("state");
    let d = analysed_daemon(&root, 4);
    let addr = d.http_addr();
    add_user(&root, "alice", "reviewer", "2468", false);
    add_user(&root, "audrey", "auditor", "auditor password 1", true);

    // Unauthenticated: every API path is refused; the page itself loads.
    for (method, path) in [
        ("GET", "/api/images"),
        ("GET", "/api/images/1"),
        ("GET", "/api/images/1/pixels"),
        ("GET", "/api/session"),
        ("POST", "/api/images/1/no-fracture"),
        ("POST", "/api/export"),
    ] {
        let r = daemon::http(addr, method, path);
        assert_eq!(r.status, 401, "{method} {path}: {}", r.body);
    }
    let page = daemon::get(addr, "/");
    assert_eq!(page.status, 200);
    assert!(page.body.contains("/app.js"));
    assert!(
        page.header("content-security-policy").is_some_and(|c| c.contains("script-src 'self'"))
    );

    let alice = Client::login(addr, "alice", "2468");
    let list = json_of(&alice.get("/api/images"));
    let images = list["images"].as_array().expect("images");
    assert_eq!(images.len(), 5, "{list}");
    let with_findings = images
        .iter()
        .find(|i| i["findings"].as_i64().unwrap_or(0) > 0)
        .unwrap_or_else(|| panic!("the demo model finds something on a phantom: {list}"));
    let image_id = with_findings["id"].as_i64().expect("id");
    let record = json_of(&alice.get(&format!("/api/images/{image_id}")));
    let finding = record["findings"][0]["id"].as_i64().expect("finding id");
    let decide = format!("/api/findings/{finding}/decision");

    // State-changing requests need the session's CSRF token.
    let body = json!({"decision": "accept"}).to_string();
    let cookie = [("Cookie", alice.cookie.as_str()), ("Content-Type", "application/json")];
    let r = daemon::request(addr, "POST", &decide, &cookie, body.as_bytes());
    assert_eq!(r.status, 403, "no CSRF token: {}", r.body);
    let wrong = [
        ("Cookie", alice.cookie.as_str()),
        ("Content-Type", "application/json"),
        ("X-CSRF-Token", "0000"),
    ];
    let r = daemon::request(addr, "POST", &decide, &wrong, body.as_bytes());
    assert_eq!(r.status, 403, "wrong CSRF token: {}", r.body);
    // A forged cookie is no session.
    let forged = [("Cookie", "fr_session=deadbeef"), ("X-CSRF-Token", alice.csrf.as_str())];
    assert_eq!(daemon::request(addr, "POST", &decide, &forged, body.as_bytes()).status, 401);

    // Path traversal: nothing reaches the file system.
    for path in [
        "/../../etc/passwd",
        "/api/images/..%2f..%2fetc%2fpasswd/pixels",
        "/app.js/../../fractured.sqlite3",
        "/fractured.sqlite3",
        "/archive/IMG0000000.png",
        "/%2e%2e/%2e%2e/etc/passwd",
    ] {
        let r = alice.get(path);
        assert!(matches!(r.status, 400 | 404), "{path}: {} {}", r.status, r.body);
        assert!(!r.body.contains("root:") && !r.body.contains("SQLite format"), "{path}");
    }
    // Oversized bodies.
    let huge = json!({"text": "x".repeat(64 * 1024)});
    let r = alice.post(&format!("/api/images/{image_id}/note"), &huge);
    assert_eq!(r.status, 413, "oversized body: {}", r.body);
    // Malformed decisions.
    assert_eq!(alice.post(&decide, &json!({"decision": "reject"})).status, 400);
    assert_eq!(alice.post(&decide, &json!({"decision": "maybe"})).status, 400);
    assert_eq!(
        alice.post("/api/findings/999999/decision", &json!({"decision": "accept"})).status,
        404
    );

    // Decisions through the API land in the database and the chain.
    let r = alice.post(&decide, &json!({"decision": "accept"}));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(json_of(&r)["findings"][0]["decision"]["kind"], "accept");
    assert_eq!(json_of(&r)["reviewed"], true);
    let r = alice.post(&format!("/api/images/{image_id}/no-fracture"), &json!({}));
    assert_eq!(r.status, 409, "negative confirmation over an accepted finding: {}", r.body);
    let pixels = alice.get(&format!("/api/images/{image_id}/pixels"));
    assert_eq!(pixels.status, 200);
    let (w, h): (usize, usize) = (
        pixels.header("x-width").and_then(|v| v.parse().ok()).expect("x-width"),
        pixels.header("x-height").and_then(|v| v.parse().ok()).expect("x-height"),
    );
    assert_eq!(pixels.bytes.len(), w * h * 2);
    assert_eq!(Some(w as i64), record["width"].as_i64());

    // Roles: the auditor records nothing; the reviewer exports nothing.
    let audrey = Client::login(addr, "audrey", "auditor password 1");
    assert_eq!(audrey.post(&decide, &json!({"decision": "reject", "reason": "x"})).status, 403);
    let range = json!({"from": "2000-01-01", "to": "2999-12-31", "format": "jsonl"});
    assert_eq!(alice.post("/api/export", &range).status, 403);
    let export = audrey.post("/api/export", &range);
    assert_eq!(export.status, 200, "{}", export.body);
    let header: Value =
        serde_json::from_str(export.body.lines().next().expect("line")).expect("json");
    let head = header["export"]["audit_head"].as_str().expect("head").to_string();
    assert_eq!(export.header("x-audit-head"), Some(head.as_str()));
    assert_eq!(export.body.lines().count(), 1 + 5, "header + one line per image");

    // The chain holds every decision and the export, and ends at the exported head.
    let db = Db::open_existing(&root.join("fractured.sqlite3")).expect("db");
    let actions: Vec<(String, String)> = {
        let mut stmt =
            db.conn().prepare("SELECT actor, action FROM audit ORDER BY seq").expect("q");
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("rows")
            .collect::<Result<_, _>>()
            .expect("rows")
    };
    for (actor, action) in [
        ("alice", "session.login"),
        ("alice", "review.view"),
        ("alice", "review.accept"),
        ("audrey", "export.create"),
    ] {
        assert!(
            actions.iter().any(|(a, b)| a == actor && b == action),
            "no {action} by {actor} in {actions:?}"
        );
    }
    let head_now = fracture_device::db::audit::verify_audit_chain(db.conn()).expect("intact");
    assert_eq!(head_now.head, head);

    // `fracturectl export` writes the same records as CSV, with the head of the chain that
    // now ends at its own export row.
    let csv_path = tmp.path().join("export.csv");
    let out = Command::new(FRACTURECTL)
        .arg("--state-dir")
        .arg(&root)
        .args(["export", "--from", "2000-01-01", "--to", "2999-12-31", "--format", "csv"])
        .args(["--actor", "auditor-cli", "--out"])
        .arg(&csv_path)
        .output()
        .expect("fracturectl export");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let csv_text = std::fs::read_to_string(&csv_path).expect("csv");
    let (comment, table) = csv_text.split_once('\n').expect("comment line");
    let head_after = fracture_device::db::audit::verify_audit_chain(db.conn()).expect("intact");
    assert!(comment.starts_with("# fracture-export"), "{comment}");
    assert!(comment.contains(&format!("audit_head={}", head_after.head)), "{comment}");
    let mut reader = csv::Reader::from_reader(table.as_bytes());
    let columns = reader.headers().expect("header").clone();
    let col = |name: &str| columns.iter().position(|c| c == name).expect(name);
    let records: Vec<csv::StringRecord> = reader.records().collect::<Result<_, _>>().expect("rows");
    let accepted: Vec<_> =
        records.iter().filter(|r| &r[col("finding_id")] == finding.to_string().as_str()).collect();
    assert_eq!(accepted.len(), 1);
    assert_eq!(&accepted[0][col("decision")], "accept");
    assert_eq!(&accepted[0][col("reviewer")], "alice");
    assert_eq!(&accepted[0][col("bundle_id")], "demo-review-test");
    let ids: std::collections::BTreeSet<&str> =
        records.iter().map(|r| &r[col("image_id")]).collect();
    assert_eq!(ids.len(), 5, "every image in the range");
    assert!(
        !Command::new(FRACTURECTL)
            .arg("--state-dir")
            .arg(&root)
            .args(["export", "--from", "2000-01-01", "--to", "2999-12-31", "--out"])
            .arg(&csv_path)
            .output()
            .expect("fracturectl")
            .status
            .success(),
        "an existing file is not overwritten without --force"
    );

    // Disabling an account ends its live sessions at once.
    let out = Command::new(FRACTURECTL)
        .arg("--state-dir")
        .arg(&root)
        .args(["user", "disable", "audrey"])
        .output()
        .expect("fracturectl user disable");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(audrey.get("/api/images").status, 401, "a disabled account's session ends");

    // Logout ends the session.
    assert_eq!(alice.post("/api/logout", &json!({})).status, 204);
    assert_eq!(alice.get("/api/images").status, 401);

    // Lockout after repeated failures (the default: 5 failures, 60 s).
    let bad = json!({"user": "alice", "secret": "0000"}).to_string();
    let login = |body: &str| {
        daemon::request(
            addr,
            "POST",
            "/api/login",
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        )
    };
    for _ in 0..5 {
        assert_eq!(login(&bad).status, 401);
    }
    let locked = login(&json!({"user": "alice", "secret": "2468"}).to_string());
    assert_eq!(locked.status, 429, "the right PIN is refused during the lockout");
    assert!(locked.header("retry-after").is_some());
    drop(d);

    // A row edited behind the daemon's back (triggers dropped, as an attacker with the file
    // would) is found by `fracturectl audit verify`, which names it.
    let tamper_seq: i64 = db
        .conn()
        .query_row("SELECT seq FROM audit WHERE action = 'review.accept'", [], |r| r.get(0))
        .expect("accept row");
    db.conn()
        .execute_batch(&format!(
            "DROP TRIGGER audit_no_update;
             UPDATE audit SET detail = '{{\"finding_id\":1,\"reason\":null}}' WHERE seq = {tamper_seq};"
        ))
        .expect("tamper");
    let out = Command::new(FRACTURECTL)
        .arg("--state-dir")
        .arg(&root)
        .args(["audit", "verify"])
        .output()
        .expect("fracturectl");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains(&format!("row {tamper_seq}")), "{err}");
}

/// The machine's first non-loopback address (`hostname -I`), to reach a network listener
/// from a non-loopback peer address.
fn lan_ip() -> String {
    let out = Command::new("hostname").arg("-I").output().expect("hostname -I");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.split_whitespace()
        .find(|a| a.parse::<std::net::Ipv4Addr>().is_ok_and(|ip| !ip.is_loopback()))
        .unwrap_or_else(|| {
            panic!("this test needs a non-loopback IPv4 address; hostname -I: {text:?}")
        })
        .to_string()
}

#[test]
fn network_binds_need_tls_and_a_password_account() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("state");
    let refused = |config: Option<&std::path::Path>| {
        let mut cmd = Command::new(daemon::FRACTURED);
        cmd.arg("--state-dir").arg(&root).args(["--listen", "0.0.0.0:0"]);
        if let Some(c) = config {
            cmd.arg("--config").arg(c);
        }
        let out = cmd.output().expect("fractured");
        assert!(!out.status.success(), "a network bind must be refused here");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = refused(None);
    assert!(err.contains("not a loopback address") && err.contains("tls_cert"), "{err}");

    let cert = tmp.path().join("cert.pem");
    let key = tmp.path().join("key.pem");
    let status = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"])
        .args(["-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl");
    assert!(status.success());
    let tls = format!("{FAST}[http]\ntls_cert = {cert:?}\ntls_key = {key:?}\n");
    let config = daemon::config_file(tmp.path(), "tls.toml", &tls);
    let err = refused(Some(&config));
    assert!(err.contains("password account"), "{err}");

    add_user(&root, "nurse", "reviewer", "1357", false);
    add_user(&root, "rad", "reviewer", "long password 42", true);
    let d = Daemon::spawn_on("0.0.0.0:0", &root, Some(&config), &[], &[]);
    let port = d.http_addr().port();
    assert!(d.log().contains("https listening"), "{}", d.log());
    let ca = cert.to_string_lossy().into_owned();
    // Requests to https://localhost:PORT sent to `ip`, verified against our certificate.
    let curl = |ip: &str, path: &str, body: Option<&str>| {
        let mut cmd = Command::new("curl");
        cmd.args(["-s", "--max-time", "10", "-o", "/dev/null", "-w", "%{http_code}"]).args([
            "--cacert",
            &ca,
            "--resolve",
            &format!("localhost:{port}:{ip}"),
        ]);
        if let Some(b) = body {
            cmd.args(["-H", "Content-Type: application/json", "-d", b]);
        }
        let out = cmd.arg(format!("https://localhost:{port}{path}")).output().expect("curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let lan = lan_ip();
    assert_eq!(curl("127.0.0.1", "/healthz", None), "200", "HTTPS with the configured certificate");
    assert_eq!(curl(&lan, "/healthz", None), "200", "reachable on the network address");
    let plain = Command::new("curl")
        .args(["-s", "--max-time", "10", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!("http://127.0.0.1:{port}/healthz"))
        .output()
        .expect("curl");
    assert_ne!(String::from_utf8_lossy(&plain.stdout), "200", "no clear text on a TLS port");
    let creds = |user: &str, secret: &str| json!({"user": user, "secret": secret}).to_string();
    assert_eq!(curl(&lan, "/api/login", Some(&creds("rad", "long password 42"))), "200");
    assert_eq!(
        curl(&lan, "/api/login", Some(&creds("nurse", "1357"))),
        "401",
        "a PIN account may not log in from the network"
    );
    assert_eq!(curl("127.0.0.1", "/api/login", Some(&creds("nurse", "1357"))), "200");
}
