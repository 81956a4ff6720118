//! plot: the few chart kinds the host tools draw, as PNG — bar charts (grouped, optionally
//! annotated with counts and percentages), histograms, heatmaps with a colour bar, scatter plots
//! and line charts. Charts are drawn with `plotters` into an RGB buffer and written with `image`;
//! text uses the DejaVu Sans font compiled into the binary, so no system fonts are needed.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde::Serialize;

/// Default size of a chart in pixels.
pub const WIDTH: u32 = 1000;
pub const HEIGHT: u32 = 640;

const FONT: &str = "sans-serif";
const TITLE_SIZE: f64 = 28.0;
const DESC_SIZE: f64 = 20.0;
const LABEL_SIZE: f64 = 17.0;
const ANNOTATION_SIZE: f64 = 15.0;

const LIGHT_GRID: RGBColor = RGBColor(242, 242, 242);
const BOLD_GRID: RGBColor = RGBColor(200, 200, 200);

/// Y-axis label count for a count axis up to `y_max`: at most one per integer, so small counts
/// get no fractional ticks.
fn count_ticks(y_max: f64) -> usize {
    (y_max.floor().max(0.0) as usize + 1).clamp(2, 10)
}

/// Series colours, in order (distinguishable, colour-blind friendly "tab10" hues).
pub const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

/// Why a chart could not be drawn or written.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("cannot register the embedded DejaVu Sans font")]
    Font,
    #[error("drawing failed: {0}")]
    Draw(String),
    #[error("{path}: cannot write PNG: {source}")]
    Save { path: PathBuf, source: image::ImageError },
    #[error("bad chart input: {0}")]
    Input(String),
}

impl<E: std::error::Error + Send + Sync> From<DrawingAreaErrorKind<E>> for PlotError {
    fn from(e: DrawingAreaErrorKind<E>) -> Self {
        PlotError::Draw(e.to_string())
    }
}

/// Registers DejaVu Sans (regular and bold) as `sans-serif` with plotters, once per process.
pub fn register_fonts() -> Result<(), PlotError> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular()).is_ok()
            && plotters::style::register_font(FONT, FontStyle::Bold, dejavu::sans::bold()).is_ok()
    });
    if ok { Ok(()) } else { Err(PlotError::Font) }
}

/// A text style in the embedded font.
pub fn text_style(size: f64) -> TextStyle<'static> {
    (FONT, size).into_font().color(&BLACK)
}

fn title_style() -> TextStyle<'static> {
    (FONT, TITLE_SIZE, FontStyle::Bold).into_font().color(&BLACK)
}

/// Draws onto a fresh white `width`×`height` canvas and writes it to `path` as PNG.
pub fn render<F>(path: &Path, width: u32, height: u32, draw: F) -> Result<(), PlotError>
where
    F: FnOnce(&DrawingArea<BitMapBackend<'_>, Shift>) -> Result<(), PlotError>,
{
    register_fonts()?;
    let mut buffer = vec![255u8; width as usize * height as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut buffer, (width, height)).into_drawing_area();
        root.fill(&WHITE)?;
        draw(&root)?;
        root.present()?;
    }
    save_png(path, &buffer, width, height)
}

/// Writes a packed RGB8 buffer as PNG.
pub fn save_png(path: &Path, rgb: &[u8], width: u32, height: u32) -> Result<(), PlotError> {
    if rgb.len() != width as usize * height as usize * 3 {
        return Err(PlotError::Input(format!(
            "RGB buffer of {} bytes for a {width}x{height} image",
            rgb.len()
        )));
    }
    image::save_buffer_with_format(
        path,
        rgb,
        width,
        height,
        image::ExtendedColorType::Rgb8,
        image::ImageFormat::Png,
    )
    .map_err(|source| PlotError::Save { path: path.to_path_buf(), source })
}

/// Short tick label: integers without decimals, large values with a k/M suffix, others with two
/// decimals, or three significant digits below 1.
pub fn tick(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        trim(format!("{:.2}", v / 1e6)) + "M"
    } else if a >= 1e4 {
        trim(format!("{:.1}", v / 1e3)) + "k"
    } else if a >= 100.0 || (v - v.round()).abs() < 1e-9 {
        format!("{}", v.round())
    } else if a >= 1.0 {
        trim(format!("{v:.2}"))
    } else if a > 0.0 {
        // Three significant digits, at most six decimals.
        let decimals = (2.0 - a.log10().floor()).clamp(3.0, 6.0) as usize;
        trim(format!("{v:.decimals$}"))
    } else {
        "0".into()
    }
}

