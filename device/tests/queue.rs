//! The durable queue on a real SQLite file: exactly once per content, atomic completion,
//! requeue after a crash, poisoned jobs.

mod common;

use std::path::Path;

use common::{State, count};
use fracture_device::analyzer::{Analysis, Finding, ModelIdentity, OperatingPoint, StageTiming};
use fracture_device::db::Db;
use fracture_device::queue::{self, DecodedFacts, Enqueued, JobResult, JobState, NewImage};

fn image<'a>(sha: &'a str, path: &'a Path) -> NewImage<'a> {
    NewImage { sha256: sha, source_path: path, original_name: "x.png", byte_size: 10 }
}

fn sha(n: u8) -> String {
    format!("{n:02x}").repeat(32)
}

fn facts() -> DecodedFacts {
    DecodedFacts {
        width: 4,
        height: 3,
        bit_depth: 8,
        format: "png".into(),
        acquisition: serde_json::json!({"format": "png"}),
    }
}

#[test]
fn enqueue_is_idempotent_per_content() {
    let state = State::new();
    let mut db = Db::open(&state.root.join("fractured.sqlite3")).expect("open");
    let (a, b) = (state.capture().join("a.png"), state.capture().join("b.png"));
    let first = queue::enqueue(&mut db, &image(&sha(1), &a)).expect("enqueue");
    let Enqueued::New { job_id } = first else { panic!("expected New, got {first:?}") };
    // Same content again, from the same or another path: the same job, nothing new.
    for path in [&a, &b, &a] {
        match queue::enqueue(&mut db, &image(&sha(1), path)).expect("enqueue") {
            Enqueued::Known { job_id: j, state: JobState::Queued, source_path, .. } => {
                assert_eq!(j, job_id);
                assert_eq!(source_path, a);
            }
            other => panic!("expected Known, got {other:?}"),
        }
    }
    assert_eq!(count(&db, "SELECT count(*) FROM jobs"), 1);
    assert_eq!(count(&db, "SELECT count(*) FROM images"), 1);
    assert_eq!(queue::depth(&db).expect("depth"), 1);
    // Reopening the file changes nothing.
    drop(db);
    let mut db = Db::open(&state.root.join("fractured.sqlite3")).expect("reopen");
    assert!(matches!(
        queue::enqueue(&mut db, &image(&sha(1), &b)).expect("enqueue"),
        Enqueued::Known { .. }
    ));
    assert!(matches!(
        queue::enqueue(&mut db, &image(&sha(2), &b)).expect("enqueue"),
        Enqueued::New { .. }
    ));
    assert_eq!(queue::depth(&db).expect("depth"), 2);
}

