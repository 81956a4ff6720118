//! The dataset loader on small hand-built FracAtlas-layout folders: clean data, every kind of
//! integrity issue, and malformed input that must give an error naming the file (never a panic).
#![allow(clippy::unwrap_used)]

use std::path::Path;

use fracture_host::dataset::{Dataset, DatasetError, IntegrityIssue};
use image::{ImageBuffer, Luma};
use rand::{Rng, SeedableRng};

const HEADER: &str = "image_id,hand,leg,hip,shoulder,mixed,hardware,multiscan,fractured,fracture_count,frontal,lateral,oblique\n";

fn write_png(path: &Path, w: u32, h: u32, seed: u8) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let img: ImageBuffer<Luma<u8>, Vec<u8>> =
        ImageBuffer::from_fn(w, h, |x, y| Luma([(x as u8).wrapping_mul(3) ^ (y as u8) ^ seed]));
    img.save(path).unwrap();
}

/// Three images: one fractured with two boxes, two negatives.
fn clean(root: &Path) {
    write_png(&root.join("images/Fractured/IMG0000001.png"), 40, 20, 1);
    write_png(&root.join("images/Non_fractured/IMG0000002.png"), 30, 30, 2);
    write_png(&root.join("images/Non_fractured/IMG0000003.png"), 30, 30, 3);
    std::fs::create_dir_all(root.join("Annotations/YOLO")).unwrap();
    std::fs::write(
        root.join("Annotations/YOLO/IMG0000001.txt"),
        "0 0.5 0.5 0.5 0.5\n0 0.25 0.25 0.1 0.2\n",
    )
    .unwrap();
    std::fs::write(root.join("Annotations/YOLO/IMG0000002.txt"), "").unwrap();
    std::fs::write(root.join("Annotations/YOLO/IMG0000003.txt"), "").unwrap();
    std::fs::write(
        root.join("dataset.csv"),
        format!(
            "{HEADER}IMG0000001.png,1,0,0,0,0,0,0,1,2,1,0,0\nIMG0000002.png,0,1,0,0,0,1,0,0,0,0,1,0\nIMG0000003.png,0,0,1,0,0,0,0,0,0,0,0,1\n"
        ),
    )
    .unwrap();
}

#[test]
fn clean_dataset_loads_without_issues() {
    let dir = tempfile::tempdir().unwrap();
    clean(dir.path());
    let ds = Dataset::load(dir.path()).unwrap();
    assert_eq!(ds.images.len(), 3);
    assert!(ds.issues.is_empty(), "{:?}", ds.issues);
    assert_eq!(ds.fractured_count(), 1);
    assert_eq!(ds.box_count(), 2);
    let r = &ds.images[0];
    assert_eq!((r.width, r.height), (40, 20));
    assert_eq!(r.boxes[0].x1, 10.0);
    assert_eq!(r.boxes[0].y2, 15.0);
    assert_eq!(r.sha256.len(), 64);
    assert!(r.in_fractured_folder);
}

