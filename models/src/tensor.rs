//! From preprocessed gray planes to the network's input tensor: `[B, 3, H, W]` float32 with
//! the gray value in all three channels (the detectors were designed for RGB input).

use tch::{Kind, Tensor};

use crate::pixels::GrayF32;

#[derive(Debug, thiserror::Error)]
pub enum TensorError {
    #[error("no images in the batch")]
    EmptyBatch,
    #[error("image {index} is {width}x{height}, the batch is {batch_width}x{batch_height}")]
    SizeMismatch { index: usize, width: u32, height: u32, batch_width: u32, batch_height: u32 },
}

/// The same `[N, C, H, W]` values laid out channels-last (NHWC strides), which libtorch's
/// oneDNN convolutions run faster on CPU and propagate from input to output.
pub fn channels_last(t: &Tensor) -> Tensor {
    t.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
}

/// Stacks same-sized planes into `[B, 3, H, W]` (channels share storage until written).
pub fn batch_from_gray(planes: &[GrayF32]) -> Result<Tensor, TensorError> {
    let first = planes.first().ok_or(TensorError::EmptyBatch)?;
    let (w, h) = (first.width, first.height);
    let mut data = Vec::with_capacity(planes.len() * (w * h) as usize);
    for (index, p) in planes.iter().enumerate() {
        if (p.width, p.height) != (w, h) {
            return Err(TensorError::SizeMismatch {
                index,
                width: p.width,
                height: p.height,
                batch_width: w,
                batch_height: h,
            });
        }
        data.extend_from_slice(&p.data);
    }
    let b = planes.len() as i64;
    Ok(Tensor::from_slice(&data)
        .view([b, 1, i64::from(h), i64::from(w)])
        .expand([b, 3, i64::from(h), i64::from(w)], false)
        .to_kind(Kind::Float))
}

/// One plane as the flat `[1, 3, H, W]` float32 input of an exported graph (ONNX Runtime,
/// TensorRT): the same values [`batch_from_gray`] gives libtorch, without a tensor.
pub fn nchw_from_gray(plane: &GrayF32) -> Vec<f32> {
    let mut data = Vec::with_capacity(plane.data.len() * 3);
    for _ in 0..3 {
        data.extend_from_slice(&plane.data);
    }
    data
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn flat_input_equals_the_tensor_input() {
        let a =
            GrayF32 { width: 3, height: 2, data: vec![0.0, 0.1, 0.2, 0.3, 0.4, 0.5], bit_depth: 8 };
        let t = batch_from_gray(std::slice::from_ref(&a)).unwrap();
        let v: Vec<f32> = Vec::try_from(t.contiguous().flatten(0, -1)).unwrap();
        assert_eq!(nchw_from_gray(&a), v);
    }

    #[test]
    fn gray_is_copied_to_three_channels() {
        let a = GrayF32 { width: 2, height: 1, data: vec![0.25, 0.75], bit_depth: 8 };
        let t = batch_from_gray(&[a.clone(), a]).unwrap();
        assert_eq!(t.size(), vec![2, 3, 1, 2]);
        let v: Vec<f32> = Vec::try_from(t.flatten(0, -1)).unwrap();
        assert_eq!(&v[..6], &[0.25, 0.75, 0.25, 0.75, 0.25, 0.75]);
    }

    #[test]
    fn mismatched_sizes_are_refused() {
        let a = GrayF32::new(2, 2, 0.0);
        let b = GrayF32::new(3, 2, 0.0);
        assert!(matches!(
            batch_from_gray(&[a, b]),
            Err(TensorError::SizeMismatch { index: 1, .. })
        ));
        assert!(matches!(batch_from_gray(&[]), Err(TensorError::EmptyBatch)));
    }
}
