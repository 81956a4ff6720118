//! DICOM radiographs (CR, DX for presentation or processing) to one gray plane, following the
//! grayscale pipeline of PS3.3 C.11 / PS3.4 N.2:
//!
//! ```text
//! stored value ─(Bits Stored mask, sign)─► Modality LUT: slope·v + intercept
//!   ─► VOI: first window (LINEAR / LINEAR_EXACT / SIGMOID), else first VOI LUT table,
//!           else min–max of the image  ─► [0, 1]
//!   ─► Presentation: inverted when MONOCHROME1 or Presentation LUT Shape is INVERSE
//!      (bone bright, as in MONOCHROME2 and the PNG/JPEG training images)
//! ```
//!
//! Only the first frame is read. Dimensions are checked before pixel data is decoded. The
//! study/series/instance UIDs and the parameters applied are returned for the log; patient
//! attributes are never read.

use std::borrow::Cow;

use dicom_dictionary_std::tags;
use dicom_object::file::ReadPreamble;
use dicom_object::mem::InMemDicomObject;
use dicom_object::{OpenFileOptions, ReadError, Tag};
use dicom_pixeldata::{
    ConvertOptions, ModalityLutOption, PixelDecoder, VoiLutFunction, WindowLevel,
};
use dicom_transfer_syntax_registry::{TransferSyntaxIndex, TransferSyntaxRegistry};
use fracture_models::pixels::{DecodeLimits, GrayF32};
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum DicomError {
    #[error("not a readable DICOM file: {0}")]
    Parse(String),
    #[error("unsupported transfer syntax {uid}{name}: {why}")]
    UnsupportedTransferSyntax { uid: String, name: String, why: String },
    #[error("no pixel data (7FE0,0010): the file holds no image (a report, structured data?)")]
    NoPixelData,
    #[error("modality {0:?} is not projection radiography (accepted: {1})")]
    Modality(String, String),
    #[error("missing required attribute {0}")]
    Missing(&'static str),
    #[error("unsupported image: {0}")]
    Unsupported(String),
    #[error("image is {width}x{height} ({frames} frame(s)), over the limit {limit}")]
    TooLarge { width: u32, height: u32, frames: u32, limit: String },
    #[error("cannot decode pixel data: {0}")]
    PixelData(String),
}

/// The VOI transform that was applied.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum VoiApplied {
    Window { center: f64, width: f64, function: &'static str },
    Lut { first_mapped: i32, entries: usize, bits: u8 },
    MinMax { min: f64, max: f64 },
}

/// What the log keeps about a DICOM image (no patient attributes).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DicomInfo {
    pub format: &'static str,
    pub study_instance_uid: Option<String>,
    pub series_instance_uid: Option<String>,
    pub sop_instance_uid: Option<String>,
    pub sop_class_uid: Option<String>,
    pub transfer_syntax: String,
    pub modality: String,
    pub presentation_intent: Option<String>,
    pub body_part_examined: Option<String>,
    pub view_position: Option<String>,
    pub photometric_interpretation: String,
    pub rows: u32,
    pub columns: u32,
    pub frames: u32,
    pub bits_allocated: u16,
    pub bits_stored: u16,
    pub signed: bool,
    pub rescale_slope: f64,
    pub rescale_intercept: f64,
    pub voi: VoiApplied,
    pub presentation_lut_shape: Option<String>,
    /// Whether values were inverted so that bone is bright.
    pub inverted: bool,
}

