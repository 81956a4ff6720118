//! Calibration-set manifests: the list of images a calibration used, each with its SHA-256, so
//! the same calibration can be reproduced and a changed file is noticed; and the warnings a
//! calibration set deserves (too few images, no fractured image).

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

/// Fewer calibration images than this draws a [`ManifestWarning::SmallSet`] (the issue's
/// figure; NVIDIA suggests about 500 for ImageNet-sized classifiers).
pub const RECOMMENDED_MIN_IMAGES: usize = 300;

/// Something about a calibration set that makes its ranges less trustworthy. Not an error:
/// a small set may be all there is, but the user should be told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestWarning {
    /// Fewer than [`RECOMMENDED_MIN_IMAGES`] images.
    SmallSet { images: usize, recommended: usize },
    /// No image has a fracture label, so the activations of what the model must find are
    /// not represented in the ranges.
    NoFractured { images: usize },
}

impl std::fmt::Display for ManifestWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ManifestWarning::SmallSet { images, recommended } => write!(
                f,
                "the calibration set has {images} image(s), fewer than the {recommended} recommended: ranges may not cover what the device will see"
            ),
            ManifestWarning::NoFractured { images } => write!(
                f,
                "none of the {images} calibration image(s) is fractured: activations of fractures are not represented"
            ),
        }
    }
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

    /// What is wrong with this set as a calibration set, if anything (empty when it is fine).
    pub fn warnings(&self) -> Vec<ManifestWarning> {
        let images = self.images.len();
        let mut w = Vec::new();
        if images < RECOMMENDED_MIN_IMAGES {
            w.push(ManifestWarning::SmallSet { images, recommended: RECOMMENDED_MIN_IMAGES });
        }
        if self.fractured_count() == 0 {
            w.push(ManifestWarning::NoFractured { images });
        }
        w
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

    fn entries(n: usize, fractured: usize) -> CalibrationManifest {
        let images = (0..n)
            .map(|i| ManifestEntry {
                path: format!("img{i}.jpg").into(),
                sha256: "0".repeat(64),
                fractured: i < fractured,
            })
            .collect();
        CalibrationManifest { root: "/data".into(), images }
    }

    #[test]
    fn warnings() {
        assert_eq!(entries(300, 1).warnings(), vec![]);
        assert_eq!(
            entries(299, 50).warnings(),
            vec![ManifestWarning::SmallSet { images: 299, recommended: 300 }]
        );
        assert_eq!(entries(400, 0).warnings(), vec![ManifestWarning::NoFractured { images: 400 }]);
        let empty = entries(0, 0).warnings();
        assert_eq!(empty.len(), 2);
        assert!(empty[0].to_string().contains("0 image(s), fewer than the 300"), "{}", empty[0]);
        assert!(empty[1].to_string().contains("none of the 0"), "{}", empty[1]);
    }
}
