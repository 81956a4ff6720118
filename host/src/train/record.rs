//! What a training run leaves behind besides weights: `metrics.csv` (one row per epoch, with
//! ultralytics' column names so existing tooling reads it) and the learning-curve PNGs.

use std::io::Write;
use std::path::Path;

use crate::plot;

/// One epoch's numbers.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct EpochRecord {
    pub epoch: usize,
    /// Loss components in the architecture's order (YOLO: box, cls, dfl).
    pub train_losses: Vec<f64>,
    pub val_losses: Vec<f64>,
    pub precision: f64,
    pub recall: f64,
    pub map50: f64,
    pub map50_95: f64,
    pub lr: f64,
    /// Wall time of the whole epoch (validation and checkpoints included).
    pub seconds: f64,
    /// Wall time of the training steps alone (data, forward, loss, backward, updates).
    #[serde(default)]
    pub train_seconds: f64,
}

/// Appends to `metrics.csv` (writing the header first when the file is new).
pub fn append_csv(path: &Path, loss_names: &[&str], r: &EpochRecord) -> std::io::Result<()> {
    let new = !path.exists();
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    if new {
        let mut cols = vec!["epoch".to_string()];
        cols.extend(loss_names.iter().map(|n| format!("train/{n}")));
        cols.extend(
            [
                "metrics/precision(B)",
                "metrics/recall(B)",
                "metrics/mAP50(B)",
                "metrics/mAP50-95(B)",
            ]
            .map(String::from),
        );
        cols.extend(loss_names.iter().map(|n| format!("val/{n}")));
        cols.extend(["lr/pg0", "time", "train_time"].map(String::from));
        writeln!(f, "{}", cols.join(","))?;
    }
    let mut vals = vec![r.epoch.to_string()];
    vals.extend(r.train_losses.iter().map(|v| format!("{v:.5}")));
    vals.extend([r.precision, r.recall, r.map50, r.map50_95].map(|v| format!("{v:.5}")));
    vals.extend(r.val_losses.iter().map(|v| format!("{v:.5}")));
    vals.extend([
        format!("{:.6}", r.lr),
        format!("{:.1}", r.seconds),
        format!("{:.2}", r.train_seconds),
    ]);
    writeln!(f, "{}", vals.join(","))?;
    f.sync_all()
}

/// `curves_losses.png` (train and val per component) and `curves_metrics.png`
/// (P, R, mAP50, mAP50-95), like the study's figures.
pub fn plot_curves(
    dir: &Path,
    loss_names: &[&str],
    history: &[EpochRecord],
) -> Result<(), plot::PlotError> {
    let ep = |r: &EpochRecord| r.epoch as f64;
    let mut losses: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    for (i, n) in loss_names.iter().enumerate() {
        losses.push((
            format!("train {n}"),
            history.iter().filter_map(|r| r.train_losses.get(i).map(|v| (ep(r), *v))).collect(),
        ));
        losses.push((
            format!("val {n}"),
            history.iter().filter_map(|r| r.val_losses.get(i).map(|v| (ep(r), *v))).collect(),
        ));
    }
    let series: Vec<(&str, Vec<(f64, f64)>)> =
        losses.iter().map(|(n, v)| (n.as_str(), v.clone())).collect();
    plot::line_chart(&dir.join("curves_losses.png"), "Losses", "epoch", "loss", &series)?;
    let metric =
        |f: fn(&EpochRecord) -> f64| history.iter().map(|r| (ep(r), f(r))).collect::<Vec<_>>();
    plot::line_chart(
        &dir.join("curves_metrics.png"),
        "Validation metrics",
        "epoch",
        "value",
        &[
            ("precision", metric(|r| r.precision)),
            ("recall", metric(|r| r.recall)),
            ("mAP50", metric(|r| r.map50)),
            ("mAP50-95", metric(|r| r.map50_95)),
        ],
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn csv_has_ultralytics_columns_and_one_row_per_epoch() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("metrics.csv");
        let names = ["box_loss", "cls_loss", "dfl_loss"];
        for epoch in 1..=3 {
            let r = EpochRecord {
                epoch,
                train_losses: vec![1.0, 2.0, 3.0],
                val_losses: vec![1.5, 2.5, 3.5],
                map50: 0.1 * epoch as f64,
                ..Default::default()
            };
            append_csv(&p, &names, &r).unwrap();
        }
        let text = std::fs::read_to_string(&p).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(lines[0].starts_with(
            "epoch,train/box_loss,train/cls_loss,train/dfl_loss,metrics/precision(B)"
        ));
        assert!(lines[3].starts_with("3,1.00000"));
        let history: Vec<EpochRecord> = (1..=3)
            .map(|e| EpochRecord {
                epoch: e,
                train_losses: vec![1.0 / e as f64; 3],
                val_losses: vec![1.0; 3],
                ..Default::default()
            })
            .collect();
        plot_curves(dir.path(), &names, &history).unwrap();
        image::open(dir.path().join("curves_losses.png")).unwrap();
        image::open(dir.path().join("curves_metrics.png")).unwrap();
    }
}
