//! Writing a dataset folder in the exact FracAtlas layout: images (8-bit JPEG or 16-bit PNG)
//! under `images/Fractured` or `images/Non_fractured`, a YOLO label and a PASCAL VOC file per
//! image, one COCO json for the fractured images, `dataset.csv`, and the fracture split lists.
//!
//! Images are streamed: [`DatasetWriter::write`] encodes and writes one image and its per-image
//! labels at once (from any number of threads) and keeps only its small record; the files that
//! list every image are written by [`DatasetWriter::finish`], sorted by `image_id`, so the
//! output does not depend on the order images arrived in.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::{ExtendedColorType, ImageBuffer, ImageEncoder, Luma};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use serde::Serialize;

use super::layout::{
    CLASS_NAME, FRACTURED_DIR, Layout, METADATA_CSV, NON_FRACTURED_DIR, SPLIT_NAMES,
};
use super::record::{ImageMeta, PixelBox};

/// JPEG quality of 8-bit images.
pub const JPEG_QUALITY: u8 = 95;
/// Shares of the fractured images in the train / valid / test lists.
pub const SPLIT_SHARES: [f64; 3] = [0.70, 0.15, 0.15];

/// How images are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    /// 8-bit greyscale JPEG at [`JPEG_QUALITY`] (FracAtlas' own format).
    Jpeg8,
    /// 16-bit greyscale PNG (keeps the full range).
    Png16,
}

impl ImageFormat {
    pub fn extension(self) -> &'static str {
        match self {
            ImageFormat::Jpeg8 => "jpg",
            ImageFormat::Png16 => "png",
        }
    }
}

/// Writer settings.
#[derive(Debug, Clone)]
pub struct WriterOptions {
    pub format: ImageFormat,
    /// Seed of the shuffle that deals fractured images into train / valid / test.
    pub split_seed: u64,
    /// Write into a folder that is not empty, first deleting the dataset files and folders
    /// already there (`images/Fractured`, `images/Non_fractured`, `Annotations/...`,
    /// `Utilities/Fracture Split`, `dataset.csv`); other files are left alone.
    pub replace: bool,
}

/// One image to write: its `dataset.csv` row, its pixels (row-major, full 16-bit range) and its
/// fracture boxes in pixels.
#[derive(Debug, Clone, Copy)]
pub struct LabelledImage<'a> {
    pub meta: &'a ImageMeta,
    pub width: u32,
    pub height: u32,
    pub pixels: &'a [u16],
    pub boxes: &'a [PixelBox],
}

/// Why writing failed; names the file involved.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: cannot encode image: {source}")]
    Encode { path: PathBuf, source: image::ImageError },
    #[error("{path}: {source}")]
    Csv { path: PathBuf, source: csv::Error },
    #[error("{path}: {source}")]
    Json { path: PathBuf, source: serde_json::Error },
    #[error("{path} exists and is not empty (choose another folder, or replace its dataset)")]
    NotEmpty { path: PathBuf },
    #[error("image {image_id}: {message}")]
    Invalid { image_id: String, message: String },
}

/// What [`DatasetWriter::finish`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteSummary {
    pub images: usize,
    pub fractured: usize,
    pub boxes: usize,
    /// Fractured images in train, valid and test.
    pub splits: [usize; 3],
}

/// The small per-image record kept until [`DatasetWriter::finish`].
#[derive(Debug, Clone)]
struct Written {
    meta: ImageMeta,
    width: u32,
    height: u32,
    boxes: Vec<PixelBox>,
}

/// Writes one dataset folder. Share it between threads by reference; call `finish` once.
#[derive(Debug)]
pub struct DatasetWriter {
    layout: Layout,
    options: WriterOptions,
    written: Mutex<Vec<Written>>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> WriteError + '_ {
    move |source| WriteError::Io { path: path.to_path_buf(), source }
}