/// Decodes a DICOM Part 10 file (preamble included) to a gray plane in [0, 1].
pub fn decode_dicom(
    bytes: &[u8],
    limits: &DecodeLimits,
    modalities: &[String],
) -> Result<(GrayF32, DicomInfo), DicomError> {
    let obj = OpenFileOptions::new()
        .read_preamble(ReadPreamble::Always)
        .from_reader(bytes)
        .map_err(read_error)?;

    let ts_uid = obj.meta().transfer_syntax().trim_end_matches(['\0', ' ']).to_string();
    match TransferSyntaxRegistry.get(&ts_uid) {
        None => {
            return Err(DicomError::UnsupportedTransferSyntax {
                uid: ts_uid,
                name: String::new(),
                why: "not a transfer syntax this build knows".into(),
            });
        }
        Some(ts) if !ts.can_decode_all() => {
            return Err(DicomError::UnsupportedTransferSyntax {
                name: format!(" ({})", ts.name()),
                uid: ts_uid,
                why: "this build cannot decode its pixel data".into(),
            });
        }
        Some(_) => {}
    }

    let modality = text(&obj, tags::MODALITY).unwrap_or_default().to_uppercase();
    if !modalities.contains(&modality) {
        return Err(DicomError::Modality(modality, modalities.join(", ")));
    }
    if !matches!(obj.element_opt(tags::PIXEL_DATA), Ok(Some(_))) {
        return Err(DicomError::NoPixelData);
    }
    let rows = uint(&obj, tags::ROWS).ok_or(DicomError::Missing("Rows (0028,0010)"))?;
    let columns = uint(&obj, tags::COLUMNS).ok_or(DicomError::Missing("Columns (0028,0011)"))?;
    let frames = uint(&obj, tags::NUMBER_OF_FRAMES).unwrap_or(1).max(1);
    let samples = uint(&obj, tags::SAMPLES_PER_PIXEL).unwrap_or(1);
    let photometric = text(&obj, tags::PHOTOMETRIC_INTERPRETATION)
        .ok_or(DicomError::Missing("Photometric Interpretation (0028,0004)"))?
        .to_uppercase();
    let bits_allocated = uint(&obj, tags::BITS_ALLOCATED)
        .ok_or(DicomError::Missing("Bits Allocated (0028,0100)"))? as u16;
    let bits_stored = uint(&obj, tags::BITS_STORED).map_or(bits_allocated, |b| b as u16);
    let signed = uint(&obj, tags::PIXEL_REPRESENTATION).unwrap_or(0) == 1;

    if samples != 1 || !matches!(photometric.as_str(), "MONOCHROME1" | "MONOCHROME2") {
        return Err(DicomError::Unsupported(format!(
            "photometric interpretation {photometric} with {samples} sample(s) per pixel \
             (radiographs are MONOCHROME1 or MONOCHROME2)"
        )));
    }
    if !matches!(bits_allocated, 8 | 16) || bits_stored == 0 || bits_stored > bits_allocated {
        return Err(DicomError::Unsupported(format!(
            "bits allocated {bits_allocated}, bits stored {bits_stored}"
        )));
    }
    let too_large =
        |limit: String| DicomError::TooLarge { width: columns, height: rows, frames, limit };
    if columns == 0 || rows == 0 {
        return Err(DicomError::Unsupported(format!("empty image {columns}x{rows}")));
    }
    if columns > limits.max_width || rows > limits.max_height {
        return Err(too_large(format!("{}x{}", limits.max_width, limits.max_height)));
    }
    let decoded_bytes =
        u64::from(rows) * u64::from(columns) * u64::from(frames) * u64::from(bits_allocated / 8);
    if decoded_bytes > limits.max_alloc {
        return Err(too_large(format!("{} decoded bytes", limits.max_alloc)));
    }

    let px = obj.decode_pixel_data_frame(0).map_err(|e| DicomError::PixelData(chain(&e)))?;
    let raw: Vec<i32> = px
        .to_vec_frame_with_options(
            0,
            &ConvertOptions::new().with_modality_lut(ModalityLutOption::None),
        )
        .map_err(|e| DicomError::PixelData(chain(&e)))?;
    let n = rows as usize * columns as usize;
    if raw.len() != n {
        return Err(DicomError::PixelData(format!(
            "{} samples for a {columns}x{rows} frame",
            raw.len()
        )));
    }

    // Modality LUT (rescale).
    let rescale = px
        .rescale()
        .map_err(|e| DicomError::PixelData(chain(&e)))?
        .first()
        .copied()
        .unwrap_or(dicom_pixeldata::Rescale { slope: 1.0, intercept: 0.0 });
    let values: Vec<f64> = raw
        .iter()
        .map(|&v| stored_value(v, bits_stored, signed) * rescale.slope + rescale.intercept)
        .collect();

    // VOI.
    let window = px.window().ok().flatten().and_then(|w| w.first().copied());
    let function = px
        .voi_lut_function()
        .ok()
        .flatten()
        .and_then(|f| f.first().copied())
        .unwrap_or(VoiLutFunction::Linear);
    let table = px.voi_lut_sequence().ok().flatten().and_then(|t| t.first());
    let (mut out, voi): (Vec<f32>, VoiApplied) = match (window, table) {
        (Some(w), _) if w.width > 0.0 => (
            values.iter().map(|&x| apply_window(x, w, function) as f32).collect(),
            VoiApplied::Window { center: w.center, width: w.width, function: name(function) },
        ),
        (_, Some(lut)) if !lut.data.is_empty() => (
            values
                .iter()
                .map(|&x| apply_table(x, &lut.data, lut.min_pixel_value, lut.bits_stored) as f32)
                .collect(),
            VoiApplied::Lut {
                first_mapped: lut.min_pixel_value,
                entries: lut.data.len(),
                bits: lut.bits_stored,
            },
        ),
        _ => {
            let min = values.iter().copied().fold(f64::INFINITY, f64::min);
            let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let span = if max > min { max - min } else { 1.0 };
            (
                values.iter().map(|&x| ((x - min) / span) as f32).collect(),
                VoiApplied::MinMax { min, max },
            )
        }
    };

    // Presentation.
    let shape = text(&obj, tags::PRESENTATION_LUT_SHAPE).map(|s| s.to_uppercase());
    let inverted = photometric == "MONOCHROME1" || shape.as_deref() == Some("INVERSE");
    if inverted {
        out.iter_mut().for_each(|v| *v = 1.0 - *v);
    }

    let image = GrayF32 {
        width: columns,
        height: rows,
        data: out,
        bit_depth: if bits_allocated <= 8 { 8 } else { 16 },
    };
    let info = DicomInfo {
        format: "dicom",
        study_instance_uid: text(&obj, tags::STUDY_INSTANCE_UID),
        series_instance_uid: text(&obj, tags::SERIES_INSTANCE_UID),
        sop_instance_uid: text(&obj, tags::SOP_INSTANCE_UID),
        sop_class_uid: text(&obj, tags::SOP_CLASS_UID),
        transfer_syntax: ts_uid,
        modality,
        presentation_intent: text(&obj, tags::PRESENTATION_INTENT_TYPE),
        body_part_examined: text(&obj, tags::BODY_PART_EXAMINED),
        view_position: text(&obj, tags::VIEW_POSITION),
        photometric_interpretation: photometric,
        rows,
        columns,
        frames,
        bits_allocated,
        bits_stored,
        signed,
        rescale_slope: rescale.slope,
        rescale_intercept: rescale.intercept,
        voi,
        presentation_lut_shape: shape,
        inverted,
    };
    Ok((image, info))
}

