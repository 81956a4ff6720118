//! What an engine is tied to: the bundle it was built from (the manifest's SHA-256), the
//! TensorRT version, the GPU (name and compute capability) and the precision. Stored next to
//! the engine as `<engine>.identity.json`, together with the engine file's own SHA-256 so a
//! sidecar cannot vouch for another engine. Loading compares it with what this machine and
//! bundle need and refuses a mismatch, naming every field that differs.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::builder::Precision;
use crate::error::{Result, TrtError};
use crate::loader::Shim;
use crate::runtime::Engine;

/// Format of the identity file written by this build.
pub const IDENTITY_FORMAT: u32 = 1;

/// The key an engine is valid for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineIdentity {
    pub bundle_sha256: String,
    pub trt_version: String,
    pub gpu_name: String,
    /// `major.minor`, e.g. `8.7`.
    pub compute_capability: String,
    pub precision: Precision,
}

/// One field of [`EngineIdentity`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityField {
    BundleSha256,
    TrtVersion,
    GpuName,
    ComputeCapability,
    Precision,
}

impl fmt::Display for IdentityField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::BundleSha256 => "bundle sha256",
            Self::TrtVersion => "TensorRT version",
            Self::GpuName => "GPU name",
            Self::ComputeCapability => "compute capability",
            Self::Precision => "precision",
        })
    }
}

/// A field whose value in the engine differs from the one needed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityMismatch {
    pub field: IdentityField,
    pub engine: String,
    pub expected: String,
}

impl fmt::Display for IdentityMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} differs (engine: {}, needed: {})", self.field, self.engine, self.expected)
    }
}

impl EngineIdentity {
    /// The identity an engine built here and now for `bundle_sha256` at `precision` gets.
    pub fn current(
        shim: &Shim,
        device: i32,
        bundle_sha256: &str,
        precision: Precision,
    ) -> Result<Self> {
        let gpu = shim.device_info(device)?;
        Ok(Self {
            bundle_sha256: bundle_sha256.to_string(),
            trt_version: shim.trt_version()?,
            compute_capability: gpu.compute_capability(),
            gpu_name: gpu.name,
            precision,
        })
    }

    /// A file name for this identity's engine, for a cache folder that holds engines for
    /// several bundles, precisions or TensorRT versions side by side, e.g.
    /// `5f2c0e7d0a9b-fp16-trt10.3.0-orin-sm87.engine`. Only characters `[a-z0-9.-]`.
    pub fn engine_file_name(&self) -> String {
        let slug = |s: &str| {
            let mut out = String::new();
            for c in s.chars() {
                if c.is_ascii_alphanumeric() || c == '.' {
                    out.push(c.to_ascii_lowercase());
                } else if !out.ends_with('-') && !out.is_empty() {
                    out.push('-');
                }
            }
            out.trim_end_matches('-').to_string()
        };
        let bundle: String = slug(&self.bundle_sha256).chars().take(12).collect();
        format!(
            "{bundle}-{}-trt{}-{}-sm{}.engine",
            self.precision,
            slug(&self.trt_version),
            slug(&self.gpu_name),
            slug(&self.compute_capability).replace('.', "")
        )
    }

    /// Every field where `self` (an engine's identity) differs from `expected`, in field
    /// order; empty when the engine fits.
    pub fn mismatches(&self, expected: &Self) -> Vec<IdentityMismatch> {
        let pairs = [
            (IdentityField::BundleSha256, &self.bundle_sha256, &expected.bundle_sha256),
            (IdentityField::TrtVersion, &self.trt_version, &expected.trt_version),
            (IdentityField::GpuName, &self.gpu_name, &expected.gpu_name),
            (
                IdentityField::ComputeCapability,
                &self.compute_capability,
                &expected.compute_capability,
            ),
        ];
        let mut out: Vec<IdentityMismatch> = pairs
            .into_iter()
            .filter(|(_, a, b)| a != b)
            .map(|(field, a, b)| IdentityMismatch { field, engine: a.clone(), expected: b.clone() })
            .collect();
        if self.precision != expected.precision {
            out.push(IdentityMismatch {
                field: IdentityField::Precision,
                engine: self.precision.to_string(),
                expected: expected.precision.to_string(),
            });
        }
        out
    }
}

