//! Weight files: safetensors whose tensor names are the reference implementation's
//! (ultralytics / torchvision state_dict keys) and whose `__metadata__` says what network they
//! belong to (arch, classes, input size), so `--weights` alone is enough to rebuild the model,
//! and files move both ways between this project and the Python ecosystem.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, TensorView};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// What a weights file says about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WeightsMeta {
    /// `yolo11n` ... `yolo11x`, or `frcnn-r50-fpn-v2`.
    pub arch: String,
    pub classes: Vec<String>,
    /// Square network input size the model was trained at.
    pub imgsz: u32,
    /// Free-form provenance (training run, data hash, epoch...).
    #[serde(default)]
    pub extra: HashMap<String, String>,
}

#[derive(Debug, thiserror::Error)]
pub enum WeightsFileError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: not a safetensors file: {message}")]
    Format { path: PathBuf, message: String },
    #[error(
        "{path}: no fracture metadata (arch/classes/imgsz); pass --arch and --nc for a plain state_dict"
    )]
    NoMetadata { path: PathBuf },
    #[error("tensor {name}: unsupported dtype {kind:?}")]
    Dtype { name: String, kind: Kind },
}

fn dtype(kind: Kind) -> Option<Dtype> {
    Some(match kind {
        Kind::Float => Dtype::F32,
        Kind::Double => Dtype::F64,
        Kind::Half => Dtype::F16,
        Kind::BFloat16 => Dtype::BF16,
        Kind::Int64 => Dtype::I64,
        Kind::Int => Dtype::I32,
        Kind::Uint8 => Dtype::U8,
        Kind::Bool => Dtype::BOOL,
        _ => return None,
    })
}

/// Writes `tensors` (CPU copies are made) with `meta` in `__metadata__`.
pub fn save(
    path: &Path,
    tensors: &[(String, Tensor)],
    meta: &WeightsMeta,
) -> Result<(), WeightsFileError> {
    let mut owned: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let t = t.detach().to_device(tch::Device::Cpu).contiguous();
        let kind = t.kind();
        let dt = dtype(kind).ok_or_else(|| WeightsFileError::Dtype { name: name.clone(), kind })?;
        let numel = t.numel();
        let mut bytes = vec![0u8; numel * kind.elt_size_in_bytes()];
        t.copy_data_u8(&mut bytes, numel);
        owned.push((name.clone(), dt, t.size().iter().map(|&d| d as usize).collect(), bytes));
    }
    let views: Vec<(String, TensorView)> = owned
        .iter()
        .map(|(n, dt, shape, bytes)| {
            TensorView::new(*dt, shape.clone(), bytes).map(|v| (n.clone(), v)).map_err(|e| {
                WeightsFileError::Format { path: path.to_path_buf(), message: e.to_string() }
            })
        })
        .collect::<Result<_, _>>()?;
    let mut metadata = HashMap::new();
    metadata.insert(
        "fracture".to_string(),
        serde_json::to_string(meta).map_err(|e| WeightsFileError::Format {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?,
    );
    metadata.insert("arch".to_string(), meta.arch.clone());
    // Write to a temporary name and rename, so a crash never leaves half a checkpoint.
    let tmp = path.with_extension("safetensors.partial");
    safetensors::serialize_to_file(views, Some(metadata), &tmp).map_err(|e| {
        WeightsFileError::Format { path: path.to_path_buf(), message: e.to_string() }
    })?;
    std::fs::rename(&tmp, path)
        .map_err(|source| WeightsFileError::Io { path: path.to_path_buf(), source })
}

/// Reads only the header's metadata; `Ok(None)` for a plain state_dict without ours.
pub fn read_meta(path: &Path) -> Result<Option<WeightsMeta>, WeightsFileError> {
    let bytes = std::fs::read(path)
        .map_err(|source| WeightsFileError::Io { path: path.to_path_buf(), source })?;
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| {
        WeightsFileError::Format { path: path.to_path_buf(), message: e.to_string() }
    })?;
    let Some(meta) = header.metadata().as_ref().and_then(|m| m.get("fracture")) else {
        return Ok(None);
    };
    serde_json::from_str(meta).map(Some).map_err(|e| WeightsFileError::Format {
        path: path.to_path_buf(),
        message: format!("bad fracture metadata: {e}"),
    })
}

/// All tensors of a file by name (any safetensors file, ours or the Python ecosystem's).
pub fn load_tensors(path: &Path) -> Result<Vec<(String, Tensor)>, WeightsFileError> {
    Tensor::read_safetensors(path)
        .map_err(|e| WeightsFileError::Format { path: path.to_path_buf(), message: e.to_string() })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn round_trip_with_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.safetensors");
        let a = Tensor::arange(6, (Kind::Float, tch::Device::Cpu)).view([2, 3]);
        let b = Tensor::from_slice(&[7i64, 8]);
        let meta = WeightsMeta {
            arch: "yolo11n".into(),
            classes: vec!["fracture".into()],
            imgsz: 416,
            extra: HashMap::new(),
        };
        save(&path, &[("model.0.conv.weight".into(), a.shallow_clone()), ("n".into(), b)], &meta)
            .unwrap();
        assert_eq!(read_meta(&path).unwrap(), Some(meta));
        let back = load_tensors(&path).unwrap();
        let (_, t) = back.iter().find(|(n, _)| n == "model.0.conv.weight").unwrap();
        assert!(t.equal(&a));
        assert!(!dir.path().join("w.safetensors.partial").exists());
    }

    #[test]
    fn plain_files_have_no_metadata_and_junk_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plain.safetensors");
        Tensor::write_safetensors(
            &[("x", Tensor::ones([2], (Kind::Float, tch::Device::Cpu)))],
            &path,
        )
        .unwrap();
        assert_eq!(read_meta(&path).unwrap(), None);
        std::fs::write(&path, b"not safetensors").unwrap();
        assert!(read_meta(&path).is_err());
    }
}