fn trim(s: String) -> String {
    if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_string() } else { s }
}

/// Equal-width bins over `[lo, hi]`; values outside are clamped into the end bins.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Binned {
    pub lo: f64,
    pub hi: f64,
    pub counts: Vec<u64>,
}

impl Binned {
    /// Bins over the data's own range (`[0, 1]` when there is no finite value; a range of one
    /// unit around the value when all values are equal).
    pub fn new(values: &[f64], bins: usize) -> Self {
        let finite = values.iter().copied().filter(|v| v.is_finite());
        let (lo, hi) =
            finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
        Self::with_range(values, bins, lo, hi)
    }

    /// Bins over `[lo, hi]` (widened as in [`Binned::new`] when empty or degenerate).
    pub fn with_range(values: &[f64], bins: usize, lo: f64, hi: f64) -> Self {
        let bins = bins.max(1);
        let (lo, hi) = if !lo.is_finite() || !hi.is_finite() {
            (0.0, 1.0)
        } else if hi <= lo {
            (lo - 0.5, lo + 0.5)
        } else {
            (lo, hi)
        };
        let mut counts = vec![0u64; bins];
        for &v in values.iter().filter(|v| v.is_finite()) {
            let t = ((v - lo) / (hi - lo) * bins as f64).floor();
            let i = t.clamp(0.0, (bins - 1) as f64) as usize;
            counts[i] += 1;
        }
        Self { lo, hi, counts }
    }

    pub fn width(&self) -> f64 {
        (self.hi - self.lo) / self.counts.len().max(1) as f64
    }

    /// `[start, end)` of bin `i`.
    pub fn edges(&self, i: usize) -> (f64, f64) {
        let w = self.width();
        (self.lo + w * i as f64, self.lo + w * (i + 1) as f64)
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// What to print above each bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BarLabels {
    None,
    /// The bar's value.
    Value,
    /// The value and its share of the series' total, `3366 (82.4%)`.
    ValueAndPercent,
}

/// A bar chart: one group of bars per category, one bar per series in each group, a legend when
/// there is more than one series.
pub fn bar_chart(
    path: &Path,
    title: &str,
    y_label: &str,
    categories: &[&str],
    series: &[(&str, Vec<f64>)],
    labels: BarLabels,
) -> Result<(), PlotError> {
    if categories.is_empty() {
        return Err(PlotError::Input(format!("bar chart '{title}' has no categories")));
    }
    if let Some((name, _)) = series.iter().find(|(_, v)| v.len() != categories.len()) {
        return Err(PlotError::Input(format!(
            "bar chart '{title}': series '{name}' does not have {} values",
            categories.len()
        )));
    }
    let n = categories.len();
    let max = series.iter().flat_map(|(_, v)| v.iter().copied()).fold(0.0f64, f64::max);
    let y_max = if max > 0.0 { max * 1.15 } else { 1.0 };
    let group_width = 0.8;
    let bar_width = group_width / series.len().max(1) as f64;

    render(path, WIDTH, HEIGHT, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, title_style())
            .margin(20)
            .x_label_area_size(50)
            .y_label_area_size(80)
            .build_cartesian_2d(CategoryAxis { n }, 0.0..y_max)?;
        let name_of = |x: &f64| {
            let i = x.floor();
            if i >= 0.0 && (i as usize) < n { categories[i as usize].to_string() } else { tick(*x) }
        };
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_label_formatter(&name_of)
            .y_labels(count_ticks(y_max))
            .y_label_formatter(&|v| tick(*v))
            .light_line_style(LIGHT_GRID)
            .bold_line_style(BOLD_GRID)
            .y_desc(y_label)
            .label_style(text_style(LABEL_SIZE))
            .axis_desc_style(text_style(DESC_SIZE))
            .draw()?;

        for (s, (name, values)) in series.iter().enumerate() {
            let colour = PALETTE[s % PALETTE.len()];
            let x0 = |i: usize| i as f64 + 0.5 - group_width / 2.0 + bar_width * s as f64;
            let drawn = chart.draw_series(values.iter().enumerate().map(|(i, &v)| {
                Rectangle::new([(x0(i), 0.0), (x0(i) + bar_width, v)], colour.filled())
            }))?;
            if series.len() > 1 {
                drawn.label(*name).legend(move |(x, y)| {
                    Rectangle::new([(x, y - 6), (x + 14, y + 6)], colour.filled())
                });
            }
            if labels != BarLabels::None {
                let total: f64 = values.iter().sum();
                let anchor = Pos::new(HPos::Center, VPos::Bottom);
                chart.draw_series(values.iter().enumerate().map(|(i, &v)| {
                    let text = match labels {
                        BarLabels::ValueAndPercent if total > 0.0 => {
                            format!("{} ({:.1}%)", tick(v), 100.0 * v / total)
                        }
                        _ => tick(v),
                    };
                    Text::new(
                        text,
                        (x0(i) + bar_width / 2.0, v + y_max * 0.01),
                        text_style(ANNOTATION_SIZE).pos(anchor),
                    )
                }))?;
            }
        }
        if series.len() > 1 {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .label_font(text_style(LABEL_SIZE))
                .draw()?;
        }
        Ok(())
    })
}

