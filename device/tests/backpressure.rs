//! Backpressure and bounded memory: a flood of arrivals stays on disk in capture/; the queue
//! never holds more than `max_pending_jobs`, the folder tracks at most `max_tracked_files`,
//! and everything is still processed, each file once.

mod common;

use common::{State, count, fast_config, names, png};
use fracture_device::analyzer::NoModel;
use fracture_device::queue;
use fracture_device::worker::{Worker, ingest_once};

#[test]
fn the_queue_is_bounded_and_everything_still_flows() {
    let state = State::new();
    let n = 60;
    for i in 0..n {
        std::fs::write(state.capture().join(format!("f{i:03}.png")), png(i)).expect("write");
    }
    let mut config = fast_config();
    config.ingest.stable_ms = 0;
    config.ingest.max_pending_jobs = 5;
    config.ingest.max_tracked_files = 20;
    let mut worker = Worker::open(&state.root, config.clone(), NoModel).expect("open");
    worker.start("test").expect("start");
    let scan = worker.scan().expect("scan");
    assert_eq!(scan.offered, 5, "{scan:?}");
    assert_eq!(scan.waiting, 15, "tracked but held back: {scan:?}");
    assert_eq!(scan.untracked, 40, "not even tracked yet: {scan:?}");
    assert_eq!(queue::depth(worker.db()).expect("depth"), 5);
    // A second scan with the queue still full queues nothing more.
    assert_eq!(worker.scan().expect("scan").offered, 0);
    assert!(worker.process_next().expect("one job"));
    assert_eq!(worker.scan().expect("scan").offered, 1, "room for exactly one");
    assert_eq!(queue::depth(worker.db()).expect("depth"), 5);
    drop(worker);

    let stats = ingest_once(&state.root, config).expect("ingest");
    assert_eq!(stats.processed, u64::from(n) - 1);
    let db = state.db();
    assert_eq!(count(&db, "SELECT count(*) FROM runs"), i64::from(n));
    assert_eq!(count(&db, "SELECT count(DISTINCT image_id) FROM runs"), i64::from(n));
    assert!(names(&state.capture()).is_empty());
    assert_eq!(names(&state.archive()).len(), n as usize);
}
