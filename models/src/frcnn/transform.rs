//! torchvision's `GeneralizedRCNNTransform` at inference: each image (`[3, H, W]`, float in
//! `[0, 1]`) is normalised with the ImageNet mean and std, resized so its short side becomes
//! `min_size` unless that makes the long side exceed `max_size`, and the images are padded
//! (bottom and right, with zeros) into one batch whose sides are multiples of 32. Detections are
//! mapped back to original pixels by the per-axis ratio of original to resized size.
//!
//! The resize is torchvision's exactly: `scale = min(min_size / short, max_size / long)` in
//! double precision, output size `floor(side · scale)` (`recompute_scale_factor=True`), bilinear
//! interpolation with `align_corners=False` and the scale recomputed from the sizes.

use tch::{Device, Kind, Tensor};

use super::FrcnnError;

/// ImageNet mean (RGB), torchvision's default `image_mean`.
pub const IMAGENET_MEAN: [f64; 3] = [0.485, 0.456, 0.406];
/// ImageNet std (RGB), torchvision's default `image_std`.
pub const IMAGENET_STD: [f64; 3] = [0.229, 0.224, 0.225];

/// Resize and normalisation settings.
#[derive(Debug, Clone, PartialEq)]
pub struct TransformConfig {
    /// Target short side (torchvision default 800).
    pub min_size: i64,
    /// Cap on the long side (torchvision default 1333).
    pub max_size: i64,
    pub image_mean: [f64; 3],
    pub image_std: [f64; 3],
    /// Batch sides are padded up to a multiple of this (32).
    pub size_divisible: i64,
}

impl Default for TransformConfig {
    fn default() -> Self {
        Self {
            min_size: 800,
            max_size: 1333,
            image_mean: IMAGENET_MEAN,
            image_std: IMAGENET_STD,
            size_divisible: 32,
        }
    }
}

/// Images ready for the network.
#[derive(Debug)]
pub struct ImageBatch {
    /// `[B, 3, Hp, Wp]`, normalised, zero-padded.
    pub tensors: Tensor,
    /// `[h, w]` of each image after resizing (its valid region in `tensors`).
    pub image_sizes: Vec<[i64; 2]>,
    /// `[h, w]` of each image as given.
    pub original_sizes: Vec<[i64; 2]>,
}

impl ImageBatch {
    /// `[Hp, Wp]`.
    pub fn batch_hw(&self) -> [i64; 2] {
        let s = self.tensors.size();
        [s[2], s[3]]
    }
}

/// The transform.
#[derive(Debug, Clone)]
pub struct Transform {
    pub cfg: TransformConfig,
}

impl Transform {
    pub fn new(cfg: TransformConfig) -> Result<Self, FrcnnError> {
        if cfg.min_size < 1 || cfg.max_size < 1 || cfg.size_divisible < 1 {
            return Err(FrcnnError::Config(format!(
                "min_size, max_size and size_divisible must be positive, got {}, {}, {}",
                cfg.min_size, cfg.max_size, cfg.size_divisible
            )));
        }
        if cfg.image_std.iter().any(|&s| s.is_nan() || s == 0.0) {
            return Err(FrcnnError::Config("image_std must be non-zero".into()));
        }
        Ok(Self { cfg })
    }

    /// Checks one input image: float `[3, H, W]` with `H, W >= 1`.
    pub fn check_image(index: usize, image: &Tensor) -> Result<(), FrcnnError> {
        let shape = image.size();
        let ok = shape.len() == 3 && shape[0] == 3 && shape[1] >= 1 && shape[2] >= 1;
        if !ok || !image.is_floating_point() {
            return Err(FrcnnError::Input { index, shape, kind: image.kind() });
        }
        Ok(())
    }

    /// `(image - mean) / std`, per channel, in the image's own kind.
    pub fn normalize(&self, image: &Tensor) -> Tensor {
        let per_channel = |v: &[f64; 3]| {
            Tensor::from_slice(&v.map(|x| x as f32))
                .to_kind(image.kind())
                .to_device(image.device())
                .view([3, 1, 1])
        };
        (image - per_channel(&self.cfg.image_mean)) / per_channel(&self.cfg.image_std)
    }

    /// The size `[h', w']` an `[h, w]` image is resized to.
    pub fn resized_size(&self, hw: [i64; 2]) -> [i64; 2] {
        let (h, w) = (hw[0] as f64, hw[1] as f64);
        let scale = (self.cfg.min_size as f64 / h.min(w)).min(self.cfg.max_size as f64 / h.max(w));
        // `int(size · scale)`; at least one pixel.
        [((h * scale).floor() as i64).max(1), ((w * scale).floor() as i64).max(1)]
    }

    /// `[3, h, w]` -> `[3, h', w']`, bilinear, `align_corners=False`.
    pub fn resize(&self, image: &Tensor) -> Tensor {
        let s = image.size();
        let [oh, ow] = self.resized_size([s[1], s[2]]);
        image.unsqueeze(0).upsample_bilinear2d([oh, ow], false, None, None).squeeze_dim(0)
    }

