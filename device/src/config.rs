//! The daemon's configuration: a TOML file whose every key is optional. With no file at all
//! the daemon runs on the safe defaults here (review screen on loopback, conservative size
//! limits); `fractured --print-config` prints the effective configuration, and
//! `systemd/fractured.example.toml` documents every key.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::DEFAULT_LISTEN;

/// Everything the daemon reads from its configuration file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address of the HTTP server (review screen, health, metrics). Loopback only unless
    /// `[http]` names a TLS certificate and key.
    pub listen: String,
    pub http: HttpConfig,
    /// Logins and sessions on the review screen.
    pub review: ReviewConfig,
    pub ingest: IngestConfig,
    pub storage: StorageConfig,
    pub health: HealthConfig,
    /// Which installed bundle to run, where and how.
    pub model: crate::bundle_select::ModelConfig,
    /// A V4L2 scanner as a second source beside the capture folder.
    pub scanner: crate::scanner::ScannerConfig,
}

/// The HTTP server on `listen`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// TLS certificate chain (PEM). With `tls_key`, the server speaks HTTPS only, and may
    /// then listen on a network address; without them it listens on loopback only.
    pub tls_cert: Option<std::path::PathBuf>,
    /// The certificate's private key (PEM, PKCS#8, PKCS#1 or SEC1).
    pub tls_key: Option<std::path::PathBuf>,
}

impl HttpConfig {
    /// Whether TLS is configured (both files named).
    pub fn tls(&self) -> Option<(&Path, &Path)> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(c), Some(k)) => Some((c.as_path(), k.as_path())),
            _ => None,
        }
    }
}

/// Review-screen logins and sessions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReviewConfig {
    /// A session ends after this many seconds without a request.
    pub session_idle_s: u64,
    /// A session ends this many seconds after login, active or not.
    pub session_max_s: u64,
    /// Consecutive failed logins (per account and per client address) before a lockout.
    pub login_max_failures: u32,
    /// How long a lockout lasts.
    pub login_lockout_s: u64,
}

impl Default for ReviewConfig {
    fn default() -> Self {
        Self {
            session_idle_s: 900,
            session_max_s: 12 * 3600,
            login_max_failures: 5,
            login_lockout_s: 60,
        }
    }
}

/// Free space on the state directory, and what to do when it runs out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// Ingestion pauses (health `paused`) while the state directory's file system has less
    /// than this many MiB free, and resumes once it has more; files wait in capture/.
    pub min_free_mb: u64,
    /// First wait after the state directory was found full or a database write failed;
    /// doubled at each further failure up to `retry_max_ms`.
    pub retry_initial_ms: u64,
    pub retry_max_ms: u64,
}

/// When `/healthz` reports the pipeline as stalled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HealthConfig {
    /// With work queued, no job finishing for this many seconds makes the state `degraded`.
    pub stall_after_s: u64,
}

/// Capture-folder and decoding settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestConfig {
    /// A file counts as complete once its size and modification time have not changed for
    /// this long (a file renamed into the folder counts at once).
    pub stable_ms: u64,
    /// Period of the full rescan of the capture folder, the source of truth (file-system
    /// events only make the daemon react sooner).
    pub rescan_ms: u64,
    /// Files larger than this are quarantined without being read.
    pub max_file_bytes: u64,
    /// Largest image width and height accepted, checked on the header before decoding.
    pub max_width: u32,
    pub max_height: u32,
    /// Bytes a decoder may allocate for one image.
    pub max_decode_bytes: u64,
    /// A job whose processing was interrupted this many times (the daemon died while it was
    /// running) is quarantined instead of being retried again.
    pub max_attempts: u32,
    /// DICOM modalities accepted (projection radiography).
    pub dicom_modalities: Vec<String>,
    /// Backpressure: a scan queues new files only while fewer than this many jobs wait, so
    /// a flood of arrivals stays in capture/ (on disk), not in the queue or in memory.
    pub max_pending_jobs: u64,
    /// Most capture-folder entries tracked at once (for the completeness check); entries
    /// beyond it are looked at once earlier ones have left the folder.
    pub max_tracked_files: usize,
    /// Read and decode the next queued file on a second thread while the current one is
    /// analysed. On a box whose cores inference already keeps busy, off may be as fast;
    /// `fracture-bench daemon --no-decode-ahead` measures it.
    pub decode_ahead: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.to_string(),
            http: HttpConfig::default(),
            review: ReviewConfig::default(),
            ingest: IngestConfig::default(),
            storage: StorageConfig::default(),
            health: HealthConfig::default(),
            model: crate::bundle_select::ModelConfig::default(),
            scanner: crate::scanner::ScannerConfig::default(),
        }
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self { min_free_mb: 256, retry_initial_ms: 1_000, retry_max_ms: 60_000 }
    }
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self { stall_after_s: 300 }
    }
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            stable_ms: 2_000,
            rescan_ms: 5_000,
            max_file_bytes: 512 << 20,
            max_width: 16_384,
            max_height: 16_384,
            max_decode_bytes: 1 << 30,
            max_attempts: 3,
            dicom_modalities: ["CR", "DX", "DR", "RG"].map(String::from).to_vec(),
            max_pending_jobs: 64,
            max_tracked_files: 10_000,
            decode_ahead: true,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("invalid config {path}: {source}")]
    Parse { path: String, source: toml::de::Error },
    #[error("invalid config {path}: [http] names {given} but not {missing}; TLS needs both")]
    HalfTls { path: String, given: &'static str, missing: &'static str },
    #[error("cannot print config: {0}")]
    Print(#[from] toml::ser::Error),
}

impl Config {
    /// Reads a TOML file; keys it leaves out keep their defaults, unknown keys are errors.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.display().to_string(), source })?;
        let config: Self = toml::from_str(&text)
            .map_err(|source| ConfigError::Parse { path: path.display().to_string(), source })?;
        let half = |given, missing| ConfigError::HalfTls {
            path: path.display().to_string(),
            given,
            missing,
        };
        match (&config.http.tls_cert, &config.http.tls_key) {
            (Some(_), None) => Err(half("tls_cert", "tls_key")),
            (None, Some(_)) => Err(half("tls_key", "tls_cert")),
            _ => Ok(config),
        }
    }

    /// The configuration as TOML (what `--print-config` shows).
    pub fn to_toml(&self) -> Result<String, ConfigError> {
        Ok(toml::to_string_pretty(self)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_round_trip_and_partial_files_keep_defaults() {
        let text = Config::default().to_toml().expect("print");
        let back: Config = toml::from_str(&text).expect("parse");
        assert_eq!(back, Config::default());
        let partial: Config = toml::from_str("[ingest]\nstable_ms = 100\n").expect("parse");
        assert_eq!(partial.ingest.stable_ms, 100);
        assert_eq!(partial.listen, DEFAULT_LISTEN);
        assert!(toml::from_str::<Config>("nonsense = 1\n").is_err());
    }
}
