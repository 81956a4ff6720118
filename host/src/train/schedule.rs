//! Learning-rate and momentum schedules as ultralytics runs them: a per-epoch factor (linear
//! or cosine from 1 to `lrf`) and a warmup over the first iterations in which the learning
//! rate ramps up from 0 (biases come down from `warmup_bias_lr`) and momentum from
//! `warmup_momentum`.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LrShape {
    Linear,
    Cosine,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    pub shape: LrShape,
    pub epochs: usize,
    /// Final learning rate as a fraction of the initial one.
    pub lrf: f64,
    pub warmup_epochs: f64,
    pub warmup_momentum: f64,
    pub warmup_bias_lr: f64,
    pub momentum: f64,
}

/// Rates for one optimiser step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepRates {
    /// For weights (with and without decay).
    pub lr: f64,
    /// For biases (differs during warmup).
    pub bias_lr: f64,
    pub momentum: f64,
}

impl Schedule {
    /// The epoch factor `lf(epoch)`.
    pub fn factor(&self, epoch: usize) -> f64 {
        let x = epoch as f64;
        let n = self.epochs.max(1) as f64;
        match self.shape {
            LrShape::Linear => (1.0 - x / n).max(0.0) * (1.0 - self.lrf) + self.lrf,
            LrShape::Cosine => {
                ((1.0 - (x * std::f64::consts::PI / n).cos()) / 2.0) * (self.lrf - 1.0) + 1.0
            }
        }
    }

    /// Warmup length in iterations: `max(warmup_epochs * batches_per_epoch, 100)` (0 disables).
    pub fn warmup_iters(&self, batches_per_epoch: usize) -> usize {
        if self.warmup_epochs <= 0.0 {
            return 0;
        }
        ((self.warmup_epochs * batches_per_epoch as f64).round() as usize).max(100)
    }

    /// Rates at global iteration `iter` of epoch `epoch`.
    pub fn rates(
        &self,
        lr0: f64,
        epoch: usize,
        iter: usize,
        batches_per_epoch: usize,
    ) -> StepRates {
        let target = lr0 * self.factor(epoch);
        let nw = self.warmup_iters(batches_per_epoch);
        if iter >= nw || nw == 0 {
            return StepRates { lr: target, bias_lr: target, momentum: self.momentum };
        }
        let t = iter as f64 / nw as f64;
        let lerp = |a: f64, b: f64| a + (b - a) * t;
        StepRates {
            lr: lerp(0.0, target),
            bias_lr: lerp(self.warmup_bias_lr, target),
            momentum: lerp(self.warmup_momentum, self.momentum),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sched(shape: LrShape) -> Schedule {
        Schedule {
            shape,
            epochs: 100,
            lrf: 0.01,
            warmup_epochs: 3.0,
            warmup_momentum: 0.8,
            warmup_bias_lr: 0.1,
            momentum: 0.937,
        }
    }

    #[test]
    fn factors_run_from_one_to_lrf() {
        for shape in [LrShape::Linear, LrShape::Cosine] {
            let s = sched(shape);
            assert!((s.factor(0) - 1.0).abs() < 1e-12);
            assert!((s.factor(100) - 0.01).abs() < 1e-12);
            assert!(s.factor(50) < 1.0 && s.factor(50) > 0.01);
        }
        assert!((sched(LrShape::Linear).factor(50) - 0.505).abs() < 1e-12);
    }

    #[test]
    fn warmup_ramps() {
        let s = sched(LrShape::Linear);
        assert_eq!(s.warmup_iters(10), 100); // at least 100 iterations
        assert_eq!(s.warmup_iters(1000), 3000);
        let r0 = s.rates(0.01, 0, 0, 10);
        assert_eq!(r0.lr, 0.0);
        assert!((r0.bias_lr - 0.1).abs() < 1e-12);
        assert!((r0.momentum - 0.8).abs() < 1e-12);
        let r = s.rates(0.01, 10, 100, 10);
        assert!((r.lr - 0.01 * s.factor(10)).abs() < 1e-12);
        assert_eq!(r.lr, r.bias_lr);
        assert_eq!(r.momentum, 0.937);
    }
}