#[test]
fn claim_complete_writes_everything_at_once() {
    let state = State::new();
    let mut db = Db::open(&state.root.join("fractured.sqlite3")).expect("open");
    let path = state.capture().join("a.png");
    queue::enqueue(&mut db, &image(&sha(3), &path)).expect("enqueue");
    let job = queue::claim_next(&mut db).expect("claim").expect("a job");
    assert_eq!(job.attempts, 1);
    assert!(queue::claim_next(&mut db).expect("claim").is_none(), "claimed once");
    let model = ModelIdentity {
        bundle_id: "demo-yolo11n".into(),
        bundle_sha256: sha(9),
        backend: "libtorch-cpu".into(),
        precision: "fp32".into(),
        backend_reason: "as asked".into(),
    };
    let finding = Finding {
        x1: 1.0,
        y1: 2.0,
        x2: 3.0,
        y2: 4.0,
        score: 0.8,
        class_id: 0,
        class_name: "fracture".into(),
        operating_point: OperatingPoint::Definite,
    };
    let result = JobResult {
        decoded: facts(),
        model: Some(&model),
        analysis: Analysis {
            findings: vec![finding.clone(), finding],
            timings: vec![
                StageTiming { stage: "decode".into(), ms: 1.5 },
                StageTiming { stage: "infer".into(), ms: 20.0 },
            ],
        },
    };
    let run_id = queue::complete(&mut db, &job, &result).expect("complete");
    assert_eq!(count(&db, "SELECT count(*) FROM findings"), 2);
    assert_eq!(count(&db, "SELECT count(*) FROM timings"), 2);
    assert_eq!(count(&db, "SELECT count(*) FROM runs WHERE status = 'analysed'"), 1);
    assert_eq!(count(&db, "SELECT width FROM images"), 4);
    let (bundle, backend): (String, String) = db
        .conn()
        .query_row("SELECT bundle_id, backend FROM runs WHERE id = ?1", [run_id], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .expect("run");
    assert_eq!((bundle.as_str(), backend.as_str()), ("demo-yolo11n", "libtorch-cpu"));
    assert_eq!(queue::state_of(&db, &sha(3)).expect("state").map(|s| s.0), Some(JobState::Done));
    // Completing twice is refused and writes nothing.
    assert!(queue::complete(&mut db, &job, &result).is_err());
    assert_eq!(count(&db, "SELECT count(*) FROM runs"), 1);
    assert_eq!(count(&db, "SELECT count(*) FROM audit WHERE action = 'run.recorded'"), 1);
}

#[test]
fn running_jobs_are_requeued_after_a_crash_and_poisoned_ones_quarantined() {
    let state = State::new();
    let db_path = state.root.join("fractured.sqlite3");
    let path = state.capture().join("a.png");
    {
        let mut db = Db::open(&db_path).expect("open");
        queue::enqueue(&mut db, &image(&sha(4), &path)).expect("enqueue");
        queue::enqueue(&mut db, &image(&sha(5), &path)).expect("enqueue");
        queue::claim_next(&mut db).expect("claim").expect("job");
        // The process "dies" here: the connection goes away with a job running.
    }
    let mut db = Db::open(&db_path).expect("reopen");
    assert_eq!(count(&db, "SELECT count(*) FROM jobs WHERE state = 'running'"), 1);
    let requeued = queue::requeue_running(&mut db, 3).expect("requeue");
    assert_eq!(requeued.requeued.len(), 1);
    assert!(requeued.poisoned.is_empty());
    assert_eq!(queue::depth(&db).expect("depth"), 2);
    // The oldest job comes back first, its attempt counted.
    let job = queue::claim_next(&mut db).expect("claim").expect("job");
    assert_eq!((job.sha256.as_str(), job.attempts), (sha(4).as_str(), 2));
    queue::complete(
        &mut db,
        &job,
        &JobResult { decoded: facts(), model: None, analysis: Analysis::default() },
    )
    .expect("complete");
    assert_eq!(count(&db, "SELECT count(*) FROM runs WHERE status = 'not_analysed'"), 1);

    // A job that keeps dying is quarantined at the third start instead of retried forever.
    for _ in 0..3 {
        queue::requeue_running(&mut db, 3).expect("requeue");
        let job = queue::claim_next(&mut db).expect("claim").expect("job");
        assert_eq!(job.sha256, sha(5));
    }
    let requeued = queue::requeue_running(&mut db, 3).expect("requeue");
    assert_eq!(requeued.poisoned.len(), 1);
    let (state, error) = queue::state_of(&db, &sha(5)).expect("state").expect("known");
    assert_eq!(state, JobState::Quarantined);
    assert!(error.expect("reason").contains("interrupted 3 times"));
    assert_eq!(queue::depth(&db).expect("depth"), 0);
}

#[test]
fn failed_jobs_are_retried_when_the_content_arrives_again() {
    let state = State::new();
    let mut db = Db::open(&state.root.join("fractured.sqlite3")).expect("open");
    let (a, b) = (state.capture().join("a.png"), state.capture().join("b.png"));
    queue::enqueue(&mut db, &image(&sha(6), &a)).expect("enqueue");
    let job = queue::claim_next(&mut db).expect("claim").expect("job");
    queue::fail(&mut db, &job, "read", "source file vanished").expect("fail");
    assert_eq!(count(&db, "SELECT count(*) FROM errors"), 1);
    match queue::enqueue(&mut db, &image(&sha(6), &b)).expect("enqueue") {
        Enqueued::Retried { job_id } => assert_eq!(job_id, job.job_id),
        other => panic!("expected Retried, got {other:?}"),
    }
    let again = queue::claim_next(&mut db).expect("claim").expect("job");
    assert_eq!(again.source_path, b);
    // Quarantined content stays quarantined.
    queue::quarantine(&mut db, &again, "decode", "truncated").expect("quarantine");
    assert!(matches!(
        queue::enqueue(&mut db, &image(&sha(6), &a)).expect("enqueue"),
        Enqueued::Known { state: JobState::Quarantined, .. }
    ));
}
