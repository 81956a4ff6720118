//! The numbers of the EDA, computed from a loaded dataset: class balance, body parts and
//! metadata flags by class, fractures per image, box geometry (pixels and relative to the
//! image), box-centre density, image sizes and the integrity issues. Pixel intensities are read
//! separately (see `eda::intensity`). Everything here serialises into `eda.json`.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::dataset::{BodyPart, Dataset, ImageMeta, ImageRecord, IntegrityIssue};
use crate::plot::Binned;

/// Bins of the box-geometry histograms.
pub const BOX_BINS: usize = 30;
/// Cells per side of the box-centre heatmap.
pub const CENTRE_GRID: usize = 32;

/// Count, spread and quantiles of one quantity.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub count: usize,
    pub min: f64,
    pub p5: f64,
    pub median: f64,
    pub mean: f64,
    pub p95: f64,
    pub max: f64,
    pub std: f64,
}

impl Summary {
    /// `None` when there is no finite value.
    pub fn of(values: &[f64]) -> Option<Summary> {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len() as f64;
        let mean = v.iter().sum::<f64>() / n;
        let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
        Some(Summary {
            count: v.len(),
            min: v[0],
            p5: quantile(&v, 0.05),
            median: quantile(&v, 0.5),
            mean,
            p95: quantile(&v, 0.95),
            max: v[v.len() - 1],
            std: var.sqrt(),
        })
    }
}

/// Linear-interpolated quantile of sorted, non-empty values.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let (i, f) = (pos.floor() as usize, pos.fract());
    match sorted.get(i + 1) {
        Some(next) => sorted[i] + (next - sorted[i]) * f,
        None => sorted[i],
    }
}

/// One quantity's distribution: its summary and the histogram that is drawn.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Distribution {
    pub summary: Option<Summary>,
    pub histogram: Binned,
}

impl Distribution {
    /// Histogram over `[0, max]` (quantities that are never negative).
    pub fn from_zero(values: &[f64], bins: usize) -> Self {
        let max = values.iter().copied().filter(|v| v.is_finite()).fold(0.0, f64::max);
        Self { summary: Summary::of(values), histogram: Binned::with_range(values, bins, 0.0, max) }
    }

    /// Histogram over the data's own range.
    pub fn over_range(values: &[f64], bins: usize) -> Self {
        Self { summary: Summary::of(values), histogram: Binned::new(values, bins) }
    }
}

/// Counts of one category split by class.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ByClass {
    pub name: String,
    pub fractured: usize,
    pub non_fractured: usize,
}

/// Class balance of the images (by the `fractured` column of dataset.csv).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassBalance {
    pub images: usize,
    pub fractured: usize,
    pub non_fractured: usize,
    pub fractured_percent: f64,
    /// Fracture boxes in the labels (all images).
    pub boxes: usize,
}

/// Box geometry; `*_px` in pixels of the original image, `*_rel` as a fraction of the image's
/// width, height or area. `aspect` is width / height.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BoxGeometry {
    pub width_px: Distribution,
    pub height_px: Distribution,
    pub area_px: Distribution,
    pub aspect: Distribution,
    pub width_rel: Distribution,
    pub height_rel: Distribution,
    pub area_rel: Distribution,
    /// `CENTRE_GRID`×`CENTRE_GRID` counts of box centres in normalised image coordinates,
    /// `centres[row][col]`, row 0 at the top of the image.
    pub centres: Vec<Vec<u64>>,
    /// Boxes skipped from relative statistics because their image size is unknown (0).
    pub without_image_size: usize,
}

/// Image sizes in pixels.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImageSizes {
    pub width: Option<Summary>,
    pub height: Option<Summary>,
    /// Distinct `width x height` sizes, most common first (at most 10).
    pub most_common: Vec<(String, usize)>,
    pub distinct: usize,
}

/// One integrity issue, flattened for the report table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IssueRow {
    pub kind: String,
    pub images: Vec<String>,
    pub detail: String,
}

/// Integrity issues found by the loader: counts by kind and every issue as a row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Integrity {
    pub by_kind: BTreeMap<String, usize>,
    /// Images that are a second or later copy of an earlier identical file.
    pub redundant_copies: usize,
    pub rows: Vec<IssueRow>,
}

