//! Writing an evaluation into a model bundle: the two operating points into the manifest's
//! `operating_points` and the numbers into `metrics`, the rest of the manifest untouched. Only
//! the manifest changes, so every listed file keeps its SHA-256; the bundle's identity (the
//! manifest's SHA-256) changes, as it must. The manifest is serialised as
//! [`Bundle::write`] does and replaced through a rename, then the bundle is opened again, so a
//! bundle that would not open is never left behind.
//!
//! The bundle must hold the evaluated weights: when `--weights` is another file, both are
//! compared tensor by tensor (bundles may store float16 copies, so values agree to ~1e-3).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use fracture_models::bundle::{Bundle, BundleError, MANIFEST, OperatingPoints};
use fracture_models::weights_file;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::EvalError;

/// What changed in the bundle.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BundleUpdate {
    pub dir: PathBuf,
    /// The bundle's identity before and after.
    pub sha256_before: String,
    pub sha256: String,
    pub operating_points: OperatingPoints,
    /// The metrics written (other keys of the manifest's `metrics` stay).
    pub metrics: BTreeMap<String, f64>,
}

/// Opens (verifies) the bundle at `dir` and checks that it holds `weights`.
pub fn open_for(dir: &Path, weights: &Path) -> Result<Bundle, EvalError> {
    let bundle = Bundle::open(dir)?;
    if let Some(message) = differ(&bundle.weights(), weights)? {
        return Err(EvalError::BundleWeights {
            bundle: dir.to_path_buf(),
            weights: weights.to_path_buf(),
            message,
        });
    }
    Ok(bundle)
}

fn sha256(path: &Path) -> Result<String, EvalError> {
    let bytes =
        std::fs::read(path).map_err(|source| EvalError::Io { path: path.to_path_buf(), source })?;
    Ok(hex::encode(Sha256::digest(&bytes)))
}

/// Why the two weight files hold different networks, or `None` when they hold the same.
fn differ(a: &Path, b: &Path) -> Result<Option<String>, EvalError> {
    if sha256(a)? == sha256(b)? {
        return Ok(None);
    }
    let ta = weights_file::load_tensors(a)?;
    let tb: BTreeMap<String, tch::Tensor> = weights_file::load_tensors(b)?.into_iter().collect();
    if ta.len() != tb.len() {
        return Ok(Some(format!("{} tensors against {}", ta.len(), tb.len())));
    }
    for (name, x) in &ta {
        let Some(y) = tb.get(name) else {
            return Ok(Some(format!("tensor {name} is missing")));
        };
        if x.size() != y.size() {
            return Ok(Some(format!("tensor {name} is {:?}, not {:?}", x.size(), y.size())));
        }
        if x.numel() == 0 {
            continue;
        }
        let (x, y) = (x.to_kind(tch::Kind::Double), y.to_kind(tch::Kind::Double));
        let diff = (&x - &y).abs().max().double_value(&[]);
        let scale = x.abs().max().double_value(&[]);
        // float16 rounding moves a value by at most 2^-11 of itself (NaN differs too)
        let close = diff <= 2e-3 * scale + 1e-6;
        if !close {
            return Ok(Some(format!("tensor {name} differs by up to {diff:.3e}")));
        }
    }
    Ok(None)
}

/// Replaces the operating points, merges `metrics` into the manifest's, and verifies the
/// bundle again.
pub fn store(
    bundle: &Bundle,
    points: OperatingPoints,
    metrics: BTreeMap<String, f64>,
) -> Result<BundleUpdate, EvalError> {
    let dir = &bundle.dir;
    if !(points.suspicious > 0.0 && points.suspicious <= points.definite && points.definite <= 1.0)
    {
        return Err(BundleError::Thresholds {
            bundle: dir.clone(),
            suspicious: points.suspicious,
            definite: points.definite,
        }
        .into());
    }
    let mut manifest = bundle.manifest.clone();
    manifest.operating_points = points;
    manifest.metrics.extend(metrics.iter().map(|(k, v)| (k.clone(), *v)));
    let path = dir.join(MANIFEST);
    let text = serde_json::to_string_pretty(&manifest)
        .map_err(|source| EvalError::Json { path: path.clone(), source })?;
    let tmp = dir.join("manifest.json.partial");
    std::fs::write(&tmp, text).map_err(|source| EvalError::Io { path: tmp.clone(), source })?;
    std::fs::rename(&tmp, &path).map_err(|source| EvalError::Io { path: path.clone(), source })?;
    let after = Bundle::open(dir)?;
    Ok(BundleUpdate {
        dir: dir.clone(),
        sha256_before: bundle.sha256.clone(),
        sha256: after.sha256,
        operating_points: after.manifest.operating_points,
        metrics,
    })
}
