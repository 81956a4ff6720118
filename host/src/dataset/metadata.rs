//! `dataset.csv`: FracAtlas' per-image metadata table, parsed with every row checked.

use std::path::Path;

use super::loader::DatasetError;
use super::record::ImageMeta;

/// A metadata row and the 1-based line it came from (for error messages).
#[derive(Debug, Clone)]
pub struct MetaRow {
    pub line: usize,
    pub meta: ImageMeta,
}

/// Reads and validates `dataset.csv`: the header must hold FracAtlas' columns; flags are 0/1;
/// `image_id` is a plain file name (no folders: nothing in a CSV may point outside the data);
/// ids are unique.
pub fn read_metadata(path: &Path) -> Result<Vec<MetaRow>, DatasetError> {
    let malformed = |line: usize, message: String| DatasetError::Malformed {
        path: path.to_path_buf(),
        line,
        message,
    };
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_path(path)
        .map_err(|e| csv_error(path, e))?;
    let headers = reader.headers().map_err(|e| csv_error(path, e))?.clone();
    let missing: Vec<&str> =
        ImageMeta::COLUMNS.iter().copied().filter(|c| !headers.iter().any(|h| h == *c)).collect();
    if !missing.is_empty() {
        return Err(malformed(1, format!("missing column(s): {}", missing.join(", "))));
    }
    let mut rows = Vec::new();
    let mut seen = std::collections::HashMap::new();
    for record in reader.records() {
        let record = record.map_err(|e| csv_error(path, e))?;
        let line = record.position().map_or(0, |p| p.line() as usize);
        let meta: ImageMeta =
            record.deserialize(Some(&headers)).map_err(|e| malformed(line, e.to_string()))?;
        validate(&meta).map_err(|m| malformed(line, m))?;
        if let Some(first) = seen.insert(meta.image_id.clone(), line) {
            return Err(malformed(
                line,
                format!("image_id {} already listed on line {first}", meta.image_id),
            ));
        }
        rows.push(MetaRow { line, meta });
    }
    Ok(rows)
}

fn validate(meta: &ImageMeta) -> Result<(), String> {
    let id = &meta.image_id;
    let plain = !id.is_empty()
        && !id.contains(['/', '\\', '\0'])
        && id != "."
        && id != ".."
        && !id.starts_with('.');
    if !plain {
        return Err(format!("image_id {id:?} is not a plain file name"));
    }
    let flags = [
        ("hand", meta.hand),
        ("leg", meta.leg),
        ("hip", meta.hip),
        ("shoulder", meta.shoulder),
        ("mixed", meta.mixed),
        ("hardware", meta.hardware),
        ("multiscan", meta.multiscan),
        ("fractured", meta.fractured),
        ("frontal", meta.frontal),
        ("lateral", meta.lateral),
        ("oblique", meta.oblique),
    ];
    for (name, v) in flags {
        if v > 1 {
            return Err(format!("column {name} must be 0 or 1, found {v}"));
        }
    }
    Ok(())
}

fn csv_error(path: &Path, e: csv::Error) -> DatasetError {
    let line = e.position().map_or(0, |p| p.line() as usize);
    match e.into_kind() {
        csv::ErrorKind::Io(source) => DatasetError::Io { path: path.to_path_buf(), source },
        kind => {
            DatasetError::Malformed { path: path.to_path_buf(), line, message: format!("{kind:?}") }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const HEADER: &str = "image_id,hand,leg,hip,shoulder,mixed,hardware,multiscan,fractured,fracture_count,frontal,lateral,oblique\n";

    fn parse(body: &str) -> Result<Vec<MetaRow>, DatasetError> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("dataset.csv");
        std::fs::write(&p, body).unwrap();
        read_metadata(&p)
    }

    #[test]
    fn reads_rows_with_line_numbers() {
        let rows = parse(&format!(
            "{HEADER}IMG0000000.jpg,1,0,0,0,0,0,0,1,2,1,0,0\nIMG0000001.jpg,0,1,0,0,0,1,0,0,0,0,1,0\n"
        ))
        .unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].line, 3);
        assert_eq!(rows[0].meta.fracture_count, 2);
        assert_eq!(rows[1].meta.hardware, 1);
    }

    #[test]
    fn errors_name_file_and_line() {
        let err = parse(&format!(
            "{HEADER}IMG0.jpg,1,0,0,0,0,0,0,1,1,1,0,0\nIMG1.jpg,x,0,0,0,0,0,0,1,1,1,0,0\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("dataset.csv:3"), "{err}");
        let err =
            parse(&format!("{HEADER}IMG0.jpg,2,0,0,0,0,0,0,1,1,1,0,0\n")).unwrap_err().to_string();
        assert!(err.contains(":2:") && err.contains("hand"), "{err}");
        let err = parse("image_id,hand\nIMG0.jpg,1\n").unwrap_err().to_string();
        assert!(err.contains("missing column") && err.contains("fracture_count"), "{err}");
        let err = parse(&format!("{HEADER}../etc/passwd,1,0,0,0,0,0,0,1,1,1,0,0\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a plain file name"), "{err}");
        let err = parse(&format!(
            "{HEADER}A.jpg,1,0,0,0,0,0,0,1,1,1,0,0\nA.jpg,1,0,0,0,0,0,0,1,1,1,0,0\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("already listed on line 2"), "{err}");
        let err = parse(&format!("{HEADER}A.jpg,1,0,0\n")).unwrap_err().to_string();
        assert!(err.contains("dataset.csv:2"), "{err}");
    }
}
