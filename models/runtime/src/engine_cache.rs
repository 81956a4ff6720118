//! The TensorRT engine cache of a machine: one folder holding engines keyed by their whole
//! identity (bundle SHA-256, TensorRT version, GPU name and compute capability, precision;
//! [`EngineIdentity::engine_file_name`]), each with its `.identity.json` sidecar. "Find or
//! build" loads the engine that fits this machine and bundle, checked, and builds it from the
//! bundle's files when there is none or it does not fit — saying why (which field of the
//! closest cached engine differed), for the log and the status page. Shared by the daemon's
//! start and `fracturectl engine build`.

use std::path::{Path, PathBuf};

use fracture_models::bundle::Bundle;
use fracture_tensorrt::identity::read_engine;
use fracture_tensorrt::{
    BuildConfig, Engine, EngineIdentity, Precision, Profile, Shim, TrtError, build_and_write,
    load_engine_checked,
};

use crate::engine_source::{EngineSourceError, engine_source};

/// CUDA device engines are built for and run on.
pub const DEVICE: i32 = 0;

#[derive(Debug, thiserror::Error)]
pub enum EngineCacheError {
    #[error("TensorRT: {0}")]
    Trt(#[from] TrtError),
    #[error("cannot build an engine ({why}): {source}")]
    Source {
        why: String,
        #[source]
        source: EngineSourceError,
    },
    #[error("building the engine {path} failed ({why}): {source}")]
    Build {
        path: PathBuf,
        why: String,
        #[source]
        source: TrtError,
    },
}

/// Whether the engine came from the cache or was built now, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Provenance {
    Loaded,
    Built { why: String },
}

impl std::fmt::Display for Provenance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Loaded => f.write_str("cached engine loaded"),
            Self::Built { why } => write!(f, "engine built ({why})"),
        }
    }
}

/// An engine that fits this machine and bundle.
#[derive(Debug)]
pub struct CachedEngine {
    pub engine: Engine,
    pub path: PathBuf,
    pub identity: EngineIdentity,
    pub provenance: Provenance,
}

/// What a missing engine's nearest neighbour in the cache says: the cached engine (for the
/// same bundle first) whose identity differs from `want` in the fewest fields, and those
/// fields, e.g. `cached engine X.engine differs: TensorRT version differs (engine: 10.3.0,
/// needed: 10.7.0)`.
fn closest(cache_dir: &Path, want: &EngineIdentity) -> Option<String> {
    let mut best: Option<(usize, String)> = None;
    for entry in std::fs::read_dir(cache_dir).ok()?.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "engine") {
            continue;
        }
        let Ok((_, identity)) = read_engine(&path) else { continue };
        let diff = identity.mismatches(want);
        // Another bundle counts as further than any difference of the same bundle's engines.
        let rank = diff.len() + if identity.bundle_sha256 == want.bundle_sha256 { 0 } else { 10 };
        if diff.is_empty() || best.as_ref().is_some_and(|(r, _)| *r <= rank) {
            continue;
        }
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let fields: Vec<String> = diff.iter().map(ToString::to_string).collect();
        best = Some((rank, format!("cached engine {name} differs: {}", fields.join("; "))));
    }
    best.map(|(_, text)| text)
}

/// Why the engine at `path` cannot be used, when loading it failed with `e`.
fn unusable(e: &TrtError, path: &Path, cache_dir: &Path, want: &EngineIdentity) -> String {
    match e {
        TrtError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            let none = format!(
                "no engine for this bundle, GPU, TensorRT version and precision in {}",
                cache_dir.display()
            );
            match closest(cache_dir, want) {
                Some(c) => format!("{none}; {c}"),
                None => none,
            }
        }
        TrtError::IdentityMismatch { mismatches, .. } => format!(
            "{} does not fit: {}",
            path.display(),
            mismatches.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
        ),
        other => format!("{} is unusable: {other}", path.display()),
    }
}

/// The engine for `bundle` at `precision` from `cache_dir`, built (and cached) when none
/// fits. Loading is checked against this machine's identity ([`load_engine_checked`]); an
/// engine that is missing, describes another bundle, GPU, TensorRT version or precision, has
/// a sidecar that does not describe it, or that TensorRT refuses, is rebuilt, and the
/// returned [`Provenance`] says why. With `force`, it is rebuilt in any case.
pub fn find_or_build(
    shim: &Shim,
    bundle: &Bundle,
    precision: Precision,
    cache_dir: &Path,
    force: bool,
) -> Result<CachedEngine, EngineCacheError> {
    let want = EngineIdentity::current(shim, DEVICE, &bundle.sha256, precision)?;
    let path = cache_dir.join(want.engine_file_name());
    let why = if force {
        "rebuild requested".to_string()
    } else {
        match load_engine_checked(shim, &path, &want) {
            Ok(engine) => {
                return Ok(CachedEngine {
                    engine,
                    path,
                    identity: want,
                    provenance: Provenance::Loaded,
                });
            }
            // Loading the shim's own functions failing is not the cache's problem.
            Err(e @ TrtError::Shim { function, .. }) if function != "trt_engine_deserialize" => {
                return Err(e.into());
            }
            Err(e) => unusable(&e, &path, cache_dir, &want),
        }
    };
    let source = engine_source(bundle, precision)
        .map_err(|source| EngineCacheError::Source { why: why.clone(), source })?;
    let config = BuildConfig {
        calibration_cache: source.calibration_cache,
        profile: Some(Profile::square(bundle.manifest.imgsz, 1)),
        ..BuildConfig::new(source.onnx, precision)
    };
    let build_err =
        |source| EngineCacheError::Build { path: path.clone(), why: why.clone(), source };
    let identity =
        build_and_write(shim, &config, DEVICE, &bundle.sha256, &path).map_err(build_err)?;
    let engine = load_engine_checked(shim, &path, &identity).map_err(build_err)?;
    Ok(CachedEngine { engine, path, identity, provenance: Provenance::Built { why } })
}