impl DatasetWriter {
    /// Prepares `root` (created when missing). Refuses a folder that is not empty unless
    /// `options.replace`.
    pub fn create(root: &Path, options: WriterOptions) -> Result<DatasetWriter, WriteError> {
        let layout = Layout::new(root);
        if root.exists() {
            let mut entries = std::fs::read_dir(root).map_err(io(root))?;
            if entries.next().is_some() {
                if !options.replace {
                    return Err(WriteError::NotEmpty { path: root.to_path_buf() });
                }
                remove_dataset(&layout)?;
            }
        }
        for dir in layout.dirs() {
            std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        }
        Ok(DatasetWriter { layout, options, written: Mutex::new(Vec::new()) })
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Encodes and writes one image with its YOLO and VOC labels. `meta.fractured` picks the
    /// folder; `meta.image_id` is the file name and must carry this writer's extension.
    pub fn write(&self, image: LabelledImage<'_>) -> Result<(), WriteError> {
        let meta = image.meta;
        let id = &meta.image_id;
        let invalid = |message: String| WriteError::Invalid { image_id: id.clone(), message };
        let plain = !id.is_empty() && !id.contains(['/', '\\', '\0']) && !id.starts_with('.');
        if !plain {
            return Err(invalid("image_id is not a plain file name".into()));
        }
        let ext = self.options.format.extension();
        if Path::new(id).extension().and_then(|e| e.to_str()) != Some(ext) {
            return Err(invalid(format!("image_id must end in .{ext}")));
        }
        if image.width == 0
            || image.height == 0
            || image.pixels.len() as u64 != u64::from(image.width) * u64::from(image.height)
        {
            return Err(invalid(format!(
                "{} pixels for a {}x{} image",
                image.pixels.len(),
                image.width,
                image.height
            )));
        }
        if meta.fracture_count as usize != image.boxes.len()
            || meta.is_fractured() == image.boxes.is_empty()
        {
            return Err(invalid(format!(
                "fractured={} fracture_count={} but {} box(es)",
                meta.fractured,
                meta.fracture_count,
                image.boxes.len()
            )));
        }
        let (w, h) = (image.width as f32, image.height as f32);
        for b in image.boxes {
            let ok =
                b.x1 >= 0.0 && b.y1 >= 0.0 && b.x2 <= w && b.y2 <= h && b.x1 < b.x2 && b.y1 < b.y2;
            if !ok {
                return Err(invalid(format!("box {b:?} is empty or outside the image")));
            }
        }

        let path = self.layout.image_path(id, meta.is_fractured());
        let bytes = encode(&image, self.options.format)
            .map_err(|source| WriteError::Encode { path: path.clone(), source })?;
        std::fs::write(&path, bytes).map_err(io(&path))?;
        let yolo = self.layout.yolo_label(id);
        std::fs::write(&yolo, yolo_text(image.boxes, image.width, image.height))
            .map_err(io(&yolo))?;
        let voc = self.layout.voc_xml(id);
        std::fs::write(&voc, voc_xml(&image)).map_err(io(&voc))?;

        let record = Written {
            meta: meta.clone(),
            width: image.width,
            height: image.height,
            boxes: image.boxes.to_vec(),
        };
        self.written.lock().unwrap_or_else(|e| e.into_inner()).push(record);
        Ok(())
    }

    /// Writes `dataset.csv`, the COCO json and the split lists.
    pub fn finish(self) -> Result<WriteSummary, WriteError> {
        let mut written = self.written.into_inner().unwrap_or_else(|e| e.into_inner());
        written.sort_by(|a, b| a.meta.image_id.cmp(&b.meta.image_id));
        if let Some(pair) = written.windows(2).find(|p| p[0].meta.image_id == p[1].meta.image_id) {
            return Err(WriteError::Invalid {
                image_id: pair[0].meta.image_id.clone(),
                message: "written twice".into(),
            });
        }

        let csv_path = self.layout.metadata_csv();
        let csv_err = |source| WriteError::Csv { path: csv_path.clone(), source };
        // The header is written by hand so that even an empty set has one.
        let mut out =
            csv::WriterBuilder::new().has_headers(false).from_path(&csv_path).map_err(csv_err)?;
        out.write_record(ImageMeta::COLUMNS).map_err(csv_err)?;
        for r in &written {
            out.serialize(&r.meta).map_err(csv_err)?;
        }
        out.flush().map_err(io(&csv_path))?;

        let coco_path = self.layout.coco_json();
        let coco = serde_json::to_vec_pretty(&coco(&written))
            .map_err(|source| WriteError::Json { path: coco_path.clone(), source })?;
        std::fs::write(&coco_path, coco).map_err(io(&coco_path))?;

        let mut fractured: Vec<&str> = written
            .iter()
            .filter(|r| r.meta.is_fractured())
            .map(|r| r.meta.image_id.as_str())
            .collect();
        fractured.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(self.options.split_seed));
        let n = fractured.len();
        let n_train = (n as f64 * SPLIT_SHARES[0]).round() as usize;
        let n_valid = ((n as f64 * SPLIT_SHARES[1]).round() as usize).min(n - n_train);
        let parts = [
            &fractured[..n_train],
            &fractured[n_train..n_train + n_valid],
            &fractured[n_train + n_valid..],
        ];
        for (name, ids) in SPLIT_NAMES.iter().zip(parts) {
            let path = self.layout.split_csv(name);
            let csv_err = |source| WriteError::Csv { path: path.clone(), source };
            let mut ids = ids.to_vec();
            ids.sort_unstable();
            let mut out = csv::Writer::from_path(&path).map_err(csv_err)?;
            out.write_record(["image_id"]).map_err(csv_err)?;
            for id in ids {
                out.write_record([id]).map_err(csv_err)?;
            }
            out.flush().map_err(io(&path))?;
        }

        Ok(WriteSummary {
            images: written.len(),
            fractured: n,
            boxes: written.iter().map(|r| r.boxes.len()).sum(),
            splits: parts.map(|p| p.len()),
        })
    }
}

