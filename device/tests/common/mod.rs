//! Helpers shared by the integration tests: images and DICOM files built in memory, a
//! state directory with a fast configuration, and database look-ups.
#![allow(dead_code)]

pub mod daemon;
pub mod review;

use std::io::Cursor;
use std::path::{Path, PathBuf};

use dicom_core::value::{DataSetSequence, PixelFragmentSequence};
use dicom_core::{DataElement, Length, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_object::{FileMetaTableBuilder, InMemDicomObject};
use fracture_device::config::Config;
use fracture_device::db::Db;
use image::{ImageBuffer, ImageFormat, Luma};

/// Explicit VR Little Endian.
pub const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";
/// Digital X-Ray Image Storage - For Presentation.
pub const DX_PRESENTATION: &str = "1.2.840.10008.5.1.4.1.1.1.1";

/// A configuration that reacts quickly (tests should not wait seconds).
pub fn fast_config() -> Config {
    let mut c = Config::default();
    c.ingest.stable_ms = 150;
    c.ingest.rescan_ms = 100;
    c
}

/// A temporary state directory with its capture folder created.
pub struct State {
    pub tmp: tempfile::TempDir,
    pub root: PathBuf,
}

impl State {
    pub fn new() -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().join("state");
        fracture_device::state_dir::StateDir::create(&root).expect("state dir");
        Self { tmp, root }
    }
    pub fn capture(&self) -> PathBuf {
        self.root.join("capture")
    }
    pub fn archive(&self) -> PathBuf {
        self.root.join("archive")
    }
    pub fn quarantine(&self) -> PathBuf {
        self.root.join("quarantine")
    }
    pub fn db(&self) -> Db {
        Db::open_existing(&self.root.join("fractured.sqlite3")).expect("db")
    }
}

pub fn encode(img: &ImageBuffer<Luma<u8>, Vec<u8>>, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, format).expect("encode");
    out.into_inner()
}

/// A small gray gradient, distinct per `seed`.
pub fn gray(w: u32, h: u32, seed: u32) -> ImageBuffer<Luma<u8>, Vec<u8>> {
    ImageBuffer::from_fn(w, h, |x, y| Luma([((x * 7 + y * 13 + seed * 31) % 256) as u8]))
}

pub fn png(seed: u32) -> Vec<u8> {
    encode(&gray(32, 24, seed), ImageFormat::Png)
}

pub fn jpeg(seed: u32) -> Vec<u8> {
    encode(&gray(32, 24, seed), ImageFormat::Jpeg)
}

pub fn tiff(seed: u32) -> Vec<u8> {
    encode(&gray(32, 24, seed), ImageFormat::Tiff)
}

/// A small, well-formed PNG whose header declares `w`x`h` (a decompression bomb's header:
/// the pixel data would be w·h bytes once inflated).
pub fn png_header_only(w: u32, h: u32) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]); // 8-bit gray
    png_chunk(&mut out, b"IHDR", &ihdr);
    png_chunk(&mut out, b"IDAT", &[0x78, 0x9C, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]);
    png_chunk(&mut out, b"IEND", &[]);
    out
}

/// A 16-bit grayscale PNG (what many detectors export).
pub fn png16(seed: u16) -> Vec<u8> {
    let img: ImageBuffer<Luma<u16>, Vec<u16>> = ImageBuffer::from_fn(40, 30, |x, y| {
        Luma([(x as u16).wrapping_mul(1500).wrapping_add(y as u16 * 700).wrapping_add(seed)])
    });
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, ImageFormat::Png).expect("encode");
    out.into_inner()
}

