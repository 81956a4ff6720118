//! Which detector a weights file holds, and what `--arch` / `--nc` add: Faster R-CNN when the
//! file's metadata or `--arch` says so, else YOLO11 — one rule for `predict`, `eval`,
//! `compare` and the embedding analysis. Callers build their own predictor options.

use std::path::Path;

use fracture_models::frcnn;
use fracture_models::weights_file::{self, WeightsFileError};
use fracture_models::yolo::{ArchSpec, Scale};

#[derive(Debug, thiserror::Error)]
pub enum ChoiceError {
    #[error(transparent)]
    Weights(#[from] WeightsFileError),
    #[error("{0}")]
    Invalid(String),
}

/// The detector family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Yolo,
    Frcnn,
}

/// The family and the architecture's name (the file's, else `--arch`'s).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub family: Family,
    pub arch: Option<String>,
}

/// What a command was told about a weights file.
#[derive(Debug, Clone, Copy)]
pub struct Choice<'a> {
    pub weights: &'a Path,
    pub arch: Option<&'a str>,
    pub nc: Option<i64>,
}

impl Choice<'_> {
    /// The family, refusing an `--arch` that contradicts the file and an `--nc` below 1.
    pub fn family(&self) -> Result<Family, ChoiceError> {
        Ok(self.resolve()?.family)
    }

    /// As [`Choice::family`], with the architecture's name.
    pub fn resolve(&self) -> Result<Resolved, ChoiceError> {
        if let Some(nc) = self.nc
            && nc < 1
        {
            return Err(ChoiceError::Invalid(format!(
                "--nc {nc}: a detector needs at least one class"
            )));
        }
        let file_arch = weights_file::read_meta(self.weights)?.map(|m| m.arch);
        if let (Some(file), Some(asked)) = (&file_arch, self.arch)
            && file != asked
        {
            return Err(ChoiceError::Invalid(format!(
                "{}: the file says {file} but --arch {asked} was given",
                self.weights.display()
            )));
        }
        let is_frcnn = |a: &str| a == frcnn::ARCH;
        let family =
            if file_arch.as_deref().is_some_and(is_frcnn) || self.arch.is_some_and(is_frcnn) {
                Family::Frcnn
            } else {
                Family::Yolo
            };
        Ok(Resolved { family, arch: file_arch.or_else(|| self.arch.map(str::to_string)) })
    }

    /// The YOLO architecture `--arch` and `--nc` name together (a plain ultralytics
    /// state_dict needs both; a file with our metadata needs neither).
    pub fn yolo_spec(&self) -> Result<Option<ArchSpec>, ChoiceError> {
        match (self.arch, self.nc) {
            (Some(arch), Some(nc)) => {
                let scale: Scale = arch
                    .parse()
                    .map_err(|e| ChoiceError::Invalid(format!("--arch {arch}: {e}")))?;
                Ok(Some(ArchSpec { scale, num_classes: nc }))
            }
            _ => Ok(None),
        }
    }

    /// Class names for a Faster R-CNN file without metadata: `1..=nc`.
    pub fn frcnn_classes(&self) -> Option<Vec<String>> {
        self.nc.map(|nc| (1..=nc).map(|i| i.to_string()).collect())
    }
}
