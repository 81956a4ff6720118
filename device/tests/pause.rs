//! A full state directory pauses ingestion with a clear health status, and ingestion resumes
//! by itself once there is room; nothing is lost and nothing is done twice. Free space comes
//! from an injected probe (no root, no real full disk needed); a database that refuses
//! writes stands in for SQLite's "disk full".

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{State, count, fast_config, names, png};
use fracture_device::analyzer::NoModel;
use fracture_device::config::Config;
use fracture_device::space::FakeSpace;
use fracture_device::telemetry::{HealthState, Telemetry};
use fracture_device::worker::Worker;

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

fn pause_config() -> Config {
    let mut c = fast_config();
    c.storage.min_free_mb = 100;
    c.storage.retry_initial_ms = 20;
    c.storage.retry_max_ms = 100;
    c
}

#[test]
fn low_space_pauses_then_resumes_with_nothing_lost() {
    let state = State::new();
    let space = FakeSpace::new(500 << 20);
    let worker = Worker::open(&state.root, pause_config(), NoModel)
        .expect("open")
        .with_space_probe(Box::new(space.clone()));
    let telemetry: Arc<Telemetry> = worker.telemetry().clone();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let daemon = std::thread::spawn(move || {
        let mut worker = worker;
        worker.run(&flag)
    });
    // Running normally first.
    for i in 0..3 {
        std::fs::write(state.capture().join(format!("early{i}.png")), png(100 + i)).expect("write");
    }
    assert!(wait_until(Duration::from_secs(10), || names(&state.archive()).len() == 3));
    assert_eq!(telemetry.health.report().state, HealthState::Ok);

    // The disk fills up (5 MB free, 100 MB wanted); more files arrive.
    space.set(5 << 20);
    for i in 0..5 {
        std::fs::write(state.capture().join(format!("p{i}.png")), png(i)).expect("write");
    }
    assert!(
        wait_until(Duration::from_secs(5), || telemetry.health.report().state
            == HealthState::Paused),
        "{:?}",
        telemetry.health.report()
    );
    let report = telemetry.health.report();
    let reason = report.reason.clone().unwrap_or_default();
    assert!(
        reason.starts_with("state directory full: 5 MB free, below the 100 MB minimum"),
        "{reason}"
    );
    assert_eq!(report.state_dir_free_bytes, Some(5 << 20));
    // Paused: files wait where they are; the database holds nothing about them.
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(names(&state.capture()).len(), 5);
    assert_eq!(count(&state.db(), "SELECT count(*) FROM images"), 3);
    assert!(
        telemetry.health.alive_within(Duration::from_secs(1)),
        "a pause whose check runs still feeds the watchdog"
    );

    space.set(500 << 20);
    assert!(
        wait_until(Duration::from_secs(10), || names(&state.archive()).len() == 8),
        "resumed: {:?}",
        telemetry.health.report()
    );
    assert!(
        wait_until(Duration::from_secs(2), || telemetry.health.report().state == HealthState::Ok),
        "{:?}",
        telemetry.health.report()
    );
    stop.store(true, Ordering::SeqCst);
    daemon.join().expect("join").expect("run");

    let db = state.db();
    assert_eq!(count(&db, "SELECT count(*) FROM runs"), 8);
    assert_eq!(count(&db, "SELECT count(*) FROM audit WHERE action = 'ingest.resumed'"), 1);
    assert_eq!(count(&db, "SELECT count(*) FROM audit WHERE action = 'daemon.stop'"), 1);
    assert!(names(&state.capture()).is_empty());
}

#[test]
fn a_database_that_refuses_writes_pauses_and_loses_nothing() {
    let state = State::new();
    std::fs::write(state.capture().join("a.png"), png(1)).expect("write");
    let mut config = pause_config();
    config.storage.min_free_mb = 0;
    let worker = Worker::open(&state.root, config.clone(), NoModel).expect("open");
    // The next write on this connection fails as on a full or read-only disk.
    worker.db().conn().execute_batch("PRAGMA query_only = ON").expect("pragma");
    let telemetry = worker.telemetry().clone();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let daemon = std::thread::spawn(move || {
        let mut worker = worker;
        worker.run(&flag)
    });
    assert!(
        wait_until(Duration::from_secs(5), || telemetry.health.report().state
            == HealthState::Paused),
        "{:?}",
        telemetry.health.report()
    );
    let reason = telemetry.health.report().reason.unwrap_or_default();
    assert!(reason.starts_with("cannot write to the state directory"), "{reason}");
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::SeqCst);
    daemon.join().expect("join").expect("a stop while paused is a clean stop");
    assert_eq!(names(&state.capture()), ["a.png"], "the file waits in capture/");

    // The next start (writable again) processes it, once.
    let stats = fracture_device::worker::ingest_once(&state.root, config).expect("once");
    assert_eq!(stats.processed, 1);
    assert_eq!(count(&state.db(), "SELECT count(*) FROM runs"), 1);
}

#[test]
fn a_job_interrupted_by_a_failed_write_goes_back_to_the_queue_uncounted() {
    let state = State::new();
    std::fs::write(state.capture().join("a.png"), png(1)).expect("write");
    let mut config = fast_config();
    config.ingest.stable_ms = 0;
    let mut worker = Worker::open(&state.root, config, NoModel).expect("open");
    worker.start("test").expect("start");
    assert_eq!(worker.scan().expect("scan").offered, 1);
    worker.db().conn().execute_batch("PRAGMA query_only = ON").expect("pragma");
    let err = worker.process_next().expect_err("the claim cannot be written");
    assert!(err.is_storage(), "{err}");
    worker.db().conn().execute_batch("PRAGMA query_only = OFF").expect("pragma");
    // As if the claim had gone through and the commit had failed: running, one attempt.
    let mut other = state.db();
    let job = fracture_device::queue::claim_next(&mut other).expect("claim").expect("a job");
    assert_eq!(job.attempts, 1);
    assert_eq!(fracture_device::queue::release_running(&mut other).expect("release"), 1);
    assert_eq!(
        count(&other, "SELECT attempts FROM jobs"),
        0,
        "a full disk is not the file's fault"
    );
    assert!(worker.process_next().expect("process"));
    assert_eq!(count(&other, "SELECT count(*) FROM runs"), 1);
    assert_eq!(names(&state.archive()), ["a.png"]);
}

#[test]
fn files_offered_while_the_database_refused_writes_are_offered_again() {
    let state = State::new();
    for i in 0..4 {
        std::fs::write(state.capture().join(format!("p{i}.png")), png(i)).expect("write");
    }
    std::fs::write(state.capture().join("empty.png"), b"").expect("write");
    let mut config = fast_config();
    config.ingest.stable_ms = 0;
    let mut worker = Worker::open(&state.root, config, NoModel).expect("open");
    worker.start("test").expect("start");
    worker.db().conn().execute_batch("PRAGMA query_only = ON").expect("pragma");
    let err = worker.scan().expect_err("queueing cannot be written");
    assert!(err.is_storage(), "{err}");
    worker.db().conn().execute_batch("PRAGMA query_only = OFF").expect("pragma");
    // Every entry of the failed scan comes back, the good ones and the bad one.
    assert_eq!(worker.scan().expect("scan").offered, 5);
    while worker.process_next().expect("process") {}
    assert_eq!(names(&state.archive()).len(), 4);
    assert_eq!(names(&state.quarantine()), ["empty.png", "empty.png.reason.txt"]);
    assert!(names(&state.capture()).is_empty());
}