/// A little-endian baseline TIFF whose IFD declares `w`x`h` 8-bit gray (no real strip).
pub fn tiff_header_only(w: u32, h: u32) -> Vec<u8> {
    let mut out = b"II*\0".to_vec();
    out.extend_from_slice(&8_u32.to_le_bytes());
    // (tag, type, count, value): SHORT = 3, LONG = 4
    let entries: [(u16, u16, u32, u32); 8] = [
        (256, 4, 1, w),   // ImageWidth
        (257, 4, 1, h),   // ImageLength
        (258, 3, 1, 8),   // BitsPerSample
        (259, 3, 1, 1),   // Compression: none
        (262, 3, 1, 1),   // PhotometricInterpretation: BlackIsZero
        (273, 4, 1, 110), // StripOffsets
        (278, 4, 1, h),   // RowsPerStrip
        (279, 4, 1, 4),   // StripByteCounts
    ];
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    for (tag, kind, count, value) in entries {
        out.extend_from_slice(&tag.to_le_bytes());
        out.extend_from_slice(&kind.to_le_bytes());
        out.extend_from_slice(&count.to_le_bytes());
        out.extend_from_slice(&value.to_le_bytes());
    }
    out.extend_from_slice(&0_u32.to_le_bytes()); // no next IFD
    out.extend_from_slice(&[0, 0, 0, 0]); // the "strip"
    out
}

fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let mut chunk = kind.to_vec();
    chunk.extend_from_slice(data);
    out.extend_from_slice(&chunk);
    out.extend_from_slice(&crc32(&chunk).to_be_bytes());
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFF_u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// What goes into a test DICOM file.
pub struct DicomSpec {
    pub rows: u16,
    pub cols: u16,
    /// 16-bit samples, row-major; `None` for no pixel data element at all.
    pub pixels: Option<Vec<u16>>,
    pub photometric: &'static str,
    pub modality: &'static str,
    pub bits_stored: u16,
    pub window: Option<(f64, f64)>,
    pub rescale: Option<(f64, f64)>,
    pub presentation_lut_shape: Option<&'static str>,
    /// (first mapped value, bits, table)
    pub voi_lut: Option<(u16, u16, Vec<u16>)>,
    pub transfer_syntax: &'static str,
    pub instance: &'static str,
    /// An 8-bit gray JPEG to encapsulate instead of native pixels (JPEG Baseline syntax).
    pub jpeg_baseline: Option<Vec<u8>>,
    pub samples_per_pixel: u16,
    /// Bits Allocated as written (default: 16, or 8 with `jpeg_baseline`).
    pub bits_allocated: Option<u16>,
}

/// JPEG Baseline (Process 1).
pub const JPEG_BASELINE: &str = "1.2.840.10008.1.2.4.50";

impl Default for DicomSpec {
    fn default() -> Self {
        Self {
            rows: 2,
            cols: 3,
            pixels: Some(vec![500, 1000, 1500, 1750, 2000, 3000]),
            photometric: "MONOCHROME2",
            modality: "DX",
            bits_stored: 12,
            window: None,
            rescale: None,
            presentation_lut_shape: None,
            voi_lut: None,
            transfer_syntax: EXPLICIT_LE,
            instance: "2.25.1001",
            jpeg_baseline: None,
            samples_per_pixel: 1,
            bits_allocated: None,
        }
    }
}

/// Patient attributes written into every test DICOM, which must never reach the database.
pub const PATIENT_NAME: &str = "Doe^Jane";
pub const PATIENT_ID: &str = "PID-31415926";