/// What `<engine>.identity.json` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityFile {
    pub format: u32,
    #[serde(flatten)]
    pub identity: EngineIdentity,
    /// SHA-256 of the engine file this sidecar describes.
    pub engine_sha256: String,
}

/// `<engine>.identity.json`.
pub fn identity_path(engine: &Path) -> PathBuf {
    let mut s = engine.as_os_str().to_os_string();
    s.push(".identity.json");
    PathBuf::from(s)
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TrtError + '_ {
    move |source| TrtError::Io { path: path.to_path_buf(), source }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = path.as_os_str().to_os_string();
    tmp.push(".partial");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, bytes).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// Writes the engine, then its identity file (last, so a crash never leaves an engine that
/// claims an identity).
pub fn write_engine(path: &Path, plan: &[u8], identity: &EngineIdentity) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    let sidecar = identity_path(path);
    // An old sidecar must not survive next to a new engine.
    match std::fs::remove_file(&sidecar) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(&sidecar)(e)),
    }
    write_atomic(path, plan)?;
    let file = IdentityFile {
        format: IDENTITY_FORMAT,
        identity: identity.clone(),
        engine_sha256: hex::encode(Sha256::digest(plan)),
    };
    let text = serde_json::to_string_pretty(&file)
        .map_err(|e| TrtError::IdentityFile { path: sidecar.clone(), message: e.to_string() })?;
    write_atomic(&sidecar, text.as_bytes())
}

/// Reads an engine and its identity file, checking that the file describes these bytes.
pub fn read_engine(path: &Path) -> Result<(Vec<u8>, EngineIdentity)> {
    let plan = std::fs::read(path).map_err(io(path))?;
    let sidecar = identity_path(path);
    let text = std::fs::read(&sidecar).map_err(io(&sidecar))?;
    let file: IdentityFile = serde_json::from_slice(&text).map_err(|e| TrtError::IdentityFile {
        path: sidecar.clone(),
        message: format!("not an engine identity: {e}"),
    })?;
    if file.format > IDENTITY_FORMAT {
        return Err(TrtError::IdentityFile {
            path: sidecar,
            message: format!(
                "identity format {} is newer than this build ({IDENTITY_FORMAT})",
                file.format
            ),
        });
    }
    let found = hex::encode(Sha256::digest(&plan));
    if found != file.engine_sha256 {
        return Err(TrtError::IdentityFile {
            path: sidecar,
            message: format!(
                "describes an engine with SHA-256 {}, but {} has {found}",
                file.engine_sha256,
                path.display()
            ),
        });
    }
    Ok((plan, file.identity))
}

/// Reads the engine at `path`, refuses it unless its identity equals `expected` (naming
/// every field that differs), then deserialises it.
pub fn load_engine_checked(shim: &Shim, path: &Path, expected: &EngineIdentity) -> Result<Engine> {
    let (plan, identity) = read_engine(path)?;
    let mismatches = identity.mismatches(expected);
    if !mismatches.is_empty() {
        return Err(TrtError::IdentityMismatch { path: path.to_path_buf(), mismatches });
    }
    shim.deserialize_engine(&plan)
}

/// Builds an engine as `config` says for the bundle `bundle_sha256` on CUDA device `device`,
/// writes it with its identity to `out`, and returns the identity (what `fracture engine
/// build` does after choosing the bundle's files; what the daemon does on first start).
pub fn build_and_write(
    shim: &Shim,
    config: &crate::builder::BuildConfig,
    device: i32,
    bundle_sha256: &str,
    out: &Path,
) -> Result<EngineIdentity> {
    let identity = EngineIdentity::current(shim, device, bundle_sha256, config.precision)?;
    let plan = shim.build_serialized(config)?;
    write_engine(out, &plan, &identity)?;
    Ok(identity)
}
