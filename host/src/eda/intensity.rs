//! Pixel-intensity statistics: every image decoded (in parallel, with a progress bar) to gray
//! [0, 1], its mean and standard deviation, and how many images are 8- and 16-bit. Images that
//! cannot be decoded are listed, not fatal.

use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;
use serde::Serialize;

use super::stats::Distribution;
use crate::dataset::{Dataset, ImageRecord};

/// Bins of the intensity histograms.
pub const INTENSITY_BINS: usize = 40;

/// Mean and standard deviation of one image's gray values in [0, 1].
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ImageIntensity {
    pub mean: f64,
    pub std: f64,
    pub bit_depth: u8,
}

/// An image that could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unreadable {
    pub image_id: String,
    pub error: String,
}

/// Intensity statistics over the images that decoded.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IntensityStats {
    /// Per-image mean gray value (0 = black, 1 = white).
    pub mean: Distribution,
    /// Per-image standard deviation of gray values (contrast).
    pub std: Distribution,
    /// Mean of the per-image means, fractured and non-fractured images (a large gap is a
    /// shortcut a detector could learn).
    pub mean_fractured: Option<f64>,
    pub mean_non_fractured: Option<f64>,
    pub bit_depth_8: usize,
    pub bit_depth_16: usize,
    pub unreadable: Vec<Unreadable>,
}

/// Where an image's file is: its recorded path if that exists, else relative to the root.
pub fn image_path(dataset: &Dataset, record: &ImageRecord) -> PathBuf {
    if record.path.is_absolute() || record.path.exists() {
        record.path.clone()
    } else {
        dataset.root.join(&record.path)
    }
}

/// Mean and standard deviation of one decoded image.
pub fn measure(path: &Path) -> Result<ImageIntensity, String> {
    let gray = fracture_models::pixels::read_gray(path).map_err(|e| e.to_string())?;
    if gray.data.is_empty() {
        return Err("image has no pixels".into());
    }
    let n = gray.data.len() as f64;
    let mean = gray.data.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let var = gray.data.iter().map(|&v| (f64::from(v) - mean).powi(2)).sum::<f64>() / n;
    Ok(ImageIntensity { mean, std: var.sqrt(), bit_depth: gray.bit_depth })
}

/// Decodes every image of the dataset (rayon) and summarises the intensities. `progress`
/// shows a bar on stderr when it is a terminal.
pub fn measure_all(dataset: &Dataset, progress: bool) -> IntensityStats {
    let bar = if progress {
        ProgressBar::new(dataset.images.len() as u64)
    } else {
        ProgressBar::hidden()
    };
    if let Ok(style) = ProgressStyle::with_template(
        "{msg} {bar:40} {pos}/{len} images [{elapsed_precise}, eta {eta}]",
    ) {
        bar.set_style(style);
    }
    bar.set_message("reading pixels");
    let results: Vec<Result<ImageIntensity, String>> = dataset
        .images
        .par_iter()
        .map(|r| {
            let result = measure(&image_path(dataset, r));
            bar.inc(1);
            result
        })
        .collect();
    bar.finish_and_clear();
    summarise(dataset, &results)
}

/// Summary of per-image results, in the order of `dataset.images`.
pub fn summarise(dataset: &Dataset, results: &[Result<ImageIntensity, String>]) -> IntensityStats {
    let mut means = Vec::new();
    let mut stds = Vec::new();
    let (mut frac, mut non) = (Vec::new(), Vec::new());
    let (mut bit_depth_8, mut bit_depth_16) = (0, 0);
    let mut unreadable = Vec::new();
    for (record, result) in dataset.images.iter().zip(results) {
        match result {
            Ok(m) => {
                means.push(m.mean);
                stds.push(m.std);
                if record.meta.is_fractured() {
                    frac.push(m.mean)
                } else {
                    non.push(m.mean)
                }
                if m.bit_depth > 8 { bit_depth_16 += 1 } else { bit_depth_8 += 1 }
            }
            Err(error) => unreadable
                .push(Unreadable { image_id: record.meta.image_id.clone(), error: error.clone() }),
        }
    }
    let avg = |v: &[f64]| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
    IntensityStats {
        mean: Distribution::over_range(&means, INTENSITY_BINS),
        std: Distribution::over_range(&stds, INTENSITY_BINS),
        mean_fractured: avg(&frac),
        mean_non_fractured: avg(&non),
        bit_depth_8,
        bit_depth_16,
        unreadable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eda::stats::tests::small_dataset;

    #[test]
    fn summarises_results_in_order() {
        let ds = small_dataset();
        let ok = |mean, bit_depth| Ok(ImageIntensity { mean, std: 0.1, bit_depth });
        let results = vec![ok(0.2, 8), ok(0.4, 16), ok(0.6, 8), Err("corrupt".to_string())];
        let s = summarise(&ds, &results);
        assert_eq!((s.bit_depth_8, s.bit_depth_16), (2, 1));
        assert_eq!(
            s.unreadable,
            vec![Unreadable { image_id: "IMG4".into(), error: "corrupt".into() }]
        );
        assert!((s.mean_fractured.unwrap_or(0.0) - 0.3).abs() < 1e-12);
        assert!((s.mean_non_fractured.unwrap_or(0.0) - 0.6).abs() < 1e-12);
        assert_eq!(s.mean.histogram.total(), 3);
        assert_eq!(s.mean.summary.as_ref().map(|m| m.count), Some(3));
    }

    #[test]
    fn measures_a_file() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("half.png");
        // Left half black, right half white: mean 0.5, std 0.5.
        let img =
            image::GrayImage::from_fn(4, 2, |x, _| image::Luma([if x < 2 { 0 } else { 255 }]));
        img.save(&path)?;
        let m = measure(&path)?;
        assert!((m.mean - 0.5).abs() < 1e-6 && (m.std - 0.5).abs() < 1e-6);
        assert_eq!(m.bit_depth, 8);
        assert!(measure(&dir.path().join("missing.png")).is_err());
        Ok(())
    }
}