/// The x axis of a bar chart: category `i` spans `[i, i + 1)`, ticks at the centres.
struct CategoryAxis {
    n: usize,
}

impl Ranged for CategoryAxis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let t = value / self.n.max(1) as f64;
        limit.0 + (f64::from(limit.1 - limit.0) * t).round() as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            (0..self.n).map(|i| i as f64 + 0.5).collect()
        }
    }

    fn range(&self) -> std::ops::Range<f64> {
        0.0..self.n as f64
    }
}

/// A histogram of `values` in `bins` equal bins over their range, y axis "count".
pub fn histogram(
    path: &Path,
    title: &str,
    x_label: &str,
    values: &[f64],
    bins: usize,
) -> Result<(), PlotError> {
    histogram_binned(path, title, x_label, "count", &Binned::new(values, bins))
}

/// A histogram of counts already binned (so the numbers a tool reports and draws are the same).
pub fn histogram_binned(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    binned: &Binned,
) -> Result<(), PlotError> {
    let max = binned.counts.iter().copied().max().unwrap_or(0) as f64;
    let y_max = if max > 0.0 { max * 1.1 } else { 1.0 };
    render(path, WIDTH, HEIGHT, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, title_style())
            .margin(20)
            .x_label_area_size(60)
            .y_label_area_size(80)
            .build_cartesian_2d(binned.lo..binned.hi, 0.0..y_max)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(10)
            .y_labels(count_ticks(y_max))
            .x_label_formatter(&|v| tick(*v))
            .light_line_style(LIGHT_GRID)
            .bold_line_style(BOLD_GRID)
            .y_label_formatter(&|v| tick(*v))
            .x_desc(x_label)
            .y_desc(y_label)
            .label_style(text_style(LABEL_SIZE))
            .axis_desc_style(text_style(DESC_SIZE))
            .draw()?;
        let colour = PALETTE[0];
        chart.draw_series(binned.counts.iter().enumerate().filter(|(_, c)| **c > 0).map(
            |(i, &c)| {
                let (a, b) = binned.edges(i);
                Rectangle::new([(a, 0.0), (b, c as f64)], colour.filled())
            },
        ))?;
        chart.draw_series(binned.counts.iter().enumerate().filter(|(_, c)| **c > 0).map(
            |(i, &c)| {
                let (a, b) = binned.edges(i);
                Rectangle::new([(a, 0.0), (b, c as f64)], WHITE.stroke_width(1))
            },
        ))?;
        Ok(())
    })
}

/// A heatmap of `grid[row][col]` over the unit square, row 0 at the top (image convention), with
/// a colour bar. Rows must all have the same length.
pub fn heatmap(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    grid: &[Vec<f64>],
) -> Result<(), PlotError> {
    let rows = grid.len();
    let cols = grid.first().map_or(0, Vec::len);
    if rows == 0 || cols == 0 || grid.iter().any(|r| r.len() != cols) {
        return Err(PlotError::Input(format!(
            "heatmap '{title}' needs a non-empty rectangular grid"
        )));
    }
    let max = grid.iter().flatten().copied().fold(0.0f64, f64::max);
    let scale = if max > 0.0 { max } else { 1.0 };
    render(path, 900, 820, |root| {
        let titled = root.margin(12, 0, 0, 0).titled(title, title_style())?;
        let (left, right) = titled.split_horizontally(760);
        let mut chart = ChartBuilder::on(&left)
            .margin(20)
            .x_label_area_size(60)
            .y_label_area_size(80)
            .build_cartesian_2d(0.0..1.0, 0.0..1.0)?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_label_formatter(&|v| tick(*v))
            .y_label_formatter(&|v| tick(1.0 - *v))
            .x_desc(x_label)
            .y_desc(y_label)
            .label_style(text_style(LABEL_SIZE))
            .axis_desc_style(text_style(DESC_SIZE))
            .draw()?;
        let (w, h) = (1.0 / cols as f64, 1.0 / rows as f64);
        chart.draw_series(grid.iter().enumerate().flat_map(|(r, row)| {
            row.iter().enumerate().map(move |(c, &v)| {
                let (x, y) = (c as f64 * w, 1.0 - (r + 1) as f64 * h);
                Rectangle::new([(x, y), (x + w, y + h)], colour_map(v / scale).filled())
            })
        }))?;

        let mut bar = ChartBuilder::on(&right)
            .margin_top(20)
            .margin_bottom(80)
            .margin_right(10)
            .y_label_area_size(0)
            .right_y_label_area_size(60)
            .build_cartesian_2d(0.0..1.0, 0.0..scale)?;
        bar.configure_mesh()
            .disable_mesh()
            .disable_x_axis()
            .y_labels(6)
            .y_label_formatter(&|v| tick(*v))
            .label_style(text_style(LABEL_SIZE))
            .draw()?;
        let steps = 100;
        bar.draw_series((0..steps).map(|i| {
            let (a, b) = (scale * i as f64 / steps as f64, scale * (i + 1) as f64 / steps as f64);
            Rectangle::new([(0.0, a), (1.0, b)], colour_map(i as f64 / (steps - 1) as f64).filled())
        }))?;
        Ok(())
    })
}

