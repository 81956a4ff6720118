//! The study's qualitative figures for one run: grids of test images that show found fractures
//! (TP), several fractures, missed fractures (FN) and true negatives. Each tile shows the
//! ground-truth boxes in green and the run's predictions at the chosen confidence in red with
//! their scores. Images are sorted into the four kinds from the run's `fracture eval` files
//! (`gt.json`, `detections.json`), matched at IoU 0.5 by [`crate::eval::tally`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use fracture_models::metrics::{CocoDataset, Detection};
use image::{Rgb, RgbImage, imageops};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde::Serialize;

use crate::dataset::Dataset;
use crate::eda::grid::{TILE, outline};
use crate::eda::intensity::image_path;
use crate::eval::tally::{ImageTally, tally};
use crate::plot::{self, PlotError};

/// Tiles per grid at most.
pub const MAX_TILES: usize = 6;
/// Predicted boxes drawn per tile at most (the highest-scoring ones).
pub const MAX_BOXES: usize = 5;
const CAPTION: u32 = 24;
const HEADER: u32 = 52;
const GAP: u32 = 6;
const GT_COLOUR: Rgb<u8> = Rgb([40, 220, 60]);
const PRED_COLOUR: Rgb<u8> = Rgb([255, 50, 30]);

/// The four kinds of figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Found,
    Multiple,
    Missed,
    TrueNegative,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Found, Kind::Multiple, Kind::Missed, Kind::TrueNegative];

    /// Part of the PNG's file name.
    pub fn slug(self) -> &'static str {
        match self {
            Kind::Found => "found",
            Kind::Multiple => "multiple",
            Kind::Missed => "missed",
            Kind::TrueNegative => "true_negatives",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Kind::Found => "found fractures (TP)",
            Kind::Multiple => "images with several fractures",
            Kind::Missed => "missed fractures (FN)",
            Kind::TrueNegative => "true negatives",
        }
    }
}

/// One image of the split, as drawn.
#[derive(Debug, Clone)]
struct Shown {
    file_name: String,
    width: u32,
    height: u32,
    /// Ground truth, `[x1, y1, x2, y2]` in original pixels.
    labels: Vec<[f64; 4]>,
    /// Predictions at or above the confidence, highest first: box and score.
    preds: Vec<([f64; 4], f64)>,
    found: usize,
}

/// One written figure.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    pub kind: Kind,
    pub title: String,
    pub path: PathBuf,
    /// Images of this kind in the split, and how many are shown.
    pub available: usize,
    pub shown: usize,
}

/// Which images of each kind to show, at confidence `conf`: indices into `tallies`, in the
/// order shown. Found: the most completely found first; missed: the entirely missed first.
pub fn choose(tallies: &[ImageTally], conf: f32) -> Vec<(Kind, Vec<usize>)> {
    let found =
        |t: &ImageTally| t.labels.iter().filter(|l| l.found_at.is_some_and(|s| s >= conf)).count();
    Kind::ALL
        .iter()
        .map(|&kind| {
            let mut pick: Vec<usize> = (0..tallies.len())
                .filter(|&i| {
                    let t = &tallies[i];
                    let (n, f) = (t.labels.len(), found(t));
                    match kind {
                        Kind::Found => f > 0,
                        Kind::Multiple => n >= 2,
                        Kind::Missed => f < n,
                        Kind::TrueNegative => n == 0 && !t.called(conf),
                    }
                })
                .collect();
            let missing = |i: usize| tallies[i].labels.len() - found(&tallies[i]);
            match kind {
                Kind::Found => pick.sort_by_key(|&i| missing(i)),
                Kind::Multiple => pick.sort_by_key(|&i| std::cmp::Reverse(found(&tallies[i]))),
                Kind::Missed => pick.sort_by_key(|&i| found(&tallies[i])),
                Kind::TrueNegative => {}
            }
            (kind, pick)
        })
        .collect()
}

/// Draws the four figures of run `run` into `out_dir` as `qualitative_<run>_<kind>.png`.
pub fn draw_all(
    ds: &Dataset,
    gt: &CocoDataset,
    dets: &[Detection],
    conf: f64,
    run: &str,
    out_dir: &Path,
) -> Result<Vec<Figure>, PlotError> {
    let conf32 = conf as f32;
    let tallies = tally(gt, dets);
    let shown = images(gt, dets, &tallies, conf32);
    let paths: HashMap<&str, PathBuf> =
        ds.images.iter().map(|r| (r.meta.image_id.as_str(), image_path(ds, r))).collect();
    let mut figures = Vec::new();
    for (kind, pick) in choose(&tallies, conf32) {
        let chosen: Vec<&Shown> = pick.iter().take(MAX_TILES).map(|&i| &shown[i]).collect();
        let title = format!(
            "{run}: {} ({} of {}; green = labels, red = predictions with score >= {conf:.3})",
            kind.title(),
            chosen.len(),
            pick.len()
        );
        let path = out_dir.join(format!("qualitative_{run}_{}.png", kind.slug()));
        draw_grid(&chosen, &paths, &title, &path)?;
        figures.push(Figure { kind, title, path, available: pick.len(), shown: chosen.len() });
    }
    Ok(figures)
}

