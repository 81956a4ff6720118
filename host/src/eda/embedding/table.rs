//! `embeddings.csv`: one row per embedded image with its labels and every coordinate the
//! analysis gave it, for plotting or joining elsewhere.

use std::path::Path;

use serde::Serialize;

/// One row of `embeddings.csv` (the header is these field names).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    pub image_id: String,
    /// The split stratum: hand, leg, hip, shoulder, mixed or unknown.
    pub body_part: String,
    /// 1 fractured, 0 not.
    pub fractured: u8,
    pub pca1: f64,
    pub pca2: f64,
    pub tsne1: f64,
    pub tsne2: f64,
    /// Isolation Forest `s(x)` in (0, 1); higher is more outlying.
    pub anomaly_score: f64,
}

/// Writes `rows` to `path` with a header line.
pub fn write(path: &Path, rows: &[Row]) -> Result<(), csv::Error> {
    let mut w = csv::Writer::from_path(path)?;
    for r in rows {
        w.serialize(r)?;
    }
    w.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_and_rows() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("e.csv");
        let row = Row {
            image_id: "IMG1.jpg".into(),
            body_part: "hand".into(),
            fractured: 1,
            pca1: 0.5,
            pca2: -1.0,
            tsne1: 2.0,
            tsne2: 3.25,
            anomaly_score: 0.61,
        };
        write(&path, &[row])?;
        let text = std::fs::read_to_string(&path)?;
        assert_eq!(
            text,
            "image_id,body_part,fractured,pca1,pca2,tsne1,tsne2,anomaly_score\nIMG1.jpg,hand,1,0.5,-1.0,2.0,3.25,0.61\n"
        );
        Ok(())
    }
}
