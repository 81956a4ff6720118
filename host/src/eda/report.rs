//! `report.md`: the EDA as Markdown — a summary table of the numbers, the tables by class, box
//! geometry and integrity issues, and every chart embedded with one sentence on what it shows.

use std::fmt::Write as _;

use super::EdaStats;
use super::charts::Figure;
use super::embedding::EmbeddingStats;
use super::stats::{ByClass, Summary, percent};
use crate::plot::tick;

/// Integrity issues listed one per row before the table is cut short (all are in `eda.json`).
pub const MAX_ISSUE_ROWS: usize = 100;

/// Characters that would break a Markdown table cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

fn count_pct(n: usize, total: usize) -> String {
    format!("{n} ({:.1}%)", percent(n, total))
}

fn min_med_max(s: &Option<Summary>) -> String {
    s.as_ref()
        .map_or("–".into(), |s| format!("{} / {} / {}", tick(s.min), tick(s.median), tick(s.max)))
}

fn by_class_table(md: &mut String, first: &str, rows: &[&ByClass], fractured: usize, non: usize) {
    let _ = writeln!(
        md,
        "| {first} | fractured | % of fractured | non-fractured | % of non-fractured |"
    );
    let _ = writeln!(md, "|---|---:|---:|---:|---:|");
    for r in rows {
        let _ = writeln!(
            md,
            "| {} | {} | {:.1}% | {} | {:.1}% |",
            r.name,
            r.fractured,
            percent(r.fractured, fractured),
            r.non_fractured,
            percent(r.non_fractured, non)
        );
    }
    md.push('\n');
}

/// Renders the report. `figures` are linked by file name (they sit next to `report.md`).
pub fn render(stats: &EdaStats, figures: &[Figure]) -> String {
    let d = &stats.dataset;
    let c = &d.classes;
    let mut md = String::new();
    let _ = writeln!(md, "# Exploratory data analysis\n");
    let _ = writeln!(
        md,
        "Dataset `{}`, written by `fracture eda`. Every number below is also in `eda.json`.\n",
        stats.root
    );

    let _ = writeln!(md, "## Summary\n");
    let _ = writeln!(md, "| quantity | value |\n|---|---|");
    let mut row = |k: &str, v: String| {
        let _ = writeln!(md, "| {k} | {} |", cell(&v));
    };
    row("images", c.images.to_string());
    row("fractured", count_pct(c.fractured, c.images));
    row("non-fractured", count_pct(c.non_fractured, c.images));
    row("fracture boxes", c.boxes.to_string());
    row(
        "boxes per fractured image (mean)",
        if c.fractured > 0 {
            format!("{:.2}", c.boxes as f64 / c.fractured as f64)
        } else {
            "–".into()
        },
    );
    row("non-fractured images with boxes", d.non_fractured_with_boxes.to_string());
    row(
        "images with no body-part flag",
        (d.no_body_part.fractured + d.no_body_part.non_fractured).to_string(),
    );
    row("image width, px (min / median / max)", min_med_max(&d.image_sizes.width));
    row("image height, px (min / median / max)", min_med_max(&d.image_sizes.height));
    row("distinct image sizes", d.image_sizes.distinct.to_string());
    row("box width, px (min / median / max)", min_med_max(&d.boxes.width_px.summary));
    row("box height, px (min / median / max)", min_med_max(&d.boxes.height_px.summary));
    row("box area / image area (min / median / max)", min_med_max(&d.boxes.area_rel.summary));
    match &stats.intensity {
        Some(i) => {
            row("8-bit / 16-bit images", format!("{} / {}", i.bit_depth_8, i.bit_depth_16));
            row("unreadable images", i.unreadable.len().to_string());
            row("mean gray value per image (min / median / max)", min_med_max(&i.mean.summary));
            row("gray-value std per image (min / median / max)", min_med_max(&i.std.summary));
        }
        None => row("pixel statistics", "not computed".into()),
    }
    let issues = &d.integrity;
    row("integrity issues", issues.rows.len().to_string());
    row(
        "duplicate groups (redundant copies)",
        format!(
            "{} ({})",
            issues.by_kind.get("duplicate").copied().unwrap_or(0),
            issues.redundant_copies
        ),
    );
    md.push('\n');

    let _ = writeln!(md, "## Body parts and metadata by class\n");
    let _ = writeln!(
        md,
        "Flags from `dataset.csv`; an image may carry several, so columns need not add up.\n"
    );
    let mut parts: Vec<&ByClass> = d.body_parts.iter().collect();
    parts.push(&d.no_body_part);
    by_class_table(&mut md, "body part", &parts, c.fractured, c.non_fractured);
    let flags: Vec<&ByClass> = d.flags.iter().collect();
    by_class_table(&mut md, "flag", &flags, c.fractured, c.non_fractured);

    let _ = writeln!(md, "## Box geometry\n");
    let _ = writeln!(md, "| quantity | boxes | min | 5% | median | mean | 95% | max |");
    let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|");
    let b = &d.boxes;
    for (name, dist) in [
        ("width, px", &b.width_px),
        ("height, px", &b.height_px),
        ("area, px²", &b.area_px),
        ("aspect (w / h)", &b.aspect),
        ("width / image width", &b.width_rel),
        ("height / image height", &b.height_rel),
        ("area / image area", &b.area_rel),
    ] {
        match &dist.summary {
            Some(s) => {
                let _ = writeln!(
                    md,
                    "| {name} | {} | {} | {} | {} | {} | {} | {} |",
                    s.count,
                    tick(s.min),
                    tick(s.p5),
                    tick(s.median),
                    tick(s.mean),
                    tick(s.p95),
                    tick(s.max)
                );
            }
            None => {
                let _ = writeln!(md, "| {name} | 0 | – | – | – | – | – | – |");
            }
        }
    }
    md.push('\n');

    let _ = writeln!(md, "## Integrity issues\n");
    if issues.rows.is_empty() {
        let _ =
            writeln!(md, "None found: no duplicate files, and folders, flags and labels agree.\n");
    } else {
        let _ = writeln!(md, "| kind | count |\n|---|---:|");
        for (kind, n) in &issues.by_kind {
            let _ = writeln!(md, "| {kind} | {n} |");
        }
        md.push('\n');
        let _ = writeln!(md, "| # | kind | images | detail |\n|---:|---|---|---|");
        for (k, r) in issues.rows.iter().take(MAX_ISSUE_ROWS).enumerate() {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} |",
                k + 1,
                r.kind,
                cell(&r.images.join(", ")),
                cell(&r.detail)
            );
        }
        if issues.rows.len() > MAX_ISSUE_ROWS {
            let _ = writeln!(
                md,
                "\n… and {} more (all are in `eda.json`).",
                issues.rows.len() - MAX_ISSUE_ROWS
            );
        }
        md.push('\n');
    }
    if let Some(i) = &stats.intensity
        && !i.unreadable.is_empty()
    {
        let _ = writeln!(md, "### Unreadable images\n\n| image | error |\n|---|---|");
        for u in i.unreadable.iter().take(MAX_ISSUE_ROWS) {
            let _ = writeln!(md, "| {} | {} |", cell(&u.image_id), cell(&u.error));
        }
        md.push('\n');
    }

    if let Some(e) = &stats.embedding {
        embedding_section(&mut md, e);
    }

    let _ = writeln!(md, "## Figures\n");
    for f in figures {
        let _ = writeln!(md, "### {}\n\n![{}]({})\n\n{}\n", f.title, f.title, f.file, f.caption);
    }
    md
}

