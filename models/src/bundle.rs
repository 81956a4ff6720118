//! Model bundles: the one folder a device installs. `manifest.json` says what the model is
//! (architecture, classes, input size, preprocessing), how to use it (NMS settings and the two
//! operating points), where it came from (training-data hash, metrics) and the SHA-256 of every
//! other file in the bundle; the bundle's identity is the SHA-256 of the manifest itself, so
//! it covers every file. [`Bundle::open`] refuses a bundle whose files do not match.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::weights_file::WeightsMeta;

/// Name of the manifest inside a bundle folder.
pub const MANIFEST: &str = "manifest.json";
/// Name of the weights inside a bundle folder.
pub const WEIGHTS: &str = "weights.safetensors";
/// Name of the float32 ONNX model inside a bundle folder (written by `fracture export`).
pub const MODEL_ONNX: &str = "model.onnx";
/// Manifest format understood by this build.
pub const FORMAT_VERSION: u32 = 1;

/// How an image becomes the network's input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preprocessing {
    /// `letterbox`: aspect kept, gray padding (ultralytics; YOLO); `min-max`: torchvision's
    /// resize rule (Faster R-CNN).
    pub resize: String,
    /// Pad value on the [0, 1] scale (114/255 for ultralytics models).
    pub pad_value: f32,
    /// Pixel scaling before the network: `unit` = `[0, 1]`.
    pub scale: String,
}

/// Score thresholds: everything at or above `suspicious` is reported; at or above `definite`
/// it is reported as definite.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct OperatingPoints {
    /// High sensitivity: worth a second look.
    pub suspicious: f32,
    /// High specificity.
    pub definite: f32,
}

/// The manifest of a bundle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    /// Human-readable name, e.g. `demo-yolo11n-phantoms`.
    pub bundle_id: String,
    /// `yolo11n` ... `yolo11x`, `frcnn-r50-fpn-v2`.
    pub arch: String,
    pub classes: Vec<String>,
    /// Square network input size.
    pub imgsz: u32,
    pub preprocessing: Preprocessing,
    pub nms_iou: f64,
    pub max_det: usize,
    pub operating_points: OperatingPoints,
    /// SHA-256 of the training images, when known.
    #[serde(default)]
    pub training_data_sha256: Option<String>,
    /// Validation or test metrics (`mAP50`, ...), when known.
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
    /// Shown wherever the model's output is shown (e.g. "Not for clinical use").
    #[serde(default)]
    pub notice: Option<String>,
    /// The INT8 model's accuracy check (`fracture calibrate`), when the bundle has one: the
    /// device runs `model.int8.onnx` only when it passed.
    #[serde(default)]
    pub int8: Option<Int8Check>,
    /// Every other file of the bundle and its SHA-256.
    pub files: BTreeMap<String, String>,
}

/// How the INT8 (Q/DQ) model compared with FP32 on the calibration report's split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Int8Check {
    /// Calibration method: `entropy`, `percentile` or `max`.
    pub method: String,
    pub map50_fp32: f64,
    pub map50_int8: f64,
    /// The largest mAP50 drop accepted.
    pub max_drop: f64,
    /// `map50_fp32 - map50_int8 <= max_drop`.
    pub passed: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: not a bundle manifest: {message}")]
    Manifest { path: PathBuf, message: String },
    #[error(
        "{path}: manifest format {found} is newer than this build understands ({FORMAT_VERSION})"
    )]
    Version { path: PathBuf, found: u32 },
    #[error("{bundle}: file {file} is listed in the manifest but missing")]
    Missing { bundle: PathBuf, file: String },
    #[error("{bundle}: file {file} has SHA-256 {found}, the manifest says {expected}")]
    Hash { bundle: PathBuf, file: String, expected: String, found: String },
    #[error("{bundle}: the manifest lists no {WEIGHTS}")]
    NoWeights { bundle: PathBuf },
    #[error("{bundle}: file name {file:?} must be a plain name inside the bundle")]
    BadName { bundle: PathBuf, file: String },
    #[error(
        "{bundle}: operating points must satisfy 0 < suspicious <= definite <= 1, got {suspicious} and {definite}"
    )]
    Thresholds { bundle: PathBuf, suspicious: f32, definite: f32 },
}

