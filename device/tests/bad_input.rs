//! Bad input of many kinds, dropped into the capture folder beside good files: each bad one
//! ends in quarantine/ with a reason file, every good one is processed and archived, and
//! ignored (hidden/temp) files are left alone.

mod common;

use std::os::unix::fs::{PermissionsExt, symlink};

use common::{
    DicomSpec, State, count, dicom, fast_config, jpeg, names, png, png_header_only, png16, tiff,
    tiff_header_only,
};
use fracture_device::db::audit::verify_audit_chain;
use fracture_device::worker::ingest_once;

fn truncated(mut bytes: Vec<u8>) -> Vec<u8> {
    bytes.truncate(bytes.len() / 2);
    bytes
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

#[test]
fn bad_input_is_quarantined_with_a_reason_and_good_input_still_flows() {
    let state = State::new();
    let capture = state.capture();
    let outside = state.tmp.path().join("outside.png");
    std::fs::write(&outside, png(99)).expect("write");
    let write =
        |name: &str, bytes: &[u8]| std::fs::write(capture.join(name), bytes).expect("write");

    // (file name, what its reason file must mention)
    let mut bad: Vec<(&str, &str)> = Vec::new();
    write("truncated.png", &truncated(png(1)));
    bad.push(("truncated.png", "png"));
    write("truncated.jpg", &truncated(jpeg(2)));
    bad.push(("truncated.jpg", "jpeg"));
    write("truncated.tif", &truncated(tiff(3)));
    bad.push(("truncated.tif", "tiff"));
    write("empty.png", b"");
    bad.push(("empty.png", "empty file"));
    let noise: Vec<u8> =
        (0..4096_u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    write("noise.png", &noise);
    bad.push(("noise.png", "unrecognised file format"));
    write("bomb.png", &png_header_only(60_000, 60_000));
    bad.push(("bomb.png", "60000x60000"));
    write("report.jpg", b"%PDF-1.4 this is a report, not an image\n");
    bad.push(("report.jpg", "unsupported format: the content is PDF"));
    std::fs::create_dir(capture.join("folder.png")).expect("mkdir");
    std::fs::write(capture.join("folder.png").join("inner.png"), png(4)).expect("write");
    bad.push(("folder.png", "directory named like an image"));
    symlink(&outside, capture.join("escape.png")).expect("symlink");
    bad.push(("escape.png", "outside the capture folder"));
    symlink(state.tmp.path().join("nowhere.png"), capture.join("dangling.png")).expect("symlink");
    bad.push(("dangling.png", "dangling"));
    write("nopixels.dcm", &dicom(&DicomSpec { pixels: None, ..DicomSpec::default() }));
    bad.push(("nopixels.dcm", "no pixel data"));
    write(
        "syntax.dcm",
        &dicom(&DicomSpec { transfer_syntax: "1.2.840.99999.9.9.9", ..DicomSpec::default() }),
    );
    bad.push(("syntax.dcm", "unsupported transfer syntax 1.2.840.99999.9.9.9"));
    write("truncated.dcm", &truncated(dicom(&DicomSpec::default())));
    bad.push(("truncated.dcm", "DICOM"));
    write("ct.dcm", &dicom(&DicomSpec { modality: "CT", ..DicomSpec::default() }));
    bad.push(("ct.dcm", "not projection radiography"));
    write("colour.dcm", &dicom(&DicomSpec { photometric: "RGB", ..DicomSpec::default() }));
    bad.push(("colour.dcm", "photometric interpretation RGB"));
    write("huge.png", &vec![0_u8; 300_000]);
    bad.push(("huge.png", "over the 200000-byte limit"));
    if std::process::Command::new("mkfifo")
        .arg(capture.join("pipe.png"))
        .status()
        .is_ok_and(|s| s.success())
    {
        bad.push(("pipe.png", "not a regular file"));
    }
    if !is_root() {
        write("locked.png", &png(5));
        std::fs::set_permissions(
            capture.join("locked.png"),
            std::fs::Permissions::from_mode(0o000),
        )
        .expect("chmod");
        bad.push(("locked.png", "permission denied"));
    } else {
        eprintln!("running as root: the unreadable-file case is skipped (root reads anything)");
    }

    // More kinds, each a real way a file goes wrong.
    write("zero.tif", &tiff_header_only(0, 0));
    bad.push(("zero.tif", "tiff"));
    let mut bad_crc = png(6);
    let last_ihdr_crc_byte = 8 + 4 + 4 + 13 + 3; // signature, length, type, data, CRC
    bad_crc[last_ihdr_crc_byte] ^= 0xFF;
    write("badcrc.png", &bad_crc);
    bad.push(("badcrc.png", "png"));
    write("soi-only.jpg", &[0xFF, 0xD8, 0xFF, 0xE0]);
    bad.push(("soi-only.jpg", "jpeg"));
    write("screenshot.gif", b"GIF89a\x20\x00\x10\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00;");
    bad.push(("screenshot.gif", "content is GIF"));
    let mut bmp = b"BM".to_vec();
    bmp.extend_from_slice(&58_u32.to_le_bytes());
    bmp.extend_from_slice(&[0; 4]);
    bmp.extend_from_slice(&54_u32.to_le_bytes());
    bmp.resize(58, 0);
    write("xray.bmp", &bmp);
    bad.push(("xray.bmp", "content is BMP"));
    write("photo.webp", b"RIFF\x1a\x00\x00\x00WEBPVP8L\x0d\x00\x00\x00\x2f\x00\x00\x00\x10\x07\x10\x11\x11\x88\x88\xfe\x07\x00");
    bad.push(("photo.webp", "content is WebP"));
    write("bundle.png", b"PK\x03\x04\x14\x00\x00\x00\x08\x00 not really a png");
    bad.push(("bundle.png", "content is ZIP archive"));
    write("notes.dcm", b"Patient positioned supine; see report.\n");
    bad.push(("notes.dcm", "unrecognised file format"));
    write(
        "rgb.dcm",
        &dicom(&DicomSpec {
            samples_per_pixel: 3,
            photometric: "RGB",
            pixels: Some(vec![100; 18]),
            instance: "2.25.2001",
            ..DicomSpec::default()
        }),
    );
    bad.push(("rgb.dcm", "3 sample(s) per pixel"));
    write(
        "norows.dcm",
        &dicom(&DicomSpec {
            rows: 0,
            pixels: Some(vec![]),
            instance: "2.25.2002",
            ..DicomSpec::default()
        }),
    );
    bad.push(("norows.dcm", "empty image 3x0"));
    write(
        "giant.dcm",
        &dicom(&DicomSpec {
            rows: 60_000,
            cols: 60_000,
            instance: "2.25.2003",
            ..DicomSpec::default()
        }),
    );
    bad.push(("giant.dcm", "60000x60000"));
    write(
        "bits32.dcm",
        &dicom(&DicomSpec {
            bits_allocated: Some(32),
            instance: "2.25.2004",
            ..DicomSpec::default()
        }),
    );
    bad.push(("bits32.dcm", "bits allocated 32"));
    let mut preamble_only = vec![0_u8; 128];
    preamble_only.extend_from_slice(b"DICM");
    write("preamble.dcm", &preamble_only);
    bad.push(("preamble.dcm", "not a readable DICOM file"));
    write("nowidth.png", &png_header_only(0, 32));
    bad.push(("nowidth.png", "png"));
    write("inflates.png", &png_header_only(3000, 3000));
    bad.push(("inflates.png", "more than the 8 MiB allowed per image"));
    write("truncated-again.png", &truncated(png(1)));
    // Same bytes as truncated.png: whichever is second is refused for being the same content.
    bad.push(("truncated-again.png", "png"));

    let good = [
        "good.png",
        "good.jpg",
        "good.tif",
        "good.dcm",
        "png-named.jpg",
        "IM000001",
        "sixteen.png",
    ];
    write("sixteen.png", &png16(7));
    write("good.png", &png(10));
    write("good.jpg", &jpeg(11));
    write("good.tif", &tiff(12));
    write(
        "good.dcm",
        &dicom(&DicomSpec { window: Some((1500.0, 1001.0)), ..DicomSpec::default() }),
    );
    write("png-named.jpg", &png(13)); // wrong extension, right content: accepted
    write("IM000001", &dicom(&DicomSpec { instance: "2.25.1002", ..DicomSpec::default() }));

    let ignored = [".hidden.png", "copying.png.tmp", "upload.part", "~lock.png"];
    for name in ignored {
        write(name, &png(20));
    }

    let mut config = fast_config();
    config.ingest.max_file_bytes = 200_000;
    config.ingest.max_decode_bytes = 8 << 20;
    let stats = ingest_once(&state.root, config).expect("ingest");
    assert!(bad.len() >= 25, "{} kinds", bad.len());
    eprintln!("{} kinds of bad input", bad.len());
    assert_eq!(stats.processed, good.len() as u64, "{stats:?}");
    assert_eq!(stats.quarantined, bad.len() as u64, "{stats:?}");

    let quarantined = names(&state.quarantine());
    for (name, why) in &bad {
        assert!(
            quarantined.contains(&name.to_string()),
            "{name} not in quarantine: {quarantined:?}"
        );
        let reason = std::fs::read_to_string(state.quarantine().join(format!("{name}.reason.txt")))
            .unwrap_or_else(|e| panic!("{name}: no reason file: {e}"));
        eprintln!("{name:>16} -> {}", reason.lines().next().unwrap_or_default());
        assert!(
            reason.to_lowercase().contains(&why.to_lowercase()),
            "{name}: reason {reason:?} does not mention {why:?}"
        );
    }
    let reasons: Vec<String> = ["truncated.png", "truncated-again.png"]
        .iter()
        .map(|n| {
            std::fs::read_to_string(state.quarantine().join(format!("{n}.reason.txt")))
                .expect("reason")
        })
        .collect();
    assert!(reasons.iter().any(|r| r.contains("same content as job")), "{reasons:?}");
    assert_eq!(names(&state.archive()), {
        let mut g: Vec<String> = good.iter().map(|s| s.to_string()).collect();
        g.sort();
        g
    });
    // Only the ignored files stay in capture; the symlink's target outside is untouched.
    let mut left = names(&capture);
    left.sort();
    let mut want: Vec<String> = ignored.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(left, want);
    assert_eq!(std::fs::read(&outside).expect("outside"), png(99));

    let db = state.db();
    assert_eq!(
        count(&db, "SELECT count(*) FROM runs WHERE status = 'not_analysed'"),
        good.len() as i64
    );
    assert!(count(&db, "SELECT count(*) FROM errors") >= bad.len() as i64);
    let png_named: String = db
        .conn()
        .query_row("SELECT format FROM images WHERE original_name = 'png-named.jpg'", [], |r| {
            r.get(0)
        })
        .expect("row");
    assert_eq!(png_named, "png");
    let archived = fracture_device::queue::disposed_path(&db, &common::sha256(&png(13)))
        .expect("query")
        .expect("recorded");
    assert_eq!(archived, state.archive().join("png-named.jpg"));
    // DICOM UIDs are recorded; patient attributes are nowhere in the database.
    let acquisition: String = db
        .conn()
        .query_row("SELECT acquisition FROM images WHERE original_name = 'good.dcm'", [], |r| {
            r.get(0)
        })
        .expect("row");
    assert!(acquisition.contains("2.25.77") && acquisition.contains("2.25.1001"));
    drop(db);
    let raw = std::fs::read(state.root.join("fractured.sqlite3")).expect("db bytes");
    let wal = std::fs::read(state.root.join("fractured.sqlite3-wal")).unwrap_or_default();
    for haystack in [&raw, &wal] {
        let text = String::from_utf8_lossy(haystack);
        assert!(!text.contains(common::PATIENT_NAME) && !text.contains(common::PATIENT_ID));
    }
    verify_audit_chain(state.db().conn()).expect("audit chain");
}

#[test]
fn a_restart_after_commit_archives_without_a_second_result() {
    let state = State::new();
    let bytes = png(1);
    std::fs::write(state.capture().join("a.png"), &bytes).expect("write");
    ingest_once(&state.root, fast_config()).expect("first");
    // As if the daemon died after committing but before moving the file: put it back.
    std::fs::copy(state.archive().join("a.png"), state.capture().join("a.png")).expect("copy");
    // And the same content arrives under another name.
    std::fs::write(state.capture().join("again.png"), &bytes).expect("write");
    let stats = ingest_once(&state.root, fast_config()).expect("second");
    assert_eq!((stats.processed, stats.archived), (0, 2), "{stats:?}");
    let db = state.db();
    assert_eq!(count(&db, "SELECT count(*) FROM runs"), 1);
    assert_eq!(names(&state.archive()), ["a-1.png", "a.png", "again.png"]);
    assert!(names(&state.capture()).is_empty());
}

/// A worker started and ready for stepwise use (scan, then process jobs one by one).
fn stepwise(state: &State) -> fracture_device::worker::Worker<fracture_device::analyzer::NoModel> {
    let mut config = fast_config();
    config.ingest.stable_ms = 0;
    let mut worker = fracture_device::worker::Worker::open(
        &state.root,
        config,
        fracture_device::analyzer::NoModel,
    )
    .expect("open");
    worker.start("test").expect("start");
    worker
}

#[test]
fn a_file_that_vanishes_between_scan_and_read_fails_and_comes_back_if_it_returns() {
    let state = State::new();
    let gone = state.capture().join("gone.png");
    std::fs::write(&gone, png(1)).expect("write");
    std::fs::write(state.capture().join("stays.png"), png(2)).expect("write");
    let mut worker = stepwise(&state);
    assert_eq!(worker.scan().expect("scan").offered, 2);
    std::fs::remove_file(&gone).expect("rm");
    while worker.process_next().expect("process") {}
    let db = state.db();
    let (job_state, error) = fracture_device::queue::state_of(&db, &common::sha256(&png(1)))
        .expect("query")
        .expect("known");
    assert_eq!(job_state.as_str(), "failed");
    assert!(error.is_some_and(|e| e.contains("vanished")));
    assert_eq!(names(&state.archive()), ["stays.png"], "the other file went on");
    assert!(names(&state.quarantine()).is_empty(), "nothing to quarantine");
    // It comes back (a re-send): processed, once.
    std::fs::write(&gone, png(1)).expect("write again");
    let stats = ingest_once(&state.root, fast_config()).expect("ingest");
    assert_eq!(stats.processed, 1);
    assert_eq!(count(&db, "SELECT count(*) FROM runs"), 2);
}

#[test]
fn a_file_rewritten_after_it_was_queued_is_processed_as_its_new_content() {
    let state = State::new();
    let file = state.capture().join("rewritten.png");
    std::fs::write(&file, png(1)).expect("write");
    let mut worker = stepwise(&state);
    assert_eq!(worker.scan().expect("scan").offered, 1);
    std::fs::write(&file, png(2)).expect("rewrite"); // hash changes under the queued job
    assert!(worker.process_next().expect("process"));
    let db = state.db();
    let (old_state, error) = fracture_device::queue::state_of(&db, &common::sha256(&png(1)))
        .expect("query")
        .expect("known");
    assert_eq!(old_state.as_str(), "failed");
    assert!(error.is_some_and(|e| e.contains("changed after it was queued")));
    assert_eq!(names(&state.capture()), ["rewritten.png"], "not moved: it is new content");
    drop(worker);
    let stats = ingest_once(&state.root, fast_config()).expect("ingest");
    assert_eq!(stats.processed, 1);
    let (new_state, _) = fracture_device::queue::state_of(&db, &common::sha256(&png(2)))
        .expect("query")
        .expect("known");
    assert_eq!(new_state.as_str(), "done");
    assert_eq!(count(&db, "SELECT count(*) FROM runs"), 1, "one result, for the content read");
    assert_eq!(names(&state.archive()), ["rewritten.png"]);
}
