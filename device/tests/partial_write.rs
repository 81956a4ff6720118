//! Files still being written are never read: a slow writer (chunks with pauses) and a
//! writer that renames a finished file in, against the running daemon loop.

mod common;

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{State, count, encode, fast_config, names};
use fracture_device::analyzer::NoModel;
use fracture_device::config::Config;
use fracture_device::worker::Worker;
use image::{ImageBuffer, ImageFormat, Luma};

/// A PNG that does not compress to nothing (noise), so it spans many chunks.
fn noisy_png(w: u32, h: u32) -> Vec<u8> {
    let mut state = 0x1234_5678_u32;
    let img = ImageBuffer::from_fn(w, h, |_, _| {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        Luma([(state >> 24) as u8])
    });
    encode(&img, ImageFormat::Png)
}

/// Runs the daemon loop in a thread until `done` says so or the timeout passes.
fn with_daemon(state: &State, config: Config, body: impl FnOnce()) {
    let stop = Arc::new(AtomicBool::new(false));
    let root = state.root.clone();
    let flag = stop.clone();
    let daemon = std::thread::spawn(move || {
        let mut worker = Worker::open(&root, config, NoModel).expect("open");
        worker.run(&flag).expect("run");
    });
    body();
    stop.store(true, Ordering::Relaxed);
    daemon.join().expect("daemon thread");
}

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

#[test]
fn a_file_written_slowly_in_chunks_is_read_only_once_complete() {
    let state = State::new();
    let bytes = noisy_png(256, 200);
    assert!(bytes.len() > 40_000);
    let mut config = fast_config();
    config.ingest.stable_ms = 400;
    let capture = state.capture();
    with_daemon(&state, config, || {
        let mut file = std::fs::File::create(capture.join("slow.png")).expect("create");
        // 12 chunks, 120 ms apart: ~1.3 s of writing, each pause shorter than stable_ms.
        for chunk in bytes.chunks(bytes.len().div_ceil(12)) {
            file.write_all(chunk).expect("write");
            file.flush().expect("flush");
            std::thread::sleep(Duration::from_millis(120));
            assert!(names(&state.quarantine()).is_empty(), "read while being written");
        }
        drop(file);
        assert!(wait_until(Duration::from_secs(15), || state.archive().join("slow.png").exists()));
    });
    assert!(names(&state.quarantine()).is_empty());
    let db = state.db();
    assert_eq!(count(&db, "SELECT count(*) FROM runs"), 1);
    assert_eq!(count(&db, "SELECT width FROM images"), 256);
    assert_eq!(count(&db, "SELECT byte_size FROM images"), bytes.len() as i64);
}

#[test]
fn a_file_renamed_in_counts_at_once() {
    let state = State::new();
    let mut config = fast_config();
    config.ingest.stable_ms = 60_000; // only the rename can make it count in time
    config.ingest.rescan_ms = 200;
    let capture = state.capture();
    with_daemon(&state, config, || {
        std::thread::sleep(Duration::from_millis(300)); // the watch is up
        let tmp = capture.join(".incoming.png");
        std::fs::write(&tmp, noisy_png(64, 64)).expect("write");
        std::fs::rename(&tmp, capture.join("renamed.png")).expect("rename");
        assert!(
            wait_until(Duration::from_secs(20), || state.archive().join("renamed.png").exists()),
            "a renamed-in file should not wait for the stability time"
        );
    });
    assert_eq!(count(&state.db(), "SELECT count(*) FROM runs"), 1);
}
