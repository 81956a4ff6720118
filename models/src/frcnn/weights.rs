//! Weights of the detector: loading a safetensors file whose tensor names are torchvision's
//! state_dict keys (strictly, with the offending tensor named: [`crate::yolo::weights`]'s
//! loader, which is architecture-agnostic), PyTorch's parameter count, and partial
//! initialisation for training ([`load_partial`]): an ImageNet ResNet50 (the body alone) or a
//! COCO Faster R-CNN (91 classes) starts a model, with what was taken and what was left at
//! initialisation summarised.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use tch::Tensor;
use tch::nn::VarStore;

pub use crate::yolo::weights::{WeightsError, load_named, load_safetensors};

use super::FasterRcnn;

/// Where the backbone body's variables live.
pub const BODY_PREFIX: &str = "backbone.body.";
/// The class-count dependent layers, skipped by [`load_partial`] when their shapes differ.
pub const PREDICTOR_PREFIX: &str = "roi_heads.box_predictor.";

/// What `sum(p.numel() for p in model.parameters())` gives for the torchvision model: every
/// variable except batch-norm statistics and, with frozen batch norm, its affine weights
/// (buffers in `FrozenBatchNorm2d`). 43,256,153 for 2 classes, 43,712,278 for 91.
pub fn parameter_count(vs: &VarStore, model: &FasterRcnn) -> i64 {
    crate::yolo::weights::parameter_count(vs) - model.frozen_affine_elements()
}

/// What [`load_partial`] did.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct InitSummary {
    pub path: PathBuf,
    /// Names in the file were torchvision `resnet50` names and got `backbone.body.` prepended.
    pub prefixed_body: bool,
    /// Variables loaded, and their elements.
    pub loaded: usize,
    pub loaded_elements: i64,
    /// Variables of the model, and their elements.
    pub total: usize,
    pub total_elements: i64,
    /// Model variables the file lacks (left at initialisation), sorted.
    pub kept: Vec<String>,
    /// Predictor tensors of another class count: `(name, file shape, model shape)`.
    pub skipped: Vec<(String, Vec<i64>, Vec<i64>)>,
    /// File tensors the model has no variable for (e.g. an ImageNet classifier's `fc.*`).
    pub unused: Vec<String>,
}

/// The leading module names of `names` with how many variables each has
/// (`backbone.fpn: 32, rpn.head: 8`), for a short summary.
fn group_names(names: &[String]) -> String {
    let mut groups: Vec<(String, usize)> = Vec::new();
    for n in names {
        let parts: Vec<&str> = n.split('.').collect();
        let key = parts[..parts.len().saturating_sub(1).min(2)].join(".");
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, c)) => *c += 1,
            None => groups.push((key, 1)),
        }
    }
    groups.iter().map(|(k, c)| format!("{k} ({c})")).collect::<Vec<_>>().join(", ")
}

impl fmt::Display for InitSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = |e: i64| e as f64 / 1e6;
        write!(
            f,
            "init from {}{}: loaded {} of {} tensors ({:.2}M of {:.2}M values)",
            self.path.display(),
            if self.prefixed_body { " (a ResNet50 state_dict, as backbone.body)" } else { "" },
            self.loaded,
            self.total,
            m(self.loaded_elements),
            m(self.total_elements)
        )?;
        if !self.kept.is_empty() {
            write!(f, "\n  left at initialisation: {}", group_names(&self.kept))?;
        }
        for (name, file, model) in &self.skipped {
            write!(
                f,
                "\n  skipped (another class count): {name} {file:?} in the file, {model:?} here"
            )?;
        }
        if !self.unused.is_empty() {
            write!(f, "\n  not in this model, ignored: {}", group_names(&self.unused))?;
        }
        Ok(())
    }
}

