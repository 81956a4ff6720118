//! Which bundle the daemon runs: the one named in the configuration, or the only one
//! installed under `STATE/bundles/`. A bundle whose files do not match its manifest is
//! refused (the daemon then logs images as not analysed and says why).

use std::path::{Path, PathBuf};

use fracture_models::bundle::{Bundle, BundleError, MANIFEST};
use fracture_runtime::OrtOptions;
use fracture_runtime::backend::BackendKind;
use fracture_tensorrt::Precision as TrtPrecision;

use crate::state_dir::StateDir;

#[derive(Debug, thiserror::Error)]
pub enum SelectError {
    #[error("{dir}: {source}")]
    Io { dir: PathBuf, source: std::io::Error },
    #[error(
        "{dir}: several bundles are installed ({names}); name one with `bundle = \"...\"` under [model] in the configuration"
    )]
    Ambiguous { dir: PathBuf, names: String },
    #[error("bundle {name} is not installed under {dir}")]
    NotInstalled { dir: PathBuf, name: String },
    #[error("bundle refused: {0}")]
    Refused(#[from] BundleError),
}

/// Folders under `bundles_dir` holding a manifest, sorted by name.
pub fn installed(bundles_dir: &Path) -> Result<Vec<String>, SelectError> {
    let io = |source| SelectError::Io { dir: bundles_dir.to_path_buf(), source };
    let mut names = Vec::new();
    for entry in std::fs::read_dir(bundles_dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        if entry.path().join(MANIFEST).is_file()
            && let Some(name) = entry.file_name().to_str()
        {
            names.push(name.to_string());
        }
    }
    names.sort();
    Ok(names)
}

/// The bundle to run: `wanted` by folder name, else the single installed one; `Ok(None)`
/// when none is installed.
pub fn select(bundles_dir: &Path, wanted: Option<&str>) -> Result<Option<Bundle>, SelectError> {
    let names = installed(bundles_dir)?;
    let name = match wanted {
        Some(w) if names.iter().any(|n| n == w) => w.to_string(),
        Some(w) => {
            return Err(SelectError::NotInstalled {
                dir: bundles_dir.to_path_buf(),
                name: w.to_string(),
            });
        }
        None => match names.as_slice() {
            [] => return Ok(None),
            [one] => one.clone(),
            _ => {
                return Err(SelectError::Ambiguous {
                    dir: bundles_dir.to_path_buf(),
                    names: names.join(", "),
                });
            }
        },
    };
    Ok(Some(Bundle::open(&bundles_dir.join(name))?))
}

/// The `[model]` section of the daemon's configuration.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    /// Folder name under `STATE/bundles/` to run; default: the only one installed.
    pub bundle: Option<String>,
    /// `cpu`, `cuda` or `cuda:N` (CUDA needs a CUDA libtorch).
    pub device: String,
    /// `fp32`, `bf16` (CPUs with AVX512-BF16) or `fp16` (CUDA).
    pub precision: String,
    /// libtorch's intra-op CPU threads (0: libtorch's default, one per core). On a box that
    /// also runs other work, fewer threads keep inference from stalling on busy cores.
    pub threads: usize,
    /// `auto` (a TensorRT engine, else ONNX Runtime INT8 when the bundle's check passed, else
    /// ONNX Runtime fp32, else libtorch), `torch`, `ort` or `tensorrt`. A named backend that
    /// cannot run leaves images not analysed, with the reason; `auto` falls back and says why.
    pub backend: BackendKind,
    /// ONNX Runtime session options (`threads`, `graph_optimization`, `library`).
    pub onnxruntime: OrtOptions,
    /// The TensorRT engine's precision: `fp16`, or `int8` (only for a bundle whose INT8
    /// accuracy check passed). Engines are built into `STATE/engines/` on first start.
    pub tensorrt_precision: TrtPrecision,
    /// The TensorRT shim library (`libfracture_trt_shim.so`), used exactly; unset:
    /// `$FRACTURE_TRT_SHIM`, next to the executable, then the standard library folders.
    pub tensorrt_shim: Option<PathBuf>,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            bundle: None,
            device: "cpu".into(),
            precision: "fp32".into(),
            threads: 0,
            backend: BackendKind::Auto,
            onnxruntime: OrtOptions::default(),
            tensorrt_precision: TrtPrecision::Fp16,
            tensorrt_shim: None,
        }
    }
}

/// The analyzer the daemon runs: the selected bundle (from `STATE/bundles/`) on the backend
/// `[model] backend` picks (see [`fracture_runtime::backend`]; TensorRT engines live in
/// `STATE/engines/`), or [`NoModel`](crate::analyzer::NoModel) with the reason when there is
/// none, it is refused or no backend can run it (images are then logged as not analysed;
/// nothing is lost).
pub fn load_analyzer(
    state: &StateDir,
    cfg: &ModelConfig,
) -> (Box<dyn crate::analyzer::Analyzer>, Option<String>) {
    use crate::analyzer::Analyzer;
    use crate::analyzer::NoModel;
    use crate::backend_libtorch::LibtorchAnalyzer;
    use crate::backend_ort::OrtAnalyzer;
    use crate::backend_tensorrt::TrtAnalyzer;
    use fracture_runtime::backend::{self, Plan};
    if cfg.threads > 0 {
        tch::set_num_threads(i32::try_from(cfg.threads).unwrap_or(i32::MAX));
    }
    let bundles_dir = &state.bundles;
    let bundle = match select(bundles_dir, cfg.bundle.as_deref()) {
        Ok(Some(b)) => b,
        Ok(None) => {
            let why = format!("no model bundle installed under {}", bundles_dir.display());
            return (Box::new(NoModel), Some(why));
        }
        Err(e) => return (Box::new(NoModel), Some(e.to_string())),
    };
    let device = match fracture_models::compute_device::parse_device(&cfg.device) {
        Ok(d) => d,
        Err(e) => return (Box::new(NoModel), Some(format!("[model] device: {e}"))),
    };
    let precision = match cfg.precision.parse::<fracture_models::yolo::Precision>() {
        Ok(p) => p,
        Err(e) => return (Box::new(NoModel), Some(format!("[model] precision: {e}"))),
    };
    let chosen = backend::open_first(&bundle, cfg.backend, |plan| {
        let loaded: Box<dyn Analyzer> = match plan {
            Plan::Torch => Box::new(
                LibtorchAnalyzer::load(&bundle, device, precision).map_err(|e| e.to_string())?,
            ),
            Plan::Ort { onnx, precision } => Box::new(
                OrtAnalyzer::load(&bundle, onnx, precision, &cfg.onnxruntime)
                    .map_err(|e| e.to_string())?,
            ),
            Plan::TensorRt => Box::new(
                TrtAnalyzer::load(
                    &bundle,
                    cfg.tensorrt_shim.as_deref(),
                    cfg.tensorrt_precision,
                    &state.engines,
                )
                // One line for the log and the status page (the shim's search list has many).
                .map_err(|e| e.to_string().lines().map(str::trim).collect::<Vec<_>>().join(" "))?,
            ),
        };
        Ok(loaded)
    });
    match chosen {
        Ok(mut c) => {
            tracing::info!(backend = %c.plan.describe(), reason = %c.reason, "backend chosen");
            c.value.set_backend_reason(c.reason);
            (c.value, None)
        }
        Err(e) => (Box::new(NoModel), Some(e.to_string())),
    }
}
