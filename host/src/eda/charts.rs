//! The EDA's charts: one PNG per view of the numbers in [`super::stats`], each returned as a
//! [`Figure`] (file name, title and a sentence saying what it shows) for the report.

use std::path::Path;

use serde::Serialize;

use super::intensity::IntensityStats;
use super::stats::{ByClass, DatasetStats, Distribution, Summary};
use crate::dataset::Dataset;
use crate::plot::{self, BarLabels, PlotError};

/// One chart written to the output folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Figure {
    /// File name inside the output folder.
    pub file: String,
    pub title: String,
    /// One sentence on what the chart shows, with its headline numbers.
    pub caption: String,
}

fn fmt(v: f64) -> String {
    plot::tick(v)
}

fn median_range(s: &Option<Summary>, unit: &str) -> String {
    match s {
        Some(s) => format!(
            "median {}{unit}, 5th–95th percentile {}–{}{unit}",
            fmt(s.median),
            fmt(s.p5),
            fmt(s.p95)
        ),
        None => "no boxes".into(),
    }
}

/// Grouped fractured / non-fractured bars for categories counted by class.
fn by_class_chart(path: &Path, title: &str, rows: &[ByClass]) -> Result<(), PlotError> {
    let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
    plot::bar_chart(
        path,
        title,
        "images",
        &names,
        &[
            ("fractured", rows.iter().map(|r| r.fractured as f64).collect()),
            ("non-fractured", rows.iter().map(|r| r.non_fractured as f64).collect()),
        ],
        BarLabels::Value,
    )
}

/// A histogram chart of one [`Distribution`].
struct Hist<'a> {
    file: &'a str,
    title: &'a str,
    x_label: &'a str,
    y_label: &'a str,
}

impl Hist<'_> {
    fn draw(&self, out: &Path, dist: &Distribution, caption: String) -> Result<Figure, PlotError> {
        plot::histogram_binned(
            &out.join(self.file),
            self.title,
            self.x_label,
            self.y_label,
            &dist.histogram,
        )?;
        Ok(Figure { file: self.file.into(), title: self.title.into(), caption })
    }
}

