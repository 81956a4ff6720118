//! The evaluation's curves as PNG, from the ultralytics-style per-class curves on IoU 0.5
//! ([`PrfCurves`](fracture_models::metrics::PrfCurves)): precision-recall (`PR_curve.png`),
//! and F1, precision and recall against the confidence threshold (`F1_curve.png`,
//! `P_curve.png`, `R_curve.png`) — ultralytics' file names. The operating points are marked:
//! vertical lines at their thresholds, and points on the PR curve where they sit on the
//! evaluated split. Drawn on [`plot::render`] (the embedded font) with both axes on [0, 1].

use std::path::{Path, PathBuf};

use fracture_models::metrics::PrfSummary;
use plotters::prelude::*;
use serde::Serialize;

use crate::plot::{self, PALETTE, PlotError, text_style};

/// Where the curves were written.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CurveFiles {
    pub pr_png: PathBuf,
    pub f1_png: PathBuf,
    pub p_png: PathBuf,
    pub r_png: PathBuf,
}

/// An operating point to mark.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Marker {
    pub name: &'static str,
    pub conf: f32,
    /// Where it sits on the evaluated split (for the PR curve), when defined.
    pub precision: Option<f64>,
    pub recall: Option<f64>,
}

/// One named line.
struct Line {
    name: String,
    points: Vec<(f64, f64)>,
}

/// Marker colours: after the class colours' first entries, so they stay distinct.
const MARKER_COLOURS: [RGBColor; 2] = [PALETTE[1], PALETTE[3]];

/// Draws the four charts into `dir`; `class_name` names a class id of the summary.
pub fn draw(
    dir: &Path,
    prf: &PrfSummary,
    class_name: impl Fn(i64) -> String,
    markers: &[Marker],
) -> Result<CurveFiles, PlotError> {
    let c = &prf.curves;
    let names: Vec<String> = c.classes.iter().map(|&k| class_name(k)).collect();
    // One line per class, plus their mean when there are several.
    let lines = |curves: &[Vec<f64>], label: &dyn Fn(usize) -> String, mean_label: String| {
        let mut out: Vec<Line> = curves
            .iter()
            .enumerate()
            .map(|(i, ys)| Line {
                name: label(i),
                points: c.px.iter().copied().zip(ys.iter().copied()).collect(),
            })
            .collect();
        if curves.len() > 1 {
            let mean = (0..c.px.len())
                .map(|k| (c.px[k], curves.iter().map(|v| v[k]).sum::<f64>() / curves.len() as f64));
            out.push(Line { name: mean_label, points: mean.collect() });
        }
        out
    };
    let files = CurveFiles {
        pr_png: dir.join("PR_curve.png"),
        f1_png: dir.join("F1_curve.png"),
        p_png: dir.join("P_curve.png"),
        r_png: dir.join("R_curve.png"),
    };

    let pr = lines(
        &c.pr_curve,
        &|i| format!("{} AP50 {:.3}", names[i], prf.ap[i][0]),
        format!("all classes mAP50 {:.3}", prf.map50),
    );
    let pr_points: Vec<(String, (f64, f64))> = markers
        .iter()
        .filter_map(|m| {
            let (p, r) = (m.precision?, m.recall?);
            Some((format!("{} (P {p:.2}, R {r:.2})", m.name), (r, p)))
        })
        .collect();
    let chart = Chart {
        title: "Precision-recall (IoU 0.5)",
        x: "recall",
        y: "precision",
        legend: SeriesLabelPosition::LowerLeft,
    };
    chart.draw(&files.pr_png, &pr, &pr_points, &[])?;

    let verticals: Vec<(String, f64)> = markers
        .iter()
        .map(|m| (format!("{} ≥ {:.3}", m.name, m.conf), f64::from(m.conf)))
        .collect();
    let by_conf = [
        (&files.f1_png, "F1 vs confidence", "F1", &c.f1, SeriesLabelPosition::UpperRight),
        (
            &files.p_png,
            "Precision vs confidence",
            "precision",
            &c.precision,
            SeriesLabelPosition::LowerRight,
        ),
        (
            &files.r_png,
            "Recall vs confidence",
            "recall",
            &c.recall,
            SeriesLabelPosition::UpperRight,
        ),
    ];
    for (path, title, y, curves, legend) in by_conf {
        let mut l = lines(curves, &|i| names[i].clone(), "all classes".to_string());
        if y == "F1"
            && let Some(last) = l.last_mut()
        {
            last.name += &format!(" (best {:.3} at {:.3})", prf.f1, prf.confidence);
        }
        Chart { title, x: "confidence", y, legend }.draw(path, &l, &[], &verticals)?;
    }
    Ok(files)
}

/// A unit-square line chart.
struct Chart<'a> {
    title: &'a str,
    x: &'a str,
    y: &'a str,
    legend: SeriesLabelPosition,
}

impl Chart<'_> {
    /// Lines, labelled points and labelled vertical lines.
    fn draw(
        &self,
        path: &Path,
        lines: &[Line],
        points: &[(String, (f64, f64))],
        verticals: &[(String, f64)],
    ) -> Result<(), PlotError> {
        plot::render(path, plot::WIDTH, plot::HEIGHT, |root| {
            let mut chart = ChartBuilder::on(root)
                .caption(
                    self.title,
                    ("sans-serif", 28.0, FontStyle::Bold).into_font().color(&BLACK),
                )
                .margin(20)
                .x_label_area_size(60)
                .y_label_area_size(80)
                .build_cartesian_2d(-0.02f64..1.02f64, -0.02f64..1.05f64)?;
            chart
                .configure_mesh()
                .x_label_formatter(&|v| plot::tick(*v))
                .y_label_formatter(&|v| plot::tick(*v))
                .max_light_lines(4)
                .light_line_style(RGBColor(242, 242, 242))
                .bold_line_style(RGBColor(200, 200, 200))
                .x_desc(self.x)
                .y_desc(self.y)
                .label_style(text_style(17.0))
                .axis_desc_style(text_style(20.0))
                .draw()?;
            for (i, l) in lines.iter().enumerate() {
                let colour = if i == 0 { PALETTE[0] } else { PALETTE[(i + 3) % PALETTE.len()] };
                let finite =
                    l.points.iter().copied().filter(|(x, y)| x.is_finite() && y.is_finite());
                chart
                    .draw_series(LineSeries::new(finite, colour.stroke_width(2)))?
                    .label(l.name.clone())
                    .legend(move |(x, y)| {
                        Rectangle::new([(x, y - 1), (x + 16, y + 1)], colour.filled())
                    });
            }
            for (i, (name, x)) in verticals.iter().enumerate() {
                let colour = MARKER_COLOURS[i % MARKER_COLOURS.len()];
                chart
                    .draw_series(DashedLineSeries::new(
                        [(*x, 0.0), (*x, 1.0)],
                        8,
                        5,
                        colour.stroke_width(2),
                    ))?
                    .label(name.clone())
                    .legend(move |(x, y)| {
                        Rectangle::new([(x, y - 1), (x + 16, y + 1)], colour.filled())
                    });
            }
            for (i, (name, p)) in points.iter().enumerate() {
                let colour = MARKER_COLOURS[i % MARKER_COLOURS.len()];
                chart
                    .draw_series(std::iter::once(Circle::new(*p, 7, colour.filled())))?
                    .label(name.clone())
                    .legend(move |(x, y)| Circle::new((x + 8, y), 5, colour.filled()));
            }
            chart
                .configure_series_labels()
                .position(self.legend.clone())
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .label_font(text_style(17.0))
                .draw()?;
            Ok(())
        })
    }
}
