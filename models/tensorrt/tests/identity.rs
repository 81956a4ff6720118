//! Engine identity: written next to the engine, checked on load; a mismatch in any field is
//! refused and the error names that field; a sidecar that describes other bytes is refused.

#![allow(clippy::unwrap_used)]

mod support;

use fracture_tensorrt::{
    BuildConfig, EngineIdentity, IdentityField, Precision, TrtError, build_and_write,
    identity_path, load_engine_checked, read_engine, write_engine,
};
use support::{FAKE_PLAN, Fake};

const BUNDLE: &str = "5f2c0e7d0a9b4f0c8b1e2d3c4b5a69788796a5b4c3d2e1f00112233445566778";

fn built_here(fake: &Fake, precision: Precision) -> EngineIdentity {
    EngineIdentity::current(&fake.shim, 0, BUNDLE, precision).unwrap()
}

#[test]
fn identity_is_written_next_to_the_engine_and_round_trips() {
    let fake = Fake::new();
    let id = built_here(&fake, Precision::Fp16);
    assert_eq!(id.trt_version, "10.3.0");
    assert_eq!(id.compute_capability, "8.7");
    let engine = fake.dir.path().join("engines").join("model.fp16.engine");
    write_engine(&engine, FAKE_PLAN, &id).unwrap();
    let sidecar = identity_path(&engine);
    assert!(sidecar.ends_with("model.fp16.engine.identity.json"));
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&sidecar).unwrap()).unwrap();
    for key in [
        "format",
        "bundle_sha256",
        "trt_version",
        "gpu_name",
        "compute_capability",
        "precision",
        "engine_sha256",
    ] {
        assert!(json.get(key).is_some(), "{key} in {json}");
    }
    assert_eq!(json["precision"], "fp16");
    let (plan, read) = read_engine(&engine).unwrap();
    assert_eq!((plan.as_slice(), &read), (FAKE_PLAN, &id));
    let loaded = load_engine_checked(&fake.shim, &engine, &id).unwrap();
    assert_eq!(loaded.io_tensors().len(), 3);
}

#[test]
fn each_differing_field_is_refused_by_name() {
    let fake = Fake::new();
    let engine = fake.dir.path().join("e.engine");
    write_engine(&engine, FAKE_PLAN, &built_here(&fake, Precision::Fp16)).unwrap();

    let check = |expected: &EngineIdentity, field: IdentityField, words: &str| {
        let e = load_engine_checked(&fake.shim, &engine, expected).unwrap_err();
        let TrtError::IdentityMismatch { mismatches, .. } = &e else { panic!("{e}") };
        assert_eq!(mismatches.iter().map(|m| m.field).collect::<Vec<_>>(), vec![field], "{e}");
        let text = e.to_string();
        assert!(text.contains(words), "{text}");
        assert!(text.contains("rebuild it"), "{text}");
    };

    let mut other_bundle = built_here(&fake, Precision::Fp16);
    other_bundle.bundle_sha256 = "0".repeat(64);
    check(
        &other_bundle,
        IdentityField::BundleSha256,
        &format!("bundle sha256 differs (engine: {BUNDLE}, needed: {})", "0".repeat(64)),
    );

    check(
        &built_here(&fake, Precision::Int8),
        IdentityField::Precision,
        "precision differs (engine: fp16, needed: int8)",
    );

    fake.set_trt_version("10.7.0");
    check(
        &built_here(&fake, Precision::Fp16),
        IdentityField::TrtVersion,
        "TensorRT version differs (engine: 10.3.0, needed: 10.7.0)",
    );
    fake.set_trt_version("10.3.0");

    fake.set_device("NVIDIA GeForce RTX 4090", 8, 7);
    check(
        &built_here(&fake, Precision::Fp16),
        IdentityField::GpuName,
        "GPU name differs (engine: Fake GPU (fracture-tensorrt tests), needed: NVIDIA GeForce RTX 4090)",
    );

    fake.set_device("Fake GPU (fracture-tensorrt tests)", 8, 9);
    check(
        &built_here(&fake, Precision::Fp16),
        IdentityField::ComputeCapability,
        "compute capability differs (engine: 8.7, needed: 8.9)",
    );

    // Several at once: all named.
    fake.set_device("Orin", 8, 7);
    let e =
        load_engine_checked(&fake.shim, &engine, &built_here(&fake, Precision::Int8)).unwrap_err();
    let text = e.to_string();
    assert!(text.contains("GPU name differs") && text.contains("precision differs"), "{text}");

    fake.set_device("Fake GPU (fracture-tensorrt tests)", 8, 7);
    load_engine_checked(&fake.shim, &engine, &built_here(&fake, Precision::Fp16)).unwrap();
}