/// Every number of the EDA except pixel intensities.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DatasetStats {
    pub classes: ClassBalance,
    /// hand, leg, hip, shoulder, mixed (the dataset.csv flags; an image may count in several).
    pub body_parts: Vec<ByClass>,
    /// Images flagged with none of the four body parts.
    pub no_body_part: ByClass,
    /// hardware, multiscan, frontal, lateral, oblique.
    pub flags: Vec<ByClass>,
    /// Among images flagged fractured: how many have 0, 1, 2, ... boxes in their label;
    /// index = number of boxes.
    pub boxes_per_fractured_image: Vec<usize>,
    /// Images flagged non-fractured that nevertheless have boxes.
    pub non_fractured_with_boxes: usize,
    pub boxes: BoxGeometry,
    pub image_sizes: ImageSizes,
    pub integrity: Integrity,
}

/// Reads one 0/1 column of a dataset.csv row.
pub type FlagColumn = fn(&ImageMeta) -> u8;

/// Column name and accessor of the non-body-part flags, in report order.
pub const FLAGS: [(&str, FlagColumn); 5] = [
    ("hardware", |m| m.hardware),
    ("multiscan", |m| m.multiscan),
    ("frontal", |m| m.frontal),
    ("lateral", |m| m.lateral),
    ("oblique", |m| m.oblique),
];

impl DatasetStats {
    pub fn compute(dataset: &Dataset) -> DatasetStats {
        let images = &dataset.images;
        let fractured = images.iter().filter(|r| r.meta.is_fractured()).count();
        let classes = ClassBalance {
            images: images.len(),
            fractured,
            non_fractured: images.len() - fractured,
            fractured_percent: percent(fractured, images.len()),
            boxes: images.iter().map(|r| r.boxes.len()).sum(),
        };

        let by_class = |name: &str, pred: &dyn Fn(&ImageMeta) -> bool| ByClass {
            name: name.to_string(),
            fractured: images.iter().filter(|r| r.meta.is_fractured() && pred(&r.meta)).count(),
            non_fractured: images
                .iter()
                .filter(|r| !r.meta.is_fractured() && pred(&r.meta))
                .count(),
        };
        let mut body_parts: Vec<ByClass> =
            BodyPart::ALL.iter().map(|&p| by_class(p.name(), &|m| m.has_part(p))).collect();
        body_parts.push(by_class("mixed", &|m| m.mixed != 0));
        let no_body_part = by_class("none", &|m| m.body_parts().is_empty());
        let flags = FLAGS.iter().map(|(name, get)| by_class(name, &|m| get(m) != 0)).collect();

        let mut boxes_per_fractured_image = Vec::new();
        for r in images.iter().filter(|r| r.meta.is_fractured()) {
            let n = r.boxes.len();
            if boxes_per_fractured_image.len() <= n {
                boxes_per_fractured_image.resize(n + 1, 0);
            }
            boxes_per_fractured_image[n] += 1;
        }
        let non_fractured_with_boxes =
            images.iter().filter(|r| !r.meta.is_fractured() && !r.boxes.is_empty()).count();

        DatasetStats {
            classes,
            body_parts,
            no_body_part,
            flags,
            boxes_per_fractured_image,
            non_fractured_with_boxes,
            boxes: box_geometry(images),
            image_sizes: image_sizes(images),
            integrity: integrity(dataset),
        }
    }
}

/// `part` as a percentage of `whole` (0 when `whole` is 0).
pub fn percent(part: usize, whole: usize) -> f64 {
    if whole == 0 { 0.0 } else { 100.0 * part as f64 / whole as f64 }
}