/// Deletes what a dataset writer owns under the root (see [`WriterOptions::replace`]).
fn remove_dataset(layout: &Layout) -> Result<(), WriteError> {
    for dir in layout.dirs() {
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(&dir)(e)),
            _ => {}
        }
    }
    let csv = layout.root.join(METADATA_CSV);
    match std::fs::remove_file(&csv) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(&csv)(e)),
        _ => Ok(()),
    }
}

fn encode(image: &LabelledImage<'_>, format: ImageFormat) -> Result<Vec<u8>, image::ImageError> {
    let mut bytes = Vec::new();
    match format {
        ImageFormat::Jpeg8 => {
            let grey: Vec<u8> = image
                .pixels
                .iter()
                .map(|&v| ((u32::from(v) * 255 + 32767) / 65535) as u8)
                .collect();
            JpegEncoder::new_with_quality(&mut bytes, JPEG_QUALITY).write_image(
                &grey,
                image.width,
                image.height,
                ExtendedColorType::L8,
            )?;
        }
        ImageFormat::Png16 => {
            let buffer: ImageBuffer<Luma<u16>, &[u16]> =
                ImageBuffer::from_raw(image.width, image.height, image.pixels).ok_or_else(
                    || {
                        image::ImageError::Parameter(image::error::ParameterError::from_kind(
                            image::error::ParameterErrorKind::DimensionMismatch,
                        ))
                    },
                )?;
            let encoder = PngEncoder::new_with_quality(
                Cursor::new(&mut bytes),
                CompressionType::Fast,
                FilterType::Adaptive,
            );
            buffer.write_with_encoder(encoder)?;
        }
    }
    Ok(bytes)
}

/// `0 cx cy w h` per box, normalised, six decimals; empty text for no boxes.
fn yolo_text(boxes: &[PixelBox], width: u32, height: u32) -> String {
    let (w, h) = (f64::from(width), f64::from(height));
    boxes
        .iter()
        .map(|b| {
            let (cx, cy) = b.center();
            format!(
                "0 {:.6} {:.6} {:.6} {:.6}\n",
                f64::from(cx) / w,
                f64::from(cy) / h,
                f64::from(b.width()) / w,
                f64::from(b.height()) / h
            )
        })
        .collect()
}

fn voc_xml(image: &LabelledImage<'_>) -> String {
    use quick_xml::escape::escape;
    let meta = image.meta;
    let folder = Path::new(if meta.is_fractured() { FRACTURED_DIR } else { NON_FRACTURED_DIR })
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let mut xml = format!(
        "<annotation>\n\t<folder>{}</folder>\n\t<filename>{}</filename>\n\t<source>\n\t\t<database>Unknown</database>\n\t</source>\n\t<size>\n\t\t<width>{}</width>\n\t\t<height>{}</height>\n\t\t<depth>1</depth>\n\t</size>\n\t<segmented>0</segmented>\n",
        escape(folder),
        escape(meta.image_id.as_str()),
        image.width,
        image.height
    );
    for b in image.boxes {
        xml.push_str(&format!(
            "\t<object>\n\t\t<name>{}</name>\n\t\t<pose>Unspecified</pose>\n\t\t<truncated>0</truncated>\n\t\t<difficult>0</difficult>\n\t\t<bndbox>\n\t\t\t<xmin>{}</xmin>\n\t\t\t<ymin>{}</ymin>\n\t\t\t<xmax>{}</xmax>\n\t\t\t<ymax>{}</ymax>\n\t\t</bndbox>\n\t</object>\n",
            escape(CLASS_NAME),
            b.x1.round() as i64,
            b.y1.round() as i64,
            b.x2.round() as i64,
            b.y2.round() as i64
        ));
    }
    xml.push_str("</annotation>\n");
    xml
}

