//! The embedding scatter plots: one figure per projection (PCA, t-SNE) with two panels side by
//! side — the same points coloured by class (left) and by body part (right) — and the most
//! outlying images ringed in black on both.

use std::path::Path;

use plotters::prelude::*;

use crate::plot::{self, PALETTE, PlotError};

/// Canvas of a two-panel figure, pixels.
pub const WIDTH: u32 = 1800;
pub const HEIGHT: u32 = 820;

/// One way of colouring the points: a category per point and the categories' names.
#[derive(Debug, Clone, PartialEq)]
pub struct Colouring {
    pub title: String,
    /// Category names, in legend order; category `k` gets `colours[k]`.
    pub names: Vec<String>,
    pub colours: Vec<RGBColor>,
    /// Per point, its category.
    pub category: Vec<usize>,
}

impl Colouring {
    /// Colours from [`PALETTE`] in order, starting at `offset`.
    pub fn new(title: &str, names: Vec<String>, category: Vec<usize>, offset: usize) -> Self {
        let colours = (0..names.len()).map(|k| PALETTE[(k + offset) % PALETTE.len()]).collect();
        Self { title: title.into(), names, colours, category }
    }
}

/// Ring around outliers.
const RING: RGBColor = RGBColor(0, 0, 0);

/// Draws `points` twice, one panel per colouring, with `outliers` (point indices) ringed.
pub fn scatter_panels(
    path: &Path,
    title: &str,
    axes: (&str, &str),
    points: &[[f64; 2]],
    panels: [&Colouring; 2],
    outliers: &[usize],
) -> Result<(), PlotError> {
    if let Some(c) = panels.iter().find(|c| c.category.len() != points.len()) {
        return Err(PlotError::Input(format!(
            "'{}' colours {} points of {}",
            c.title,
            c.category.len(),
            points.len()
        )));
    }
    let ((x0, x1), (y0, y1)) = bounds(points);
    plot::render(path, WIDTH, HEIGHT, |root| {
        let titled = root.margin(10, 0, 0, 0).titled(title, plot::text_style(28.0))?;
        let halves = titled.split_evenly((1, 2));
        for (area, colouring) in halves.iter().zip(panels) {
            let mut chart = ChartBuilder::on(area)
                .caption(&colouring.title, plot::text_style(22.0))
                .margin(20)
                .x_label_area_size(55)
                .y_label_area_size(75)
                .build_cartesian_2d(x0..x1, y0..y1)?;
            chart
                .configure_mesh()
                .x_label_formatter(&|v| plot::tick(*v))
                .y_label_formatter(&|v| plot::tick(*v))
                .max_light_lines(4)
                .light_line_style(RGBColor(242, 242, 242))
                .bold_line_style(RGBColor(200, 200, 200))
                .x_desc(axes.0)
                .y_desc(axes.1)
                .label_style(plot::text_style(16.0))
                .axis_desc_style(plot::text_style(18.0))
                .draw()?;
            // Largest category first, so small ones stay visible on top.
            let counts: Vec<usize> = (0..colouring.names.len())
                .map(|k| colouring.category.iter().filter(|&&c| c == k).count())
                .collect();
            let mut order: Vec<usize> = (0..colouring.names.len()).collect();
            order.sort_by(|&a, &b| counts[b].cmp(&counts[a]).then(a.cmp(&b)));
            for k in order {
                let colour = colouring.colours[k];
                let mine = points
                    .iter()
                    .zip(&colouring.category)
                    .filter(move |(p, c)| **c == k && p[0].is_finite() && p[1].is_finite())
                    .map(|(p, _)| (p[0], p[1]));
                chart
                    .draw_series(mine.map(|p| Circle::new(p, 4, colour.mix(0.65).filled())))?
                    .label(format!("{} ({})", colouring.names[k], counts[k]))
                    .legend(move |(x, y)| Circle::new((x + 8, y), 5, colour.filled()));
            }
            if !outliers.is_empty() {
                let ringed = outliers.iter().filter_map(|&i| points.get(i)).map(|p| (p[0], p[1]));
                chart
                    .draw_series(ringed.map(|p| Circle::new(p, 8, RING.stroke_width(2))))?
                    .label(format!("top {} outliers", outliers.len()))
                    .legend(|(x, y)| Circle::new((x + 8, y), 6, RING.stroke_width(2)));
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .label_font(plot::text_style(15.0))
                .draw()?;
        }
        Ok(())
    })
}

/// Bounds of the finite points, padded by 5 % (a unit range when empty or flat).
fn bounds(points: &[[f64; 2]]) -> ((f64, f64), (f64, f64)) {
    let finite = points.iter().filter(|p| p[0].is_finite() && p[1].is_finite());
    let (mut x0, mut x1, mut y0, mut y1) =
        (f64::INFINITY, f64::NEG_INFINITY, f64::INFINITY, f64::NEG_INFINITY);
    for p in finite {
        (x0, x1, y0, y1) = (x0.min(p[0]), x1.max(p[0]), y0.min(p[1]), y1.max(p[1]));
    }
    let pad = |lo: f64, hi: f64| {
        if !lo.is_finite() {
            (0.0, 1.0)
        } else if hi - lo <= 1e-12 * lo.abs().max(1.0) {
            (lo - 0.5, hi + 0.5)
        } else {
            let p = (hi - lo) * 0.05;
            (lo - p, hi + p)
        }
    };
    (pad(x0, x1), pad(y0, y1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_two_panels_and_checks_lengths() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("s.png");
        let points = [[0.0, 1.0], [2.0, 3.0], [1.0, -1.0]];
        let class = Colouring::new("class", vec!["a".into(), "b".into()], vec![0, 1, 1], 0);
        let part = Colouring::new("part", vec!["x".into()], vec![0, 0, 0], 2);
        scatter_panels(&path, "T", ("pc1", "pc2"), &points, [&class, &part], &[2])?;
        let img = image::open(&path)?;
        assert_eq!((img.width(), img.height()), (WIDTH, HEIGHT));
        let short = Colouring::new("bad", vec!["a".into()], vec![0], 0);
        assert!(scatter_panels(&path, "T", ("a", "b"), &points, [&class, &short], &[]).is_err());
        // Flat and empty inputs still draw.
        scatter_panels(&path, "T", ("a", "b"), &[[1.0, 1.0]], [&short, &short], &[0])?;
        let none = Colouring::new("none", vec![], vec![], 0);
        scatter_panels(&path, "T", ("a", "b"), &[], [&none, &none], &[])?;
        Ok(())
    }
}