/// Each tallied image's boxes, in the tallies' order (image ids ascending).
fn images(gt: &CocoDataset, dets: &[Detection], tallies: &[ImageTally], conf: f32) -> Vec<Shown> {
    let categories: Vec<i64> = gt.categories.iter().map(|c| c.id).collect();
    let xyxy = |b: &[f64; 4]| [b[0], b[1], b[0] + b[2], b[1] + b[3]];
    let by_id: HashMap<i64, &fracture_models::metrics::coco_json::CocoImage> =
        gt.images.iter().map(|i| (i.id, i)).collect();
    tallies
        .iter()
        .map(|t| {
            let img = by_id.get(&t.image_id);
            let labels = gt
                .annotations
                .iter()
                .filter(|a| a.image_id == t.image_id && a.iscrowd == 0)
                .map(|a| xyxy(&a.bbox))
                .collect();
            let mut preds: Vec<([f64; 4], f64)> = dets
                .iter()
                .filter(|d| {
                    d.image_id == t.image_id
                        && categories.contains(&d.category_id)
                        && d.score as f32 >= conf
                })
                .map(|d| (xyxy(&d.bbox), d.score))
                .collect();
            preds.sort_by(|a, b| b.1.total_cmp(&a.1));
            preds.truncate(MAX_BOXES);
            Shown {
                file_name: img.map_or_else(String::new, |i| i.file_name.clone()),
                width: img.map_or(1, |i| i.width),
                height: img.map_or(1, |i| i.height),
                labels,
                preds,
                found: t.labels.iter().filter(|l| l.found_at.is_some_and(|s| s >= conf)).count(),
            }
        })
        .collect()
}

/// Where a point of the original image lands in its tile (as `eda::grid::tile` fits it).
fn fit(width: u32, height: u32) -> (f64, f64, f64) {
    let f = f64::from(TILE) / f64::from(width.max(height).max(1));
    let w = ((f64::from(width) * f).round() as u32).clamp(1, TILE);
    let h = ((f64::from(height) * f).round() as u32).clamp(1, TILE);
    (f, f64::from((TILE - w) / 2), f64::from((TILE - h) / 2))
}

