//! The daemon as systemd runs it: `/healthz` and `/metrics` over HTTP, SIGTERM finishing the
//! job in hand and exiting 0, the loopback-only rule, a full state directory reported as
//! `paused`, and the notify protocol (READY=1, STATUS=, WATCHDOG=1 only while the pipeline
//! makes progress, STOPPING=1) against a socket standing in for systemd.

mod common;

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use common::daemon::{Daemon, FAST, FRACTURED, config_file, get, http};
use common::{State, count, names, png};
use rustix::process::Signal;

fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

#[test]
fn health_and_metrics_over_http_then_sigterm_exits_zero() {
    let state = State::new();
    let config = config_file(state.tmp.path(), "f.toml", FAST);
    let mut daemon = Daemon::spawn(&state.root, Some(&config), &[], &[]);
    let addr = daemon.http_addr();
    assert!(addr.ip().is_loopback());
    assert!(wait_until(Duration::from_secs(10), || get(addr, "/healthz").status == 200));
    let health = json(&get(addr, "/healthz").body);
    assert_eq!(health["state"], "ok");
    assert_eq!(health["reason"], serde_json::Value::Null);
    assert_eq!(health["queue_depth"], 0);
    assert_eq!(health["ready"], true);
    assert!(health["last_progress"].is_string(), "{health}");

    for i in 0..10 {
        std::fs::write(state.capture().join(format!("p{i}.png")), png(i)).expect("write");
    }
    assert!(wait_until(Duration::from_secs(20), || names(&state.archive()).len() == 10));
    let metrics = get(addr, "/metrics");
    assert_eq!(metrics.status, 200);
    assert_eq!(metrics.header("content-type"), Some("text/plain; version=0.0.4; charset=utf-8"));
    for line in [
        "fractured_queue_depth 0",
        "fractured_jobs_processed_total 10",
        "fractured_files_archived_total 10",
        "fractured_files_quarantined_total 0",
        "fractured_health{state=\"ok\"} 1",
        "fractured_stage_duration_seconds_count{stage=\"decode\"} 10",
        "fractured_stage_duration_seconds_count{stage=\"total\"} 10",
        "fractured_stage_duration_seconds_bucket{stage=\"read\",le=\"+Inf\"} 10",
        "# TYPE fractured_stage_duration_seconds histogram",
        "# TYPE fractured_jobs_processed_total counter",
    ] {
        assert!(metrics.body.lines().any(|l| l == line), "no {line:?} in\n{}", metrics.body);
    }
    assert_eq!(get(addr, "/nothing").status, 404);
    assert_eq!(get(addr, "/../fractured.sqlite3").status, 404);
    assert_eq!(http(addr, "POST", "/healthz").status, 405);

    let status = daemon.terminate(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "log:\n{}", daemon.log());
    assert!(daemon.log().contains("stop requested"));
    let db = state.db();
    assert_eq!(count(&db, "SELECT count(*) FROM audit WHERE action = 'daemon.stop'"), 1);
    assert!(std::net::TcpStream::connect(addr).is_err(), "the server is gone");
}

#[test]
fn sigterm_mid_stream_finishes_the_job_in_hand_and_loses_nothing() {
    let state = State::new();
    let n = 150;
    for i in 0..n {
        std::fs::write(state.capture().join(format!("p{i:03}.png")), png(i)).expect("write");
    }
    let config = config_file(state.tmp.path(), "f.toml", FAST);
    let mut daemon = Daemon::spawn(&state.root, Some(&config), &[], &[]);
    let started = Instant::now();
    assert!(
        wait_until(Duration::from_secs(30), || !names(&state.archive()).is_empty()),
        "{}",
        daemon.log()
    );
    let status = daemon.terminate(Duration::from_secs(10));
    eprintln!("SIGTERM after {:?}: stopped cleanly", started.elapsed());
    assert_eq!(status.code(), Some(0), "log:\n{}", daemon.log());
    let db = state.db();
    assert_eq!(count(&db, "SELECT count(*) FROM jobs WHERE state = 'running'"), 0, "finished");
    let done = count(&db, "SELECT count(*) FROM jobs WHERE state = 'done'");
    assert_eq!(done, count(&db, "SELECT count(*) FROM runs"));
    assert_eq!(names(&state.archive()).len() as i64, done, "every result archived, no more");

    let out = std::process::Command::new(FRACTURED)
        .arg("--state-dir")
        .arg(&state.root)
        .arg("--config")
        .arg(&config)
        .arg("--once")
        .output()
        .expect("once");
    assert!(out.status.success());
    assert_eq!(count(&db, "SELECT count(*) FROM runs"), i64::from(n));
    assert_eq!(count(&db, "SELECT count(DISTINCT image_id) FROM runs"), i64::from(n));
}