/// The embedding analysis: model, PCA and t-SNE numbers, and the most outlying images.
fn embedding_section(md: &mut String, e: &EmbeddingStats) {
    let _ = writeln!(md, "## Embeddings\n");
    let _ = writeln!(
        md,
        "Per-image features of `{}` ({}, average-pooled): PCA, t-SNE and Isolation Forest; every coordinate is in `{}`.\n",
        cell(&e.weights),
        e.layer,
        e.csv
    );
    let _ = writeln!(md, "| quantity | value |\n|---|---|");
    let ratio = |k: usize| e.pca_explained_variance_ratio.get(k).map_or(0.0, |r| 100.0 * r);
    let rows = [
        ("model", e.arch.clone()),
        ("images embedded", e.images.to_string()),
        ("unreadable images", e.unreadable.len().to_string()),
        ("dimensions", e.dimensions.to_string()),
        ("variance explained by PC1 / PC2", format!("{:.1}% / {:.1}%", ratio(0), ratio(1))),
        (
            "t-SNE perplexity / iterations / KL divergence",
            format!(
                "{} / {} / {:.3}",
                tick(e.tsne_perplexity),
                e.tsne_iterations,
                e.tsne_kl_divergence
            ),
        ),
        (
            "Isolation Forest trees / subsample / seed",
            format!("{} / {} / {}", e.isolation_forest_trees, e.isolation_forest_subsample, e.seed),
        ),
    ];
    for (k, v) in rows {
        let _ = writeln!(md, "| {k} | {} |", cell(&v));
    }
    md.push('\n');
    if !e.outliers.is_empty() {
        let _ = writeln!(md, "| rank | image | body part | fractured | anomaly score |");
        let _ = writeln!(md, "|---:|---|---|---|---:|");
        for (k, o) in e.outliers.iter().enumerate() {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {:.3} |",
                k + 1,
                cell(&o.image_id),
                o.body_part,
                if o.fractured { "yes" } else { "no" },
                o.score
            );
        }
        md.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eda::stats::DatasetStats;
    use crate::eda::stats::tests::small_dataset;

    #[test]
    fn report_has_tables_and_figures() {
        let ds = small_dataset();
        let stats = EdaStats {
            root: "/data".into(),
            dataset: DatasetStats::compute(&ds),
            intensity: None,
            example_grid: vec![],
            figures: vec![],
            embedding: None,
        };
        let figures = vec![Figure {
            file: "a.png".into(),
            title: "A | b".into(),
            caption: "Shows a.".into(),
        }];
        let md = render(&stats, &figures);
        assert!(md.contains("| fractured | 2 (50.0%) |"));
        assert!(md.contains("| hand | 1 | 50.0% | 1 | 50.0% |"));
        assert!(md.contains("| duplicate | 1 |"));
        assert!(md.contains("IMG1, IMG3"));
        assert!(md.contains("![A | b](a.png)\n\nShows a."));
    }
}