/// A viridis-like colour map: `t` in [0, 1] from dark purple through teal to yellow.
pub fn colour_map(t: f64) -> RGBColor {
    const STOPS: [(f64, f64, f64); 5] = [
        (68.0, 1.0, 84.0),
        (59.0, 82.0, 139.0),
        (33.0, 145.0, 140.0),
        (94.0, 201.0, 98.0),
        (253.0, 231.0, 37.0),
    ];
    let t = if t.is_finite() { t.clamp(0.0, 1.0) } else { 0.0 };
    let x = t * (STOPS.len() - 1) as f64;
    let i = (x.floor() as usize).min(STOPS.len() - 2);
    let f = x - i as f64;
    let (a, b) = (STOPS[i], STOPS[i + 1]);
    let mix = |p: f64, q: f64| (p + (q - p) * f).round() as u8;
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// Bounds of every point of every series, padded by 5 % (a unit range when empty or flat).
fn bounds(series: &[(&str, Vec<(f64, f64)>)]) -> ((f64, f64), (f64, f64)) {
    let pts =
        series.iter().flat_map(|(_, p)| p.iter()).filter(|(x, y)| x.is_finite() && y.is_finite());
    let (mut x0, mut x1, mut y0, mut y1) =
        (f64::INFINITY, f64::NEG_INFINITY, f64::INFINITY, f64::NEG_INFINITY);
    for &(x, y) in pts {
        (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
    }
    let pad = |lo: f64, hi: f64| {
        if !lo.is_finite() {
            (0.0, 1.0)
        } else if hi <= lo {
            (lo - 0.5, hi + 0.5)
        } else {
            let p = (hi - lo) * 0.05;
            (lo - p, hi + p)
        }
    };
    (pad(x0, x1), pad(y0, y1))
}

/// How a series of points is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Marks {
    Lines,
    Points,
}

fn xy_chart(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[(&str, Vec<(f64, f64)>)],
    marks: Marks,
) -> Result<(), PlotError> {
    let ((x0, x1), (y0, y1)) = bounds(series);
    render(path, WIDTH, HEIGHT, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, title_style())
            .margin(20)
            .x_label_area_size(60)
            .y_label_area_size(80)
            .build_cartesian_2d(x0..x1, y0..y1)?;
        chart
            .configure_mesh()
            .x_label_formatter(&|v| tick(*v))
            .y_label_formatter(&|v| tick(*v))
            .max_light_lines(4)
            .light_line_style(LIGHT_GRID)
            .bold_line_style(BOLD_GRID)
            .x_desc(x_label)
            .y_desc(y_label)
            .label_style(text_style(LABEL_SIZE))
            .axis_desc_style(text_style(DESC_SIZE))
            .draw()?;
        for (s, (name, points)) in series.iter().enumerate() {
            let colour = PALETTE[s % PALETTE.len()];
            let finite = points.iter().copied().filter(|(x, y)| x.is_finite() && y.is_finite());
            let drawn = match marks {
                Marks::Lines => {
                    chart.draw_series(LineSeries::new(finite, colour.stroke_width(2)))?
                }
                Marks::Points => chart
                    .draw_series(finite.map(|p| Circle::new(p, 3, colour.mix(0.6).filled())))?,
            };
            drawn.label(*name).legend(move |(x, y)| match marks {
                Marks::Lines => Rectangle::new([(x, y - 1), (x + 16, y + 1)], colour.filled()),
                Marks::Points => Rectangle::new([(x + 4, y - 4), (x + 12, y + 4)], colour.filled()),
            });
        }
        if !series.is_empty() {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .label_font(text_style(LABEL_SIZE))
                .draw()?;
        }
        Ok(())
    })
}

