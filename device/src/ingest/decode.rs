//! Bytes to one gray `f32` plane in [0, 1] (bone bright), by the format the bytes say they
//! are: PNG/JPEG/TIFF through `fracture_models::pixels` (the same code the host trains
//! with), DICOM through [`super::dicom`]. Dimensions are checked against the limits on the
//! header, before any pixel is decoded.

use fracture_models::pixels::{DecodeLimits, GrayF32, PixelError, decode_gray_with};
use serde_json::json;

use super::dicom::{DicomError, decode_dicom};
use super::format::{ImageFormat, sniff, sniff_unsupported};

/// Limits and policy for decoding.
#[derive(Debug, Clone)]
pub struct DecodeOptions {
    pub limits: DecodeLimits,
    /// DICOM modalities accepted (upper case).
    pub dicom_modalities: Vec<String>,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        let ingest = crate::config::IngestConfig::default();
        Self::from_config(&ingest)
    }
}

impl DecodeOptions {
    pub fn from_config(ingest: &crate::config::IngestConfig) -> Self {
        Self {
            limits: DecodeLimits {
                max_width: ingest.max_width,
                max_height: ingest.max_height,
                max_alloc: ingest.max_decode_bytes,
            },
            dicom_modalities: ingest.dicom_modalities.iter().map(|m| m.to_uppercase()).collect(),
        }
    }
}

/// A decoded radiograph.
#[derive(Debug, Clone)]
pub struct Decoded {
    pub image: GrayF32,
    pub format: ImageFormat,
    /// Acquisition metadata for the log (DICOM UIDs, windowing used, ...); no patient data.
    pub acquisition: serde_json::Value,
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error(
        "unrecognised file format: the content is not PNG, JPEG, TIFF or DICOM \
         (whatever its name says)"
    )]
    Unrecognised,
    #[error(
        "unsupported format: the content is {0}; radiographs are accepted as PNG, JPEG, TIFF or \
         DICOM (whatever the file's name says)"
    )]
    Unsupported(&'static str),
    #[error("{format}: {source}")]
    Image { format: &'static str, source: PixelError },
    #[error(
        "{format}: decoding needs more than the {limit_mib} MiB allowed per image \
         (ingest.max_decode_bytes); refused as a possible decompression bomb"
    )]
    OverAllocLimit { format: &'static str, limit_mib: u64 },
    #[error("DICOM: {0}")]
    Dicom(#[from] DicomError),
}

/// Decodes by content.
pub fn decode(bytes: &[u8], options: &DecodeOptions) -> Result<Decoded, DecodeError> {
    let format = match (sniff(bytes), sniff_unsupported(bytes)) {
        (Some(format), _) => format,
        (None, Some(other)) => return Err(DecodeError::Unsupported(other)),
        (None, None) => return Err(DecodeError::Unrecognised),
    };
    match format {
        ImageFormat::Dicom => {
            let (image, info) = decode_dicom(bytes, &options.limits, &options.dicom_modalities)?;
            let acquisition = serde_json::to_value(&info).unwrap_or(serde_json::Value::Null);
            Ok(Decoded { image, format, acquisition })
        }
        ImageFormat::Png | ImageFormat::Jpeg | ImageFormat::Tiff => {
            let image = decode_gray_with(bytes, options.limits).map_err(|source| match source {
                // The codec's words for its allocation limit (image::error::LimitError).
                PixelError::Decode(m) if m.contains("Memory limit exceeded") => {
                    DecodeError::OverAllocLimit {
                        format: format.as_str(),
                        limit_mib: options.limits.max_alloc >> 20,
                    }
                }
                source => DecodeError::Image { format: format.as_str(), source },
            })?;
            let acquisition = json!({ "format": format.as_str(), "bit_depth": image.bit_depth });
            Ok(Decoded { image, format, acquisition })
        }
    }
}
