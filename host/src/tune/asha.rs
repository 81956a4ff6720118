//! Asynchronous successive halving (ASHA): trials climb rungs of growing epoch budgets
//! (`min_epochs · eta^k`, capped at `max_epochs`); a trial moves up from rung `k` once it is in
//! the top ⌊n_k / eta⌋ of the `n_k` trials that finished rung `k`. The decision for a worker
//! asking for work is a pure function of the study's jobs ([`decide`]), taken by the store
//! inside one transaction so that two workers never get the same job.

use serde::{Deserialize, Serialize};

/// Epochs at the end of each rung: `min · eta^k` capped at `max` (the last rung is `max`).
pub fn rungs(min_epochs: usize, max_epochs: usize, eta: usize) -> Result<Vec<usize>, String> {
    if min_epochs == 0 {
        return Err("--min-epochs must be at least 1".into());
    }
    if max_epochs < min_epochs {
        return Err(format!("--max-epochs {max_epochs} is below --min-epochs {min_epochs}"));
    }
    if eta < 2 {
        return Err(format!("--eta must be at least 2, got {eta}"));
    }
    let mut out = vec![min_epochs];
    let mut r = min_epochs;
    while r < max_epochs {
        r = r.saturating_mul(eta).min(max_epochs);
        out.push(r);
    }
    Ok(out)
}

/// A job's life: claimed and `running` (under a lease), then `done` (with a metric) or
/// `failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Running,
    Done,
    Failed,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "running" => Some(JobState::Running),
            "done" => Some(JobState::Done),
            "failed" => Some(JobState::Failed),
            _ => None,
        }
    }
}

/// One job (a trial trained up to a rung) as the decision sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRow {
    pub trial: usize,
    pub rung: usize,
    pub state: JobState,
    pub worker: String,
    /// Unix seconds (the store's clock) after which a running job may be taken over.
    pub lease_until: f64,
    /// How many times the job was claimed (1 unless a worker died on it).
    pub attempts: u32,
    pub metric: Option<f64>,
}

/// The study's shape as far as scheduling goes.
#[derive(Debug, Clone, PartialEq)]
pub struct Ladder {
    /// Epochs at the end of each rung.
    pub rungs: Vec<usize>,
    pub eta: usize,
    /// Trials to start in all.
    pub trials: usize,
    pub higher_is_better: bool,
    /// A job whose workers died this many times is failed instead of claimed again.
    pub max_attempts: u32,
}

/// What a worker asking for work should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Take over a running job whose lease expired (its worker died).
    Reclaim { trial: usize, rung: usize },
    /// A job whose lease expired too often: mark it failed, then decide again.
    GiveUp { trial: usize, rung: usize },
    /// Continue a trial from rung `rung - 1` to rung `rung`.
    Promote { trial: usize, rung: usize },
    /// Start trial `trial` (the next number) at rung 0.
    NewTrial { trial: usize },
    /// Nothing to claim now, but jobs are running whose results may allow a promotion.
    Wait,
    /// Every job is finished.
    Done,
}

impl Ladder {
    /// Orders metrics so that larger is better.
    pub fn score(&self, metric: Option<f64>) -> f64 {
        match metric {
            Some(m) if m.is_finite() => {
                if self.higher_is_better {
                    m
                } else {
                    -m
                }
            }
            _ => f64::NEG_INFINITY,
        }
    }

    /// The trials that finished rung `k`, best first (ties: lower trial number first).
    pub fn ranked_at(&self, jobs: &[JobRow], k: usize) -> Vec<usize> {
        let mut done: Vec<(f64, usize)> = jobs
            .iter()
            .filter(|j| j.rung == k && j.state == JobState::Done)
            .map(|j| (self.score(j.metric), j.trial))
            .collect();
        done.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        done.into_iter().map(|(_, t)| t).collect()
    }

    /// Trials that may move from rung `k` to `k + 1` now: in the top ⌊n_k / eta⌋ of rung `k`
    /// and without a job at rung `k + 1` yet, best first.
    pub fn promotable(&self, jobs: &[JobRow], k: usize) -> Vec<usize> {
        if k + 1 >= self.rungs.len() {
            return Vec::new();
        }
        let ranked = self.ranked_at(jobs, k);
        let top = ranked.len() / self.eta;
        ranked
            .into_iter()
            .take(top)
            .filter(|&t| !jobs.iter().any(|j| j.trial == t && j.rung == k + 1))
            .collect()
    }
}

