//! The runtime against the fake shim: load, list IO tensors, set shapes, bind, run and read
//! back the fake's known outputs; misuse caught before the shim; no handle leaks.

#![allow(clippy::unwrap_used)]

mod support;

use fracture_tensorrt::{
    BenchConfig, DataType, LatencyStats, TensorDesc, TensorMode, TrtError, bench,
};
use support::{FAKE_PLAN, Fake};

fn images(batch_means: &[f32], h: usize, w: usize) -> Vec<f32> {
    // [N, 3, H, W], every value of image n equal to batch_means[n].
    batch_means.iter().flat_map(|&m| std::iter::repeat_n(m, 3 * h * w)).collect()
}

#[test]
fn loads_lists_binds_runs_and_reads_known_outputs() {
    let fake = Fake::new();
    let shim = &fake.shim;
    assert_eq!(shim.path(), fake.path.as_path());
    assert_eq!(shim.trt_version().unwrap(), "10.3.0");
    let gpu = shim.device_info(0).unwrap();
    assert_eq!(gpu.compute_capability(), "8.7");
    assert!(gpu.name.starts_with("Fake GPU"), "{}", gpu.name);

    let engine = shim.deserialize_engine(FAKE_PLAN).unwrap();
    let expected = vec![
        TensorDesc {
            name: "images".into(),
            mode: TensorMode::Input,
            dtype: DataType::Float,
            shape: vec![-1, 3, -1, -1],
        },
        TensorDesc {
            name: "output0".into(),
            mode: TensorMode::Output,
            dtype: DataType::Float,
            shape: vec![-1, 6],
        },
        TensorDesc {
            name: "num_dets".into(),
            mode: TensorMode::Output,
            dtype: DataType::Int32,
            shape: vec![-1],
        },
    ];
    assert_eq!(engine.io_tensors(), expected.as_slice());
    assert_eq!(engine.inputs().count(), 1);
    assert_eq!(engine.outputs().count(), 2);

    let mut ctx = engine.create_context().unwrap();
    let stream = shim.create_stream().unwrap();
    assert_eq!(ctx.tensor_shape("output0").unwrap(), vec![-1, 6]);

    ctx.write_input("images", &[2, 3, 32, 48], &images(&[1.0, 2.5], 32, 48)).unwrap();
    assert_eq!(ctx.tensor_shape("images").unwrap(), vec![2, 3, 32, 48]);
    assert_eq!(ctx.tensor_shape("output0").unwrap(), vec![2, 6]);
    ctx.run(&stream).unwrap();
    let out = ctx.read_tensor::<f32>("output0").unwrap();
    assert_eq!(out.shape, vec![2, 6]);
    assert_eq!(out.data, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 2.5, 5.0, 7.5, 10.0, 12.5, 15.0]);
    let dets = ctx.read_tensor::<i32>("num_dets").unwrap();
    assert_eq!((dets.shape, dets.data), (vec![2], vec![1, 2]));

    // A smaller batch reuses the bound buffers; a larger one grows them.
    ctx.write_input("images", &[1, 3, 64, 64], &images(&[0.25], 64, 64)).unwrap();
    ctx.run(&stream).unwrap();
    assert_eq!(
        ctx.read_tensor::<f32>("output0").unwrap().data,
        vec![0.25, 0.5, 0.75, 1.0, 1.25, 1.5]
    );
    ctx.write_input("images", &[4, 3, 32, 32], &images(&[1.0, 2.0, 3.0, 4.0], 32, 32)).unwrap();
    ctx.run(&stream).unwrap();
    let out = ctx.read_tensor::<f32>("output0").unwrap();
    assert_eq!(out.shape, vec![4, 6]);
    assert_eq!(&out.data[18..], &[4.0, 8.0, 12.0, 16.0, 20.0, 24.0]);
    assert_eq!(ctx.read_tensor::<i32>("num_dets").unwrap().data, vec![1, 2, 3, 4]);

    assert!(fake.live_handles() > 0);
    drop(ctx);
    drop(stream);
    drop(engine);
    assert_eq!(fake.live_handles(), 0, "every handle and buffer is released");
}