/// A verified bundle on disk.
#[derive(Debug, Clone, PartialEq)]
pub struct Bundle {
    pub dir: PathBuf,
    pub manifest: Manifest,
    /// SHA-256 of `manifest.json`'s bytes: the bundle's identity.
    pub sha256: String,
}

fn sha256_file(path: &Path) -> Result<String, BundleError> {
    let mut f = std::fs::File::open(path)
        .map_err(|source| BundleError::Io { path: path.to_path_buf(), source })?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h)
        .map_err(|source| BundleError::Io { path: path.to_path_buf(), source })?;
    Ok(hex::encode(h.finalize()))
}

fn plain_name(name: &str) -> bool {
    let p = Path::new(name);
    !name.is_empty()
        && p.components().count() == 1
        && matches!(p.components().next(), Some(std::path::Component::Normal(_)))
}

impl Bundle {
    /// Reads `dir/manifest.json` and checks every listed file's SHA-256.
    pub fn open(dir: &Path) -> Result<Self, BundleError> {
        let path = dir.join(MANIFEST);
        let bytes = std::fs::read(&path)
            .map_err(|source| BundleError::Io { path: path.clone(), source })?;
        let manifest: Manifest = serde_json::from_slice(&bytes)
            .map_err(|e| BundleError::Manifest { path: path.clone(), message: e.to_string() })?;
        if manifest.format_version > FORMAT_VERSION {
            return Err(BundleError::Version { path, found: manifest.format_version });
        }
        let bundle = dir.to_path_buf();
        let op = manifest.operating_points;
        if !(op.suspicious > 0.0 && op.suspicious <= op.definite && op.definite <= 1.0) {
            return Err(BundleError::Thresholds {
                bundle,
                suspicious: op.suspicious,
                definite: op.definite,
            });
        }
        if !manifest.files.contains_key(WEIGHTS) {
            return Err(BundleError::NoWeights { bundle });
        }
        for (file, expected) in &manifest.files {
            if !plain_name(file) {
                return Err(BundleError::BadName { bundle, file: file.clone() });
            }
            let p = dir.join(file);
            if !p.is_file() {
                return Err(BundleError::Missing { bundle, file: file.clone() });
            }
            let found = sha256_file(&p)?;
            if &found != expected {
                return Err(BundleError::Hash {
                    bundle,
                    file: file.clone(),
                    expected: expected.clone(),
                    found,
                });
            }
        }
        let sha256 = hex::encode(Sha256::digest(&bytes));
        Ok(Self { dir: bundle, manifest, sha256 })
    }

    pub fn weights(&self) -> PathBuf {
        self.dir.join(WEIGHTS)
    }

    /// Writes a bundle: copies `weights` in, hashes it, writes the manifest last (a bundle
    /// without a manifest is not a bundle, so a crash never leaves a half one that opens).
    /// `manifest.files` is filled in here.
    pub fn write(dir: &Path, weights: &Path, manifest: Manifest) -> Result<Self, BundleError> {
        Self::write_with(dir, weights, &[], manifest)
    }

    /// [`Bundle::write`] with more files: each `(name, source)` of `extra` (e.g.
    /// [`MODEL_ONNX`]) is copied in as `name` (a plain file name) and listed with its SHA-256.
    pub fn write_with(
        dir: &Path,
        weights: &Path,
        extra: &[(&str, &Path)],
        mut manifest: Manifest,
    ) -> Result<Self, BundleError> {
        std::fs::create_dir_all(dir)
            .map_err(|source| BundleError::Io { path: dir.to_path_buf(), source })?;
        for (name, _) in extra {
            if !plain_name(name) || *name == WEIGHTS || *name == MANIFEST {
                return Err(BundleError::BadName {
                    bundle: dir.to_path_buf(),
                    file: name.to_string(),
                });
            }
        }
        let dst = dir.join(WEIGHTS);
        std::fs::copy(weights, &dst)
            .map_err(|source| BundleError::Io { path: weights.to_path_buf(), source })?;
        manifest.files.insert(WEIGHTS.to_string(), sha256_file(&dst)?);
        for (name, src) in extra {
            let dst = dir.join(name);
            std::fs::copy(src, &dst)
                .map_err(|source| BundleError::Io { path: src.to_path_buf(), source })?;
            manifest.files.insert(name.to_string(), sha256_file(&dst)?);
        }
        manifest.format_version = FORMAT_VERSION;
        let text = serde_json::to_string_pretty(&manifest).map_err(|e| BundleError::Manifest {
            path: dir.join(MANIFEST),
            message: e.to_string(),
        })?;
        let tmp = dir.join("manifest.json.partial");
        std::fs::write(&tmp, text)
            .map_err(|source| BundleError::Io { path: tmp.clone(), source })?;
        std::fs::rename(&tmp, dir.join(MANIFEST))
            .map_err(|source| BundleError::Io { path: dir.join(MANIFEST), source })?;
        Self::open(dir)
    }
}

