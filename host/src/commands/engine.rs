//! `fracture engine build` and `fracture engine bench`: TensorRT engines from a verified
//! bundle through `fracture-tensorrt`. An engine is written with an identity file (bundle
//! SHA-256, TensorRT version, GPU name and compute capability, precision); `bench` loads it
//! only when that identity matches this machine and the given bundle. Without TensorRT both
//! fail with the loader's error, which lists every place it looked.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use fracture_models::bundle::Bundle;
use fracture_runtime::engine_source::engine_source;
use fracture_tensorrt::{
    BenchConfig, BuildConfig, EngineIdentity, LatencyStats, Precision, Profile, Shim, TensorMode,
    build_and_write, load_engine_checked, read_engine,
};

#[derive(clap::Args, Debug)]
pub struct EngineArgs {
    #[command(subcommand)]
    pub action: EngineAction,
}

#[derive(clap::Subcommand, Debug)]
pub enum EngineAction {
    /// Build a TensorRT engine from a bundle's ONNX model (needs TensorRT 10 and a GPU).
    #[command(after_help = "Examples:\n  \
  fracture engine build --bundle bundles/fracture-s-v1 --precision fp16 --out engines/s.fp16.engine\n  \
  fracture engine build --bundle bundles/fracture-s-v1 --precision int8 --out engines/s.int8.engine \\\n      \
  --timing-cache engines/timing.cache\n\n\
FP16 builds model.onnx. INT8 needs the bundle's INT8 accuracy check (`fracture calibrate`) to \
have passed; it builds model.int8.onnx (Q/DQ) when the bundle has it, else model.onnx with \
calibration.cache, with FP16 fallback for layers INT8 does not suit. The engine is only valid \
for this bundle, TensorRT version, GPU and precision; its identity is written next to it as \
<out>.identity.json.")]
    Build(BuildArgs),
    /// Measure an engine's latency and throughput (like trtexec), after checking it fits this
    /// machine and bundle.
    Bench(BenchArgs),
}

#[derive(clap::Args, Debug)]
pub struct ShimArgs {
    /// The TensorRT shim library (default: $FRACTURE_TRT_SHIM, next to this program, then the
    /// standard library folders).
    #[arg(long)]
    pub shim: Option<PathBuf>,
    /// CUDA device index.
    #[arg(long, default_value_t = 0)]
    pub device: i32,
}

#[derive(clap::Args, Debug)]
pub struct BuildArgs {
    /// Bundle folder (verified before anything is built).
    #[arg(long)]
    pub bundle: PathBuf,
    /// fp16 or int8.
    #[arg(long)]
    pub precision: Precision,
    /// Engine file to write (its identity goes to <out>.identity.json).
    #[arg(long)]
    pub out: PathBuf,
    /// Largest batch the engine accepts (optimisation profile max; opt is 1).
    #[arg(long, default_value_t = 1)]
    pub max_batch: u32,
    /// Name of the network input.
    #[arg(long, default_value = "images")]
    pub input_name: String,
    /// Builder workspace limit in MiB (0: TensorRT's default).
    #[arg(long, default_value_t = 0)]
    pub workspace_mib: u64,
    /// Timing cache, read when present and written back (faster rebuilds).
    #[arg(long)]
    pub timing_cache: Option<PathBuf>,
    #[command(flatten)]
    pub shim: ShimArgs,
}

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Engine file (with its <engine>.identity.json).
    #[arg(long)]
    pub engine: PathBuf,
    /// The bundle the engine must have been built from.
    #[arg(long)]
    pub bundle: PathBuf,
    /// Precision the engine must have (default: the one its identity file records).
    #[arg(long)]
    pub precision: Option<Precision>,
    #[arg(long, default_value_t = 1)]
    pub batch: u32,
    #[arg(long, default_value_t = 200)]
    pub iterations: usize,
    #[arg(long, default_value_t = 20)]
    pub warmup: usize,
    /// Write the report as JSON here too.
    #[arg(long)]
    pub json: Option<PathBuf>,
    #[command(flatten)]
    pub shim: ShimArgs,
}

fn load_shim(args: &ShimArgs) -> anyhow::Result<Shim> {
    Ok(Shim::load(args.shim.as_deref())?)
}

pub fn run(args: &EngineArgs) -> anyhow::Result<()> {
    match &args.action {
        EngineAction::Build(a) => run_build(a),
        EngineAction::Bench(a) => run_bench(a),
    }
}