#[test]
fn manual_binding_checks_sizes_and_shapes() {
    let fake = Fake::new();
    let engine = fake.shim.deserialize_engine(FAKE_PLAN).unwrap();
    let mut ctx = engine.create_context().unwrap();
    let stream = fake.shim.create_stream().unwrap();

    // Before the input shape is set, outputs have no size.
    let e = ctx.bind("output0", fake.shim.alloc(1024).unwrap()).unwrap_err();
    assert!(matches!(&e, TrtError::WrongShape { name, .. } if name == "output0"), "{e}");
    assert!(e.to_string().contains("not known yet"), "{e}");

    ctx.set_input_shape("images", &[1, 3, 32, 32]).unwrap();
    assert_eq!(ctx.tensor_bytes("images").unwrap(), 3 * 32 * 32 * 4);
    let e = ctx.bind("images", fake.shim.alloc(100).unwrap()).unwrap_err();
    assert!(
        matches!(e, TrtError::WrongBufferSize { ref name, needed: 12288, actual: 100 } if name == "images"),
        "{e}"
    );
    let mut input = fake.shim.alloc(3 * 32 * 32 * 4).unwrap();
    let ones: Vec<u8> = std::iter::repeat_n(1.0f32.to_ne_bytes(), 3 * 32 * 32).flatten().collect();
    input.copy_from_host(&ones).unwrap();
    assert!(ctx.bind("images", input).unwrap().is_none());

    // Outputs not bound yet.
    let e = ctx.enqueue(&stream).unwrap_err();
    assert!(matches!(&e, TrtError::Unbound { name } if name == "output0"), "{e}");
    ctx.bind("output0", fake.shim.alloc(24).unwrap()).unwrap();
    ctx.bind("num_dets", fake.shim.alloc(4).unwrap()).unwrap();
    ctx.enqueue(&stream).unwrap();
    stream.synchronize().unwrap();
    let mut raw = [0u8; 24];
    ctx.download("output0", &mut raw).unwrap();
    assert_eq!(f32::from_ne_bytes(raw[20..24].try_into().unwrap()), 6.0);

    // A larger batch after binding: the old buffers are too small and enqueue says so.
    ctx.set_input_shape("images", &[2, 3, 32, 32]).unwrap();
    let e = ctx.enqueue(&stream).unwrap_err();
    assert!(matches!(&e, TrtError::WrongBufferSize { name, .. } if name == "images"), "{e}");

    // Host copies larger than the buffer are refused.
    let e = ctx.download("num_dets", &mut [0u8; 8]).unwrap_err();
    assert!(matches!(e, TrtError::WrongBufferSize { needed: 8, actual: 4, .. }), "{e}");
    let e = ctx.upload("missing", &[0u8; 4]).unwrap_err();
    assert!(matches!(e, TrtError::Unbound { .. }), "{e}");
}

