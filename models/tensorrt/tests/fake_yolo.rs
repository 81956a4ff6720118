//! The fake's YOLO-shaped engine kind (what the runtime, daemon and host tests build from a
//! marked "ONNX" file) and the safe switch handles other crates' tests use.

#![allow(clippy::unwrap_used)]

use fracture_tensorrt::fake::{yolo_marker, yolo_output};
use fracture_tensorrt::{BuildConfig, FakeShim, Precision, Profile, Shim, TensorMode};

#[test]
fn a_marked_model_builds_a_yolo_engine_whose_output_follows_the_formula() {
    let dir = tempfile::tempdir().unwrap();
    let lib = FakeShim::private_copy(dir.path()).unwrap();
    let shim = Shim::load_exact(&lib).unwrap();
    let fake = FakeShim::open(&lib).unwrap();
    let onnx = dir.path().join("model.onnx");
    std::fs::write(&onnx, yolo_marker(2, 7)).unwrap();
    let config = BuildConfig {
        profile: Some(Profile::square(32, 1)),
        ..BuildConfig::new(&onnx, Precision::Fp16)
    };
    let plan = shim.build_serialized(&config).unwrap();
    let engine = shim.deserialize_engine(&plan).unwrap();
    let io: Vec<(&str, TensorMode, &[i64])> =
        engine.io_tensors().iter().map(|t| (t.name.as_str(), t.mode, t.shape.as_slice())).collect();
    assert_eq!(
        io,
        [
            ("images", TensorMode::Input, &[-1, 3, -1, -1][..]),
            ("output0", TensorMode::Output, &[-1, 6, 7][..])
        ]
    );
    let mut ctx = engine.create_context().unwrap();
    let stream = shim.create_stream().unwrap();
    let image: Vec<f32> = (0..3 * 32 * 48).map(|i| (i % 97) as f32 / 97.0).collect();
    ctx.write_input("images", &[1, 3, 32, 48], &image).unwrap();
    ctx.run(&stream).unwrap();
    let out = ctx.read_tensor::<f32>("output0").unwrap();
    assert_eq!(out.shape, [1, 6, 7]);
    assert_eq!(out.data, yolo_output(&image, 32, 48, 2, 7));
    // No num_dets on this kind.
    assert!(ctx.read_tensor::<i32>("num_dets").is_err());
    drop((ctx, stream, engine));
    assert_eq!(fake.live_handles().unwrap(), 0);
    // A corrupt YOLO line is refused, not guessed.
    let bad = shim.deserialize_engine(b"FRACTURE-FAKE-ENGINE\nyolo nc=0 anchors=3\n");
    assert!(bad.unwrap_err().to_string().contains("bad fake YOLO engine"));
    // Unmarked models keep the plain engine.
    std::fs::write(&onnx, b"onnx").unwrap();
    let plain = shim.deserialize_engine(&shim.build_serialized(&config).unwrap()).unwrap();
    assert_eq!(plain.io_tensors().len(), 3);
}

#[test]
fn switch_handles_refuse_what_is_not_the_fake() {
    let dir = tempfile::tempdir().unwrap();
    let e = FakeShim::open(&dir.path().join("missing.so")).unwrap_err();
    assert!(e.to_string().contains("cannot open"), "{e}");
    let text = dir.path().join("text.so");
    std::fs::write(&text, "not a library").unwrap();
    assert!(FakeShim::open(&text).is_err());
    let lib = FakeShim::private_copy(dir.path()).unwrap();
    let fake = FakeShim::open(&lib).unwrap();
    assert!(fake.set_trt_version("10\0.3").is_err(), "NUL bytes are refused");
    fake.set_trt_version("10.9.1").unwrap();
    fake.set_device("Thor", 11, 0).unwrap();
    let shim = Shim::load_exact(&lib).unwrap();
    assert_eq!(shim.trt_version().unwrap(), "10.9.1");
    assert_eq!(shim.device_info(0).unwrap().compute_capability(), "11.0");
    fake.set_failure(Some("trt_stream_create"), 3).unwrap();
    assert!(shim.create_stream().is_err());
    fake.set_failure(None, 0).unwrap();
    assert!(shim.create_stream().is_ok());
}
