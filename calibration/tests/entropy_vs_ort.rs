//! Entropy (and percentile) thresholds against independent computations, on known
//! distributions sampled here: Gaussian, Laplace, uniform, and a ReLU-like half-normal with
//! outliers (1,000,000 values each, fed to the [`Calibrator`] in image-sized chunks).
//!
//! Three references, computed by `tests/peers/ort_calibration.py` in the project's
//! virtualenv (`scripts/setup`; onnxruntime 1.32, numpy, scipy):
//!
//! 1. A numpy implementation of the published KL search, vectorised differently, on the very
//!    histogram this crate built: every candidate's divergence and the chosen bin must agree
//!    (to f64 rounding), exact zeros left out as the crate does. This pins the implementation to its stated convention.
//! 2. onnxruntime's `HistogramCollector(method="entropy", symmetric=True, num_bins=2048)`,
//!    an independent implementation of the same search, fed the same values. Its conventions
//!    differ by design (read from onnxruntime/quantization/calibrate.py):
//!    - it histograms signed x over `[-max, max]` (2048 bins, so 1024 per side of width
//!      `max/1024`, twice ours) and keeps a slice of `2i+1` bins around zero;
//!    - its `num_quantized_bins` levels span both signs: 128 there means 64 per side, a 7-bit
//!      quantiser; 256 is the like-for-like setting for TensorRT's 128 levels of |x|. Both
//!      are run; 128 is reported only, 256 is asserted;
//!    - it merges `⌊(2i+1)/levels⌋` bins per level and puts the remainder (up to 255 bins)
//!      into the last level, whose expanded Q it leaves at 0 (smoothed to 1e-4 counts), so a
//!      candidate pays heavily unless `2i+1` is just above a multiple of 256: only about one
//!      candidate in 128 is competitive. Its threshold therefore lies on a grid of 128 of its
//!      bins (`max/8`), which bounds the agreement we can justify: within 128 + 1 of its bins;
//!    - it keeps exact zeros in the search, where ours leaves them out (see
//!      `fracture_calibration::entropy`): it is given the non-zero values only, which changes
//!      nothing but the ReLU case, where half the values are 0 and its search would otherwise
//!      sit at its smallest candidate;
//!    - its Q is also spread over empty bins of P (ours keeps them 0, as published), its KL is
//!      computed in float32, and its threshold is a bin edge (ours `(i+0.5)·w`).
//! 3. onnxruntime's percentile (99.99): the left edge of the bin where the cdf crosses, over
//!    `[min|x|, max|x|]`; ours is the right edge over `[0, max|x|]`: at most two bin widths
//!    apart. Ours is also checked against the exact percentile of the sorted values.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use fracture_calibration::entropy::{LEVELS, divergence, search_counts};
use fracture_calibration::{Calibrator, Method};

/// splitmix64: a small deterministic generator (the test needs no statistical quality
/// beyond smooth histograms).
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in (0, 1).
    fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
    fn laplace(&mut self) -> f64 {
        let u = self.uniform() - 0.5;
        -u.signum() * (1.0 - 2.0 * u.abs()).ln()
    }
}

const N: usize = 1_000_000;

fn cases() -> Vec<(&'static str, Vec<f32>)> {
    let mut r = Rng(2026);
    let gauss = (0..N).map(|_| r.normal() as f32).collect();
    let laplace = (0..N).map(|_| r.laplace() as f32).collect();
    let uniform = (0..N).map(|_| (2.0 * r.uniform() - 1.0) as f32).collect();
    let mut relu: Vec<f32> = (0..N - 500).map(|_| r.normal().max(0.0) as f32).collect();
    relu.extend((0..500).map(|_| (5.0 + 15.0 * r.uniform()) as f32));
    vec![("gauss", gauss), ("laplace", laplace), ("uniform", uniform), ("relu_outliers", relu)]
}