/// The stored value of a sample: the low `bits_stored` bits, sign-extended when signed.
fn stored_value(sample: i32, bits_stored: u16, signed: bool) -> f64 {
    let bits = u32::from(bits_stored.clamp(1, 32));
    let mask: u64 = (1_u64 << bits) - 1;
    let v = (sample as i64 as u64) & mask;
    if signed && v & (1 << (bits - 1)) != 0 {
        (v as i64 - (1_i64 << bits)) as f64
    } else {
        v as f64
    }
}

/// PS3.3 C.11.2.1.2 window functions, output in [0, 1].
pub fn apply_window(x: f64, w: WindowLevel, function: VoiLutFunction) -> f64 {
    let (c, width) = (w.center, w.width);
    match function {
        VoiLutFunction::Linear => {
            let width = width.max(1.0);
            if x <= c - 0.5 - (width - 1.0) / 2.0 {
                0.0
            } else if x > c - 0.5 + (width - 1.0) / 2.0 {
                1.0
            } else {
                (x - (c - 0.5)) / (width - 1.0) + 0.5
            }
        }
        VoiLutFunction::LinearExact => {
            if x <= c - width / 2.0 {
                0.0
            } else if x > c + width / 2.0 {
                1.0
            } else {
                (x - c) / width + 0.5
            }
        }
        VoiLutFunction::Sigmoid => 1.0 / (1.0 + (-4.0 * (x - c) / width).exp()),
    }
}