/// Builds a DICOM Part 10 file in memory.
pub fn dicom(spec: &DicomSpec) -> Vec<u8> {
    let text = |tag, vr, s: &str| DataElement::new(tag, vr, PrimitiveValue::from(s));
    let us = |tag, v: u16| DataElement::new(tag, VR::US, PrimitiveValue::from(v));
    let mut obj = InMemDicomObject::from_element_iter([
        text(tags::SOP_CLASS_UID, VR::UI, DX_PRESENTATION),
        text(tags::SOP_INSTANCE_UID, VR::UI, spec.instance),
        text(tags::STUDY_INSTANCE_UID, VR::UI, "2.25.77"),
        text(tags::SERIES_INSTANCE_UID, VR::UI, "2.25.78"),
        text(tags::MODALITY, VR::CS, spec.modality),
        text(tags::PATIENT_NAME, VR::PN, PATIENT_NAME),
        text(tags::PATIENT_ID, VR::LO, PATIENT_ID),
        text(tags::BODY_PART_EXAMINED, VR::CS, "HAND"),
        text(tags::PRESENTATION_INTENT_TYPE, VR::CS, "FOR PRESENTATION"),
        us(tags::ROWS, spec.rows),
        us(tags::COLUMNS, spec.cols),
        us(tags::SAMPLES_PER_PIXEL, spec.samples_per_pixel),
        text(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, spec.photometric),
        us(
            tags::BITS_ALLOCATED,
            spec.bits_allocated.unwrap_or(if spec.jpeg_baseline.is_some() { 8 } else { 16 }),
        ),
        us(tags::BITS_STORED, spec.bits_stored),
        us(tags::HIGH_BIT, spec.bits_stored - 1),
        us(tags::PIXEL_REPRESENTATION, 0),
    ]);
    if let Some((center, width)) = spec.window {
        obj.put(text(tags::WINDOW_CENTER, VR::DS, &center.to_string()));
        obj.put(text(tags::WINDOW_WIDTH, VR::DS, &width.to_string()));
    }
    if let Some((slope, intercept)) = spec.rescale {
        obj.put(text(tags::RESCALE_SLOPE, VR::DS, &slope.to_string()));
        obj.put(text(tags::RESCALE_INTERCEPT, VR::DS, &intercept.to_string()));
    }
    if let Some(shape) = spec.presentation_lut_shape {
        obj.put(text(tags::PRESENTATION_LUT_SHAPE, VR::CS, shape));
    }
    if let Some((first, bits, table)) = &spec.voi_lut {
        let item = InMemDicomObject::from_element_iter([
            DataElement::new(
                tags::LUT_DESCRIPTOR,
                VR::US,
                PrimitiveValue::U16([table.len() as u16, *first, *bits].into_iter().collect()),
            ),
            DataElement::new(
                tags::LUT_DATA,
                VR::OW,
                PrimitiveValue::U16(table.iter().copied().collect()),
            ),
        ]);
        obj.put(DataElement::new(
            tags::VOILUT_SEQUENCE,
            VR::SQ,
            DataSetSequence::new(vec![item], Length::UNDEFINED),
        ));
    }
    if let Some(pixels) = &spec.pixels {
        obj.put(DataElement::new(
            tags::PIXEL_DATA,
            VR::OW,
            PrimitiveValue::U16(pixels.iter().copied().collect()),
        ));
    }
    let mut syntax = EXPLICIT_LE;
    if let Some(jpeg) = &spec.jpeg_baseline {
        obj.put(DataElement::new(
            tags::PIXEL_DATA,
            VR::OB,
            PixelFragmentSequence::new_fragments(vec![jpeg.clone()]),
        ));
        syntax = JPEG_BASELINE;
    }
    let file = obj.with_meta(FileMetaTableBuilder::new().transfer_syntax(syntax)).expect("meta");
    let mut bytes = Vec::new();
    file.write_all(&mut bytes).expect("write dicom");
    if spec.transfer_syntax != EXPLICIT_LE {
        // Rewrite the transfer syntax UID in the meta group (same length, so every length
        // field stays right): how a file in a syntax this build cannot read looks.
        assert_eq!(spec.transfer_syntax.len(), EXPLICIT_LE.len());
        let at = find(&bytes, EXPLICIT_LE.as_bytes()).expect("ts uid in meta");
        bytes[at..at + EXPLICIT_LE.len()].copy_from_slice(spec.transfer_syntax.as_bytes());
    }
    bytes
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Lower-case hex SHA-256.
pub fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Every file name directly in `dir`, sorted.
pub fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

pub fn count(db: &Db, sql: &str) -> i64 {
    db.conn().query_row(sql, [], |r| r.get(0)).expect("count")
}