fn box_geometry(images: &[ImageRecord]) -> BoxGeometry {
    let mut px = [Vec::new(), Vec::new(), Vec::new(), Vec::new()]; // w, h, area, aspect
    let mut rel = [Vec::new(), Vec::new(), Vec::new()]; // w, h, area
    let mut centres = vec![vec![0u64; CENTRE_GRID]; CENTRE_GRID];
    let mut without_image_size = 0;
    for r in images {
        for b in &r.boxes {
            let (w, h) = (f64::from(b.width()), f64::from(b.height()));
            px[0].push(w);
            px[1].push(h);
            px[2].push(w * h);
            if h > 0.0 {
                px[3].push(w / h);
            }
            if r.width == 0 || r.height == 0 {
                without_image_size += 1;
                continue;
            }
            let (iw, ih) = (f64::from(r.width), f64::from(r.height));
            rel[0].push(w / iw);
            rel[1].push(h / ih);
            rel[2].push(w * h / (iw * ih));
            let (cx, cy) = b.center();
            let cell =
                |c: f64| ((c * CENTRE_GRID as f64).floor().max(0.0) as usize).min(CENTRE_GRID - 1);
            centres[cell(f64::from(cy) / ih)][cell(f64::from(cx) / iw)] += 1;
        }
    }
    let [w_px, h_px, a_px, aspect] = px;
    let [w_rel, h_rel, a_rel] = rel;
    BoxGeometry {
        width_px: Distribution::from_zero(&w_px, BOX_BINS),
        height_px: Distribution::from_zero(&h_px, BOX_BINS),
        area_px: Distribution::from_zero(&a_px, BOX_BINS),
        aspect: Distribution::from_zero(&aspect, BOX_BINS),
        width_rel: Distribution::from_zero(&w_rel, BOX_BINS),
        height_rel: Distribution::from_zero(&h_rel, BOX_BINS),
        area_rel: Distribution::from_zero(&a_rel, BOX_BINS),
        centres,
        without_image_size,
    }
}

fn image_sizes(images: &[ImageRecord]) -> ImageSizes {
    let widths: Vec<f64> = images.iter().map(|r| f64::from(r.width)).collect();
    let heights: Vec<f64> = images.iter().map(|r| f64::from(r.height)).collect();
    let mut sizes: BTreeMap<(u32, u32), usize> = BTreeMap::new();
    for r in images {
        *sizes.entry((r.width, r.height)).or_default() += 1;
    }
    let distinct = sizes.len();
    let mut common: Vec<((u32, u32), usize)> = sizes.into_iter().collect();
    common.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    ImageSizes {
        width: Summary::of(&widths),
        height: Summary::of(&heights),
        most_common: common
            .into_iter()
            .take(10)
            .map(|((w, h), n)| (format!("{w}x{h}"), n))
            .collect(),
        distinct,
    }
}

/// Short kind name of an issue, as used in the report and `eda.json`.
pub fn issue_kind(issue: &IntegrityIssue) -> &'static str {
    match issue {
        IntegrityIssue::Duplicate { .. } => "duplicate",
        IntegrityIssue::FolderMismatch { .. } => "folder_mismatch",
        IntegrityIssue::CountMismatch { .. } => "count_mismatch",
        IntegrityIssue::LabelFlagMismatch { .. } => "label_flag_mismatch",
        IntegrityIssue::MissingLabel { .. } => "missing_label",
        IntegrityIssue::Unlisted { .. } => "unlisted_file",
    }
}

fn yes_no(flag: bool, yes: &str, no: &str) -> String {
    (if flag { yes } else { no }).to_string()
}

