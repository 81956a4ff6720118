//! The outlier grid: the images the Isolation Forest finds most outlying, most outlying
//! first, as tiles (contrast-stretched, fracture boxes in red; the EDA example grid's tiles)
//! captioned with rank, image id and body part, then class and anomaly score.

use std::path::Path;

use plotters::style::colors::BLACK;

use crate::dataset::Dataset;
use crate::dataset::layout::stem;
use crate::eda::grid::{Caption, class_colour, draw_tiles};
use crate::plot::PlotError;

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
    let images: Vec<usize> = shown.iter().map(|s| s.image).collect();
    draw_tiles(dataset, &images, title, path, |k, r, ok| {
        let fractured = r.meta.is_fractured();
        let first = format!(
            "#{} {} · {}{}",
            k + 1,
            stem(&r.meta.image_id),
            r.meta.primary_part_name(),
            if ok { "" } else { " (unreadable)" }
        );
        let second = format!(
            "{} · score {:.3}",
            if fractured { "fractured" } else { "non-fractured" },
            shown[k].score
        );
        vec![
            Caption { text: first, colour: BLACK },
            Caption { text: second, colour: class_colour(r) },
        ]
    })
}