#[test]
fn integrity_issues_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    clean(root);
    // IMG3 becomes a byte copy of IMG2 (a duplicate).
    std::fs::copy(
        root.join("images/Non_fractured/IMG0000002.png"),
        root.join("images/Non_fractured/IMG0000003.png"),
    )
    .unwrap();
    // IMG2's label gains a box while the csv says non-fractured, count 0.
    std::fs::write(root.join("Annotations/YOLO/IMG0000002.txt"), "0 0.5 0.5 0.2 0.2\n").unwrap();
    // IMG1's csv row says 3 fractures; the label has 2.
    let csv = std::fs::read_to_string(root.join("dataset.csv"))
        .unwrap()
        .replace(",1,2,1,0,0", ",1,3,1,0,0");
    std::fs::write(root.join("dataset.csv"), csv).unwrap();
    // A file nobody listed, a hidden file (ignored), and a missing label.
    write_png(&root.join("images/Fractured/IMG0000009.png"), 8, 8, 9);
    std::fs::write(root.join("images/Fractured/.DS_Store"), b"x").unwrap();
    std::fs::remove_file(root.join("Annotations/YOLO/IMG0000003.txt")).unwrap();

    let ds = Dataset::load(root).unwrap();
    let has = |pred: &dyn Fn(&IntegrityIssue) -> bool| ds.issues.iter().any(pred);
    assert!(has(
        &|i| matches!(i, IntegrityIssue::Duplicate { images, .. } if images == &vec![1, 2])
    ));
    assert!(has(&|i| matches!(
        i,
        IntegrityIssue::CountMismatch { csv_count: 3, label_boxes: 2, .. }
    )));
    assert!(has(&|i| matches!(
        i,
        IntegrityIssue::LabelFlagMismatch { fractured: false, label_boxes: 1, .. }
    )));
    assert!(has(
        &|i| matches!(i, IntegrityIssue::MissingLabel { image_id, .. } if image_id == "IMG0000003.png")
    ));
    assert!(has(
        &|i| matches!(i, IntegrityIssue::Unlisted { path } if path.ends_with("IMG0000009.png"))
    ));
    assert!(!has(
        &|i| matches!(i, IntegrityIssue::Unlisted { path } if path.ends_with(".DS_Store"))
    ));
    // Every issue prints as one readable line.
    for i in &ds.issues {
        assert!(!i.to_string().is_empty());
    }

    // Moving the fractured image to the other folder is a folder mismatch.
    std::fs::rename(
        root.join("images/Fractured/IMG0000001.png"),
        root.join("images/Non_fractured/IMG0000001.png"),
    )
    .unwrap();
    let ds = Dataset::load(root).unwrap();
    assert!(ds.issues.iter().any(|i| matches!(
        i,
        IntegrityIssue::FolderMismatch { csv_fractured: true, in_fractured_folder: false, .. }
    )));
}

#[test]
fn malformed_input_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let err = Dataset::load(&root.join("nope")).unwrap_err();
    assert!(matches!(err, DatasetError::NotADataset { .. }), "{err}");
    assert!(Dataset::load(root).unwrap_err().to_string().contains("dataset.csv is missing"));

    clean(root);
    std::fs::write(
        root.join("Annotations/YOLO/IMG0000001.txt"),
        "0 0.5 0.5 0.5 0.5\n0 0.5 0.5 0.5\n",
    )
    .unwrap();
    let err = Dataset::load(root).unwrap_err().to_string();
    assert!(err.contains("IMG0000001.txt:2"), "{err}");

    clean(root);
    std::fs::write(
        root.join("images/Non_fractured/IMG0000002.png"),
        b"\x89PNG\r\n\x1a\n truncated",
    )
    .unwrap();
    let err = Dataset::load(root).unwrap_err().to_string();
    assert!(err.contains("IMG0000002.png"), "{err}");

    clean(root);
    std::fs::remove_file(root.join("images/Non_fractured/IMG0000003.png")).unwrap();
    let err = Dataset::load(root).unwrap_err().to_string();
    assert!(err.contains("dataset.csv:4") && err.contains("IMG0000003.png"), "{err}");
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for round in 0..60 {
        clean(root);
        let n = rng.random_range(0..200);
        let mut junk: Vec<u8> = (0..n).map(|_| rng.random()).collect();
        if round % 2 == 0 {
            // Mostly-valid text with random corruption is the harder case for parsers.
            junk = format!("{HEADER}IMG0000001.png,1,0,0,0,0,0,0,1,2,1,0,0\n").into_bytes();
            for _ in 0..3 {
                let at = rng.random_range(0..junk.len());
                junk[at] = rng.random();
            }
        }
        let target = match round % 3 {
            0 => root.join("dataset.csv"),
            1 => root.join("Annotations/YOLO/IMG0000001.txt"),
            _ => root.join("images/Fractured/IMG0000001.png"),
        };
        std::fs::write(&target, &junk).unwrap();
        // Either loads or gives an error naming the damaged file; never panics.
        if let Err(e) = Dataset::load(root) {
            let msg = e.to_string();
            assert!(
                msg.contains("dataset.csv") || msg.contains("IMG0000001"),
                "round {round}: {msg}"
            );
        }
    }
}
