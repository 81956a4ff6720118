//! A failure that is not the disk's — here an analyzer whose result the database refuses —
//! makes the daemon `degraded` and retry with backoff; the attempt counts, so the one job
//! that keeps failing is quarantined after `max_attempts` and cannot block the queue, and
//! the daemon returns to `ok`.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{State, count, encode, fast_config, gray, names, png};
use fracture_device::analyzer::{
    Analysis, AnalyzeError, Analyzer, Finding, ModelIdentity, OperatingPoint,
};
use fracture_device::telemetry::HealthState;
use fracture_device::worker::Worker;
use fracture_models::pixels::GrayF32;
use image::ImageFormat;

/// Reports an impossible score (2.0, outside [0, 1]) on 33-pixel-wide images.
struct Broken(ModelIdentity);

impl Analyzer for Broken {
    fn model(&self) -> Option<&ModelIdentity> {
        Some(&self.0)
    }

    fn analyze(&self, image: &GrayF32) -> Result<Analysis, AnalyzeError> {
        let findings = if image.width == 33 {
            vec![Finding {
                x1: 0.0,
                y1: 0.0,
                x2: 1.0,
                y2: 1.0,
                score: 2.0,
                class_id: 0,
                class_name: "fracture".into(),
                operating_point: OperatingPoint::Definite,
            }]
        } else {
            Vec::new()
        };
        Ok(Analysis { findings, timings: Vec::new() })
    }
}

#[test]
fn a_job_that_keeps_failing_is_quarantined_and_the_queue_moves_on() {
    let state = State::new();
    std::fs::write(state.capture().join("poison.png"), encode(&gray(33, 24, 1), ImageFormat::Png))
        .expect("write");
    for i in 0..4 {
        std::fs::write(state.capture().join(format!("good{i}.png")), png(10 + i)).expect("write");
    }
    let mut config = fast_config();
    config.ingest.max_attempts = 3;
    config.storage.min_free_mb = 0;
    config.storage.retry_initial_ms = 20;
    config.storage.retry_max_ms = 100;
    let identity = ModelIdentity {
        bundle_id: "broken-test".into(),
        bundle_sha256: "0".repeat(64),
        backend: "test".into(),
        precision: "fp32".into(),
        backend_reason: "as asked".into(),
    };
    let worker = Worker::open(&state.root, config, Broken(identity)).expect("open");
    let telemetry = worker.telemetry().clone();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let daemon = std::thread::spawn(move || {
        let mut worker = worker;
        worker.run(&flag)
    });
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20)
        && !(names(&state.archive()).len() == 4 && names(&state.quarantine()).len() == 2)
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while telemetry.health.report().state != HealthState::Ok && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let health = telemetry.health.report();
    let metrics = telemetry.metrics.render(&health);
    stop.store(true, Ordering::SeqCst);
    daemon.join().expect("join").expect("run");

    assert_eq!(names(&state.quarantine()), ["poison.png", "poison.png.reason.txt"]);
    let reason =
        std::fs::read_to_string(state.quarantine().join("poison.png.reason.txt")).expect("reason");
    assert!(reason.contains("interrupted 3 times"), "{reason}");
    assert_eq!(names(&state.archive()).len(), 4, "the good files went on");
    assert_eq!(health.state, HealthState::Ok, "{health:?}");
    assert!(metrics.lines().any(|l| l == "fractured_pipeline_errors_total 3"), "{metrics}");
    let db = state.db();
    assert_eq!(count(&db, "SELECT count(*) FROM runs"), 4);
    assert_eq!(count(&db, "SELECT count(*) FROM jobs WHERE state = 'quarantined'"), 1);
    assert_eq!(count(&db, "SELECT count(*) FROM audit WHERE action = 'ingest.resumed'"), 1);
}
