//! Benchmarking an execution context the way `trtexec` reports it: warm-up, then timed
//! iterations, each uploading the inputs, enqueueing, synchronising and downloading the
//! outputs; latency percentiles for the GPU part (enqueue to stream synchronised) and end to
//! end (with copies), and throughput in inferences per second.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::error::Result;
use crate::runtime::{ExecutionContext, Stream};

/// Latency statistics in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LatencyStats {
    pub min_ms: f64,
    pub mean_ms: f64,
    pub median_ms: f64,
    pub p90_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl LatencyStats {
    /// Nearest-rank percentiles of `samples_ms` (trtexec's way); `None` when empty.
    pub fn from_samples(samples_ms: &[f64]) -> Option<Self> {
        if samples_ms.is_empty() {
            return None;
        }
        let mut s = samples_ms.to_vec();
        s.sort_by(f64::total_cmp);
        let pct = |p: f64| {
            let rank = ((p / 100.0) * s.len() as f64).ceil() as usize;
            s[rank.clamp(1, s.len()) - 1]
        };
        Some(Self {
            min_ms: s[0],
            mean_ms: s.iter().sum::<f64>() / s.len() as f64,
            median_ms: pct(50.0),
            p90_ms: pct(90.0),
            p95_ms: pct(95.0),
            p99_ms: pct(99.0),
            max_ms: s[s.len() - 1],
        })
    }
}

/// How long to run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BenchConfig {
    pub warmup_iterations: usize,
    pub iterations: usize,
}

impl Default for BenchConfig {
    fn default() -> Self {
        Self { warmup_iterations: 20, iterations: 200 }
    }
}

/// The result of [`bench`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BenchReport {
    pub batch: usize,
    pub iterations: usize,
    /// Enqueue to stream synchronised (trtexec's "GPU Compute Time", plus launch overhead).
    pub gpu: LatencyStats,
    /// Host-to-device copies, compute and device-to-host copies (trtexec's "Latency").
    pub end_to_end: LatencyStats,
    /// Inferences (images) per second over the timed iterations, end to end.
    pub throughput_per_s: f64,
    pub total_s: f64,
}

/// Benchmarks `ctx`, whose inputs are already written (their buffers are re-uploaded from
/// the `host_inputs` copies each iteration) and whose batch is `batch`.
pub fn bench(
    ctx: &mut ExecutionContext,
    stream: &Stream,
    host_inputs: &[(String, Vec<u8>)],
    batch: usize,
    config: BenchConfig,
) -> Result<BenchReport> {
    ctx.prepare_outputs()?;
    let outputs: Vec<(String, usize)> = ctx
        .engine()
        .outputs()
        .map(|t| t.name.clone())
        .collect::<Vec<_>>()
        .into_iter()
        .map(|n| ctx.tensor_bytes(&n).map(|b| (n, b)))
        .collect::<Result<_>>()?;
    let mut host_out: Vec<Vec<u8>> = outputs.iter().map(|(_, b)| vec![0u8; *b]).collect();
    let mut gpu = Vec::with_capacity(config.iterations);
    let mut e2e = Vec::with_capacity(config.iterations);
    let mut total = Duration::ZERO;
    for i in 0..config.warmup_iterations + config.iterations {
        let t0 = Instant::now();
        for (name, bytes) in host_inputs {
            ctx.upload(name, bytes)?;
        }
        let t1 = Instant::now();
        ctx.enqueue(stream)?;
        stream.synchronize()?;
        let t2 = Instant::now();
        for ((name, _), dst) in outputs.iter().zip(host_out.iter_mut()) {
            ctx.download(name, dst)?;
        }
        let t3 = Instant::now();
        if i >= config.warmup_iterations {
            gpu.push((t2 - t1).as_secs_f64() * 1e3);
            e2e.push((t3 - t0).as_secs_f64() * 1e3);
            total += t3 - t0;
        }
    }
    let empty =
        || crate::error::TrtError::InvalidArgument("bench needs at least one iteration".into());
    let total_s = total.as_secs_f64();
    Ok(BenchReport {
        batch,
        iterations: config.iterations,
        gpu: LatencyStats::from_samples(&gpu).ok_or_else(empty)?,
        end_to_end: LatencyStats::from_samples(&e2e).ok_or_else(empty)?,
        throughput_per_s: if total_s > 0.0 {
            (config.iterations * batch) as f64 / total_s
        } else {
            f64::INFINITY
        },
        total_s,
    })
}