/// Lines through each series' points (in the order given), with a legend.
pub fn line_chart(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[(&str, Vec<(f64, f64)>)],
) -> Result<(), PlotError> {
    xy_chart(path, title, x_label, y_label, series, Marks::Lines)
}

/// One dot per point, a colour per series, with a legend.
pub fn scatter(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[(&str, Vec<(f64, f64)>)],
) -> Result<(), PlotError> {
    xy_chart(path, title, x_label, y_label, series, Marks::Points)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(path: &Path) -> image::DynamicImage {
        image::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    #[test]
    fn binned_counts_and_edges() {
        let b = Binned::with_range(&[0.0, 0.1, 0.5, 0.99, 1.0, 2.0, -1.0, f64::NAN], 4, 0.0, 1.0);
        // [0,.25) gets 0, 0.1, -1 (clamped); [.5,.75) gets 0.5; last bin 0.99, 1.0, 2.0 (clamped).
        assert_eq!(b.counts, vec![3, 0, 1, 3]);
        assert_eq!(b.total(), 7);
        assert_eq!(b.edges(1), (0.25, 0.5));
        let flat = Binned::new(&[3.0, 3.0], 2);
        assert_eq!((flat.lo, flat.hi), (2.5, 3.5));
        assert_eq!(flat.total(), 2);
        let empty = Binned::new(&[], 5);
        assert_eq!((empty.lo, empty.hi, empty.total()), (0.0, 1.0, 0));
    }

    #[test]
    fn ticks_are_short() {
        assert_eq!(tick(3.0), "3");
        assert_eq!(tick(0.30000000000000004), "0.3");
        assert_eq!(tick(1.25), "1.25");
        assert_eq!(tick(250_000.0), "250k");
        assert_eq!(tick(1_500_000.0), "1.5M");
        assert_eq!(tick(150.4), "150");
        assert_eq!(tick(0.00123), "0.00123");
        assert_eq!(tick(0.0594), "0.0594");
        assert_eq!(tick(1e-17), "0");
    }

    #[test]
    fn colour_map_ends() {
        assert_eq!(colour_map(0.0), RGBColor(68, 1, 84));
        assert_eq!(colour_map(1.0), RGBColor(253, 231, 37));
        assert_eq!(colour_map(f64::NAN), RGBColor(68, 1, 84));
    }

    #[test]
    fn every_chart_kind_writes_a_png() -> Result<(), PlotError> {
        let dir = tempfile::tempdir().map_err(|e| PlotError::Input(e.to_string()))?;
        let p = |name: &str| dir.path().join(name);
        bar_chart(
            &p("bar.png"),
            "Bars",
            "images",
            &["a", "b", "c"],
            &[("one", vec![1.0, 2.0, 3.0]), ("two", vec![0.0, 5.0, 1.0])],
            BarLabels::ValueAndPercent,
        )?;
        histogram(&p("hist.png"), "Hist", "value", &[1.0, 2.0, 2.5, 9.0], 8)?;
        histogram(&p("hist_empty.png"), "Empty", "value", &[], 8)?;
        heatmap(&p("heat.png"), "Heat", "x", "y", &[vec![0.0, 1.0], vec![2.0, 3.0]])?;
        line_chart(
            &p("line.png"),
            "Line",
            "epoch",
            "loss",
            &[("train", vec![(0.0, 1.0), (1.0, 0.5)])],
        )?;
        scatter(&p("scatter.png"), "Scatter", "w", "h", &[("a", vec![(1.0, 2.0)]), ("b", vec![])])?;
        for name in ["bar.png", "hist.png", "hist_empty.png", "line.png", "scatter.png"] {
            let img = decode(&p(name));
            assert_eq!((img.width(), img.height()), (WIDTH, HEIGHT), "{name}");
        }
        assert_eq!(decode(&p("heat.png")).width(), 900);
        assert!(
            bar_chart(&p("x.png"), "Bad", "n", &["a"], &[("s", vec![])], BarLabels::None).is_err()
        );
        assert!(heatmap(&p("x.png"), "Bad", "x", "y", &[]).is_err());
        Ok(())
    }
}
