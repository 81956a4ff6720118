//! The outcome of a study: trials ranked (by the highest rung reached, then the metric there,
//! best first), printed as a table, written as `trials.csv`, and the winner's full
//! configuration as `best.toml` for `fracture train --hyp`.

use std::path::{Path, PathBuf};

use anyhow::Context;

use super::asha::JobState;
use super::store::{JobRecord, TrialRow};
use super::study::StudySpec;

/// One trial's standing.
#[derive(Debug, Clone, PartialEq)]
pub struct Ranked {
    pub rank: usize,
    pub trial: usize,
    /// `complete`, `stopped` (not promoted), `waiting`, `running` or `failed`.
    pub state: String,
    /// Highest rung finished, and its epochs.
    pub rung: Option<usize>,
    pub epochs: usize,
    /// The metric at that rung.
    pub metric: Option<f64>,
    pub params: serde_json::Value,
    pub hyp: String,
}

/// Ranks every trial: those that finished a rung first (higher rung first, then better metric,
/// then lower trial number), then those that did not.
pub fn rank(spec: &StudySpec, trials: &[TrialRow], jobs: &[JobRecord]) -> Vec<Ranked> {
    let ladder = spec.ladder();
    let running = jobs.iter().any(|j| j.row.state == JobState::Running);
    let complete = !running && trials.len() >= spec.trials;
    let mut out: Vec<Ranked> = trials
        .iter()
        .map(|t| {
            let best = jobs
                .iter()
                .filter(|j| j.row.trial == t.id && j.row.state == JobState::Done)
                .max_by_key(|j| j.row.rung);
            let state = match t.state.as_str() {
                "waiting" if complete => "stopped".to_string(),
                s => s.to_string(),
            };
            Ranked {
                rank: 0,
                trial: t.id,
                state,
                rung: best.map(|j| j.row.rung),
                epochs: best.map_or(0, |j| j.epochs),
                metric: best.and_then(|j| j.row.metric),
                params: t.params.clone(),
                hyp: t.hyp.clone(),
            }
        })
        .collect();
    out.sort_by(|a, b| {
        let key = |r: &Ranked| (r.rung.map_or(-1, |x| x as i64), ladder.score(r.metric));
        let (ka, kb) = (key(a), key(b));
        kb.0.cmp(&ka.0).then(kb.1.total_cmp(&ka.1)).then(a.trial.cmp(&b.trial))
    });
    for (i, r) in out.iter_mut().enumerate() {
        r.rank = i + 1;
    }
    out
}

/// A number as a table shows it.
fn show(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Number(n) if n.is_f64() => {
            let x = n.as_f64().unwrap_or(f64::NAN);
            if x != 0.0 && (x.abs() < 0.01 || x.abs() >= 1e4) {
                format!("{x:.3e}")
            } else {
                format!("{x:.4}")
            }
        }
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn param_keys(spec: &StudySpec) -> Vec<String> {
    spec.space.keys().into_iter().map(String::from).collect()
}

/// The ranked table (what `fracture tune` prints).
pub fn table(spec: &StudySpec, ranked: &[Ranked]) -> String {
    let keys = param_keys(spec);
    let mut rows: Vec<Vec<String>> = vec![
        ["rank", "trial", "state", "rung", "epochs", spec.metric.name()]
            .iter()
            .map(|s| s.to_string())
            .chain(keys.iter().cloned())
            .collect(),
    ];
    for r in ranked {
        let mut row = vec![
            r.rank.to_string(),
            r.trial.to_string(),
            r.state.clone(),
            r.rung.map_or("-".into(), |x| x.to_string()),
            r.epochs.to_string(),
            r.metric.map_or("-".into(), |m| format!("{m:.5}")),
        ];
        row.extend(keys.iter().map(|k| r.params.get(k).map_or("-".into(), show)));
        rows.push(row);
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut text = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(c, (s, w))| if c == 2 { format!("{s:<w$}") } else { format!("{s:>w$}") })
            .collect();
        text.push_str(cells.join("  ").trim_end());
        text.push('\n');
    }
    text
}

/// `trials.csv`: the table's columns, parameters at full precision.
pub fn trials_csv(spec: &StudySpec, ranked: &[Ranked]) -> anyhow::Result<String> {
    let keys = param_keys(spec);
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header: Vec<String> =
        ["rank", "trial", "state", "rung", "epochs", spec.metric.name()].map(String::from).to_vec();
    header.extend(keys.iter().cloned());
    w.write_record(&header)?;
    for r in ranked {
        let mut row = vec![
            r.rank.to_string(),
            r.trial.to_string(),
            r.state.clone(),
            r.rung.map_or(String::new(), |x| x.to_string()),
            r.epochs.to_string(),
            r.metric.map_or(String::new(), |m| m.to_string()),
        ];
        row.extend(keys.iter().map(|k| match r.params.get(k) {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(v) => v.to_string(),
            None => String::new(),
        }));
        w.write_record(&row)?;
    }
    Ok(String::from_utf8(w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?)?)
}