pub fn run_build(args: &BuildArgs) -> anyhow::Result<()> {
    let bundle = Bundle::open(&args.bundle)
        .with_context(|| format!("verifying bundle {}", args.bundle.display()))?;
    let source = engine_source(&bundle, args.precision)?;
    let shim = load_shim(&args.shim)?;
    // For the message; build_and_write records the same identity with the engine.
    let identity =
        EngineIdentity::current(&shim, args.shim.device, &bundle.sha256, args.precision)?;
    let mut config = BuildConfig::new(&source.onnx, args.precision);
    config.calibration_cache = source.calibration_cache.clone();
    config.input_name = args.input_name.clone();
    config.profile = Some(Profile::square(bundle.manifest.imgsz, args.max_batch));
    config.workspace_bytes = args.workspace_mib.saturating_mul(1 << 20);
    config.timing_cache = args.timing_cache.clone();
    eprintln!(
        "building a {} engine from {}{} with TensorRT {} for {} (compute {}) ...",
        args.precision,
        source.onnx.display(),
        source
            .calibration_cache
            .as_ref()
            .map(|c| format!(" and {}", c.display()))
            .unwrap_or_default(),
        identity.trt_version,
        identity.gpu_name,
        identity.compute_capability
    );
    let started = Instant::now();
    let identity = build_and_write(&shim, &config, args.shim.device, &bundle.sha256, &args.out)?;
    let bytes = std::fs::metadata(&args.out).map(|m| m.len()).unwrap_or(0);
    println!(
        "{}: {} engine, {} bytes, built in {:.1} s (bundle sha256 {}, TensorRT {}, {} {})",
        args.out.display(),
        args.precision,
        bytes,
        started.elapsed().as_secs_f64(),
        bundle.sha256,
        identity.trt_version,
        identity.gpu_name,
        identity.compute_capability
    );
    Ok(())
}

fn stats_line(s: &LatencyStats) -> String {
    format!(
        "min = {:.5} ms, max = {:.5} ms, mean = {:.5} ms, median = {:.5} ms, \
         percentile(90%) = {:.5} ms, percentile(95%) = {:.5} ms, percentile(99%) = {:.5} ms",
        s.min_ms, s.max_ms, s.mean_ms, s.median_ms, s.p90_ms, s.p95_ms, s.p99_ms
    )
}

/// Deterministic inputs in [0, 1) (a benchmark needs no real image).
fn bench_input(len: usize) -> Vec<f32> {
    let mut x: u32 = 0x9E37_79B9;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 8) as f32 / (1u32 << 24) as f32
        })
        .collect()
}

pub fn run_bench(args: &BenchArgs) -> anyhow::Result<()> {
    if args.iterations == 0 || args.batch == 0 {
        bail!("--iterations and --batch must be at least 1");
    }
    let bundle = Bundle::open(&args.bundle)
        .with_context(|| format!("verifying bundle {}", args.bundle.display()))?;
    let precision = match args.precision {
        Some(p) => p,
        None => read_engine(&args.engine)?.1.precision,
    };
    let shim = load_shim(&args.shim)?;
    let expected = EngineIdentity::current(&shim, args.shim.device, &bundle.sha256, precision)?;
    let engine = load_engine_checked(&shim, &args.engine, &expected)?;
    let mut ctx = engine.create_context()?;
    let stream = shim.create_stream()?;
    let imgsz = i64::from(bundle.manifest.imgsz);
    let mut host_inputs = Vec::new();
    for t in engine.io_tensors().iter().filter(|t| t.mode == TensorMode::Input) {
        // [N, 3, H, W]: dynamic batch -> --batch, dynamic sizes -> the bundle's imgsz.
        let shape: Vec<i64> = t
            .shape
            .iter()
            .enumerate()
            .map(|(i, &d)| match (i, d) {
                (_, d) if d >= 0 => d,
                (0, _) => i64::from(args.batch),
                _ => imgsz,
            })
            .collect();
        let len = fracture_tensorrt::volume(&shape)
            .with_context(|| format!("input {} has shape {shape:?}", t.name))?;
        let data = bench_input(len);
        ctx.write_input(&t.name, &shape, &data)
            .with_context(|| format!("benchmark input {} {shape:?}", t.name))?;
        host_inputs.push((t.name.clone(), data.iter().flat_map(|v| v.to_ne_bytes()).collect()));
    }
    let report = fracture_tensorrt::bench(
        &mut ctx,
        &stream,
        &host_inputs,
        args.batch as usize,
        BenchConfig { warmup_iterations: args.warmup, iterations: args.iterations },
    )?;
    println!(
        "{}: {} engine, TensorRT {}, {} (compute {}); batch {}, {} iterations after {} warm-up",
        args.engine.display(),
        precision,
        expected.trt_version,
        expected.gpu_name,
        expected.compute_capability,
        report.batch,
        report.iterations,
        args.warmup
    );
    println!("Throughput: {:.2} inferences/s", report.throughput_per_s);
    println!("Latency (H2D + compute + D2H): {}", stats_line(&report.end_to_end));
    println!("GPU compute (enqueue to sync): {}", stats_line(&report.gpu));
    if let Some(path) = &args.json {
        write_json(path, &expected, &report)?;
    }
    Ok(())
}

fn write_json(
    path: &Path,
    identity: &EngineIdentity,
    report: &fracture_tensorrt::BenchReport,
) -> anyhow::Result<()> {
    let value = serde_json::json!({ "identity": identity, "report": report });
    let text = serde_json::to_string_pretty(&value)?;
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}