fn integrity(dataset: &Dataset) -> Integrity {
    let id_of = |i: usize| {
        dataset.images.get(i).map_or_else(|| format!("#{i}"), |r| r.meta.image_id.clone())
    };
    let mut by_kind: BTreeMap<String, usize> = BTreeMap::new();
    let mut redundant_copies = 0;
    let mut rows = Vec::with_capacity(dataset.issues.len());
    for issue in &dataset.issues {
        *by_kind.entry(issue_kind(issue).to_string()).or_default() += 1;
        let (images, detail) = match issue {
            IntegrityIssue::Duplicate { sha256, images } => {
                redundant_copies += images.len().saturating_sub(1);
                let classes: Vec<String> = images
                    .iter()
                    .filter_map(|&i| dataset.images.get(i))
                    .map(|r| yes_no(r.meta.is_fractured(), "fractured", "non-fractured"))
                    .collect();
                let short = sha256.get(..12).unwrap_or(sha256);
                (
                    images.iter().map(|&i| id_of(i)).collect(),
                    format!(
                        "{} identical files (sha256 {short}…), labelled {}",
                        images.len(),
                        classes.join(" / ")
                    ),
                )
            }
            IntegrityIssue::FolderMismatch { image_id, csv_fractured, in_fractured_folder } => (
                vec![image_id.clone()],
                format!(
                    "dataset.csv says {}, file is in {}",
                    yes_no(*csv_fractured, "fractured", "non-fractured"),
                    yes_no(*in_fractured_folder, "images/Fractured", "images/Non_fractured")
                ),
            ),
            IntegrityIssue::CountMismatch { image_id, csv_count, label_boxes } => (
                vec![image_id.clone()],
                format!(
                    "fracture_count {csv_count} in dataset.csv, {label_boxes} boxes in the label"
                ),
            ),
            IntegrityIssue::LabelFlagMismatch { image_id, fractured, label_boxes } => (
                vec![image_id.clone()],
                format!(
                    "flagged {} with {label_boxes} boxes",
                    yes_no(*fractured, "fractured", "non-fractured")
                ),
            ),
            IntegrityIssue::MissingLabel { image_id, path } => {
                (vec![image_id.clone()], format!("no YOLO label at {}", path.display()))
            }
            IntegrityIssue::Unlisted { path } => (
                vec![path.file_name().map_or_else(
                    || path.display().to_string(),
                    |n| n.to_string_lossy().into_owned(),
                )],
                format!("{} is not listed in dataset.csv", path.display()),
            ),
        };
        rows.push(IssueRow { kind: issue_kind(issue).to_string(), images, detail });
    }
    Integrity { by_kind, redundant_copies, rows }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::dataset::PixelBox;

    pub(crate) fn meta(id: &str, parts: [u8; 5], fractured: bool, count: u32) -> ImageMeta {
        ImageMeta {
            image_id: id.to_string(),
            hand: parts[0],
            leg: parts[1],
            hip: parts[2],
            shoulder: parts[3],
            mixed: parts[4],
            hardware: u8::from(id.ends_with('1')),
            multiscan: 0,
            fractured: u8::from(fractured),
            fracture_count: count,
            frontal: 1,
            lateral: u8::from(!fractured),
            oblique: 0,
        }
    }

    pub(crate) fn record(meta: ImageMeta, size: (u32, u32), boxes: Vec<PixelBox>) -> ImageRecord {
        let fractured = meta.is_fractured();
        ImageRecord {
            path: PathBuf::from(format!("/nonexistent/{}", meta.image_id)),
            meta,
            width: size.0,
            height: size.1,
            boxes,
            sha256: String::new(),
            in_fractured_folder: fractured,
        }
    }

    pub(crate) fn bx(x1: f32, y1: f32, x2: f32, y2: f32) -> PixelBox {
        PixelBox { x1, y1, x2, y2 }
    }

    /// Four images: two fractured (1 and 2 boxes), two not; one duplicate pair and one folder
    /// mismatch.
    pub(crate) fn small_dataset() -> Dataset {
        let images = vec![
            record(
                meta("IMG1", [1, 0, 0, 0, 0], true, 1),
                (100, 200),
                vec![bx(10.0, 20.0, 30.0, 60.0)],
            ),
            record(
                meta("IMG2", [0, 1, 1, 0, 1], true, 2),
                (400, 400),
                vec![bx(0.0, 0.0, 100.0, 50.0), bx(390.0, 390.0, 400.0, 400.0)],
            ),
            record(meta("IMG3", [1, 0, 0, 0, 0], false, 0), (100, 200), vec![]),
            record(meta("IMG4", [0, 0, 0, 0, 0], false, 0), (300, 100), vec![]),
        ];
        let issues = vec![
            IntegrityIssue::Duplicate { sha256: "ab".repeat(32), images: vec![0, 2] },
            IntegrityIssue::FolderMismatch {
                image_id: "IMG4".into(),
                csv_fractured: false,
                in_fractured_folder: true,
            },
        ];
        Dataset { root: PathBuf::from("/nonexistent"), images, issues }
    }

    #[test]
    fn summary_quantiles() {
        let s = Summary::of(&[4.0, 1.0, 3.0, 2.0, f64::NAN]).expect("finite values");
        assert_eq!((s.count, s.min, s.max, s.mean), (4, 1.0, 4.0, 2.5));
        assert!((s.median - 2.5).abs() < 1e-12);
        assert!((s.p5 - 1.15).abs() < 1e-12);
        assert!((s.std - 1.25f64.sqrt()).abs() < 1e-12);
        assert!(Summary::of(&[]).is_none());
    }

    #[test]
    fn counts_on_a_hand_built_dataset() {
        let s = DatasetStats::compute(&small_dataset());
        assert_eq!(
            s.classes,
            ClassBalance {
                images: 4,
                fractured: 2,
                non_fractured: 2,
                fractured_percent: 50.0,
                boxes: 3
            }
        );
        let parts: Vec<(&str, usize, usize)> =
            s.body_parts.iter().map(|b| (b.name.as_str(), b.fractured, b.non_fractured)).collect();
        assert_eq!(
            parts,
            vec![("hand", 1, 1), ("leg", 1, 0), ("hip", 1, 0), ("shoulder", 0, 0), ("mixed", 1, 0)]
        );
        assert_eq!((s.no_body_part.fractured, s.no_body_part.non_fractured), (0, 1));
        let hardware = &s.flags[0];
        assert_eq!(
            (hardware.name.as_str(), hardware.fractured, hardware.non_fractured),
            ("hardware", 1, 0)
        );
        let lateral = &s.flags[3];
        assert_eq!((lateral.fractured, lateral.non_fractured), (0, 2));
        assert_eq!(s.boxes_per_fractured_image, vec![0, 1, 1]);
        assert_eq!(s.non_fractured_with_boxes, 0);
    }

    #[test]
    fn box_geometry_and_bins() {
        let g = DatasetStats::compute(&small_dataset()).boxes;
        let w = g.width_px.summary.as_ref().expect("boxes");
        assert_eq!((w.count, w.min, w.max), (3, 10.0, 100.0));
        // Widths 20, 100, 10 over [0, 100] in 30 bins: bins 6, 29 (100 is the closed end), 3.
        let h = &g.width_px.histogram;
        assert_eq!((h.lo, h.hi, h.total()), (0.0, 100.0, 3));
        assert_eq!((h.counts[3], h.counts[6], h.counts[29]), (1, 1, 1));
        let a = g.aspect.summary.as_ref().expect("boxes");
        assert_eq!((a.min, a.max), (0.5, 2.0));
        let rel = g.area_rel.summary.as_ref().expect("boxes");
        assert!((rel.max - 0.04).abs() < 1e-9); // 20*40 / (100*200)
        // Centres: (20,40)/(100,200) -> (0.2,0.2) -> cell (6,6); (50,25)/400 -> row 2, col 4;
        // (395,395)/400 -> last cell.
        assert_eq!(g.centres.len(), CENTRE_GRID);
        assert_eq!(g.centres[6][6], 1);
        assert_eq!(g.centres[2][4], 1);
        assert_eq!(g.centres[31][31], 1);
        assert_eq!(g.centres.iter().flatten().sum::<u64>(), 3);
        assert_eq!(g.without_image_size, 0);
    }

    #[test]
    fn image_sizes_and_integrity() {
        let s = DatasetStats::compute(&small_dataset());
        assert_eq!(s.image_sizes.distinct, 3);
        assert_eq!(s.image_sizes.most_common[0], ("100x200".to_string(), 2));
        assert_eq!(s.integrity.by_kind.get("duplicate"), Some(&1));
        assert_eq!(s.integrity.by_kind.get("folder_mismatch"), Some(&1));
        assert_eq!(s.integrity.redundant_copies, 1);
        assert_eq!(s.integrity.rows[0].images, vec!["IMG1".to_string(), "IMG3".to_string()]);
        assert!(s.integrity.rows[0].detail.contains("fractured / non-fractured"));
        assert!(s.integrity.rows[1].detail.contains("images/Fractured"));
    }
}