/// Draws every dataset chart (not the example grid) into `out`.
pub fn draw_dataset_charts(
    dataset: &Dataset,
    stats: &DatasetStats,
    out: &Path,
) -> Result<Vec<Figure>, PlotError> {
    let mut figures = Vec::new();
    let c = &stats.classes;

    let file = "class_balance.png";
    let title = "Class balance";
    plot::bar_chart(
        &out.join(file),
        title,
        "images",
        &["fractured", "non-fractured"],
        &[("images", vec![c.fractured as f64, c.non_fractured as f64])],
        BarLabels::ValueAndPercent,
    )?;
    figures.push(Figure {
        file: file.into(),
        title: title.into(),
        caption: format!(
            "{} of {} images ({:.1}%) are fractured, with {} fracture boxes in all; the classes are {}.",
            c.fractured,
            c.images,
            c.fractured_percent,
            c.boxes,
            if (c.fractured_percent - 50.0).abs() > 15.0 { "clearly imbalanced" } else { "roughly balanced" }
        ),
    });

    let file = "body_parts.png";
    let title = "Body parts by class";
    by_class_chart(&out.join(file), title, &stats.body_parts)?;
    let most = stats.body_parts.iter().max_by_key(|b| b.fractured + b.non_fractured);
    let least = stats.body_parts.iter().min_by_key(|b| b.fractured + b.non_fractured);
    figures.push(Figure {
        file: file.into(),
        title: title.into(),
        caption: match (most, least) {
            (Some(m), Some(l)) => format!(
                "Images per body-part flag and class (an image may carry several flags): {} is the most common ({} images), {} the rarest ({}).",
                m.name,
                m.fractured + m.non_fractured,
                l.name,
                l.fractured + l.non_fractured
            ),
            _ => "Images per body-part flag and class.".into(),
        },
    });

    let file = "metadata_flags.png";
    let title = "Hardware, multiscan and view by class";
    by_class_chart(&out.join(file), title, &stats.flags)?;
    figures.push(Figure {
        file: file.into(),
        title: title.into(),
        caption: format!(
            "Images with metal hardware, stitched multiscans and each projection, by class; {}.",
            stats
                .flags
                .iter()
                .map(|f| format!("{} {}", f.name, f.fractured + f.non_fractured))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    });

    let file = "fractures_per_image.png";
    let title = "Fracture boxes per fractured image";
    let names: Vec<String> =
        (0..stats.boxes_per_fractured_image.len().max(1)).map(|n| n.to_string()).collect();
    let mut counts: Vec<f64> = stats.boxes_per_fractured_image.iter().map(|&n| n as f64).collect();
    counts.resize(names.len(), 0.0);
    let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
    plot::bar_chart(
        &out.join(file),
        title,
        "fractured images",
        &name_refs,
        &[("images", counts)],
        BarLabels::ValueAndPercent,
    )?;
    let single = stats.boxes_per_fractured_image.get(1).copied().unwrap_or(0);
    figures.push(Figure {
        file: file.into(),
        title: title.into(),
        caption: format!(
            "How many boxes the label of each fractured image holds: {} of {} have exactly one{}.",
            single,
            c.fractured,
            match stats.boxes_per_fractured_image.first() {
                Some(&zero) if zero > 0 => format!(", {zero} have none"),
                _ => String::new(),
            }
        ),
    });

    let b = &stats.boxes;
    figures.push(
        Hist {
            file: "box_width_px.png",
            title: "Box width (pixels)",
            x_label: "box width (px)",
            y_label: "boxes",
        }
        .draw(
            out,
            &b.width_px,
            format!(
                "Fracture box widths in pixels of the original image: {}.",
                median_range(&b.width_px.summary, " px")
            ),
        )?,
    );
    figures.push(
        Hist {
            file: "box_height_px.png",
            title: "Box height (pixels)",
            x_label: "box height (px)",
            y_label: "boxes",
        }
        .draw(
            out,
            &b.height_px,
            format!(
                "Fracture box heights in pixels: {}.",
                median_range(&b.height_px.summary, " px")
            ),
        )?,
    );
    figures.push(
        Hist {
            file: "box_area_px.png",
            title: "Box area (pixels²)",
            x_label: "box area (px²)",
            y_label: "boxes",
        }
        .draw(
            out,
            &b.area_px,
            format!(
                "Fracture box areas in square pixels: {}.",
                median_range(&b.area_px.summary, " px²")
            ),
        )?,
    );
    figures.push(
        Hist {
            file: "box_aspect.png",
            title: "Box aspect ratio (width / height)",
            x_label: "width / height",
            y_label: "boxes",
        }
        .draw(
            out,
            &b.aspect,
            format!(
                "Box shape, width over height (1 = square): {}.",
                median_range(&b.aspect.summary, "")
            ),
        )?,
    );
    figures.push(
        Hist {
            file: "box_width_rel.png",
            title: "Box width relative to image width",
            x_label: "box width / image width",
            y_label: "boxes",
        }
        .draw(
            out,
            &b.width_rel,
            format!(
                "Box widths as a fraction of the image width: {}.",
                median_range(&b.width_rel.summary, "")
            ),
        )?,
    );
    figures.push(
        Hist {
            file: "box_height_rel.png",
            title: "Box height relative to image height",
            x_label: "box height / image height",
            y_label: "boxes",
        }
        .draw(
            out,
            &b.height_rel,
            format!(
                "Box heights as a fraction of the image height: {}.",
                median_range(&b.height_rel.summary, "")
            ),
        )?,
    );
    figures.push(Hist { file: "box_area_rel.png", title: "Box area relative to image area", x_label: "box area / image area", y_label: "boxes" }.draw(out, &b.area_rel,
        format!("Box areas as a fraction of the image area (small objects are hard for detectors): {}.", median_range(&b.area_rel.summary, "")))?);

    let file = "box_centres.png";
    let title = "Box centres (normalised image coordinates)";
    let grid: Vec<Vec<f64>> =
        b.centres.iter().map(|row| row.iter().map(|&n| n as f64).collect()).collect();
    plot::heatmap(&out.join(file), title, "x / image width", "y / image height (0 = top)", &grid)?;
    let n = b.centres.len();
    let inner = |i: usize| (n / 4..n - n / 4).contains(&i);
    let central: u64 = b
        .centres
        .iter()
        .enumerate()
        .filter(|(r, _)| inner(*r))
        .flat_map(|(_, row)| row.iter().enumerate().filter(|(c, _)| inner(*c)).map(|(_, v)| *v))
        .sum();
    let total: u64 = b.centres.iter().flatten().sum();
    figures.push(Figure {
        file: file.into(),
        title: title.into(),
        caption: format!(
            "Where box centres fall in {n}×{n} cells of the normalised image; {:.0}% lie in the central half of each axis.",
            if total > 0 { 100.0 * central as f64 / total as f64 } else { 0.0 }
        ),
    });

    let file = "image_sizes.png";
    let title = "Image sizes";
    let points = |fractured: bool| -> Vec<(f64, f64)> {
        dataset
            .images
            .iter()
            .filter(|r| r.meta.is_fractured() == fractured)
            .map(|r| (f64::from(r.width), f64::from(r.height)))
            .collect()
    };
    plot::scatter(
        &out.join(file),
        title,
        "width (px)",
        "height (px)",
        &[("fractured", points(true)), ("non-fractured", points(false))],
    )?;
    let s = &stats.image_sizes;
    figures.push(Figure {
        file: file.into(),
        title: title.into(),
        caption: format!(
            "Width against height of every image, by class: {} distinct sizes{}.",
            s.distinct,
            s.most_common.first().map_or(String::new(), |(size, n)| format!(
                ", the most common {size} ({n} images)"
            ))
        ),
    });
    Ok(figures)
}

/// Draws the per-image intensity histograms into `out`.
pub fn draw_intensity_charts(
    intensity: &IntensityStats,
    out: &Path,
) -> Result<Vec<Figure>, PlotError> {
    let mut figures = Vec::new();
    let class_gap = match (intensity.mean_fractured, intensity.mean_non_fractured) {
        (Some(f), Some(n)) => {
            format!("; fractured images average {}, non-fractured {}", fmt(f), fmt(n))
        }
        _ => String::new(),
    };
    figures.push(
        Hist {
            file: "intensity_mean.png",
            title: "Mean gray value per image",
            x_label: "mean gray value (0 = black, 1 = white)",
            y_label: "images",
        }
        .draw(
            out,
            &intensity.mean,
            format!(
                "Brightness of each image: {}{class_gap}.",
                median_range(&intensity.mean.summary, "")
            ),
        )?,
    );
    figures.push(
        Hist {
            file: "intensity_std.png",
            title: "Gray-value standard deviation per image",
            x_label: "standard deviation of gray values",
            y_label: "images",
        }
        .draw(
            out,
            &intensity.std,
            format!(
                "Contrast of each image: {}; {} images are 8-bit and {} 16-bit.",
                median_range(&intensity.std.summary, ""),
                intensity.bit_depth_8,
                intensity.bit_depth_16
            ),
        )?,
    );
    Ok(figures)
}
