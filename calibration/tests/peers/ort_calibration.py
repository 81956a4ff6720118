"""Reference thresholds for calibration/tests/entropy_vs_ort.rs.

For every `<case>.f32` (raw little-endian float32 activations) and `<case>.counts` (the Rust
crate's 2048-bin |x| histogram, little-endian uint64) in --dir, writes `<case>.json` with:

- ort_entropy_128 / ort_entropy_256: onnxruntime's HistogramCollector(method="entropy",
  symmetric=True, num_bins=2048, num_quantized_bins=128 or 256) threshold, the non-zero
  values given in one collect() call (so its signed histogram spans exactly
  [-max|x|, max|x|]; exact zeros are left out as the Rust search leaves them out);
- ort_percentile: HistogramCollector(method="percentile", symmetric=True, num_bins=2048,
  percentile=99.99) threshold;
- spec_kl: KL(P||Q) for every candidate i in 128..=2048 of the Rust histogram (its exact
  zeros already removed by the Rust side), computed with
  numpy from the published description (a second, vectorised implementation of the crate's
  stated convention), and spec_best_i, its first argmin.

Run by the Rust test with the project's .venv (scripts/setup); needs onnxruntime, numpy, scipy.
"""

import argparse
import contextlib
import io
import json
import pathlib

import numpy as np
from onnxruntime.quantization.calibrate import HistogramCollector


def ort_threshold(data, method, num_quantized_bins=128, percentile=99.99):
    c = HistogramCollector(
        method=method,
        symmetric=True,
        num_bins=2048,
        num_quantized_bins=num_quantized_bins,
        percentile=percentile,
        scenario="same",
    )
    with contextlib.redirect_stdout(io.StringIO()):  # it prints progress
        c.collect({"t": data})
        lo, hi, *_ = c.compute_collection_result()["t"]
    return float(lo), float(hi)


def spec_kl(counts, levels=128):
    counts = counts.astype(np.float64)
    n = counts.size
    total = counts.sum()
    tail = np.concatenate([np.cumsum(counts[::-1])[::-1], [0.0]])  # tail[i] = sum counts[i:]
    out = np.full(n + 1, np.nan)
    for i in range(levels, n + 1):
        c = counts[:i]
        p = c.copy()
        p[-1] += tail[i]
        level = (np.arange(i) * levels) // i
        level_sum = np.bincount(level, weights=c, minlength=levels)
        level_nz = np.bincount(level, weights=(p > 0).astype(np.float64), minlength=levels)
        q = np.where(p > 0, level_sum[level] / np.maximum(level_nz[level], 1), 0.0)
        m = p > 0
        if np.any(q[m] == 0) or c.sum() == 0:
            out[i] = np.inf
            continue
        pn = p[m] / total
        qn = q[m] / c.sum()
        out[i] = float(np.sum(pn * np.log(pn / qn)))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    args = ap.parse_args()
    d = pathlib.Path(args.dir)
    for f in sorted(d.glob("*.f32")):
        data = np.fromfile(f, dtype="<f4")
        counts = np.fromfile(f.with_suffix(".counts"), dtype="<u8")
        kl = spec_kl(counts)
        finite = np.where(np.isfinite(kl), kl, np.inf)
        best = int(np.argmin(finite[128:]) + 128)
        res = {
            "ort_entropy_128": ort_threshold(data[data != 0], "entropy", 128),
            "ort_entropy_256": ort_threshold(data[data != 0], "entropy", 256),
            "ort_percentile": ort_threshold(data, "percentile"),
            "spec_kl": [None if not np.isfinite(v) else float(v) for v in kl[128:]],
            "spec_best_i": best,
        }
        f.with_suffix(".json").write_text(json.dumps(res))


if __name__ == "__main__":
    main()
