//! From dataset images to training batches: decoded samples kept in memory (gray `f32`, so a
//! few hundred MB for FracAtlas-sized sets), shuffled per epoch with a seed and augmented
//! ([`EpochSamples`]), then, for YOLO, stacked into the tensors it takes ([`EpochBatches`]):
//! images `[B, 3, S, S]` and targets `[N, 6]` = (image index in batch, class, cx, cy, w, h),
//! normalised to the input size as ultralytics'. Faster R-CNN takes the samples at their own
//! sizes ([`Geometry::Native`]) and makes its own tensors.

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use tch::Tensor;

use fracture_models::pixels::{GrayF32, PixelError, read_gray};
use fracture_models::tensor::batch_from_gray;

use super::augment::{AugmentConfig, Sample, augment, augment_native, letterbox};
use crate::dataset::Dataset;

/// A training batch.
pub struct Batch {
    /// `[B, 3, S, S]` float in [0, 1].
    pub images: Tensor,
    /// `[N, 6]`: batch index, class, cx, cy, w, h (normalised).
    pub targets: Tensor,
    /// The samples after augmentation (boxes in input pixels), for plots and validation.
    pub samples: Vec<Sample>,
    /// Dataset indices of the (first) image of each sample.
    pub indices: Vec<usize>,
}

/// Decodes the chosen images of a dataset (in parallel), boxes as class 0.
pub fn load_samples(ds: &Dataset, indices: &[usize]) -> Result<Vec<Sample>, PixelError> {
    indices
        .par_iter()
        .map(|&i| {
            let r = &ds.images[i];
            let image: GrayF32 = read_gray(&r.path).map_err(|e| match e {
                PixelError::Decode(m) => PixelError::Decode(format!("{}: {m}", r.path.display())),
                other => other,
            })?;
            Ok(Sample {
                image,
                boxes: r.boxes.iter().map(|b| [b.x1, b.y1, b.x2, b.y2]).collect(),
                classes: vec![0; r.boxes.len()],
            })
        })
        .collect()
}

/// Stacks samples (all `size`×`size`) into a [`Batch`].
pub fn collate(samples: Vec<Sample>, indices: Vec<usize>, size: u32) -> Batch {
    let planes: Vec<GrayF32> = samples.iter().map(|s| s.image.clone()).collect();
    let images = match batch_from_gray(&planes) {
        Ok(t) => t,
        // An empty batch: callers never ask for one, but keep the shape honest.
        Err(_) => Tensor::zeros(
            [0, 3, i64::from(size), i64::from(size)],
            (tch::Kind::Float, tch::Device::Cpu),
        ),
    };
    let s = size as f32;
    let mut rows: Vec<f32> = Vec::new();
    for (bi, sample) in samples.iter().enumerate() {
        for (b, c) in sample.boxes.iter().zip(&sample.classes) {
            rows.extend_from_slice(&[
                bi as f32,
                *c as f32,
                (b[0] + b[2]) / 2.0 / s,
                (b[1] + b[3]) / 2.0 / s,
                (b[2] - b[0]) / s,
                (b[3] - b[1]) / s,
            ]);
        }
    }
    let n = (rows.len() / 6) as i64;
    let targets = Tensor::from_slice(&rows).view([n, 6]);
    Batch { images, targets, samples, indices }
}

/// What the augmented samples look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Geometry {
    /// Square `S`×`S` network inputs (mosaic, affine and letterbox; YOLO).
    Letterbox(u32),
    /// Each image at its own size (affine about the centre, no mosaic; Faster R-CNN, whose
    /// transform resizes).
    Native,
}

/// Samples of one batch, after augmentation.
pub struct SampleBatch {
    pub samples: Vec<Sample>,
    /// Dataset indices of the (first) image of each sample.
    pub indices: Vec<usize>,
}

/// Yields the augmented samples of one epoch, batch by batch.
pub struct EpochSamples<'a> {
    samples: &'a [Sample],
    order: Vec<usize>,
    pos: usize,
    batch_size: usize,
    geometry: Geometry,
    augment: AugmentConfig,
    rng: ChaCha8Rng,
}

