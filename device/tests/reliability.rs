//! The reliability test: 1,000 phantom images dropped into the capture folder while
//! the real `fractured` (continuous mode) is SIGKILLed at random moments 20 times and
//! restarted. At the end every image has exactly one result row — none lost, none twice —
//! and every image is archived. Images are distinct 64×64 noise PNGs made here; most arrive
//! by rename (as capture software should write them), every tenth is written in place and
//! must wait for the stability rule.

mod common;

use std::collections::HashSet;
use std::io::Cursor;
use std::time::{Duration, Instant};

use common::daemon::{Daemon, config_file};
use common::{State, count, names, sha256};
use image::{ImageBuffer, ImageFormat, Luma};
use rustix::process::Signal;

const IMAGES: u32 = 1000;
const KILLS: u32 = 20;

/// xorshift32: deterministic, dependency-free randomness for the test.
struct Rng(u32);

impl Rng {
    fn next(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 17;
        self.0 ^= self.0 << 5;
        self.0
    }
    fn below(&mut self, n: u32) -> u32 {
        self.next() % n
    }
}

/// A 64×64 noise PNG; `index` is written into the first pixels so all are distinct.
fn phantom(index: u32, rng: &mut Rng) -> Vec<u8> {
    let mut img: ImageBuffer<Luma<u8>, Vec<u8>> =
        ImageBuffer::from_fn(64, 64, |_, _| Luma([rng.next() as u8]));
    for (i, b) in index.to_le_bytes().iter().enumerate() {
        img.put_pixel(i as u32, 0, Luma([*b]));
    }
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, ImageFormat::Png).expect("png");
    out.into_inner()
}

#[test]
fn a_thousand_images_twenty_sigkills_every_image_exactly_once() {
    let started = Instant::now();
    let state = State::new();
    let config = config_file(
        state.tmp.path(),
        "f.toml",
        // Kills, not the files, interrupt jobs here: no poison limit. A small queue bound
        // keeps backpressure in play.
        "[ingest]\nstable_ms = 150\nrescan_ms = 100\nmax_attempts = 1000\nmax_pending_jobs = 32\n",
    );
    let mut rng = Rng(0x2545_F491);
    let images: Vec<Vec<u8>> = (0..IMAGES).map(|i| phantom(i, &mut rng)).collect();
    let expected: HashSet<String> = images.iter().map(|b| sha256(b)).collect();
    assert_eq!(expected.len(), IMAGES as usize, "all distinct");

    // The writer: batches of 25 every 150 ms (≈ 6 s for all), alongside the kills.
    let capture = state.capture();
    let staging = state.tmp.path().join("staging");
    std::fs::create_dir(&staging).expect("staging");
    let writer = std::thread::spawn(move || {
        for (i, bytes) in images.iter().enumerate() {
            let name = format!("phantom-{i:04}.png");
            if i % 10 == 9 {
                std::fs::write(capture.join(&name), bytes).expect("write in place");
            } else {
                let tmp = staging.join(&name);
                std::fs::write(&tmp, bytes).expect("write");
                std::fs::rename(&tmp, capture.join(&name)).expect("rename in");
            }
            if i % 25 == 24 {
                std::thread::sleep(Duration::from_millis(150));
            }
        }
    });

    let mut kill_rng = Rng(0x9E37_79B9);
    for k in 0..KILLS {
        let daemon = Daemon::spawn(&state.root, Some(&config), &[], &[]);
        // Anywhere from during start-up to well into processing.
        let delay = Duration::from_millis(u64::from(20 + kill_rng.below(700)));
        std::thread::sleep(delay);
        daemon.signal(Signal::KILL);
        let mut daemon = daemon;
        daemon.wait_exit(Duration::from_secs(10)).expect("killed");
        if k % 5 == 4 {
            let db = state.db();
            eprintln!(
                "kill {:2} after {delay:?}: {} images, {} runs, {} running",
                k + 1,
                count(&db, "SELECT count(*) FROM images"),
                count(&db, "SELECT count(*) FROM runs"),
                count(&db, "SELECT count(*) FROM jobs WHERE state = 'running'"),
            );
        }
    }
    writer.join().expect("writer");
    eprintln!("{KILLS} kills done after {:?}", started.elapsed());

    // A last, uninterrupted run until everything is through, then a clean stop.
    let mut daemon = Daemon::spawn(&state.root, Some(&config), &[], &[]);
    daemon.http_addr(); // up
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let db = state.db();
        let done = count(&db, "SELECT count(*) FROM jobs WHERE state = 'done'");
        if done == i64::from(IMAGES) && names(&state.capture()).is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "stuck at {done} done; log:\n{}", daemon.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(daemon.terminate(Duration::from_secs(10)).code(), Some(0));
    eprintln!("all through after {:?}", started.elapsed());

    let db = state.db();
    assert_eq!(count(&db, "SELECT count(*) FROM images"), i64::from(IMAGES));
    assert_eq!(count(&db, "SELECT count(*) FROM runs"), i64::from(IMAGES), "none twice");
    assert_eq!(count(&db, "SELECT count(DISTINCT image_id) FROM runs"), i64::from(IMAGES));
    assert_eq!(count(&db, "SELECT count(*) FROM jobs WHERE state != 'done'"), 0, "none lost");
    let logged: HashSet<String> = {
        let mut stmt = db.conn().prepare("SELECT sha256 FROM images").expect("prepare");
        stmt.query_map([], |r| r.get(0)).expect("query").map(|r| r.expect("row")).collect()
    };
    assert_eq!(logged, expected);
    assert!(names(&state.quarantine()).is_empty(), "{:?}", names(&state.quarantine()));
    // Every image is archived (a kill between commit and move may leave a second copy of
    // the same content there, never a second result).
    let archived: HashSet<String> = names(&state.archive())
        .iter()
        .map(|n| sha256(&std::fs::read(state.archive().join(n)).expect("read")))
        .collect();
    assert_eq!(archived, expected);
    fracture_device::db::audit::verify_audit_chain(db.conn()).expect("audit chain");
    let starts = count(&db, "SELECT count(*) FROM audit WHERE action = 'daemon.start'");
    eprintln!("{starts} daemon starts logged; total {:?}", started.elapsed());
}