#[test]
fn a_sidecar_for_other_bytes_or_none_at_all_is_refused() {
    let fake = Fake::new();
    let id = built_here(&fake, Precision::Fp16);
    let engine = fake.dir.path().join("e.engine");
    write_engine(&engine, FAKE_PLAN, &id).unwrap();

    let mut swapped = FAKE_PLAN.to_vec();
    swapped.extend_from_slice(b"other build\n");
    std::fs::write(&engine, &swapped).unwrap();
    let e = load_engine_checked(&fake.shim, &engine, &id).unwrap_err();
    assert!(matches!(e, TrtError::IdentityFile { .. }), "{e}");
    assert!(e.to_string().contains("describes an engine with SHA-256"), "{e}");

    // Rewriting replaces the sidecar; a missing one is an I/O error naming it.
    write_engine(&engine, &swapped, &id).unwrap();
    load_engine_checked(&fake.shim, &engine, &id).unwrap();
    std::fs::remove_file(identity_path(&engine)).unwrap();
    let e = load_engine_checked(&fake.shim, &engine, &id).unwrap_err();
    assert!(e.to_string().contains("e.engine.identity.json"), "{e}");

    std::fs::write(identity_path(&engine), b"{\"format\": 1}").unwrap();
    let e = read_engine(&engine).unwrap_err();
    assert!(e.to_string().contains("not an engine identity"), "{e}");

    let mut newer: serde_json::Value =
        serde_json::to_value(fracture_tensorrt::identity::IdentityFile {
            format: 1,
            identity: id.clone(),
            engine_sha256: "x".into(),
        })
        .unwrap();
    newer["format"] = 2.into();
    std::fs::write(identity_path(&engine), newer.to_string()).unwrap();
    let e = read_engine(&engine).unwrap_err();
    assert!(e.to_string().contains("identity format 2 is newer"), "{e}");

    let e = read_engine(&fake.dir.path().join("absent.engine")).unwrap_err();
    assert!(matches!(e, TrtError::Io { .. }), "{e}");
}

#[test]
fn cache_file_names_follow_the_identity_and_build_and_write_records_it() {
    let fake = Fake::new();
    fake.set_device("Orin (nvgpu)", 8, 7);
    let id = built_here(&fake, Precision::Int8);
    let name = id.engine_file_name();
    assert_eq!(name, "5f2c0e7d0a9b-int8-trt10.3.0-orin-nvgpu-sm87.engine");
    let mut other = id.clone();
    other.trt_version = "10.7.0".into();
    assert_ne!(other.engine_file_name(), name);

    let onnx = fake.dir.path().join("model.onnx");
    std::fs::write(&onnx, b"onnx").unwrap();
    let out = fake.dir.path().join("cache").join(&name);
    let written =
        build_and_write(&fake.shim, &BuildConfig::new(&onnx, Precision::Int8), 0, BUNDLE, &out)
            .unwrap();
    assert_eq!(written, id);
    load_engine_checked(&fake.shim, &out, &id).unwrap();
}

#[test]
fn handles_can_move_to_worker_threads() {
    fn send<T: Send>() {}
    fn sync<T: Sync>() {}
    send::<fracture_tensorrt::Shim>();
    sync::<fracture_tensorrt::Shim>();
    send::<fracture_tensorrt::Engine>();
    sync::<fracture_tensorrt::Engine>();
    send::<fracture_tensorrt::ExecutionContext>();
    send::<fracture_tensorrt::Stream>();
    send::<fracture_tensorrt::DeviceBuffer>();
}