/// Initialises `vs` from the torchvision-named `tensors` (read from `path`) as far as they go:
/// variables with a same-shaped tensor are loaded, the rest keep their initialisation. Tensors
/// of the box predictor with another shape (another class count) are skipped; any other shape
/// difference is an error, and so is a file that loads nothing. A plain torchvision
/// `resnet50` state_dict (`conv1.weight`, `layer1.0.…`, `fc.…`) loads into the body.
pub fn load_partial(
    vs: &VarStore,
    tensors: Vec<(String, Tensor)>,
    path: &Path,
) -> Result<InitSummary, WeightsError> {
    let vars = vs.variables();
    let prefixed_body = !tensors.iter().any(|(n, _)| vars.contains_key(n))
        && tensors.iter().any(|(n, _)| vars.contains_key(&format!("{BODY_PREFIX}{n}")));
    // Model name -> (name in the file, tensor).
    let file: HashMap<String, (String, Tensor)> = tensors
        .into_iter()
        .map(|(n, t)| {
            let key = if prefixed_body { format!("{BODY_PREFIX}{n}") } else { n.clone() };
            (key, (n, t))
        })
        .collect();
    let mut summary = InitSummary {
        path: path.to_path_buf(),
        prefixed_body,
        total: vars.len(),
        total_elements: vars.values().map(|t| t.numel() as i64).sum(),
        ..Default::default()
    };
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort();
    let mut to_load = Vec::new();
    for name in names {
        let var = &vars[name];
        let Some((_, src)) = file.get(name) else {
            summary.kept.push(name.clone());
            continue;
        };
        if !src.is_floating_point() {
            return Err(WeightsError::Kind {
                path: path.to_path_buf(),
                name: name.clone(),
                kind: src.kind(),
            });
        }
        if src.size() != var.size() {
            if name.starts_with(PREDICTOR_PREFIX) {
                summary.skipped.push((name.clone(), src.size(), var.size()));
                summary.kept.push(name.clone());
                continue;
            }
            return Err(WeightsError::Shape {
                path: path.to_path_buf(),
                name: name.clone(),
                expected: var.size(),
                found: src.size(),
            });
        }
        summary.loaded += 1;
        summary.loaded_elements += var.numel() as i64;
        to_load.push((name.clone(), var.shallow_clone(), src));
    }
    let mut unused: Vec<String> = file
        .iter()
        .filter(|(k, _)| !vars.contains_key(*k) && !k.ends_with(".num_batches_tracked"))
        .map(|(_, (original, _))| original.clone())
        .collect();
    unused.sort();
    summary.unused = unused;
    if summary.loaded == 0 {
        let name = file.values().map(|(n, _)| n).min().cloned().unwrap_or_else(|| "(none)".into());
        return Err(WeightsError::Unexpected {
            path: path.to_path_buf(),
            name,
            more: file.len().saturating_sub(1),
        });
    }
    tch::no_grad(|| {
        for (name, mut var, src) in to_load {
            let src = src.to_device(var.device()).to_kind(var.kind());
            var.f_copy_(&src).map_err(|source| WeightsError::Copy { name, source })?;
        }
        Ok::<(), WeightsError>(())
    })?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::frcnn::FrcnnConfig;
    use tch::{Device, Kind};

    fn named(vs: &VarStore, keep: impl Fn(&str) -> bool) -> Vec<(String, Tensor)> {
        vs.variables()
            .into_iter()
            .filter(|(n, _)| keep(n))
            .map(|(n, t)| (n, t.detach().copy().fill_(0.5)))
            .collect()
    }

    #[test]
    fn resnet_body_and_coco_predictor_load_partially() {
        let path = Path::new("w.safetensors");
        let vs = VarStore::new(Device::Cpu);
        let _m = FasterRcnn::new(&vs.root(), &FrcnnConfig::new(2)).unwrap();

        // A plain resnet50 state_dict: body names without the prefix, plus its classifier.
        let src = VarStore::new(Device::Cpu);
        let _s = FasterRcnn::new(&src.root(), &FrcnnConfig::new(2)).unwrap();
        let mut body: Vec<(String, Tensor)> = named(&src, |n| n.starts_with(BODY_PREFIX))
            .into_iter()
            .map(|(n, t)| (n[BODY_PREFIX.len()..].to_string(), t))
            .collect();
        body.push(("fc.weight".into(), Tensor::zeros([1000, 2048], (Kind::Float, Device::Cpu))));
        let s = load_partial(&vs, body, path).unwrap();
        assert!(s.prefixed_body);
        assert_eq!(s.unused, vec!["fc.weight".to_string()]);
        assert!(s.kept.iter().all(|n| !n.starts_with(BODY_PREFIX)));
        assert_eq!(vs.variables()["backbone.body.conv1.weight"].double_value(&[0, 0, 0, 0]), 0.5);
        assert!(s.to_string().contains("left at initialisation: backbone.fpn"), "{s}");

        // A 91-class model: everything but the predictor.
        let coco = VarStore::new(Device::Cpu);
        let _c = FasterRcnn::new(&coco.root(), &FrcnnConfig::new(91)).unwrap();
        let s = load_partial(&vs, named(&coco, |_| true), path).unwrap();
        assert_eq!(s.skipped.len(), 4);
        assert_eq!(s.loaded, s.total - 4);
        assert!(s.to_string().contains("skipped (another class count)"), "{s}");

        // Unrelated files are errors.
        let junk = vec![("x".to_string(), Tensor::zeros([1], (Kind::Float, Device::Cpu)))];
        assert!(load_partial(&vs, junk, path).is_err());
        let bad = vec![(
            "backbone.body.conv1.weight".to_string(),
            Tensor::zeros([1], (Kind::Float, Device::Cpu)),
        )];
        assert!(matches!(load_partial(&vs, bad, path), Err(WeightsError::Shape { .. })));
    }
}
