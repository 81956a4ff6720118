//! Calibration-set manifests: the list of images a calibration used, each with its SHA-256, so
//! the same calibration can be reproduced and a changed file is noticed.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// One image of a calibration set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// Path as given when the manifest was made (relative paths are relative to `root`).
    pub path: PathBuf,
    pub sha256: String,
    pub fractured: bool,
}

/// The images of one calibration run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CalibrationManifest {
    pub root: PathBuf,
    pub images: Vec<ManifestEntry>,
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: not a calibration manifest: {source}")]
    Parse { path: PathBuf, source: serde_json::Error },
    #[error(
        "{path}: content changed since the manifest was made (sha256 {expected}, now {actual})"
    )]
    Changed { path: PathBuf, expected: String, actual: String },
}

/// Lowercase hex SHA-256 of a file.
pub fn sha256_file(path: &Path) -> Result<String, ManifestError> {
    let bytes = std::fs::read(path)
        .map_err(|source| ManifestError::Io { path: path.to_path_buf(), source })?;
    Ok(hex::encode(Sha256::digest(&bytes)))
}

impl CalibrationManifest {
    /// Hashes every image; `images` pairs a path (relative to `root`) with its fractured flag.
    pub fn build(root: &Path, images: &[(PathBuf, bool)]) -> Result<Self, ManifestError> {
        let images = images
            .iter()
            .map(|(path, fractured)| {
                Ok(ManifestEntry {
                    sha256: sha256_file(&root.join(path))?,
                    path: path.clone(),
                    fractured: *fractured,
                })
            })
            .collect::<Result<_, ManifestError>>()?;
        Ok(Self { root: root.to_path_buf(), images })
    }

    /// Hash of the manifest itself (recorded in a model bundle's manifest).
    pub fn digest(&self) -> String {
        let mut h = Sha256::new();
        for e in &self.images {
            h.update(e.path.to_string_lossy().as_bytes());
            h.update([0]);
            h.update(e.sha256.as_bytes());
            h.update([u8::from(e.fractured)]);
        }
        hex::encode(h.finalize())
    }

    /// Re-hashes every file and reports the first one that changed.
    pub fn verify(&self) -> Result<(), ManifestError> {
        for e in &self.images {
            let path = self.root.join(&e.path);
            let actual = sha256_file(&path)?;
            if actual != e.sha256 {
                return Err(ManifestError::Changed { path, expected: e.sha256.clone(), actual });
            }
        }
        Ok(())
    }

    pub fn fractured_count(&self) -> usize {
        self.images.iter().filter(|e| e.fractured).count()
    }

    pub fn write(&self, path: &Path) -> Result<(), ManifestError> {
        let text = serde_json::to_string_pretty(self)
            .map_err(|source| ManifestError::Parse { path: path.to_path_buf(), source })?;
        std::fs::write(path, text)
            .map_err(|source| ManifestError::Io { path: path.to_path_buf(), source })
    }

    pub fn read(path: &Path) -> Result<Self, ManifestError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ManifestError::Io { path: path.to_path_buf(), source })?;
        serde_json::from_str(&text)
            .map_err(|source| ManifestError::Parse { path: path.to_path_buf(), source })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn round_trip_and_change_detection() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.jpg"), b"aaaa").unwrap();
        std::fs::write(dir.path().join("b.jpg"), b"bbbb").unwrap();
        let m = CalibrationManifest::build(
            dir.path(),
            &[("a.jpg".into(), true), ("b.jpg".into(), false)],
        )
        .unwrap();
        assert_eq!(m.fractured_count(), 1);
        assert_eq!(
            m.images[0].sha256,
            "61be55a8e2f6b4e172338bddf184d6dbee29c98853e0a0485ecee7f27b9af0b4"
        );
        let file = dir.path().join("manifest.json");
        m.write(&file).unwrap();
        let back = CalibrationManifest::read(&file).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.digest(), m.digest());
        back.verify().unwrap();
        std::fs::write(dir.path().join("b.jpg"), b"changed").unwrap();
        match back.verify() {
            Err(ManifestError::Changed { path, .. }) => assert!(path.ends_with("b.jpg")),
            other => panic!("expected Changed, got {other:?}"),
        }
    }
}
