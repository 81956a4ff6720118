//! The scanner source with its file-backed fake (a replay folder standing in for a V4L2
//! device): frames in each supported format become 16-bit PNG captures exactly once per
//! new still picture, a trigger captures the next frame, and a running daemon with the demo
//! bundle ingests and analyses what the scanner captured like any dropped file.

mod common;

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use common::daemon::{self, Daemon, FAST};
use common::review::{install_demo_bundle, wait_processed};
use fracture_device::db::Db;
use fracture_device::scanner::frame::{PixelFormat, RawFrame};
use fracture_device::scanner::source::ReplaySource;
use fracture_device::scanner::stability::StabilityConfig;
use fracture_device::scanner::{self, CapturePolicy};
use fracture_host::synth::{self, SynthConfig};

/// A phantom as 16-bit grey.
fn phantom(index: usize) -> (u32, u32, Vec<u16>) {
    let config = SynthConfig { png16: true, size_min: 224, size_max: 256, ..Default::default() };
    let p = synth::generate(&config, index);
    (p.width, p.height, p.pixels)
}

/// The bytes a driver would deliver for `pixels` in `format`.
fn encode(format: PixelFormat, w: u32, h: u32, pixels: &[u16]) -> Vec<u8> {
    match format {
        PixelFormat::Y16 => pixels.iter().flat_map(|v| v.to_le_bytes()).collect(),
        PixelFormat::Grey => pixels.iter().map(|v| (v >> 8) as u8).collect(),
        PixelFormat::Yuyv => pixels.iter().flat_map(|v| [(v >> 8) as u8, 128]).collect(),
        PixelFormat::Mjpg => {
            let g = image::GrayImage::from_fn(w, h, |x, y| {
                image::Luma([(pixels[(y * w + x) as usize] >> 8) as u8])
            });
            let mut out = Vec::new();
            g.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Jpeg)
                .expect("jpeg");
            out
        }
    }
}

/// Writes `count` identical frames of one picture into the replay folder.
fn frames(dir: &Path, first: usize, count: usize, format: PixelFormat, index: usize) -> RawFrame {
    let (w, h, pixels) = phantom(index);
    let data = encode(format, w, h, &pixels);
    for i in first..first + count {
        std::fs::write(dir.join(format!("{i:04}.{w}x{h}.{format}")), &data).expect("frame");
    }
    RawFrame { format, width: w, height: h, stride: 0, data }
}

fn captures(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .expect("capture dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "png"))
        .collect();
    v.sort();
    v
}

const STABLE: StabilityConfig =
    StabilityConfig { stable_frames: 3, stable_threshold: 0.002, change_threshold: 0.02 };

#[test]
fn each_new_still_picture_is_captured_once_in_every_format() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let replay = tmp.path().join("replay");
    let capture = tmp.path().join("capture");
    std::fs::create_dir_all(&replay).expect("replay");
    std::fs::create_dir_all(&capture).expect("capture");
    // A static scene at start (not captured), then four pictures, each held still.
    frames(&replay, 0, 5, PixelFormat::Y16, 0);
    let expected: Vec<RawFrame> = [
        (PixelFormat::Y16, 1),
        (PixelFormat::Yuyv, 2),
        (PixelFormat::Mjpg, 3),
        (PixelFormat::Grey, 4),
    ]
    .iter()
    .enumerate()
    .map(|(k, (format, index))| frames(&replay, 10 + 10 * k, 8, *format, *index))
    .collect();
    std::fs::write(replay.join("0090.8x8.Y16"), [0_u8; 7]).expect("a short frame");

    let mut source = ReplaySource::open(&replay, Duration::ZERO).expect("replay");
    let stop = AtomicBool::new(false);
    let trigger = AtomicBool::new(false);
    let stats = scanner::run(&mut source, CapturePolicy::Stable(STABLE), &capture, &stop, &trigger);
    assert_eq!(stats.frames, 5 + 4 * 8 + 1);
    assert_eq!(stats.captured, 4, "{stats:?}");
    assert_eq!(stats.bad_frames, 1, "the short frame is reported, not fatal");
    let files = captures(&capture);
    assert_eq!(files.len(), 4);
    for (file, raw) in files.iter().zip(&expected) {
        let img = image::open(file).expect("capture decodes").into_luma16();
        let want = raw.to_gray16().expect("gray");
        assert_eq!((img.width(), img.height()), (want.width, want.height), "{}", file.display());
        assert!(img.into_raw() == want.pixels, "{} holds the frame", file.display());
    }
    let hidden = std::fs::read_dir(&capture).expect("dir").count();
    assert_eq!(hidden, 4, "no temporary file left behind");
}

#[test]
fn a_trigger_captures_the_next_frame() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let replay = tmp.path().join("replay");
    std::fs::create_dir_all(&replay).expect("replay");
    frames(&replay, 0, 4, PixelFormat::Grey, 7);
    let mut source = ReplaySource::open(&replay, Duration::ZERO).expect("replay");
    let trigger = AtomicBool::new(true);
    let stats = scanner::run(
        &mut source,
        CapturePolicy::Trigger,
        tmp.path(),
        &AtomicBool::new(false),
        &trigger,
    );
    assert_eq!((stats.frames, stats.captured), (4, 1));
    assert_eq!(captures(tmp.path()).len(), 1);
}

#[test]
fn the_daemon_analyses_what_the_scanner_captures() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("state");
    let replay = tmp.path().join("replay");
    std::fs::create_dir_all(&replay).expect("replay");
    install_demo_bundle(&root.join("bundles"), 0.05);
    frames(&replay, 0, 3, PixelFormat::Y16, 0);
    frames(&replay, 10, 6, PixelFormat::Y16, 1);
    frames(&replay, 20, 6, PixelFormat::Mjpg, 2);
    let config = format!(
        "{FAST}[scanner]\nenabled = true\ndevice = \"replay:{}\"\nstable_frames = 3\n\
         stable_threshold = 0.002\nchange_threshold = 0.02\nreplay_interval_ms = 10\n",
        replay.display()
    );
    let config = daemon::config_file(tmp.path(), "scanner.toml", &config);
    let d = Daemon::spawn(&root, Some(&config), &[], &[]);
    wait_processed(&root.join("fractured.sqlite3"), 2, Duration::from_secs(60));
    assert!(d.log().contains("scanner started"), "{}", d.log());
    let db = Db::open_existing(&root.join("fractured.sqlite3")).expect("db");
    let analysed: i64 = db
        .conn()
        .query_row(
            "SELECT count(*) FROM images i JOIN runs r ON r.image_id = i.id
             WHERE i.original_name LIKE 'scan-%.png' AND r.status = 'analysed'",
            [],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(analysed, 2, "both scanned pictures analysed with the bundle");
}