/// The winner's configuration with a comment saying where it came from.
pub fn best_toml(spec: &StudySpec, best: &Ranked) -> String {
    let values: Vec<String> = spec
        .space
        .keys()
        .iter()
        .map(|k| format!("{k} = {}", best.params.get(*k).map_or("-".into(), show)))
        .collect();
    format!(
        "# fracture tune: best of study {:?} ({} trials, {}): trial {}, {} {} after {} epochs\n\
         # searched: {}\n\
         # use: fracture train --arch {} --hyp best.toml ...\n{}",
        spec.name,
        spec.trials,
        spec.arch,
        best.trial,
        spec.metric.name(),
        best.metric.map_or("-".into(), |m| format!("{m:.5}")),
        best.epochs,
        values.join(", "),
        spec.arch,
        best.hyp
    )
}

/// Writes `trials.csv` and, when a trial finished a rung, `best.toml` into `dir`; returns the
/// path of `best.toml` if written.
pub fn write(dir: &Path, spec: &StudySpec, ranked: &[Ranked]) -> anyhow::Result<Option<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let csv = dir.join("trials.csv");
    std::fs::write(&csv, trials_csv(spec, ranked)?)
        .with_context(|| format!("writing {}", csv.display()))?;
    let Some(best) = ranked.first().filter(|r| r.rung.is_some()) else {
        return Ok(None);
    };
    let path = dir.join("best.toml");
    std::fs::write(&path, best_toml(spec, best))
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(Some(path))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::train::config::TrainConfig;
    use crate::tune::asha::JobRow;
    use crate::tune::space::Space;
    use crate::tune::study::{Metric, Partitions};

    fn spec(metric: Metric) -> StudySpec {
        StudySpec {
            name: "s".into(),
            arch: "yolo11n".into(),
            space: Space::from_toml_str("[lr0]\nlow = 1e-4\nhigh = 1e-2\n").unwrap(),
            base: TrainConfig { epochs: 3, ..Default::default() },
            seed: 0,
            trials: 4,
            eta: 3,
            rungs: vec![1, 3],
            metric,
            partitions: Partitions { pool: vec![], val: vec![vec![]], test: vec![], kfold: false },
        }
    }

    fn trial(id: usize, state: &str) -> TrialRow {
        TrialRow {
            id,
            params: serde_json::json!({"lr0": 0.001 * (id + 1) as f64}),
            hyp: format!("lr0 = {}\n", 0.001 * (id + 1) as f64),
            state: state.into(),
        }
    }

    fn job(trial: usize, rung: usize, state: JobState, metric: Option<f64>) -> JobRecord {
        JobRecord {
            row: JobRow {
                trial,
                rung,
                state,
                worker: "w".into(),
                lease_until: 0.0,
                attempts: 1,
                metric,
            },
            epochs: [1, 3][rung],
            result: None,
            error: None,
        }
    }

    #[test]
    fn ranks_by_rung_then_metric_and_writes_files() {
        let trials = vec![
            trial(0, "waiting"),
            trial(1, "complete"),
            trial(2, "waiting"),
            trial(3, "failed"),
        ];
        let jobs = vec![
            job(0, 0, JobState::Done, Some(0.4)),
            job(1, 0, JobState::Done, Some(0.3)),
            job(1, 1, JobState::Done, Some(0.2)),
            job(2, 0, JobState::Done, Some(0.5)),
            job(3, 0, JobState::Failed, None),
        ];
        let r = rank(&spec(Metric::Fitness), &trials, &jobs);
        let order: Vec<usize> = r.iter().map(|x| x.trial).collect();
        // trial 1 reached the top rung; then rung 0 by metric; the failure last
        assert_eq!(order, vec![1, 2, 0, 3]);
        assert_eq!((r[0].rank, r[0].epochs, r[0].metric), (1, 3, Some(0.2)));
        assert_eq!(r[1].state, "stopped");
        // lower is better
        let r = rank(&spec(Metric::ValLoss), &trials, &jobs);
        let order: Vec<usize> = r.iter().map(|x| x.trial).collect();
        assert_eq!(order, vec![1, 0, 2, 3]);

        let s = spec(Metric::Fitness);
        let r = rank(&s, &trials, &jobs);
        let t = table(&s, &r);
        let lines: Vec<&str> = t.lines().collect();
        assert!(
            lines[0].contains("rank") && lines[0].contains("fitness") && lines[0].contains("lr0")
        );
        assert!(lines[1].trim_start().starts_with("1      1  complete"), "{t}");
        let dir = tempfile::tempdir().unwrap();
        let best = write(dir.path(), &s, &r).unwrap().unwrap();
        let text = std::fs::read_to_string(&best).unwrap();
        assert!(text.starts_with("# fracture tune"), "{text}");
        let cfg: TrainConfig = toml::from_str(&text).unwrap();
        assert_eq!(cfg.lr0, 0.002);
        let csv = std::fs::read_to_string(dir.path().join("trials.csv")).unwrap();
        assert!(
            csv.starts_with(
                "rank,trial,state,rung,epochs,fitness,lr0\n1,1,complete,1,3,0.2,0.002\n"
            ),
            "{csv}"
        );
    }
}
