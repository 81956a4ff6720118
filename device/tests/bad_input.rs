//! Bad input of many kinds, dropped into the capture folder beside good files: each bad one
//! ends in quarantine/ with a reason file, every good one is processed and archived, and
//! ignored (hidden/temp) files are left alone.

mod common;

use std::os::unix::fs::{PermissionsExt, symlink};

use common::{
    DicomSpec, State, count, dicom, fast_config, jpeg, names, png, png_header_only, tiff,
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
    bad.push(("report.jpg", "unrecognised file format"));
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

    let good = ["good.png", "good.jpg", "good.tif", "good.dcm", "png-named.jpg", "IM000001"];
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
    let stats = ingest_once(&state.root, config).expect("ingest");
    assert!(bad.len() >= 16, "{} kinds", bad.len());
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
