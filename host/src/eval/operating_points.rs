//! The two operating points a bundle ships, picked on the validation split from its scored
//! detections (IoU 0.5, [`super::tally`]):
//!
//! - **suspicious** (high sensitivity): the highest confidence whose box recall reaches the
//!   target (default 0.90); when no confidence does, the highest one that reaches the largest
//!   recall there is.
//! - **definite** (high specificity): the lowest confidence whose box precision reaches the
//!   target (default 0.90); when none does, the confidence of the best F1 (unsmoothed, the
//!   highest on ties).
//!
//! The candidates are the detections' own scores: the threshold for a score `s` keeps exactly
//! the detections scoring `s` or more. It is written as the largest `f32` below `s`, so that
//! consumers comparing with `>` (NMS' `conf`) and with `>=` (the device's `definite`) keep the
//! same detections. Recall only grows as the threshold falls, so when the definite point lies
//! below the suspicious one, the suspicious point is lowered to it: both targets still hold,
//! and `suspicious <= definite`, as a bundle requires.

use serde::Serialize;

use super::tally::Scored;

/// What the two points aim for.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Targets {
    /// Box recall the suspicious point must reach.
    pub suspicious_recall: f64,
    /// Box precision the definite point must reach.
    pub definite_precision: f64,
}

impl Default for Targets {
    fn default() -> Self {
        Self { suspicious_recall: 0.9, definite_precision: 0.9 }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PickError {
    #[error("operating-point targets must be in (0, 1], got {what} {value}")]
    BadTarget { what: &'static str, value: f64 },
    #[error("the validation split has no fracture boxes: operating points cannot be chosen")]
    NoBoxes,
    #[error("no detections on the validation split: operating points cannot be chosen")]
    NoDetections,
}

/// How a point was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// The target was reached.
    Target,
    /// Suspicious: the recall target is out of reach; the largest recall instead.
    MaxRecall,
    /// Definite: the precision target is out of reach; the best F1 instead.
    BestF1,
}

impl Rule {
    /// The name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Rule::Target => "target",
            Rule::MaxRecall => "max_recall",
            Rule::BestF1 => "best_f1",
        }
    }
}

/// One threshold and what it gives on the detections it was chosen from.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Point {
    /// Keep detections scoring `>= conf` (equivalently `> conf`).
    pub conf: f32,
    /// The lowest score kept.
    pub score: f32,
    pub tp: usize,
    pub fp: usize,
    pub precision: f64,
    pub recall: f64,
    pub rule: Rule,
}

impl Point {
    pub fn f1(&self) -> f64 {
        let (p, r) = (self.precision, self.recall);
        if p + r > 0.0 { 2.0 * p * r / (p + r) } else { 0.0 }
    }
}

/// Both points.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Picked {
    pub suspicious: Point,
    pub definite: Point,
    /// The suspicious point was lowered to the definite one (see the module docs).
    pub suspicious_lowered: bool,
}

/// The threshold that keeps exactly the scores `>= score`, under `>=` and `>` alike.
pub fn threshold_for(score: f32) -> f32 {
    score.next_down()
}

/// Cumulative counts at every distinct score, highest first.
fn table(dets: &[Scored], n_boxes: usize) -> Vec<Point> {
    let mut sorted = dets.to_vec();
    sorted.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut rows: Vec<Point> = Vec::new();
    let (mut tp, mut fp) = (0, 0);
    for (i, d) in sorted.iter().enumerate() {
        if d.tp {
            tp += 1;
        } else {
            fp += 1;
        }
        // one row per run of equal scores, at its end
        if sorted.get(i + 1).is_some_and(|n| n.score == d.score) {
            continue;
        }
        rows.push(Point {
            conf: threshold_for(d.score),
            score: d.score,
            tp,
            fp,
            precision: tp as f64 / (tp + fp) as f64,
            recall: tp as f64 / n_boxes as f64,
            rule: Rule::Target,
        });
    }
    rows
}

impl Targets {
    /// Both targets must be in (0, 1].
    pub fn check(&self) -> Result<(), PickError> {
        for (what, value) in [
            ("suspicious recall", self.suspicious_recall),
            ("definite precision", self.definite_precision),
        ] {
            if !(value > 0.0 && value <= 1.0) {
                return Err(PickError::BadTarget { what, value });
            }
        }
        Ok(())
    }
}

