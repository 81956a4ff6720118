//! The builder against the fake shim: what reaches the shim (precision flags, calibration
//! cache, profile, timing cache) and every configuration refused before it.

#![allow(clippy::unwrap_used)]

mod support;

use fracture_tensorrt::{BuildConfig, Precision, Profile, ShimErrorKind, TrtError};
use support::Fake;

fn onnx(dir: &std::path::Path) -> std::path::PathBuf {
    let p = dir.join("model.onnx");
    std::fs::write(&p, b"0123456789").unwrap();
    p
}

#[test]
fn fp16_and_int8_builds_pass_their_settings_to_the_shim() {
    let fake = Fake::new();
    let dir = fake.dir.path();
    let mut cfg = BuildConfig::new(onnx(dir), Precision::Fp16);
    cfg.profile = Some(Profile::square(416, 4));
    cfg.workspace_bytes = 1 << 30;
    cfg.timing_cache = Some(dir.join("timing.cache"));
    let plan = fake.shim.build_serialized(&cfg).unwrap();
    let text = String::from_utf8(plan.clone()).unwrap();
    assert!(text.starts_with("FRACTURE-FAKE-ENGINE\n"), "{text}");
    assert!(text.contains("fp16=1 int8=0 calibrated=0 onnx_bytes=10"), "{text}");
    assert!(dir.join("timing.cache").is_file(), "the timing cache is written back");
    fake.shim.deserialize_engine(&plan).unwrap();

    let cache = dir.join("calibration.cache");
    std::fs::write(&cache, b"TRT-100300-EntropyCalibration2\nimages: 3c010a14\n").unwrap();
    let mut cfg = BuildConfig::new(onnx(dir), Precision::Int8);
    cfg.calibration_cache = Some(cache);
    let text = String::from_utf8(fake.shim.build_serialized(&cfg).unwrap()).unwrap();
    assert!(text.contains("fp16=1 int8=1 calibrated=1"), "INT8 falls back to FP16: {text}");

    // INT8 from a Q/DQ model: no cache.
    let cfg = BuildConfig::new(onnx(dir), Precision::Int8);
    let text = String::from_utf8(fake.shim.build_serialized(&cfg).unwrap()).unwrap();
    assert!(text.contains("int8=1 calibrated=0"), "{text}");
    assert_eq!(fake.live_handles(), 0);
}

#[test]
fn bad_configurations_are_refused() {
    let fake = Fake::new();
    let dir = fake.dir.path();
    let model = onnx(dir);

    let e = fake
        .shim
        .build_serialized(&BuildConfig::new(dir.join("absent.onnx"), Precision::Fp16))
        .unwrap_err();
    assert!(matches!(&e, TrtError::Io { path, .. } if path.ends_with("absent.onnx")), "{e}");

    let mut cfg = BuildConfig::new(&model, Precision::Fp16);
    cfg.calibration_cache = Some(dir.join("c.cache"));
    let e = fake.shim.build_serialized(&cfg).unwrap_err();
    assert!(e.to_string().contains("only used for INT8"), "{e}");

    let mut cfg = BuildConfig::new(&model, Precision::Int8);
    cfg.calibration_cache = Some(dir.join("absent.cache"));
    let e = fake.shim.build_serialized(&cfg).unwrap_err();
    assert!(e.to_string().contains("calibration cache not found"), "{e}");

    let mut cfg = BuildConfig::new(&model, Precision::Fp16);
    cfg.profile = Some(Profile {
        min: vec![1, 3, 416, 416],
        opt: vec![1, 3, 320, 416],
        max: vec![1, 3, 416, 416],
    });
    let e = fake.shim.build_serialized(&cfg).unwrap_err();
    assert!(
        e.to_string().contains("dimension 2: need 1 <= min <= opt <= max, got 416 320 416"),
        "{e}"
    );
    cfg.profile = Some(Profile { min: vec![1, 3], opt: vec![1, 3, 4], max: vec![1, 3, 4] });
    let e = fake.shim.build_serialized(&cfg).unwrap_err();
    assert!(e.to_string().contains("ranks 2/3/3"), "{e}");

    let mut cfg = BuildConfig::new(&model, Precision::Fp16);
    cfg.profile = Some(Profile::square(416, 1));
    cfg.input_name = "input".into();
    let e = fake.shim.build_serialized(&cfg).unwrap_err();
    assert!(
        matches!(&e, TrtError::Shim { kind: ShimErrorKind::InvalidArgument, message, .. } if message.contains("no input named input")),
        "{e}"
    );

    let empty = dir.join("empty.onnx");
    std::fs::write(&empty, b"").unwrap();
    let e = fake.shim.build_serialized(&BuildConfig::new(&empty, Precision::Fp16)).unwrap_err();
    assert!(matches!(e, TrtError::Shim { kind: ShimErrorKind::Onnx, .. }), "{e}");
}

#[test]
fn precision_parses_and_prints() {
    assert_eq!("FP16".parse::<Precision>().unwrap(), Precision::Fp16);
    assert_eq!("int8".parse::<Precision>().unwrap().to_string(), "int8");
    assert!("fp32".parse::<Precision>().unwrap_err().contains("fp16 or int8"));
    assert_eq!(serde_json::to_string(&Precision::Int8).unwrap(), "\"int8\"");
}