fn calibrate(method: Method, values: &[f32]) -> (f32, Option<Vec<u64>>, f64) {
    let mut cal = Calibrator::new(method).expect("method");
    while !cal.is_complete() {
        // 416·416 values an "image".
        for chunk in values.chunks(416 * 416) {
            cal.observe("t", chunk).expect("finite values");
        }
        cal.end_pass().expect("same values in both passes");
    }
    let hist = cal.histogram("t").map(|h| (search_counts(h), h.bin_width()));
    let amax = cal.finish().expect("complete")["t"];
    match hist {
        Some((c, w)) => (amax, Some(c), w),
        None => (amax, None, 0.0),
    }
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs the reference script over `dir`; fails (never skips) when the virtualenv is missing.
fn run_reference(dir: &Path) {
    let python = repo_root().join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/setup (the entropy parity test needs onnxruntime, numpy, scipy)",
        python.display()
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/ort_calibration.py");
    let out = Command::new(&python)
        .arg(&script)
        .arg("--dir")
        .arg(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e} (run scripts/setup)", python.display()));
    assert!(
        out.status.success(),
        "ort_calibration.py failed (run scripts/setup if onnxruntime or scipy is missing):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn pair(v: &serde_json::Value) -> (f64, f64) {
    (v[0].as_f64().expect("lo"), v[1].as_f64().expect("hi"))
}

#[test]
fn entropy_and_percentile_agree_with_independent_computations() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = cases();
    let mut ours = BTreeMap::new();
    for (name, values) in &cases {
        let (entropy, counts, w) = calibrate(Method::Entropy, values);
        let counts = counts.expect("entropy keeps a histogram");
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(dir.path().join(format!("{name}.f32")), bytes).expect("write values");
        let bytes: Vec<u8> = counts.iter().flat_map(|c| c.to_le_bytes()).collect();
        std::fs::write(dir.path().join(format!("{name}.counts")), bytes).expect("write counts");
        let (pct, _, _) = calibrate(Method::percentile(), values);
        let (max, _, _) = calibrate(Method::Max, values);
        ours.insert(*name, (entropy, counts, w, pct, max));
    }
    run_reference(dir.path());

    for (name, values) in &cases {
        let (entropy, counts, w, pct, max) = &ours[name];
        let text = std::fs::read_to_string(dir.path().join(format!("{name}.json")))
            .expect("reference output");
        let r: serde_json::Value = serde_json::from_str(&text).expect("json");

        // Max is exact.
        let exact_max = values.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        assert_eq!(*max, exact_max, "{name}: max");

        // 1. Our KL search against the numpy implementation of the same convention.
        let spec = r["spec_kl"].as_array().expect("spec_kl");
        assert_eq!(spec.len(), counts.len() - LEVELS + 1, "{name}: candidates");
        let mut worst = 0.0f64;
        for (k, s) in spec.iter().enumerate() {
            let d = divergence(counts, LEVELS + k, LEVELS).expect("candidate");
            match s.as_f64() {
                None => assert!(d.is_infinite(), "{name}: i = {}: numpy ∞, ours {d}", LEVELS + k),
                Some(s) => {
                    // Both sum ~2000 f64 terms in different orders: 1e-9 relative is ample
                    // and still far below the gaps between neighbouring candidates.
                    let rel = (d - s).abs() / s.abs().max(1e-300);
                    assert!(rel < 1e-9, "{name}: i = {}: ours {d}, numpy {s}", LEVELS + k);
                    worst = worst.max(rel);
                }
            }
        }
        let best_i = r["spec_best_i"].as_u64().expect("best") as usize;
        let want = (((best_i as f64 + 0.5) * w) as f32).min(exact_max);
        assert_eq!(*entropy, want, "{name}: entropy amax vs numpy's chosen i = {best_i}");

        // 2. onnxruntime's entropy threshold (upper end of its range).
        let (_, ort128) = pair(&r["ort_entropy_128"]);
        let (_, ort256) = pair(&r["ort_entropy_256"]);
        let w_ort = 2.0 * f64::from(exact_max) / 2048.0;
        let diff_bins = (f64::from(*entropy) - ort256) / w_ort;
        println!(
            "{name}: max {exact_max:.5}  ours entropy {entropy:.5} (i = {best_i}, w = {w:.3e})  \
             ort256 {ort256:.5}  ort128 {ort128:.5}  ours − ort256 = {diff_bins:+.1} ort bins \
             ({:+.2} %)  numpy KL worst rel {worst:.1e}",
            100.0 * (f64::from(*entropy) - ort256) / ort256
        );
        assert!(
            diff_bins.abs() <= 129.0,
            "{name}: ours {entropy} vs onnxruntime {ort256}: {diff_bins:.1} of its bins apart"
        );
        if *name == "uniform" {
            // A flat histogram: every clipped candidate piles mass onto one bin, in both
            // implementations, so both keep the whole range.
            assert_eq!(*entropy, exact_max, "uniform keeps everything");
            assert!(
                (ort256 - f64::from(exact_max)).abs() <= w_ort,
                "onnxruntime uniform {ort256} vs max {exact_max}"
            );
        }

        // 3. Percentile 99.99 against the sorted values and onnxruntime.
        let mut sorted: Vec<f32> = values.iter().map(|v| v.abs()).collect();
        sorted.sort_by(f32::total_cmp);
        let need = (values.len() as f64 * 0.9999).ceil() as usize;
        let exact = sorted[need - 1];
        let covered = sorted.partition_point(|v| v <= pct);
        assert!(covered >= need, "{name}: percentile {pct} covers {covered} < {need}");
        assert!(
            f64::from(*pct) <= f64::from(exact) + w * (1.0 + 1e-6),
            "{name}: percentile {pct} more than a bin above the exact {exact} (w = {w})"
        );
        let (_, ort_pct) = pair(&r["ort_percentile"]);
        println!("{name}: percentile ours {pct:.5} exact {exact:.5} onnxruntime {ort_pct:.5}");
        assert!(
            (f64::from(*pct) - ort_pct).abs() <= 2.0 * w * (1.0 + 1e-6),
            "{name}: percentile ours {pct} vs onnxruntime {ort_pct} (w = {w})"
        );
    }
}