fn draw_grid(
    chosen: &[&Shown],
    paths: &HashMap<&str, PathBuf>,
    title: &str,
    path: &Path,
) -> Result<(), PlotError> {
    plot::register_fonts()?;
    // Three tiles a row (fewer when fewer), at least one row.
    let cols = (chosen.len() as u32).clamp(1, 3);
    let rows = (chosen.len() as u32).div_ceil(cols).max(1);
    let cell_h = TILE + CAPTION;
    let width = (cols * TILE + (cols + 1) * GAP).max(720);
    let height = HEADER + rows * cell_h + (rows + 1) * GAP;
    let mut canvas = RgbImage::from_pixel(width, height, Rgb([255, 255, 255]));
    let origin = |k: usize| {
        let (c, r) = (k as u32 % cols, k as u32 / cols);
        (GAP + c * (TILE + GAP), HEADER + GAP + r * (cell_h + GAP))
    };
    // Tiles with their boxes, and where each score label goes.
    let mut labels: Vec<(i32, i32, String)> = Vec::new();
    for (k, s) in chosen.iter().enumerate() {
        let image = paths.get(s.file_name.as_str());
        let (mut t, _) = match image {
            Some(p) => crate::eda::grid::tile(p, &[]),
            None => (RgbImage::from_pixel(TILE, TILE, Rgb([30, 30, 30])), false),
        };
        let (f, ox, oy) = fit(s.width, s.height);
        let map = |b: &[f64; 4]| [b[0] * f + ox, b[1] * f + oy, b[2] * f + ox, b[3] * f + oy];
        for b in &s.labels {
            let m = map(b);
            outline(&mut t, m[0], m[1], m[2], m[3], 2, GT_COLOUR);
        }
        let (x, y) = origin(k);
        for (b, score) in &s.preds {
            let m = map(b);
            outline(&mut t, m[0], m[1], m[2], m[3], 2, PRED_COLOUR);
            let lx = (m[0].clamp(0.0, f64::from(TILE) - 30.0)) as i32 + x as i32;
            let ly = (m[1] - 8.0).clamp(6.0, f64::from(TILE) - 6.0) as i32 + y as i32;
            labels.push((lx, ly, format!("{score:.2}")));
        }
        imageops::replace(&mut canvas, &t, i64::from(x), i64::from(y));
    }

    let mut buffer = canvas.into_raw();
    {
        let root = BitMapBackend::with_buffer(&mut buffer, (width, height)).into_drawing_area();
        root.draw(&Text::new(
            title.to_string(),
            (width as i32 / 2, HEADER as i32 / 2),
            plot::text_style(15.0).pos(Pos::new(HPos::Center, VPos::Center)),
        ))?;
        if chosen.is_empty() {
            root.draw(&Text::new(
                "no image of the split is of this kind at this confidence".to_string(),
                (width as i32 / 2, (HEADER + GAP + TILE / 2) as i32),
                plot::text_style(16.0).pos(Pos::new(HPos::Center, VPos::Center)),
            ))?;
        }
        for (lx, ly, text) in &labels {
            let w = 7 * text.len() as i32 + 4;
            root.draw(&Rectangle::new(
                [(*lx, ly - 7), (lx + w, ly + 7)],
                RGBColor(255, 50, 30).filled(),
            ))?;
            root.draw(&Text::new(
                text.clone(),
                (lx + 2, *ly),
                plot::text_style(12.0).color(&WHITE).pos(Pos::new(HPos::Left, VPos::Center)),
            ))?;
        }
        for (k, s) in chosen.iter().enumerate() {
            let (x, y) = origin(k);
            let caption = format!(
                "{} · {}/{} found · {} shown",
                crate::dataset::layout::stem(&s.file_name),
                s.found,
                s.labels.len(),
                s.preds.len()
            );
            root.draw(&Text::new(
                caption,
                ((x + TILE / 2) as i32, (y + TILE + CAPTION / 2) as i32),
                plot::text_style(13.0).pos(Pos::new(HPos::Center, VPos::Center)),
            ))?;
        }
        root.present()?;
    }
    plot::save_png(path, &buffer, width, height)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::tally::{Label, Scored};

    fn t(id: i64, found: &[Option<f32>], dets: &[f32]) -> ImageTally {
        ImageTally {
            image_id: id,
            dets: dets.iter().map(|&score| Scored { score, tp: false }).collect(),
            labels: found.iter().map(|&found_at| Label { area: 1.0, found_at }).collect(),
        }
    }

    #[test]
    fn images_fall_into_the_study_kinds() {
        let tallies = vec![
            t(1, &[Some(0.9)], &[0.9]),            // found
            t(2, &[Some(0.8), None], &[0.8]),      // found, several, missed one
            t(3, &[None], &[0.1]),                 // missed (its detection is below conf)
            t(4, &[], &[0.1]),                     // true negative at 0.5
            t(5, &[], &[0.7]),                     // false positive: none of the kinds
            t(6, &[Some(0.9), Some(0.6)], &[0.9]), // found, several
        ];
        let kinds: HashMap<Kind, Vec<usize>> = choose(&tallies, 0.5).into_iter().collect();
        assert_eq!(kinds[&Kind::Found], vec![0, 5, 1]);
        assert_eq!(kinds[&Kind::Multiple], vec![5, 1]);
        assert_eq!(kinds[&Kind::Missed], vec![2, 1]);
        assert_eq!(kinds[&Kind::TrueNegative], vec![3]);
    }

    #[test]
    #[allow(clippy::unwrap_used)]
    fn grids_draw_labels_green_and_predictions_red() {
        let dir = tempfile::tempdir().unwrap();
        let shown = Shown {
            file_name: "missing.jpg".into(),
            width: 200,
            height: 100,
            labels: vec![[20.0, 20.0, 80.0, 60.0]],
            preds: vec![([100.0, 30.0, 180.0, 90.0], 0.87)],
            found: 0,
        };
        let path = dir.path().join("g.png");
        draw_grid(&[&shown, &shown], &HashMap::new(), "title", &path).unwrap();
        let img = image::open(&path).unwrap().to_rgb8();
        let count = |c: Rgb<u8>| img.pixels().filter(|p| **p == c).count();
        assert!(count(GT_COLOUR) > 100 && count(PRED_COLOUR) > 100);
        let empty = dir.path().join("e.png");
        draw_grid(&[], &HashMap::new(), "none", &empty).unwrap();
        assert_eq!(image::open(&empty).unwrap().width(), 720);
    }

    #[test]
    fn tiles_map_like_the_eda_grid() {
        let (f, ox, oy) = fit(512, 256);
        assert_eq!((f, ox, oy), (0.5, 0.0, 64.0));
    }
}