#[test]
fn wrong_names_shapes_and_dtypes_are_refused_before_the_shim() {
    let fake = Fake::new();
    let engine = fake.shim.deserialize_engine(FAKE_PLAN).unwrap();
    let mut ctx = engine.create_context().unwrap();

    let e = ctx.set_input_shape("image", &[1, 3, 32, 32]).unwrap_err();
    assert!(
        e.to_string()
            .contains("no IO tensor named \"image\"; the engine has images, output0, num_dets"),
        "{e}"
    );
    let e = ctx.set_input_shape("output0", &[1, 6]).unwrap_err();
    assert!(matches!(e, TrtError::WrongMode { wanted: "input", actual: "output", .. }), "{e}");
    let e = ctx.set_input_shape("images", &[1, 3, 32]).unwrap_err();
    assert!(e.to_string().contains("rank 3"), "{e}");
    let e = ctx.set_input_shape("images", &[1, 4, 32, 32]).unwrap_err();
    assert!(e.to_string().contains("dimension 1 is 4"), "{e}");
    let e = ctx.set_input_shape("images", &[-1, 3, 32, 32]).unwrap_err();
    assert!(e.to_string().contains("dimension 0 is -1"), "{e}");
    let e = ctx.set_input_shape("bad\0name", &[1]).unwrap_err();
    assert!(matches!(e, TrtError::UnknownTensor { .. }), "{e}");

    // Outside the optimisation profile: TensorRT's (here the fake's) refusal, passed on.
    let e = ctx.set_input_shape("images", &[9, 3, 32, 32]).unwrap_err();
    assert!(
        matches!(&e, TrtError::Shim { function: "trt_context_set_input_shape", kind: fracture_tensorrt::ShimErrorKind::TensorRt, message } if message.contains("optimisation profile")),
        "{e}"
    );

    let e = ctx.write_input::<i32>("images", &[1, 3, 32, 32], &vec![0; 3 * 32 * 32]).unwrap_err();
    assert!(
        matches!(
            e,
            TrtError::WrongDtype { actual: DataType::Float, requested: DataType::Int32, .. }
        ),
        "{e}"
    );
    assert_eq!(e.to_string(), "tensor images holds float32, not int32");
    let e = ctx.write_input::<f32>("images", &[1, 3, 32, 32], &[0.0; 10]).unwrap_err();
    assert!(e.to_string().contains("holds 3072 values, the data has 10"), "{e}");

    ctx.write_input("images", &[1, 3, 32, 32], &vec![0.0f32; 3 * 32 * 32]).unwrap();
    let e = ctx.read_tensor::<f32>("num_dets").unwrap_err();
    assert!(matches!(e, TrtError::WrongDtype { actual: DataType::Int32, .. }), "{e}");
    let e = ctx.read_tensor::<f32>("output0").unwrap_err();
    assert!(matches!(e, TrtError::Unbound { .. }), "outputs are bound by run/prepare_outputs: {e}");
}

#[test]
fn bench_reports_percentiles_and_throughput() {
    let fake = Fake::new();
    let engine = fake.shim.deserialize_engine(FAKE_PLAN).unwrap();
    let mut ctx = engine.create_context().unwrap();
    let stream = fake.shim.create_stream().unwrap();
    let data = images(&[1.0, 2.0], 32, 32);
    ctx.write_input("images", &[2, 3, 32, 32], &data).unwrap();
    let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_ne_bytes()).collect();
    let report = bench(
        &mut ctx,
        &stream,
        &[("images".to_string(), bytes)],
        2,
        BenchConfig { warmup_iterations: 3, iterations: 25 },
    )
    .unwrap();
    assert_eq!((report.batch, report.iterations), (2, 25));
    for s in [&report.gpu, &report.end_to_end] {
        assert!(s.min_ms <= s.median_ms && s.median_ms <= s.p90_ms && s.p90_ms <= s.p95_ms);
        assert!(s.p95_ms <= s.p99_ms && s.p99_ms <= s.max_ms && s.min_ms >= 0.0);
    }
    assert!(report.throughput_per_s > 0.0);
    let e = bench(&mut ctx, &stream, &[], 1, BenchConfig { warmup_iterations: 0, iterations: 0 })
        .unwrap_err();
    assert!(e.to_string().contains("at least one iteration"), "{e}");
}

#[test]
fn percentiles_are_nearest_rank() {
    let samples: Vec<f64> = (1..=100).rev().map(f64::from).collect();
    let s = LatencyStats::from_samples(&samples).unwrap();
    assert_eq!(
        (s.min_ms, s.median_ms, s.p90_ms, s.p95_ms, s.p99_ms, s.max_ms),
        (1.0, 50.0, 90.0, 95.0, 99.0, 100.0)
    );
    assert!((s.mean_ms - 50.5).abs() < 1e-12);
    let one = LatencyStats::from_samples(&[3.0]).unwrap();
    assert_eq!((one.median_ms, one.p99_ms), (3.0, 3.0));
    assert!(LatencyStats::from_samples(&[]).is_none());
}