/// Picks both points from the validation detections and its number of fracture boxes.
pub fn pick(dets: &[Scored], n_boxes: usize, targets: Targets) -> Result<Picked, PickError> {
    targets.check()?;
    if n_boxes == 0 {
        return Err(PickError::NoBoxes);
    }
    let rows = table(dets, n_boxes);
    let Some(last) = rows.last() else { return Err(PickError::NoDetections) };

    // Recall never falls as the threshold does: the first row (from the top) that reaches it.
    let suspicious = match rows.iter().find(|r| r.recall >= targets.suspicious_recall) {
        Some(r) => *r,
        None => {
            let max = last.recall;
            let first = rows.iter().find(|r| r.recall >= max).unwrap_or(last);
            Point { rule: Rule::MaxRecall, ..*first }
        }
    };
    let definite = match rows.iter().rev().find(|r| r.precision >= targets.definite_precision) {
        Some(r) => *r,
        None => {
            let mut best = rows[0];
            for r in &rows[1..] {
                if r.f1() > best.f1() {
                    best = *r;
                }
            }
            Point { rule: Rule::BestF1, ..best }
        }
    };
    let lowered = definite.conf < suspicious.conf;
    let suspicious = if lowered { Point { rule: suspicious.rule, ..definite } } else { suspicious };
    Ok(Picked { suspicious, definite, suspicious_lowered: lowered })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn scored(list: &[(f32, bool)]) -> Vec<Scored> {
        list.iter().map(|&(score, tp)| Scored { score, tp }).collect()
    }

    /// 10 boxes; cumulative (tp, fp) by threshold: 0.95 (1,0) 0.9 (2,0) 0.85 (2,1) 0.8 (3,1)
    /// 0.7 (4,1) 0.6 (5,1) 0.5 (5,2) 0.45 (6,2) 0.4 (7,2) 0.3 (8,2) 0.2 (8,3) 0.15 (9,3)
    /// 0.1 (9,4) 0.05 (9,5).
    fn list() -> Vec<Scored> {
        // shuffled on purpose: the order of the input does not matter
        scored(&[
            (0.3, true),
            (0.95, true),
            (0.85, false),
            (0.9, true),
            (0.8, true),
            (0.05, false),
            (0.7, true),
            (0.6, true),
            (0.5, false),
            (0.45, true),
            (0.4, true),
            (0.2, false),
            (0.15, true),
            (0.1, false),
        ])
    }

    #[test]
    fn targets_met() {
        let p = pick(&list(), 10, Targets::default()).unwrap();
        // recall 0.9 is first reached at 0.15; precision >= 0.9 holds down to 0.9
        assert_eq!(p.suspicious.score, 0.15);
        assert_eq!((p.suspicious.tp, p.suspicious.fp, p.suspicious.rule), (9, 3, Rule::Target));
        assert!((p.suspicious.recall - 0.9).abs() < 1e-12);
        assert_eq!(p.definite.score, 0.9);
        assert_eq!((p.definite.tp, p.definite.fp, p.definite.rule), (2, 0, Rule::Target));
        assert!(!p.suspicious_lowered);
        // the threshold keeps its own score under > and >=, and nothing below it
        assert_eq!(p.suspicious.conf, 0.15f32.next_down());
        assert!(0.15f32 > p.suspicious.conf && 0.1f32 < p.suspicious.conf);

        // Recall 0.5 is first reached at 0.6; precision 0.95 holds down to 0.9.
        let t = Targets { suspicious_recall: 0.5, definite_precision: 0.95 };
        let p = pick(&list(), 10, t).unwrap();
        assert_eq!((p.suspicious.score, p.definite.score), (0.6, 0.9));
        assert!(!p.suspicious_lowered);
        // Precision 0.8 is last reached at 0.3 (8 of 10), below 0.6: suspicious comes down
        // to 0.3 too, where recall is 0.8 >= 0.5.
        let t = Targets { suspicious_recall: 0.5, definite_precision: 0.8 };
        let p = pick(&list(), 10, t).unwrap();
        assert_eq!((p.suspicious.score, p.definite.score), (0.3, 0.3));
        assert!(p.suspicious_lowered);
        assert!((p.suspicious.recall - 0.8).abs() < 1e-12);
    }

    #[test]
    fn fallbacks_when_out_of_reach() {
        // recall 0.95 is never reached (at most 0.9): the highest threshold with recall 0.9
        let t = Targets { suspicious_recall: 0.95, definite_precision: 1.0 };
        let p = pick(&list(), 10, t).unwrap();
        assert_eq!((p.suspicious.score, p.suspicious.rule), (0.15, Rule::MaxRecall));
        // precision 1.0 holds down to 0.9
        assert_eq!((p.definite.score, p.definite.rule), (0.9, Rule::Target));

        // 3 boxes; rows 0.9 (0,1) 0.8 (1,1) 0.7 (2,1) 0.6 (2,2): precision never reaches 0.9;
        // F1 0, 0.4, 0.667, 0.571 -> best at 0.7; recall at most 2/3, first reached at 0.7.
        let l = scored(&[(0.9, false), (0.8, true), (0.7, true), (0.6, false)]);
        let p = pick(&l, 3, Targets::default()).unwrap();
        assert_eq!((p.definite.score, p.definite.rule), (0.7, Rule::BestF1));
        assert_eq!((p.suspicious.score, p.suspicious.rule), (0.7, Rule::MaxRecall));
    }

    #[test]
    fn crossing_points_lower_the_suspicious_one() {
        // 2 boxes: recall 0.5 at 0.9 already; precision >= 0.9 holds down to 0.8.
        let l = scored(&[(0.9, true), (0.8, true), (0.7, false)]);
        let t = Targets { suspicious_recall: 0.5, definite_precision: 0.9 };
        let p = pick(&l, 2, t).unwrap();
        assert!(p.suspicious_lowered);
        assert_eq!((p.suspicious.score, p.definite.score), (0.8, 0.8));
        assert_eq!(p.suspicious.recall, 1.0);
        assert!(p.suspicious.conf <= p.definite.conf);
    }

    #[test]
    fn ties_form_one_threshold_and_errors() {
        let l = scored(&[(0.5, true), (0.5, false), (0.4, true)]);
        let p = pick(&l, 2, Targets::default()).unwrap();
        // at 0.5: (1,1), precision 0.5; at 0.4: (2,1), recall 1
        assert_eq!((p.suspicious.score, p.suspicious.tp, p.suspicious.fp), (0.4, 2, 1));
        assert_eq!((p.definite.rule, p.definite.score), (Rule::BestF1, 0.4));
        assert_eq!(pick(&l, 0, Targets::default()), Err(PickError::NoBoxes));
        assert_eq!(pick(&[], 3, Targets::default()), Err(PickError::NoDetections));
        let bad = Targets { suspicious_recall: 0.0, definite_precision: 0.9 };
        assert!(matches!(pick(&l, 2, bad), Err(PickError::BadTarget { .. })));
    }
}