#[derive(Serialize)]
struct Coco {
    images: Vec<CocoImage>,
    annotations: Vec<CocoAnnotation>,
    categories: Vec<CocoCategory>,
}

#[derive(Serialize)]
struct CocoImage {
    id: u64,
    file_name: String,
    width: u32,
    height: u32,
}

#[derive(Serialize)]
struct CocoAnnotation {
    id: u64,
    image_id: u64,
    category_id: u32,
    bbox: [f64; 4],
    area: f64,
    iscrowd: u8,
    segmentation: Vec<Vec<f64>>,
}

#[derive(Serialize)]
struct CocoCategory {
    id: u32,
    name: &'static str,
}

/// Two decimals: enough for pixel boxes, and no float noise in the json.
fn round2(v: f32) -> f64 {
    (f64::from(v) * 100.0).round() / 100.0
}

/// The COCO document for the fractured images (as FracAtlas' own file has only those).
fn coco(written: &[Written]) -> Coco {
    let mut images = Vec::new();
    let mut annotations = Vec::new();
    for r in written.iter().filter(|r| r.meta.is_fractured()) {
        let image_id = images.len() as u64 + 1;
        images.push(CocoImage {
            id: image_id,
            file_name: r.meta.image_id.clone(),
            width: r.width,
            height: r.height,
        });
        for b in &r.boxes {
            let (w, h) = (round2(b.width()), round2(b.height()));
            annotations.push(CocoAnnotation {
                id: annotations.len() as u64 + 1,
                image_id,
                category_id: 1,
                bbox: [round2(b.x1), round2(b.y1), w, h],
                area: (w * h * 100.0).round() / 100.0,
                iscrowd: 0,
                segmentation: Vec::new(),
            });
        }
    }
    Coco { images, annotations, categories: vec![CocoCategory { id: 1, name: CLASS_NAME }] }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::dataset::Dataset;

    fn meta(id: &str, boxes: usize) -> ImageMeta {
        ImageMeta {
            image_id: id.into(),
            hand: 1,
            leg: 0,
            hip: 0,
            shoulder: 0,
            mixed: 0,
            hardware: 0,
            multiscan: 0,
            fractured: u8::from(boxes > 0),
            fracture_count: boxes as u32,
            frontal: 1,
            lateral: 0,
            oblique: 0,
        }
    }

    fn write_set(
        root: &Path,
        format: ImageFormat,
        replace: bool,
    ) -> Result<WriteSummary, WriteError> {
        let ext = format.extension();
        let writer = DatasetWriter::create(root, WriterOptions { format, split_seed: 4, replace })?;
        let boxes = [
            PixelBox { x1: 2.0, y1: 3.0, x2: 12.0, y2: 9.0 },
            PixelBox { x1: 20.0, y1: 10.0, x2: 40.0, y2: 30.0 },
        ];
        for i in 0..12usize {
            let n = if i % 3 == 0 { 1 + i % 2 } else { 0 };
            let m = meta(&format!("IMG{i:07}.{ext}"), n);
            let pixels: Vec<u16> = (0..40 * 30).map(|k| (k * 50 + i * 1000) as u16).collect();
            writer.write(LabelledImage {
                meta: &m,
                width: 40,
                height: 30,
                pixels: &pixels,
                boxes: &boxes[..n],
            })?;
        }
        writer.finish()
    }

    #[test]
    fn round_trips_through_the_loader() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("set");
        let summary = write_set(&root, ImageFormat::Jpeg8, false).unwrap();
        assert_eq!(summary, WriteSummary { images: 12, fractured: 4, boxes: 6, splits: [3, 1, 0] });
        let data = Dataset::load(&root).unwrap();
        assert!(data.issues.is_empty(), "{:?}", data.issues);
        assert_eq!(data.images.len(), 12);
        assert_eq!(data.box_count(), 6);
        let first = &data.images[data.position("IMG0000003.jpg").unwrap()];
        assert_eq!(first.boxes.len(), 2);
        assert!((first.boxes[1].x2 - 40.0).abs() < 1e-3 && (first.boxes[0].y1 - 3.0).abs() < 1e-3);

        let layout = Layout::new(&root);
        assert_eq!(std::fs::read_to_string(layout.yolo_label("IMG0000001.jpg")).unwrap(), "");
        assert_eq!(
            std::fs::read_to_string(layout.yolo_label("IMG0000000.jpg")).unwrap(),
            "0 0.175000 0.200000 0.250000 0.200000\n"
        );
        let voc = std::fs::read_to_string(layout.voc_xml("IMG0000003.jpg")).unwrap();
        assert!(
            voc.contains("<folder>Fractured</folder>") && voc.contains("<xmax>40</xmax>"),
            "{voc}"
        );
        assert!(voc.contains("<depth>1</depth>"));
        let coco: serde_json::Value =
            serde_json::from_slice(&std::fs::read(layout.coco_json()).unwrap()).unwrap();
        assert_eq!(coco["images"].as_array().unwrap().len(), 4);
        assert_eq!(coco["annotations"].as_array().unwrap().len(), 6);
        assert_eq!(coco["annotations"][0]["bbox"], serde_json::json!([2.0, 3.0, 10.0, 6.0]));
        assert_eq!(coco["annotations"][0]["area"], serde_json::json!(60.0));
        assert_eq!(coco["categories"][0]["name"], "fracture");
        let header = std::fs::read_to_string(layout.metadata_csv()).unwrap();
        assert!(header.starts_with(
            "image_id,hand,leg,hip,shoulder,mixed,hardware,multiscan,fractured,fracture_count,frontal,lateral,oblique\n"
        ));
        let train = std::fs::read_to_string(layout.split_csv("train")).unwrap();
        assert!(train.starts_with("image_id\n") && train.lines().count() == 4, "{train}");
    }

    #[test]
    fn png16_keeps_sixteen_bits_and_output_is_reproducible() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        write_set(&a, ImageFormat::Png16, false).unwrap();
        write_set(&b, ImageFormat::Png16, false).unwrap();
        let img = image::open(a.join("images/Fractured/IMG0000000.png")).unwrap();
        let grey = img.as_luma16().unwrap();
        assert_eq!(grey.get_pixel(3, 1).0[0], ((40 + 3) * 50) as u16, "IMG0 has offset 0");
        for file in [
            "dataset.csv",
            "Annotations/COCO JSON/COCO_fracture_masks.json",
            "Utilities/Fracture Split/valid.csv",
            "images/Non_fractured/IMG0000001.png",
        ] {
            assert_eq!(
                std::fs::read(a.join(file)).unwrap(),
                std::fs::read(b.join(file)).unwrap(),
                "{file}"
            );
        }
    }

    #[test]
    fn refuses_non_empty_folder_unless_replacing() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join("notes.txt"), "keep me").unwrap();
        let err = write_set(root, ImageFormat::Jpeg8, false).unwrap_err();
        assert!(matches!(err, WriteError::NotEmpty { .. }), "{err}");
        write_set(root, ImageFormat::Jpeg8, true).unwrap();
        // A stale image from an earlier run is gone after replacing.
        std::fs::write(root.join("images/Fractured/IMG9999999.jpg"), b"x").unwrap();
        write_set(root, ImageFormat::Jpeg8, true).unwrap();
        assert!(!root.join("images/Fractured/IMG9999999.jpg").exists());
        assert!(root.join("notes.txt").exists());
        assert!(Dataset::load(root).unwrap().issues.is_empty());
    }

    #[test]
    fn empty_set_still_has_headers() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("empty");
        let options = WriterOptions { format: ImageFormat::Jpeg8, split_seed: 1, replace: false };
        let summary = DatasetWriter::create(&root, options).unwrap().finish().unwrap();
        assert_eq!(summary.images, 0);
        let data = Dataset::load(&root).unwrap();
        assert!(data.images.is_empty() && data.issues.is_empty());
    }

    #[test]
    fn rejects_inconsistent_images() {
        let dir = tempfile::tempdir().unwrap();
        let writer = DatasetWriter::create(
            &dir.path().join("x"),
            WriterOptions { format: ImageFormat::Jpeg8, split_seed: 1, replace: false },
        )
        .unwrap();
        let pixels = vec![0u16; 4 * 4];
        // fractured without boxes; a path in the id; a PNG name in a JPEG set
        for (id, fractured) in
            [("IMG0000000.jpg", 1), ("../IMG0000000.jpg", 0), ("IMG0000000.png", 0)]
        {
            let m = meta(id, fractured);
            let err = writer.write(LabelledImage {
                meta: &m,
                width: 4,
                height: 4,
                pixels: &pixels,
                boxes: &[],
            });
            assert!(matches!(err, Err(WriteError::Invalid { .. })), "{id}");
        }
    }
}
