//! The outlier grid: the images the Isolation Forest finds most outlying, most outlying
//! first, as tiles (contrast-stretched, fracture boxes in red; the EDA example grid's tiles)
//! captioned with rank, image id and body part, then class and anomaly score.

use std::path::Path;

use image::{Rgb, RgbImage, imageops};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::dataset::Dataset;
use crate::dataset::layout::stem;
use crate::eda::grid::{TILE, shape, tile};
use crate::eda::intensity::image_path;
use crate::plot::{self, PlotError};

const CAPTION: u32 = 44;
const HEADER: u32 = 48;
const GAP: u32 = 6;

/// One image in the grid.
#[derive(Debug, Clone, PartialEq)]
pub struct Shown {
    /// Index into `dataset.images`.
    pub image: usize,
    pub score: f64,
}

/// Draws `shown` (in the order given) into `path` under `title`. Returns how many images
/// could be read.
pub fn draw(
    dataset: &Dataset,
    shown: &[Shown],
    title: &str,
    path: &Path,
) -> Result<usize, PlotError> {
    plot::register_fonts()?;
    let (cols, rows) = shape(shown.len());
    let cell_h = TILE + CAPTION;
    let width = cols * TILE + (cols + 1) * GAP;
    let height = HEADER + rows * cell_h + (rows + 1) * GAP;
    let mut canvas = RgbImage::from_pixel(width, height, Rgb([255, 255, 255]));
    let origin = |k: usize| {
        let (c, r) = (k as u32 % cols, k as u32 / cols);
        (GAP + c * (TILE + GAP), HEADER + GAP + r * (cell_h + GAP))
    };
    let tiles: Vec<(RgbImage, bool)> = {
        use rayon::prelude::*;
        shown
            .par_iter()
            .map(|s| {
                let r = &dataset.images[s.image];
                tile(&image_path(dataset, r), &r.boxes)
            })
            .collect()
    };
    let read = tiles.iter().filter(|(_, ok)| *ok).count();
    for (k, (t, _)) in tiles.iter().enumerate() {
        let (x, y) = origin(k);
        imageops::replace(&mut canvas, t, i64::from(x), i64::from(y));
    }

    let mut buffer = canvas.into_raw();
    {
        let root = BitMapBackend::with_buffer(&mut buffer, (width, height)).into_drawing_area();
        root.draw(&Text::new(
            title.to_string(),
            (width as i32 / 2, HEADER as i32 / 2),
            plot::text_style(20.0).pos(Pos::new(HPos::Center, VPos::Center)),
        ))?;
        let centre = Pos::new(HPos::Center, VPos::Center);
        for (k, (s, (_, ok))) in shown.iter().zip(&tiles).enumerate() {
            let r = &dataset.images[s.image];
            let (x, y) = origin(k);
            let cx = (x + TILE / 2) as i32;
            let fractured = r.meta.is_fractured();
            let line1 = format!(
                "#{} {} · {}{}",
                k + 1,
                stem(&r.meta.image_id),
                r.meta.primary_part_name(),
                if *ok { "" } else { " (unreadable)" }
            );
            let line2 = format!(
                "{} · score {:.3}",
                if fractured { "fractured" } else { "non-fractured" },
                s.score
            );
            let colour = if fractured { RGBColor(180, 0, 0) } else { BLACK };
            let top = (y + TILE) as i32;
            root.draw(&Text::new(line1, (cx, top + 12), plot::text_style(14.0).pos(centre)))?;
            root.draw(&Text::new(
                line2,
                (cx, top + 32),
                plot::text_style(14.0).color(&colour).pos(centre),
            ))?;
        }
        root.present()?;
    }
    plot::save_png(path, &buffer, width, height)?;
    Ok(read)
}
