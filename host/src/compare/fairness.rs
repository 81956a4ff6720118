//! Whether the comparison is fair, four questions answered from what the run folders record:
//! same split (the `split.json` lists, and their SHA-256), same epoch budget (`hyp.toml`,
//! `metrics.csv`), same tuning budget (only a `fracture tune` trial folder records tuning, so
//! mostly "unknown") and same image size (the long side the network sees).

use serde::Serialize;

use super::run::RunInfo;

/// An answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Yes,
    No,
    Unknown,
}

impl Verdict {
    pub fn word(self) -> &'static str {
        match self {
            Verdict::Yes => "yes",
            Verdict::No => "no",
            Verdict::Unknown => "unknown",
        }
    }
}

/// One question's answer and why.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub question: &'static str,
    pub verdict: Verdict,
    pub detail: String,
}

/// The four answers.
#[derive(Debug, Clone, Serialize)]
pub struct Fairness {
    pub checks: Vec<Check>,
}

/// Same answer for every run (`Yes`), some differ (`No`), or some unknown (`Unknown`).
fn all_equal<T: PartialEq>(values: &[Option<T>]) -> Verdict {
    if values.iter().any(Option::is_none) {
        return Verdict::Unknown;
    }
    if values.windows(2).all(|w| w[0] == w[1]) { Verdict::Yes } else { Verdict::No }
}

fn epochs(n: usize) -> String {
    if n == 1 { "1 epoch".into() } else { format!("{n} epochs") }
}

fn per_run(runs: &[RunInfo], f: impl Fn(&RunInfo) -> String) -> String {
    runs.iter().map(|r| format!("{}: {}", r.name, f(r))).collect::<Vec<_>>().join("; ")
}

/// Answers the four questions for `runs`, evaluated on `eval_split` (a description of the
/// split every run was scored on, or `None` when they were scored on different ones).
pub fn assess(runs: &[RunInfo], eval_split: Option<&str>) -> Fairness {
    let split = {
        let lists: Vec<Option<_>> =
            runs.iter().map(|r| r.split.as_ref().map(|s| (&s.train, &s.val, &s.test))).collect();
        let mut verdict = all_equal(&lists);
        if eval_split.is_none() && verdict == Verdict::Yes {
            verdict = Verdict::No;
        }
        let hashes = per_run(runs, |r| {
            r.split.as_ref().map_or("no split.json".into(), |s| {
                format!(
                    "split.json sha256 {}… ({} train / {} val / {} test)",
                    &s.sha256[..12.min(s.sha256.len())],
                    s.train.len(),
                    s.val.len(),
                    s.test.len()
                )
            })
        });
        let scored = match eval_split {
            Some(s) => format!("all scored on {s}"),
            None => "each scored on its own split".into(),
        };
        let detail = match verdict {
            Verdict::Yes => format!("identical train/val/test image sets; {scored} ({hashes})"),
            Verdict::No => format!("the image sets differ; {scored} ({hashes})"),
            Verdict::Unknown => format!("a run keeps no split.json; {scored} ({hashes})"),
        };
        Check { question: "same split", verdict, detail }
    };

    let epochs = {
        let budgets: Vec<Option<usize>> = runs.iter().map(RunInfo::epoch_budget).collect();
        let trained: Vec<Option<usize>> = runs.iter().map(|r| r.epochs_trained).collect();
        let verdict = match (all_equal(&budgets), all_equal(&trained)) {
            (Verdict::Yes, Verdict::Yes) => Verdict::Yes,
            (Verdict::No, _) | (_, Verdict::No) => Verdict::No,
            _ => Verdict::Unknown,
        };
        let show = |v: Option<usize>| v.map_or("?".into(), |v| v.to_string());
        let detail = per_run(runs, |r| {
            format!(
                "{} trained of a budget of {} (metrics.csv, hyp.toml)",
                r.epochs_trained.map_or("? epochs".into(), epochs),
                show(r.epoch_budget())
            )
        });
        Check { question: "same epoch budget", verdict, detail }
    };

    let tuning = {
        let trials: Vec<bool> = runs.iter().map(|r| r.tune_trial.is_some()).collect();
        // Only a tune trial's folder says anything; nothing records a search behind `--hyp`.
        let verdict = Verdict::Unknown;
        let detail = if trials.iter().any(|&t| t) {
            per_run(runs, |r| match &r.tune_trial {
                Some(_) => "a `fracture tune` trial (trial.toml); the study's size is in its \
                            store, not here"
                    .into(),
                None => "nothing records a hyperparameter search".into(),
            })
        } else {
            "no run folder records a hyperparameter search (hyp.toml keeps the values, not how \
             they were found), so the tuning budgets cannot be compared"
                .into()
        };
        Check { question: "same tuning budget", verdict, detail }
    };

    let imgsz = {
        let sides: Vec<Option<u32>> = runs.iter().map(RunInfo::long_side).collect();
        let verdict = all_equal(&sides);
        let detail = per_run(runs, RunInfo::input_size);
        Check { question: "same image size", verdict, detail }
    };

    Fairness { checks: vec![split, epochs, tuning, imgsz] }
}

impl Fairness {
    /// The Markdown section (without its heading): one bullet per question.
    pub fn markdown(&self) -> String {
        self.checks
            .iter()
            .map(|c| format!("- **{}: {}** — {}\n", c.question, c.verdict.word(), c.detail))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_unequal_unknown() {
        assert_eq!(all_equal(&[Some(1), Some(1)]), Verdict::Yes);
        assert_eq!(all_equal(&[Some(1), Some(2)]), Verdict::No);
        assert_eq!(all_equal(&[Some(1), None]), Verdict::Unknown);
        assert_eq!(all_equal::<u32>(&[]), Verdict::Yes);
    }
}