#[test]
fn non_loopback_or_taken_addresses_are_refused_at_start() {
    let state = State::new();
    let out = std::process::Command::new(FRACTURED)
        .arg("--state-dir")
        .arg(&state.root)
        .args(["--listen", "0.0.0.0:8470"])
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("not a loopback address") && stderr.contains("no TLS"), "{stderr}");

    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").to_string();
    let out = std::process::Command::new(FRACTURED)
        .arg("--state-dir")
        .arg(&state.root)
        .args(["--listen", &port])
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains(&format!("cannot listen on {port}")), "{stderr}");
}

#[test]
fn a_full_state_directory_is_paused_503_and_nothing_is_lost() {
    let state = State::new();
    for i in 0..4 {
        std::fs::write(state.capture().join(format!("p{i}.png")), png(i)).expect("write");
    }
    // More free space wanted than any test machine has (1 EiB): full, as far as it knows.
    let full = config_file(
        state.tmp.path(),
        "full.toml",
        &format!("{FAST}min_free_mb = {}\n", 1_u64 << 40),
    );
    let mut daemon = Daemon::spawn(&state.root, Some(&full), &[], &[]);
    let addr = daemon.http_addr();
    assert!(wait_until(Duration::from_secs(10), || get(addr, "/healthz").status == 503));
    let health = json(&get(addr, "/healthz").body);
    assert_eq!(health["state"], "paused", "{health}");
    let reason = health["reason"].as_str().unwrap_or_default();
    assert!(
        reason.starts_with("state directory full: ") && reason.contains(" MB free"),
        "{reason}"
    );
    assert!(health["state_dir_free_bytes"].as_u64().is_some_and(|b| b > 0));
    let metrics = get(addr, "/metrics").body;
    assert!(metrics.lines().any(|l| l == "fractured_health{state=\"paused\"} 1"), "{metrics}");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(names(&state.capture()).len(), 4, "files wait in capture/");
    assert!(daemon.log().contains("ingestion paused"));
    assert_eq!(daemon.terminate(Duration::from_secs(10)).code(), Some(0));

    // Room again (the default minimum): everything is processed, once.
    let fine = config_file(state.tmp.path(), "fine.toml", FAST);
    let mut daemon = Daemon::spawn(&state.root, Some(&fine), &[], &[]);
    assert!(wait_until(Duration::from_secs(20), || names(&state.archive()).len() == 4));
    assert_eq!(daemon.terminate(Duration::from_secs(10)).code(), Some(0));
    assert_eq!(count(&state.db(), "SELECT count(*) FROM runs"), 4);
}

/// Datagrams received on the fake notify socket until `until` says stop or `timeout`.
fn receive(
    socket: &UnixDatagram,
    timeout: Duration,
    mut until: impl FnMut(&str) -> bool,
) -> Vec<String> {
    let start = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0_u8; 4096];
    while start.elapsed() < timeout {
        if let Ok(n) = socket.recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            let stop = until(&msg);
            got.push(msg);
            if stop {
                break;
            }
        }
    }
    got
}

fn pings(messages: &[String]) -> usize {
    messages.iter().filter(|m| m.lines().any(|l| l == "WATCHDOG=1")).count()
}