impl Bundle {
    /// Copies `files` (`(name, source)`, plain names other than the weights and the
    /// manifest) into this bundle, lists them with their SHA-256, applies `update` to the
    /// manifest and rewrites it last (atomically), so a crash never leaves a manifest that
    /// lists a half-copied file. Returns the bundle as reopened (verified, new identity).
    pub fn add_files(
        &self,
        files: &[(&str, &Path)],
        update: impl FnOnce(&mut Manifest),
    ) -> Result<Self, BundleError> {
        let mut manifest = self.manifest.clone();
        for (name, src) in files {
            if !plain_name(name) || *name == WEIGHTS || *name == MANIFEST {
                return Err(BundleError::BadName {
                    bundle: self.dir.clone(),
                    file: name.to_string(),
                });
            }
            let dst = self.dir.join(name);
            let tmp = self.dir.join(format!("{name}.partial"));
            std::fs::copy(src, &tmp)
                .map_err(|source| BundleError::Io { path: src.to_path_buf(), source })?;
            std::fs::rename(&tmp, &dst)
                .map_err(|source| BundleError::Io { path: dst.clone(), source })?;
            manifest.files.insert(name.to_string(), sha256_file(&dst)?);
        }
        update(&mut manifest);
        let text = serde_json::to_string_pretty(&manifest).map_err(|e| BundleError::Manifest {
            path: self.dir.join(MANIFEST),
            message: e.to_string(),
        })?;
        let tmp = self.dir.join("manifest.json.partial");
        std::fs::write(&tmp, text)
            .map_err(|source| BundleError::Io { path: tmp.clone(), source })?;
        std::fs::rename(&tmp, self.dir.join(MANIFEST))
            .map_err(|source| BundleError::Io { path: self.dir.join(MANIFEST), source })?;
        Self::open(&self.dir)
    }
}

impl Manifest {
    /// A manifest for weights described by `meta`: ultralytics' letterbox and NMS for YOLO11,
    /// torchvision's resize rule and post-processing (NMS 0.5, 100 boxes) for Faster R-CNN.
    pub fn for_weights(bundle_id: &str, meta: &WeightsMeta, points: OperatingPoints) -> Self {
        if meta.arch == crate::frcnn::ARCH {
            return Self {
                preprocessing: Preprocessing {
                    // GeneralizedRCNNTransform: short side to min_size, long side capped at
                    // max_size (the weights' metadata), normalisation inside the network.
                    resize: "min-max".into(),
                    pad_value: 0.0,
                    scale: "unit".into(),
                },
                nms_iou: 0.5,
                max_det: 100,
                ..Self::yolo(bundle_id, meta, points)
            };
        }
        Self::yolo(bundle_id, meta, points)
    }

    /// The device's NMS for this bundle: everything from the `suspicious` operating point up
    /// (the `definite` point is a label on top), the bundle's IoU and detection cap.
    pub fn nms(&self) -> crate::nms::NmsConfig {
        crate::nms::NmsConfig {
            conf: self.operating_points.suspicious,
            iou: self.nms_iou,
            max_det: self.max_det,
            ..crate::nms::NmsConfig::default()
        }
    }

