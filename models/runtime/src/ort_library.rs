//! Finding and loading ONNX Runtime's shared library at run time (the `ort` crate's
//! `load-dynamic`), once per process, and the session options every ONNX Runtime backend uses.
//!
//! Search order for `libonnxruntime.so`: the path the caller names (config or flag), the
//! `FRACTURE_ONNXRUNTIME_LIB` environment variable, next to the executable, `../lib/fracture`
//! beside it, `/usr/lib/fracture`, then the copy `scripts/setup` extracts from the onnxruntime
//! PyPI wheel into this workspace (`.deps/onnxruntime/lib`). A missing library is an error
//! that lists every place looked at, so `--backend auto` can fall back and say why.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The file name `scripts/setup` links (a symlink to `libonnxruntime.so.1.32.0`).
const LIB_NAME: &str = "libonnxruntime.so";

/// Where `scripts/setup` puts the library in a development checkout.
const WORKSPACE_LIB: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../.deps/onnxruntime/lib");

#[derive(Debug, Clone, thiserror::Error)]
pub enum OrtLibraryError {
    #[error(
        "ONNX Runtime ({LIB_NAME}) was not found; looked in: {}. Run scripts/setup, or set \
         FRACTURE_ONNXRUNTIME_LIB (or [model] onnxruntime_lib) to the library's path",
        .looked.join(", ")
    )]
    NotFound { looked: Vec<String> },
    #[error("ONNX Runtime at {path} could not be loaded: {message}")]
    Load { path: PathBuf, message: String },
    #[error("ONNX Runtime was already loaded from {loaded}; {asked} cannot be loaded as well")]
    AlreadyLoaded { loaded: PathBuf, asked: PathBuf },
}

/// Candidate paths, in search order.
pub fn search_paths(explicit: Option<&Path>) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(p) = explicit {
        out.push(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os("FRACTURE_ONNXRUNTIME_LIB") {
        out.push(PathBuf::from(p));
    }
    if let Some(dir) = std::env::current_exe().ok().and_then(|e| e.parent().map(Path::to_path_buf))
    {
        out.push(dir.join(LIB_NAME));
        out.push(dir.join("../lib/fracture").join(LIB_NAME));
    }
    out.push(PathBuf::from("/usr/lib/fracture").join(LIB_NAME));
    out.push(Path::new(WORKSPACE_LIB).join(LIB_NAME));
    out
}

/// ONNX Runtime as this process loaded it: where from, and the environment sessions use.
#[derive(Debug)]
pub struct Loaded {
    pub path: PathBuf,
    pub env: ort::environment::Environment,
}

/// The library this process loaded (or the error it got), decided by the first call.
static LOADED: OnceLock<Result<Loaded, OrtLibraryError>> = OnceLock::new();

/// Loads ONNX Runtime once for the process. Later calls return the first outcome; naming a
/// different explicit path after a load is an error.
pub fn ensure_loaded(explicit: Option<&Path>) -> Result<&'static Loaded, OrtLibraryError> {
    match (LOADED.get_or_init(|| load_first(explicit)), explicit) {
        (Ok(loaded), Some(asked)) if !same_file(&loaded.path, asked) => {
            Err(OrtLibraryError::AlreadyLoaded {
                loaded: loaded.path.clone(),
                asked: asked.to_path_buf(),
            })
        }
        (Ok(loaded), _) => Ok(loaded),
        (Err(e), _) => Err(e.clone()),
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

fn load_first(explicit: Option<&Path>) -> Result<Loaded, OrtLibraryError> {
    let candidates = search_paths(explicit);
    let Some(path) = candidates.iter().find(|p| p.is_file()) else {
        return Err(OrtLibraryError::NotFound {
            looked: candidates.iter().map(|p| p.display().to_string()).collect(),
        });
    };
    let load_err = |message: String| OrtLibraryError::Load { path: path.clone(), message };
    let builder = ort::init_from(path).map_err(|e| load_err(e.to_string()))?;
    let env = builder.with_name("fracture").build().map_err(|e| load_err(e.to_string()))?;
    Ok(Loaded { path: path.clone(), env })
}

/// ONNX Runtime's graph optimisation level (`[model.onnxruntime] graph_optimization`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GraphOptimization {
    Disable,
    Basic,
    Extended,
    /// Every optimisation, including layout changes (NCHWc): the fastest on CPU.
    #[default]
    All,
}

impl std::str::FromStr for GraphOptimization {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "disable" => Ok(Self::Disable),
            "basic" => Ok(Self::Basic),
            "extended" => Ok(Self::Extended),
            "all" => Ok(Self::All),
            other => {
                Err(format!("unknown graph optimisation `{other}`: disable|basic|extended|all"))
            }
        }
    }
}

impl From<GraphOptimization> for ort::session::builder::GraphOptimizationLevel {
    fn from(g: GraphOptimization) -> Self {
        use ort::session::builder::GraphOptimizationLevel as L;
        match g {
            GraphOptimization::Disable => L::Disable,
            GraphOptimization::Basic => L::Level1,
            GraphOptimization::Extended => L::Level2,
            GraphOptimization::All => L::Level3,
        }
    }
}

/// How a Q/DQ model's int8 convolution weights meet this CPU's integer kernels
/// (`[model.onnxruntime] int8_weights`).
///
/// ONNX Runtime's x86 kernels multiply uint8 activations by int8 weights. Without VNNI
/// (AVX2, or AVX-512 without VNNI) they add each pair of products into a saturating int16,
/// which full-range 8-bit weights overflow; 7-bit weights cannot (see
/// [`fracture_models::onnx::qdq::to_reduced_range_weights`]). On an AVX2-only EPYC the
/// demo model's stem convolution alone did 0.32 of output damage with 8-bit weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Int8Weights {
    /// `reduced` where the integer kernels would saturate (x86 without VNNI), else `full`.
    #[default]
    Auto,
    /// The bundle's 8-bit weights as they are.
    Full,
    /// Weights re-quantised to 7 bits at load (ONNX Runtime's `reduce_range`).
    Reduced,
}

impl Int8Weights {
    /// Whether weights are re-quantised to 7 bits on this machine.
    pub fn reduced(self) -> bool {
        match self {
            Self::Auto => u8s8_saturates(),
            Self::Full => false,
            Self::Reduced => true,
        }
    }
}

impl std::str::FromStr for Int8Weights {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "full" => Ok(Self::Full),
            "reduced" => Ok(Self::Reduced),
            other => Err(format!("unknown int8 weight form `{other}`: auto|full|reduced")),
        }
    }
}

/// Whether this CPU's uint8 × int8 kernels add product pairs into a saturating int16: x86-64
/// without AVX-512 VNNI or AVX-VNNI (whose `vpdpbusd` accumulates in int32). ARM's dot-product
/// and widening kernels do not saturate.
pub fn u8s8_saturates() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        !(std::arch::is_x86_feature_detected!("avx512vnni")
            || std::arch::is_x86_feature_detected!("avxvnni"))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Session options exposed in the device config and on the command line.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OrtOptions {
    /// Intra-op threads; `None` (or 0) uses every core the process may run on.
    pub threads: Option<usize>,
    pub graph_optimization: GraphOptimization,
    /// Path of `libonnxruntime.so` when it is not in a standard place.
    pub library: Option<PathBuf>,
    /// 8- or 7-bit convolution weights for INT8 models (default: what this CPU needs).
    pub int8_weights: Int8Weights,
}

impl OrtOptions {
    /// The thread count a session gets: the configured one, else the machine's cores.
    pub fn intra_threads(&self) -> usize {
        match self.threads {
            Some(n) if n > 0 => n,
            _ => std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}