#[test]
fn systemd_ready_status_watchdog_only_on_progress_and_stopping() {
    let state = State::new();
    let socket_path = state.tmp.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("bind notify socket");
    socket.set_read_timeout(Some(Duration::from_millis(50))).expect("timeout");
    let config = config_file(state.tmp.path(), "f.toml", FAST);
    let socket_env = socket_path.to_string_lossy().into_owned();
    let env = [("NOTIFY_SOCKET", socket_env.as_str()), ("WATCHDOG_USEC", "400000")];
    let mut daemon = Daemon::spawn(&state.root, Some(&config), &[], &env);

    let first = receive(&socket, Duration::from_secs(30), |m| m.contains("READY=1"));
    let ready = first.last().expect("a message");
    assert!(ready.lines().any(|l| l == "READY=1"), "{first:?}\n{}", daemon.log());
    // READY comes after start-up: the database is there, migrated, with the start logged.
    assert_eq!(count(&state.db(), "SELECT count(*) FROM audit WHERE action = 'daemon.start'"), 1);
    assert!(ready.lines().any(|l| l.starts_with("STATUS=running: 0 queued")), "{ready:?}");

    // Idle, the scan loop runs: pings at half the interval.
    let idle = receive(&socket, Duration::from_millis(1200), |_| false);
    assert!(pings(&idle) >= 3, "{idle:?}");

    // The pipeline breaks (its capture folder disappears): degraded, no more pings.
    std::fs::remove_dir_all(state.capture()).expect("rm capture");
    let _transition = receive(&socket, Duration::from_millis(1000), |_| false);
    let stuck = receive(&socket, Duration::from_millis(1200), |_| false);
    assert_eq!(pings(&stuck), 0, "{stuck:?}");
    assert!(daemon.log().contains("not feeding the watchdog"), "{}", daemon.log());
    let addr = daemon.http_addr();
    let health = json(&get(addr, "/healthz").body);
    assert_eq!(health["state"], "degraded", "{health}");
    assert!(health["reason"].as_str().is_some_and(|r| r.contains("capture folder")), "{health}");

    // Repaired: progress again, pings again, status back to running.
    std::fs::create_dir(state.capture()).expect("mkdir capture");
    std::fs::write(state.capture().join("a.png"), png(1)).expect("write");
    let back = receive(&socket, Duration::from_secs(10), |m| m.contains("WATCHDOG=1"));
    assert!(pings(&back) >= 1, "{back:?}\n{}", daemon.log());
    assert!(wait_until(Duration::from_secs(10), || names(&state.archive()) == ["a.png"]));
    let status_back = receive(&socket, Duration::from_secs(5), |m| m.contains("STATUS=running"));
    assert!(status_back.iter().any(|m| m.contains("STATUS=running")), "{status_back:?}");

    daemon.signal(Signal::TERM);
    let last = receive(&socket, Duration::from_secs(10), |m| m.contains("STOPPING=1"));
    assert!(last.iter().any(|m| m.lines().any(|l| l == "STOPPING=1")), "{last:?}");
    assert_eq!(daemon.wait_exit(Duration::from_secs(10)).and_then(|s| s.code()), Some(0));
}

#[test]
fn sigterm_during_start_up_is_a_clean_stop() {
    let state = State::new();
    for delay_ms in [0_u64, 5, 30] {
        let mut daemon = Daemon::spawn(&state.root, None, &[], &[]);
        std::thread::sleep(Duration::from_millis(delay_ms));
        let status = daemon.terminate(Duration::from_secs(20));
        // Before the handlers exist (the first milliseconds of the process) the default
        // action ends it by the signal; after, it is exit 0. Never a crash or a hang.
        assert!(
            status.code() == Some(0) || status.code().is_none(),
            "{status:?}\n{}",
            daemon.log()
        );
    }
    // Ready: now it is always exit 0.
    let mut daemon = Daemon::spawn(&state.root, None, &[], &[]);
    daemon.http_addr();
    assert_eq!(daemon.terminate(Duration::from_secs(10)).code(), Some(0));
}
