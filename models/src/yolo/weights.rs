//! Weights I/O for a `VarStore` whose variable names are PyTorch state_dict keys
//! (`model.0.conv.weight`, `model.0.bn.running_mean`, ...): strict safetensors loading that
//! names the offending tensor instead of panicking, and parameter counting that matches
//! PyTorch's `sum(p.numel() for p in model.parameters())` (batch-norm buffers excluded).
//!
//! `num_batches_tracked` is not a variable here (libtorch's batch norm does not need it with a
//! fixed momentum); it is skipped when present in a file, and PyTorch's `load_state_dict`
//! recreates it when absent, so files move both ways.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use tch::Tensor;
use tch::nn::VarStore;

/// Batch-norm buffer names: in the VarStore (or the file) but not PyTorch parameters.
const BUFFER_SUFFIXES: [&str; 3] = [".running_mean", ".running_var", ".num_batches_tracked"];

#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error("cannot read weights from {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: tch::TchError,
    },
    #[error("{path}: tensor `{name}` is missing{}", more_suffix(*.more))]
    Missing { path: PathBuf, name: String, more: usize },
    #[error("{path}: tensor `{name}` has shape {found:?}, the model expects {expected:?}")]
    Shape { path: PathBuf, name: String, expected: Vec<i64>, found: Vec<i64> },
    #[error("{path}: tensor `{name}` is not part of this model{}", more_suffix(*.more))]
    Unexpected { path: PathBuf, name: String, more: usize },
    #[error("{path}: tensor `{name}` has non-float type {kind:?}")]
    Kind { path: PathBuf, name: String, kind: tch::Kind },
    #[error("cannot copy tensor `{name}`: {source}")]
    Copy {
        name: String,
        #[source]
        source: tch::TchError,
    },
}

fn more_suffix(more: usize) -> String {
    if more > 0 { format!(" (and {more} more)") } else { String::new() }
}

/// Whether a state_dict key names a batch-norm buffer rather than a parameter.
pub fn is_buffer(name: &str) -> bool {
    BUFFER_SUFFIXES.iter().any(|s| name.ends_with(s))
}

/// Number of parameter elements in `vs` (what PyTorch's `model.parameters()` counts, frozen
/// ones such as the DFL weight included; batch-norm running statistics excluded).
pub fn parameter_count(vs: &VarStore) -> i64 {
    vs.variables().iter().filter(|(k, _)| !is_buffer(k)).map(|(_, t)| t.numel() as i64).sum()
}

/// Loads every variable of `vs` from a safetensors file, strictly: each variable must be in
/// the file with the same shape, and the file may hold nothing else (except
/// `num_batches_tracked`). Values are converted to each variable's own kind and device, so
/// half-precision files load into a float model. Nothing is modified unless all checks pass.
pub fn load_safetensors(vs: &VarStore, path: &Path) -> Result<(), WeightsError> {
    let file = Tensor::read_safetensors(path)
        .map_err(|source| WeightsError::Read { path: path.to_path_buf(), source })?;
    load_named(vs, file, path)
}

/// [`load_safetensors`] for tensors already read (e.g. by `crate::weights_file`); `path` only
/// names their origin in errors.
pub fn load_named(
    vs: &VarStore,
    tensors: impl IntoIterator<Item = (String, Tensor)>,
    path: &Path,
) -> Result<(), WeightsError> {
    let file: HashMap<String, Tensor> = tensors.into_iter().collect();
    let vars = vs.variables();
    let p = || path.to_path_buf();

    let mut missing: Vec<&String> = vars.keys().filter(|k| !file.contains_key(*k)).collect();
    missing.sort();
    if let Some(name) = missing.first() {
        return Err(WeightsError::Missing {
            path: p(),
            name: name.to_string(),
            more: missing.len() - 1,
        });
    }
    let mut unexpected: Vec<&String> = file
        .keys()
        .filter(|k| !vars.contains_key(*k) && !k.ends_with(".num_batches_tracked"))
        .collect();
    unexpected.sort();
    if let Some(name) = unexpected.first() {
        return Err(WeightsError::Unexpected {
            path: p(),
            name: name.to_string(),
            more: unexpected.len() - 1,
        });
    }
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort();
    for name in &names {
        let (var, src) = (&vars[*name], &file[*name]);
        if var.size() != src.size() {
            return Err(WeightsError::Shape {
                path: p(),
                name: name.to_string(),
                expected: var.size(),
                found: src.size(),
            });
        }
        if !src.is_floating_point() {
            return Err(WeightsError::Kind { path: p(), name: name.to_string(), kind: src.kind() });
        }
    }
    tch::no_grad(|| {
        for name in names {
            let mut var = vars[name].shallow_clone();
            let src = file[name].to_device(var.device()).to_kind(var.kind());
            var.f_copy_(&src)
                .map_err(|source| WeightsError::Copy { name: name.clone(), source })?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use tch::{Device, Kind, nn};

    fn store() -> VarStore {
        let vs = VarStore::new(Device::Cpu);
        let _ = nn::batch_norm2d(vs.root().sub("bn"), 4, Default::default());
        let _ = vs.root().sub("conv").zeros("weight", &[4, 2]);
        vs
    }

    #[test]
    fn loads_and_reports_problems_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("w.safetensors");
        let ones = Tensor::ones([4], (Kind::Half, Device::Cpu));
        let nbt = Tensor::zeros([], (Kind::Int64, Device::Cpu));
        let w = Tensor::full([4, 2], 3.0, (Kind::Float, Device::Cpu));
        let mut named = vec![
            ("bn.weight", ones.shallow_clone()),
            ("bn.bias", ones.shallow_clone()),
            ("bn.running_mean", ones.shallow_clone()),
            ("bn.running_var", ones.shallow_clone()),
            ("bn.num_batches_tracked", nbt),
            ("conv.weight", w),
        ];
        Tensor::write_safetensors(&named, &f).unwrap();
        let vs = store();
        load_safetensors(&vs, &f).unwrap();
        let v = vs.variables();
        assert_eq!(v["conv.weight"].double_value(&[1, 1]), 3.0);
        assert_eq!(v["bn.running_mean"].kind(), Kind::Float);
        assert_eq!(parameter_count(&vs), 4 + 4 + 8);

        named[5].1 = Tensor::zeros([4, 3], (Kind::Float, Device::Cpu));
        Tensor::write_safetensors(&named, &f).unwrap();
        let e = load_safetensors(&store(), &f).unwrap_err();
        assert!(matches!(&e, WeightsError::Shape { name, .. } if name == "conv.weight"), "{e}");

        named.truncate(5);
        Tensor::write_safetensors(&named, &f).unwrap();
        let e = load_safetensors(&store(), &f).unwrap_err();
        assert!(e.to_string().contains("`conv.weight` is missing"), "{e}");

        named.push(("extra", Tensor::zeros([1], (Kind::Float, Device::Cpu))));
        named.push(("conv.weight", Tensor::zeros([4, 2], (Kind::Float, Device::Cpu))));
        Tensor::write_safetensors(&named, &f).unwrap();
        let e = load_safetensors(&store(), &f).unwrap_err();
        assert!(matches!(&e, WeightsError::Unexpected { name, .. } if name == "extra"), "{e}");

        let e = load_safetensors(&store(), &dir.path().join("nope.safetensors")).unwrap_err();
        assert!(matches!(e, WeightsError::Read { .. }));
    }
}