    fn yolo(bundle_id: &str, meta: &WeightsMeta, points: OperatingPoints) -> Self {
        Self {
            format_version: FORMAT_VERSION,
            bundle_id: bundle_id.to_string(),
            arch: meta.arch.clone(),
            classes: meta.classes.clone(),
            imgsz: meta.imgsz,
            preprocessing: Preprocessing {
                resize: "letterbox".into(),
                pad_value: crate::letterbox::PAD_VALUE,
                scale: "unit".into(),
            },
            nms_iou: 0.45,
            max_det: 300,
            operating_points: points,
            training_data_sha256: meta.extra.get("train_data_sha256").cloned(),
            metrics: BTreeMap::new(),
            notice: None,
            int8: None,
            files: BTreeMap::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn meta() -> WeightsMeta {
        WeightsMeta {
            arch: "yolo11n".into(),
            classes: vec!["fracture".into()],
            imgsz: 256,
            extra: Default::default(),
        }
    }

    #[test]
    fn written_bundles_open_and_tampering_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let w = dir.path().join("w.safetensors");
        std::fs::write(&w, b"weights bytes").unwrap();
        let points = OperatingPoints { suspicious: 0.1, definite: 0.5 };
        let b = dir.path().join("bundle");
        let written = Bundle::write(&b, &w, Manifest::for_weights("t", &meta(), points)).unwrap();
        let opened = Bundle::open(&b).unwrap();
        assert_eq!(written, opened);
        assert_eq!(opened.sha256.len(), 64);

        std::fs::write(b.join(WEIGHTS), b"other bytes").unwrap();
        let e = Bundle::open(&b).unwrap_err().to_string();
        assert!(e.contains("weights.safetensors has SHA-256"), "{e}");

        std::fs::remove_file(b.join(WEIGHTS)).unwrap();
        assert!(matches!(Bundle::open(&b), Err(BundleError::Missing { .. })));
    }

    #[test]
    fn extra_files_are_listed_and_verified() {
        let dir = tempfile::tempdir().unwrap();
        let w = dir.path().join("w.safetensors");
        std::fs::write(&w, b"weights bytes").unwrap();
        let onnx = dir.path().join("exported.onnx");
        std::fs::write(&onnx, b"onnx bytes").unwrap();
        let points = OperatingPoints { suspicious: 0.1, definite: 0.5 };
        let m = Manifest::for_weights("t", &meta(), points);
        let b = dir.path().join("bundle");
        let written = Bundle::write_with(&b, &w, &[(MODEL_ONNX, &onnx)], m.clone()).unwrap();
        assert_eq!(written.manifest.files.len(), 2);
        assert_eq!(written.manifest.files[MODEL_ONNX], hex::encode(Sha256::digest(b"onnx bytes")));
        std::fs::write(b.join(MODEL_ONNX), b"tampered").unwrap();
        assert!(matches!(Bundle::open(&b), Err(BundleError::Hash { .. })));
        let bad = Bundle::write_with(&dir.path().join("b2"), &w, &[("../x.onnx", &onnx)], m);
        assert!(matches!(bad, Err(BundleError::BadName { .. })));
    }

    #[test]
    fn bad_manifests_are_refused_with_reasons() {
        let dir = tempfile::tempdir().unwrap();
        let w = dir.path().join("w.safetensors");
        std::fs::write(&w, b"x").unwrap();
        let bad = OperatingPoints { suspicious: 0.6, definite: 0.5 };
        let b = dir.path().join("b");
        let e = Bundle::write(&b, &w, Manifest::for_weights("t", &meta(), bad)).unwrap_err();
        assert!(matches!(e, BundleError::Thresholds { .. }), "{e}");

        let mut m =
            Manifest::for_weights("t", &meta(), OperatingPoints { suspicious: 0.1, definite: 0.5 });
        m.files.insert("../etc/passwd".into(), "00".into());
        let e = Bundle::write(&dir.path().join("c"), &w, m).unwrap_err();
        assert!(matches!(e, BundleError::BadName { .. }), "{e}");

        std::fs::write(dir.path().join("c").join(MANIFEST), b"{not json").unwrap();
        let e = Bundle::open(&dir.path().join("c")).unwrap_err().to_string();
        assert!(e.contains("not a bundle manifest"), "{e}");
    }
}