impl<'a> EpochSamples<'a> {
    /// `shuffle` for training; validation keeps the order and uses no augmentation.
    pub fn new(
        samples: &'a [Sample],
        batch_size: usize,
        geometry: Geometry,
        augment: AugmentConfig,
        shuffle: bool,
        seed: u64,
    ) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut order: Vec<usize> = (0..samples.len()).collect();
        if shuffle {
            order.shuffle(&mut rng);
        }
        Self { samples, order, pos: 0, batch_size: batch_size.max(1), geometry, augment, rng }
    }

    pub fn len(&self) -> usize {
        self.order.len().div_ceil(self.batch_size)
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

impl Iterator for EpochSamples<'_> {
    type Item = SampleBatch;

    fn next(&mut self) -> Option<SampleBatch> {
        if self.pos >= self.order.len() {
            return None;
        }
        let end = (self.pos + self.batch_size).min(self.order.len());
        let chosen: Vec<usize> = self.order[self.pos..end].to_vec();
        self.pos = end;
        let n = self.samples.len();
        // One seed per sample so augmentation can run in parallel and stay deterministic.
        let jobs: Vec<(usize, [usize; 3], u64)> = chosen
            .iter()
            .map(|&i| {
                let others = [
                    self.rng.random_range(0..n),
                    self.rng.random_range(0..n),
                    self.rng.random_range(0..n),
                ];
                (i, others, self.rng.random())
            })
            .collect();
        let (geometry, cfg, samples) = (self.geometry, self.augment, self.samples);
        let none = cfg == AugmentConfig::none();
        let out: Vec<Sample> = jobs
            .par_iter()
            .map(|&(i, o, seed)| {
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                match geometry {
                    Geometry::Letterbox(size) if none => letterbox(&samples[i], size),
                    Geometry::Letterbox(size) => augment(
                        &samples[i],
                        [&samples[o[0]], &samples[o[1]], &samples[o[2]]],
                        size,
                        &cfg,
                        &mut rng,
                    ),
                    Geometry::Native if none => samples[i].clone(),
                    Geometry::Native => augment_native(&samples[i], &cfg, &mut rng),
                }
            })
            .collect();
        Some(SampleBatch { samples: out, indices: chosen })
    }
}

/// Yields the letterboxed, stacked batches of one epoch (YOLO).
pub struct EpochBatches<'a> {
    inner: EpochSamples<'a>,
    size: u32,
}

impl<'a> EpochBatches<'a> {
    /// `shuffle` for training; validation keeps the order and uses no augmentation.
    pub fn new(
        samples: &'a [Sample],
        batch_size: usize,
        size: u32,
        augment: AugmentConfig,
        shuffle: bool,
        seed: u64,
    ) -> Self {
        let inner = EpochSamples::new(
            samples,
            batch_size,
            Geometry::Letterbox(size),
            augment,
            shuffle,
            seed,
        );
        Self { inner, size }
    }

    pub fn len(&self) -> usize {
        self.inner.len()
    }

    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }
}

impl Iterator for EpochBatches<'_> {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        let b = self.inner.next()?;
        Some(collate(b.samples, b.indices, self.size))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn sample(w: u32, h: u32) -> Sample {
        Sample {
            image: GrayF32::new(w, h, 0.3),
            boxes: vec![[10.0, 10.0, 50.0, 30.0]],
            classes: vec![0],
        }
    }

    #[test]
    fn validation_batches_are_letterboxed_and_ordered() {
        let samples = vec![sample(200, 100), sample(100, 200), sample(64, 64)];
        let mut it = EpochBatches::new(&samples, 2, 128, AugmentConfig::none(), false, 0);
        assert_eq!(it.len(), 2);
        let b = it.next().unwrap();
        assert_eq!(b.images.size(), vec![2, 3, 128, 128]);
        assert_eq!(b.indices, vec![0, 1]);
        assert_eq!(b.targets.size(), vec![2, 6]);
        // first image: gain 0.64, top pad 32: box -> (6.4, 38.4, 32, 51.2) in a 128 input
        let row: Vec<f32> = Vec::try_from(b.targets.get(0)).unwrap();
        assert_eq!(row[0], 0.0);
        assert!((row[2] - (6.4 + 32.0) / 2.0 / 128.0).abs() < 1e-5, "{row:?}");
        assert!((row[5] - 12.8 / 128.0).abs() < 1e-5);
        let last = it.next().unwrap();
        assert_eq!(last.images.size()[0], 1);
        assert!(it.next().is_none());
    }

    #[test]
    fn native_samples_keep_their_sizes() {
        let samples = vec![sample(200, 100), sample(100, 200), sample(64, 64)];
        let sizes = |aug| -> Vec<(u32, u32)> {
            EpochSamples::new(&samples, 2, Geometry::Native, aug, true, 3)
                .flat_map(|b| b.samples)
                .map(|s| (s.image.width, s.image.height))
                .collect()
        };
        let mut got = sizes(AugmentConfig::default());
        got.sort();
        assert_eq!(got, vec![(64, 64), (100, 200), (200, 100)]);
        let val: Vec<Sample> =
            EpochSamples::new(&samples, 2, Geometry::Native, AugmentConfig::none(), false, 0)
                .flat_map(|b| b.samples)
                .collect();
        assert_eq!(val[0].boxes, samples[0].boxes);
    }

    #[test]
    fn training_batches_are_deterministic_per_seed() {
        let samples: Vec<Sample> = (0..6).map(|i| sample(100 + i * 10, 120)).collect();
        let a: Vec<Tensor> = EpochBatches::new(&samples, 4, 96, AugmentConfig::default(), true, 9)
            .map(|b| b.images)
            .collect();
        let b: Vec<Tensor> = EpochBatches::new(&samples, 4, 96, AugmentConfig::default(), true, 9)
            .map(|b| b.images)
            .collect();
        assert_eq!(a.len(), 2);
        for (x, y) in a.iter().zip(&b) {
            assert!(x.equal(y));
        }
    }
}
