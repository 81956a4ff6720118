//! Every error path of the binding: a missing library (the message lists every place
//! looked), a file that is not a library, a missing symbol, another ABI version, each entry
//! point's reported failure (with its kind, and no leaked handle afterwards), a C++
//! exception code, a plan that is not an engine.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;

use fracture_tensorrt::{
    BuildConfig, Precision, Profile, SHIM_FILE, Shim, ShimErrorKind, TrtError, build_info,
    search_paths,
};
use support::{FAKE_PLAN, Fake, private_copy};

#[test]
fn a_missing_library_lists_every_place_looked() {
    let dir = tempfile::tempdir().unwrap();
    let explicit = dir.path().join("nowhere").join("libfracture_trt_shim.so");
    let places = search_paths(Some(&explicit));
    assert_eq!(places[0], explicit, "the explicit path comes first");
    let exe_dir = std::env::current_exe().unwrap().parent().unwrap().to_path_buf();
    assert!(places.contains(&exe_dir.join(SHIM_FILE)), "next to the executable: {places:?}");
    for d in ["/usr/local/lib", "/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu"] {
        assert!(places.contains(&Path::new(d).join(SHIM_FILE)), "{d}: {places:?}");
    }

    match Shim::load(Some(&explicit)) {
        Err(e @ TrtError::NotFound { .. }) => {
            let text = e.to_string();
            assert!(text.starts_with("TensorRT is not available"), "{text}");
            assert!(text.contains(&format!("{}: not found", explicit.display())), "{text}");
            assert!(text.contains(&exe_dir.join(SHIM_FILE).display().to_string()), "{text}");
            assert!(text.contains("/usr/local/lib/libfracture_trt_shim.so: not found"), "{text}");
            assert!(
                text.contains("through the dynamic linker (LD_LIBRARY_PATH, ld.so.cache)"),
                "{text}"
            );
            assert!(
                text.contains("FRACTURE_TRT_SHIM to its path"),
                "says how to point at one: {text}"
            );
            if std::env::var_os("FRACTURE_TRT_SHIM").is_none() {
                assert!(text.contains("$FRACTURE_TRT_SHIM: not set"), "{text}");
            }
        }
        Err(other) => panic!("expected NotFound, got {other}"),
        // Only where a real shim was built or installed.
        Ok(shim) => {
            eprintln!("a real shim was found at {}; NotFound not exercised", shim.path().display())
        }
    }
}

#[test]
fn a_file_that_is_not_a_library_is_reported_with_the_linker_message() {
    let dir = tempfile::tempdir().unwrap();
    let bogus = dir.path().join("libfracture_trt_shim.so");
    std::fs::write(&bogus, b"not an ELF file").unwrap();
    let e = Shim::load_exact(&bogus).unwrap_err();
    let TrtError::NotFound { attempts, .. } = &e else { panic!("{e}") };
    assert_eq!(attempts.len(), 1);
    assert!(
        attempts[0].reason.contains(&bogus.display().to_string()) || !attempts[0].reason.is_empty(),
        "{e}"
    );
    assert_ne!(attempts[0].reason, "not found", "the dynamic linker's reason is kept: {e}");
}

#[test]
fn a_missing_symbol_and_another_abi_are_refused() {
    let (_d, path) = private_copy(&build_info::fake_shim_without_enqueue());
    let e = Shim::load_exact(&path).unwrap_err();
    assert!(
        matches!(&e, TrtError::MissingSymbol { symbol, .. } if symbol == "trt_context_enqueue_v3"),
        "{e}"
    );
    assert!(e.to_string().contains("symbol trt_context_enqueue_v3 is missing"), "{e}");

    let (_d, path) = private_copy(&build_info::fake_shim_wrong_abi());
    let e = Shim::load_exact(&path).unwrap_err();
    assert!(matches!(e, TrtError::AbiMismatch { found: 99, expected: 1, .. }), "{e}");
}

