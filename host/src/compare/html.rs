//! `compare.html`: the comparison as one self-contained page — inline CSS, every image
//! embedded as a base64 `data:` URI, no script and no network reference — so it can be mailed
//! or opened offline.

use std::path::Path;

use anyhow::Context;
use base64::Engine;

use super::table::{HEADINGS, cells};
use super::{Comparison, TABLE_NOTES};

const STYLE: &str = "body{font-family:'DejaVu Sans',Arial,sans-serif;margin:2em;color:#222;\
max-width:1400px}table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #bbb;\
padding:4px 10px;text-align:right}th{background:#eee}td:first-child,td:nth-child(2),\
th:first-child,th:nth-child(2){text-align:left}.yes{color:#176b1d}.no{color:#a11}\
.unknown{color:#a66b00}img{max-width:100%;border:1px solid #ddd;margin:4px 0}\
.curves img{max-width:49%}p.note{font-size:90%;color:#555}";

/// Escapes text for HTML content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A PNG file as an `<img>` with a `data:` URI.
pub fn image(path: &Path, alt: &str) -> anyhow::Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
    Ok(format!("<img alt=\"{}\" src=\"data:image/png;base64,{b64}\">", escape(alt)))
}

/// The whole page.
pub fn page(c: &Comparison) -> anyhow::Result<String> {
    let mut h =
        String::from("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    h += "<title>Model comparison</title>\n";
    h += &format!("<style>{STYLE}</style>\n</head>\n<body>\n<h1>Model comparison</h1>\n");
    h += &format!(
        "<p>Dataset <code>{}</code>, split <b>{}</b>{}.</p>\n",
        escape(&c.data.display().to_string()),
        c.split,
        c.eval_split.as_ref().map_or(String::new(), |s| format!(" from {}", escape(s)))
    );

    h += "<h2>Results</h2>\n<table>\n<tr>";
    for head in HEADINGS {
        h += &format!("<th>{}</th>", escape(head));
    }
    h += "</tr>\n";
    for row in &c.rows {
        h += "<tr>";
        for cell in cells(row) {
            h += &format!("<td>{}</td>", escape(&cell));
        }
        h += "</tr>\n";
    }
    h += &format!("</table>\n<p class=\"note\">{}</p>\n", escape(TABLE_NOTES));

    h += "<h2>Fairness</h2>\n<ul>\n";
    for check in &c.fairness.checks {
        let word = check.verdict.word();
        h += &format!(
            "<li><b>{}: <span class=\"{word}\">{word}</span></b> — {}</li>\n",
            escape(check.question),
            escape(&check.detail)
        );
    }
    h += "</ul>\n";

    for r in &c.runs {
        h += &format!(
            "<h2>{}</h2>\n<p>Evaluated on {} images ({} fractured).</p>\n",
            escape(&r.name),
            r.eval_images,
            r.eval_fractured_images
        );
        h += "<h3>Learning curves</h3>\n<div class=\"curves\">\n";
        if r.curves.is_empty() {
            h += "<p>No learning curves (no curves PNG, no metrics.csv).</p>\n";
        }
        for p in &r.curves {
            h += &image(p, &format!("{} learning curves", r.name))?;
            h += "\n";
        }
        h += "</div>\n<h3>Qualitative results</h3>\n";
        for f in &r.qualitative {
            h += &format!("<h4>{}</h4>\n", escape(&f.title));
            h += &image(&f.path, &f.title)?;
            h += "\n";
        }
    }
    h += "</body>\n</html>\n";
    Ok(h)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(escape("<a href=\"x\">&'"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
    }

    #[test]
    fn images_are_data_uris() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.png");
        std::fs::write(&p, [0x89, b'P', b'N', b'G']).unwrap();
        assert_eq!(
            image(&p, "a<b").unwrap(),
            "<img alt=\"a&lt;b\" src=\"data:image/png;base64,iVBORw==\">"
        );
    }
}