/// The next step for a worker, given every job of the study, how many trials exist and the
/// store's clock. Order: dead workers' jobs first, then promotions from the highest rung down,
/// then a new trial, else wait (jobs running) or done.
pub fn decide(ladder: &Ladder, jobs: &[JobRow], trial_count: usize, now: f64) -> Decision {
    if let Some(j) = jobs
        .iter()
        .filter(|j| j.state == JobState::Running && j.lease_until < now)
        .min_by_key(|j| (j.trial, j.rung))
    {
        return if j.attempts >= ladder.max_attempts {
            Decision::GiveUp { trial: j.trial, rung: j.rung }
        } else {
            Decision::Reclaim { trial: j.trial, rung: j.rung }
        };
    }
    for k in (0..ladder.rungs.len().saturating_sub(1)).rev() {
        if let Some(&trial) = ladder.promotable(jobs, k).first() {
            return Decision::Promote { trial, rung: k + 1 };
        }
    }
    if trial_count < ladder.trials {
        return Decision::NewTrial { trial: trial_count };
    }
    if jobs.iter().any(|j| j.state == JobState::Running) { Decision::Wait } else { Decision::Done }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn ladder(rungs: Vec<usize>, trials: usize, higher: bool) -> Ladder {
        Ladder { rungs, eta: 3, trials, higher_is_better: higher, max_attempts: 3 }
    }

    fn job(trial: usize, rung: usize, state: JobState, metric: Option<f64>) -> JobRow {
        JobRow { trial, rung, state, worker: "w".into(), lease_until: 100.0, attempts: 1, metric }
    }

    fn done(trial: usize, rung: usize, m: f64) -> JobRow {
        job(trial, rung, JobState::Done, Some(m))
    }

    #[test]
    fn rung_epochs() {
        assert_eq!(rungs(1, 9, 3).unwrap(), vec![1, 3, 9]);
        assert_eq!(rungs(1, 3, 3).unwrap(), vec![1, 3]);
        assert_eq!(rungs(2, 10, 3).unwrap(), vec![2, 6, 10]);
        assert_eq!(rungs(4, 4, 3).unwrap(), vec![4]);
        assert_eq!(rungs(1, 8, 2).unwrap(), vec![1, 2, 4, 8]);
        assert!(rungs(0, 3, 3).is_err());
        assert!(rungs(3, 2, 3).is_err());
        assert!(rungs(1, 3, 1).is_err());
    }

    #[test]
    fn starts_trials_until_the_top_third_can_move_up() {
        let l = ladder(vec![1, 3, 9], 9, true);
        assert_eq!(decide(&l, &[], 0, 0.0), Decision::NewTrial { trial: 0 });
        // two finished rung 0: ⌊2/3⌋ = 0 promotions, so a new trial
        let jobs = vec![done(0, 0, 0.5), done(1, 0, 0.7)];
        assert_eq!(decide(&l, &jobs, 2, 0.0), Decision::NewTrial { trial: 2 });
        // three finished: the best (trial 1) moves up
        let mut jobs = vec![done(0, 0, 0.5), done(1, 0, 0.7), done(2, 0, 0.6)];
        assert_eq!(decide(&l, &jobs, 3, 0.0), Decision::Promote { trial: 1, rung: 1 });
        jobs.push(job(1, 1, JobState::Running, None));
        assert_eq!(decide(&l, &jobs, 3, 0.0), Decision::NewTrial { trial: 3 });
        // six finished rung 0: the second best (trial 4 at 0.65) moves up too
        jobs.extend([done(3, 0, 0.1), done(4, 0, 0.65), done(5, 0, 0.2)]);
        assert_eq!(decide(&l, &jobs, 6, 0.0), Decision::Promote { trial: 4, rung: 1 });
    }

    #[test]
    fn promotes_from_the_highest_rung_first() {
        let l = ladder(vec![1, 3, 9], 9, true);
        let mut jobs: Vec<JobRow> = (0..9).map(|t| done(t, 0, t as f64 / 10.0)).collect();
        // top third of rung 0: trials 8, 7, 6; all moved up and finished rung 1
        jobs.extend([done(8, 1, 0.3), done(7, 1, 0.9), done(6, 1, 0.5)]);
        assert_eq!(l.promotable(&jobs, 0), Vec::<usize>::new());
        assert_eq!(decide(&l, &jobs, 9, 0.0), Decision::Promote { trial: 7, rung: 2 });
        jobs.push(done(7, 2, 0.95));
        // nothing left: the top rung does not promote
        assert_eq!(decide(&l, &jobs, 9, 0.0), Decision::Done);
    }

    #[test]
    fn lower_is_better_and_failures_rank_last() {
        let l = ladder(vec![1, 3], 6, false);
        let jobs = vec![
            done(0, 0, 2.0),
            done(1, 0, 1.0),
            job(2, 0, JobState::Done, Some(f64::NAN)),
            job(3, 0, JobState::Failed, None),
            done(4, 0, 3.0),
            done(5, 0, 1.5),
        ];
        assert_eq!(l.ranked_at(&jobs, 0), vec![1, 5, 0, 4, 2]);
        // ⌊5/3⌋ = 1: only trial 1 moves up
        assert_eq!(l.promotable(&jobs, 0), vec![1]);
    }

    #[test]
    fn waits_while_running_and_reclaims_expired_leases() {
        let l = ladder(vec![1, 3], 2, true);
        let running = job(1, 0, JobState::Running, None);
        let jobs = vec![done(0, 0, 0.5), running.clone()];
        assert_eq!(decide(&l, &jobs, 2, 50.0), Decision::Wait);
        // the lease ran out at 100: the job is taken over
        assert_eq!(decide(&l, &jobs, 2, 150.0), Decision::Reclaim { trial: 1, rung: 0 });
        let tired = JobRow { attempts: 3, ..running };
        assert_eq!(
            decide(&l, &[done(0, 0, 0.5), tired], 2, 150.0),
            Decision::GiveUp { trial: 1, rung: 0 }
        );
        let jobs = vec![done(0, 0, 0.5), job(1, 0, JobState::Failed, None)];
        assert_eq!(decide(&l, &jobs, 2, 150.0), Decision::Done);
    }
}