    /// Normalises, resizes and pads `images` into one batch on `device`.
    pub fn batch(&self, images: &[Tensor], device: Device) -> Result<ImageBatch, FrcnnError> {
        if images.is_empty() {
            return Err(FrcnnError::EmptyBatch);
        }
        let mut resized = Vec::with_capacity(images.len());
        let mut original_sizes = Vec::with_capacity(images.len());
        for (i, img) in images.iter().enumerate() {
            Self::check_image(i, img)?;
            let s = img.size();
            original_sizes.push([s[1], s[2]]);
            resized.push(self.resize(&self.normalize(&img.to_device(device))));
        }
        let image_sizes: Vec<[i64; 2]> =
            resized.iter().map(|t| [t.size()[1], t.size()[2]]).collect();
        let div = self.cfg.size_divisible;
        let round_up = |v: i64| (v + div - 1) / div * div;
        let hp = round_up(image_sizes.iter().map(|s| s[0]).max().unwrap_or(1));
        let wp = round_up(image_sizes.iter().map(|s| s[1]).max().unwrap_or(1));
        let kind = resized.first().map_or(Kind::Float, Tensor::kind);
        let tensors = Tensor::zeros([images.len() as i64, 3, hp, wp], (kind, device));
        for (i, img) in resized.iter().enumerate() {
            let [h, w] = image_sizes[i];
            tensors.get(i as i64).narrow(1, 0, h).narrow(2, 0, w).copy_(img);
        }
        Ok(ImageBatch { tensors, image_sizes, original_sizes })
    }

    /// Boxes `[N, 4]` on an `original` (`[h, w]`) image -> the same boxes on the image resized
    /// to `resized`: x scaled by `w' / w`, y by `h' / h` (float32 ratios, as torchvision's
    /// `resize_boxes` in training).
    pub fn resize_boxes(boxes: &Tensor, original: [i64; 2], resized: [i64; 2]) -> Tensor {
        let ratio_h = resized[0] as f32 / original[0] as f32;
        let ratio_w = resized[1] as f32 / original[1] as f32;
        let ratios = Tensor::from_slice(&[ratio_w, ratio_h, ratio_w, ratio_h])
            .to_kind(boxes.kind())
            .to_device(boxes.device());
        boxes * ratios
    }

    /// Boxes `[N, 4]` on an image resized to `resized` (`[h, w]`) -> boxes on the original
    /// `original` image: x scaled by `w / w'`, y by `h / h'` (float32 ratios, as torchvision).
    pub fn postprocess_boxes(boxes: &Tensor, resized: [i64; 2], original: [i64; 2]) -> Tensor {
        let ratio_h = original[0] as f32 / resized[0] as f32;
        let ratio_w = original[1] as f32 / resized[1] as f32;
        let ratios = Tensor::from_slice(&[ratio_w, ratio_h, ratio_w, ratio_h])
            .to_kind(boxes.kind())
            .to_device(boxes.device());
        boxes * ratios
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn transform(min: i64, max: i64) -> Transform {
        Transform::new(TransformConfig { min_size: min, max_size: max, ..Default::default() })
            .unwrap()
    }

    #[test]
    fn resize_rule_and_padding() {
        let t = transform(320, 416);
        assert_eq!(t.resized_size([240, 320]), [312, 416]); // capped by max_size: scale 1.3
        assert_eq!(t.resized_size([300, 260]), [369, 320]); // short side 260 -> 320
        let opts = (Kind::Float, Device::Cpu);
        let imgs = [Tensor::rand([3, 240, 320], opts), Tensor::rand([3, 300, 260], opts)];
        let b = t.batch(&imgs, Device::Cpu).unwrap();
        assert_eq!(b.tensors.size(), [2, 3, 384, 416]);
        assert_eq!(b.image_sizes, vec![[312, 416], [369, 320]]);
        assert_eq!(b.original_sizes, vec![[240, 320], [300, 260]]);
        let pad = b.tensors.get(1).narrow(2, 320, 96);
        assert_eq!(pad.abs().max().double_value(&[]), 0.0);
    }

    #[test]
    fn normalise_boxes_back_and_bad_inputs() {
        let t = transform(800, 1333);
        let x = Tensor::full([3, 2, 2], 0.485, (Kind::Float, Device::Cpu));
        assert!(t.normalize(&x).get(0).abs().max().double_value(&[]) < 1e-6);
        let b = Tensor::from_slice(&[10.0f32, 20.0, 30.0, 40.0]).view([1, 4]);
        let back = Transform::postprocess_boxes(&b, [400, 200], [200, 100]);
        assert_eq!(Vec::<f32>::try_from(back.view([-1])).unwrap(), vec![5.0, 10.0, 15.0, 20.0]);
        let bad = Tensor::zeros([1, 4, 4], (Kind::Float, Device::Cpu));
        assert!(matches!(t.batch(&[bad], Device::Cpu), Err(FrcnnError::Input { index: 0, .. })));
        let ints = Tensor::zeros([3, 4, 4], (Kind::Uint8, Device::Cpu));
        assert!(t.batch(&[ints], Device::Cpu).is_err());
        assert!(matches!(t.batch(&[], Device::Cpu), Err(FrcnnError::EmptyBatch)));
        assert!(Transform::new(TransformConfig { min_size: 0, ..Default::default() }).is_err());
    }
}