/// A VOI LUT table lookup, output in [0, 1].
/// `data[x - first_mapped]` (clamped to the table), scaled by the table's bit depth.
fn apply_table(x: f64, data: &[u16], first_mapped: i32, bits: u8) -> f64 {
    let last = data.len() as i64 - 1;
    let index = (x.round() as i64 - i64::from(first_mapped)).clamp(0, last.max(0)) as usize;
    let full = ((1_u64 << u32::from(bits.clamp(1, 16))) - 1) as f64;
    data.get(index).map_or(0.0, |&v| (f64::from(v) / full).clamp(0.0, 1.0))
}

fn name(f: VoiLutFunction) -> &'static str {
    match f {
        VoiLutFunction::Linear => "LINEAR",
        VoiLutFunction::LinearExact => "LINEAR_EXACT",
        VoiLutFunction::Sigmoid => "SIGMOID",
    }
}

fn text(obj: &InMemDicomObject, tag: Tag) -> Option<String> {
    let element = obj.element_opt(tag).ok().flatten()?;
    let value: Cow<'_, str> = element.to_str().ok()?;
    let trimmed = value.trim_matches(['\0', ' ']).to_string();
    (!trimmed.is_empty()).then_some(trimmed)
}

fn uint(obj: &InMemDicomObject, tag: Tag) -> Option<u32> {
    obj.element_opt(tag).ok().flatten()?.to_int::<u32>().ok()
}

fn read_error(e: ReadError) -> DicomError {
    match e {
        ReadError::ReadUnrecognizedTransferSyntax { uid, .. } => {
            DicomError::UnsupportedTransferSyntax {
                uid,
                name: String::new(),
                why: "not a transfer syntax this build knows".into(),
            }
        }
        ReadError::ReadUnsupportedTransferSyntax { uid, name, .. }
        | ReadError::ReadUnsupportedTransferSyntaxWithSuggestion { uid, name, .. } => {
            DicomError::UnsupportedTransferSyntax {
                uid: uid.to_string(),
                name: format!(" ({name})"),
                why: "this build cannot read its data set".into(),
            }
        }
        other => DicomError::Parse(chain(&other)),
    }
}

/// An error and its sources, joined by ": ".
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_values_mask_and_sign_extend() {
        assert_eq!(stored_value(0x0FFF, 12, false), 4095.0);
        assert_eq!(stored_value(0xF123, 12, false), 0x123 as f64);
        assert_eq!(stored_value(0x0FFB, 12, true), -5.0);
        assert_eq!(stored_value(-5, 16, true), -5.0);
        assert_eq!(stored_value(200, 8, false), 200.0);
    }

    #[test]
    fn linear_window_matches_the_standard() {
        let w = WindowLevel { center: 100.0, width: 51.0 };
        let f = |x| apply_window(x, w, VoiLutFunction::Linear);
        // c - 0.5 - (w-1)/2 = 74.5 -> 0 ; c - 0.5 + (w-1)/2 = 124.5 -> 1
        assert_eq!(f(74.5), 0.0);
        assert_eq!(f(125.0), 1.0);
        assert!((f(99.5) - 0.5).abs() < 1e-12);
        let e = |x| apply_window(x, w, VoiLutFunction::LinearExact);
        assert!((e(100.0) - 0.5).abs() < 1e-12);
        let s = |x| apply_window(x, w, VoiLutFunction::Sigmoid);
        assert!((s(100.0) - 0.5).abs() < 1e-12);
    }
}