#[test]
fn initialisation_failures_fail_the_load() {
    let (_d, shim) = Fake::load_failing("trt_shim_init", 2);
    let e = shim.unwrap_err();
    assert!(
        matches!(&e, TrtError::Shim { function: "trt_shim_init", kind: ShimErrorKind::TensorRt, message } if message.contains("injected")),
        "{e}"
    );
}

/// Everything a user of the binding does, start to finish.
fn pipeline(shim: &Shim, dir: &Path) -> fracture_tensorrt::Result<()> {
    shim.trt_version()?;
    shim.device_info(0)?;
    let onnx = dir.join("model.onnx");
    std::fs::write(&onnx, b"onnx bytes").unwrap();
    let mut cfg = BuildConfig::new(&onnx, Precision::Fp16);
    cfg.profile = Some(Profile::square(64, 2));
    let plan = shim.build_serialized(&cfg)?;
    let engine = shim.deserialize_engine(&plan)?;
    let mut ctx = engine.create_context()?;
    let stream = shim.create_stream()?;
    ctx.write_input("images", &[1, 3, 64, 64], &vec![1.0f32; 3 * 64 * 64])?;
    ctx.run(&stream)?;
    ctx.read_tensor::<f32>("output0")?;
    Ok(())
}

#[test]
fn every_entry_point_reports_its_failures_without_leaking() {
    let functions = [
        "trt_shim_trt_version",
        "trt_shim_device_info",
        "trt_build_serialized",
        "trt_runtime_create",
        "trt_engine_deserialize",
        "trt_engine_num_io_tensors",
        "trt_engine_io_tensor",
        "trt_context_create",
        "trt_stream_create",
        "trt_context_set_input_shape",
        "trt_context_tensor_shape",
        "trt_device_malloc",
        "trt_context_set_tensor_address",
        "trt_memcpy_htod",
        "trt_context_enqueue_v3",
        "trt_stream_synchronize",
        "trt_memcpy_dtoh",
    ];
    let fake = Fake::new();
    pipeline(&fake.shim, fake.dir.path()).unwrap();
    assert_eq!(fake.live_handles(), 0);
    for (i, function) in functions.iter().enumerate() {
        // Cycle through the error kinds, including one the binding does not know.
        let code = [1, 2, 3, 4, 5, 6, 42][i % 7];
        fake.fail(Some(function), code);
        let e = pipeline(&fake.shim, fake.dir.path()).unwrap_err();
        match &e {
            TrtError::Shim { function: f, kind, message } => {
                assert_eq!(f, function, "{e}");
                assert_eq!(*kind, ShimErrorKind::from_code(code), "{e}");
                assert_eq!(message, &format!("injected failure in {function}"));
            }
            other => panic!("{function}: expected a shim error, got {other}"),
        }
        assert_eq!(fake.live_handles(), 0, "{function}: handles leaked on the error path");
    }
    fake.fail(None, 0);
    pipeline(&fake.shim, fake.dir.path()).unwrap();
}

#[test]
fn error_kinds_read_well() {
    let fake = Fake::new();
    fake.fail(Some("trt_engine_deserialize"), 4);
    let e = fake.shim.deserialize_engine(FAKE_PLAN).unwrap_err();
    assert_eq!(
        e.to_string(),
        "trt_engine_deserialize: C++ exception: injected failure in trt_engine_deserialize"
    );
    fake.fail(Some("trt_engine_deserialize"), 42);
    let e = fake.shim.deserialize_engine(FAKE_PLAN).unwrap_err();
    assert!(e.to_string().contains("error code 42"), "{e}");
}

#[test]
fn bytes_that_are_not_an_engine_are_refused() {
    let fake = Fake::new();
    let e = fake.shim.deserialize_engine(b"an ONNX file, not a plan").unwrap_err();
    assert!(
        matches!(
            &e,
            TrtError::Shim {
                function: "trt_engine_deserialize",
                kind: ShimErrorKind::TensorRt,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("deserializeCudaEngine failed"), "{e}");
    assert_eq!(fake.live_handles(), 0);
    let e = fake.shim.device_info(3).unwrap_err();
    assert!(matches!(e, TrtError::Shim { kind: ShimErrorKind::Cuda, .. }), "{e}");
}
