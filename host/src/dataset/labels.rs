//! YOLO label files (`class cx cy w h`, normalised to the image size), read with every line
//! checked and converted to pixel boxes.

use std::path::Path;

use super::loader::DatasetError;
use super::record::PixelBox;

/// Slack for normalised coordinates written with rounding (FracAtlas has values like 1.0000001).
const EDGE_TOLERANCE: f32 = 1e-3;

/// Parses label text for an image of `width`×`height`; `path` only names the file in errors.
pub fn parse_yolo(
    text: &str,
    width: u32,
    height: u32,
    path: &Path,
) -> Result<Vec<PixelBox>, DatasetError> {
    let mut boxes = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let malformed =
            |message: String| DatasetError::Malformed { path: path.to_path_buf(), line, message };
        let raw = raw.trim();
        if raw.is_empty() {
            continue;
        }
        let fields: Vec<&str> = raw.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(malformed(format!(
                "expected 5 fields `class cx cy w h`, found {}",
                fields.len()
            )));
        }
        let class: u32 = fields[0].parse().map_err(|_| {
            malformed(format!("class {:?} is not a non-negative integer", fields[0]))
        })?;
        if class != 0 {
            return Err(malformed(format!(
                "class {class}: this dataset has one class (0 = fracture)"
            )));
        }
        let mut v = [0f32; 4];
        for (k, (slot, name)) in v.iter_mut().zip(["cx", "cy", "w", "h"]).enumerate() {
            let s = fields[k + 1];
            *slot = s
                .parse::<f32>()
                .ok()
                .filter(|x| x.is_finite())
                .ok_or_else(|| malformed(format!("{name} {s:?} is not a number")))?;
        }
        let [cx, cy, w, h] = v;
        if !(w > 0.0 && h > 0.0) {
            return Err(malformed(format!("box has no area (w {w}, h {h})")));
        }
        let lo = -EDGE_TOLERANCE;
        let hi = 1.0 + EDGE_TOLERANCE;
        let corners = [cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0];
        if corners.iter().any(|c| *c < lo || *c > hi) {
            return Err(malformed(format!("box {cx} {cy} {w} {h} lies outside the image")));
        }
        let (fw, fh) = (width as f32, height as f32);
        boxes.push(PixelBox {
            x1: (corners[0] * fw).clamp(0.0, fw),
            y1: (corners[1] * fh).clamp(0.0, fh),
            x2: (corners[2] * fw).clamp(0.0, fw),
            y2: (corners[3] * fh).clamp(0.0, fh),
        });
    }
    Ok(boxes)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn parse(text: &str) -> Result<Vec<PixelBox>, DatasetError> {
        parse_yolo(text, 400, 200, Path::new("L/IMG1.txt"))
    }

    #[test]
    fn converts_to_pixels() {
        let b = parse("0 0.5 0.5 0.25 0.5\n\n").unwrap();
        assert_eq!(b, vec![PixelBox { x1: 150.0, y1: 50.0, x2: 250.0, y2: 150.0 }]);
        assert!(parse("").unwrap().is_empty());
    }

    #[test]
    fn bad_lines_name_file_and_line() {
        for (text, needle) in [
            ("0 0.5 0.5 0.1\n", "expected 5 fields"),
            ("0 0.5 0.5 0.1 0.1\nx 0.5 0.5 0.1 0.1\n", "L/IMG1.txt:2"),
            ("0 0.5 nan 0.1 0.1\n", "not a number"),
            ("0 0.5 0.5 0 0.1\n", "no area"),
            ("0 0.95 0.5 0.2 0.1\n", "outside the image"),
            ("3 0.5 0.5 0.1 0.1\n", "one class"),
            ("-1 0.5 0.5 0.1 0.1\n", "not a non-negative integer"),
        ] {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(needle), "{text:?}: {err}");
        }
    }
}
