//! Optimisers with ultralytics-style parameter groups: weight decay on convolution and linear
//! weights only, never on normalisation weights or biases; biases may follow their own learning
//! rate during warmup. Written out (AdamW and SGD with Nesterov momentum) so the state can be
//! saved, resumed and inspected.

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    AdamW,
    Sgd,
}

/// Which rule a parameter follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    /// Conv / linear weights: decayed.
    Decay,
    /// Normalisation weights: not decayed.
    NoDecay,
    /// Biases: not decayed, own warmup learning rate.
    Bias,
}

/// Sorts a variable by its name (torchvision / ultralytics naming): `.bias` → Bias; a weight of
/// a BatchNorm / GroupNorm / LayerNorm (1-d) → NoDecay; other weights → Decay.
pub fn group_of(name: &str, t: &Tensor) -> Group {
    if name.ends_with(".bias") {
        Group::Bias
    } else if t.dim() <= 1 {
        Group::NoDecay
    } else {
        Group::Decay
    }
}

struct Param {
    name: String,
    tensor: Tensor,
    group: Group,
    /// SGD momentum buffer, or Adam's first moment.
    m: Tensor,
    /// Adam's second moment (unused by SGD).
    v: Tensor,
}

pub struct Optimizer {
    kind: OptimizerKind,
    weight_decay: f64,
    beta2: f64,
    eps: f64,
    step: i64,
    params: Vec<Param>,
}

impl Optimizer {
    /// `vars`: trainable variables by name (e.g. `VarStore::variables()` filtered by
    /// `requires_grad`).
    pub fn new(kind: OptimizerKind, weight_decay: f64, vars: Vec<(String, Tensor)>) -> Self {
        let mut params: Vec<Param> = vars
            .into_iter()
            .map(|(name, tensor)| {
                let group = group_of(&name, &tensor);
                let m = tensor.zeros_like();
                let v = tensor.zeros_like();
                Param { name, tensor, group, m, v }
            })
            .collect();
        params.sort_by(|a, b| a.name.cmp(&b.name));
        Self { kind, weight_decay, beta2: 0.999, eps: 1e-8, step: 0, params }
    }

    pub fn zero_grad(&mut self) {
        for p in &mut self.params {
            let mut g = p.tensor.grad();
            if g.defined() {
                let _ = g.zero_();
            }
        }
    }

    /// Clips the global gradient norm to `max_norm` (ultralytics uses 10); returns the norm.
    pub fn clip_grad_norm(&mut self, max_norm: f64) -> f64 {
        let grads: Vec<Tensor> =
            self.params.iter().map(|p| p.tensor.grad()).filter(|g| g.defined()).collect();
        if grads.is_empty() {
            return 0.0;
        }
        let total = Tensor::stack(
            &grads.iter().map(|g| g.norm().to_kind(Kind::Float)).collect::<Vec<_>>(),
            0,
        )
        .norm()
        .double_value(&[]);
        if total > max_norm {
            let scale = max_norm / (total + 1e-6);
            for mut g in grads {
                let _ = g.g_mul_scalar_(scale);
            }
        }
        total
    }

    /// One update with the given rates (`momentum` is Adam's beta1 for AdamW).
    pub fn step(&mut self, lr: f64, bias_lr: f64, momentum: f64) {
        self.step += 1;
        let t = self.step as f64;
        tch::no_grad(|| {
            for p in &mut self.params {
                let g = p.tensor.grad();
                if !g.defined() {
                    continue;
                }
                let lr = if p.group == Group::Bias { bias_lr } else { lr };
                let decay = if p.group == Group::Decay { self.weight_decay } else { 0.0 };
                match self.kind {
                    OptimizerKind::AdamW => {
                        if decay > 0.0 {
                            let _ = p.tensor.g_mul_scalar_(1.0 - lr * decay);
                        }
                        let _ = p.m.g_mul_scalar_(momentum).g_add_(&(&g * (1.0 - momentum)));
                        let _ =
                            p.v.g_mul_scalar_(self.beta2).g_add_(&(&g * &g * (1.0 - self.beta2)));
                        let bc1 = 1.0 - momentum.powf(t);
                        let bc2 = 1.0 - self.beta2.powf(t);
                        let denom = (&p.v / bc2).sqrt() + self.eps;
                        let update = (&p.m / bc1) / denom * lr;
                        let _ = p.tensor.g_sub_(&update);
                    }
                    OptimizerKind::Sgd => {
                        let g = if decay > 0.0 { &g + &p.tensor * decay } else { g };
                        let _ = p.m.g_mul_scalar_(momentum).g_add_(&g);
                        // Nesterov
                        let update = (&g + &p.m * momentum) * lr;
                        let _ = p.tensor.g_sub_(&update);
                    }
                }
            }
        });
    }

    /// State tensors for checkpoints: `(name.m, m)`, `(name.v, v)` and the step count.
    pub fn state(&self) -> (i64, Vec<(String, Tensor)>) {
        let mut out = Vec::with_capacity(self.params.len() * 2);
        for p in &self.params {
            out.push((format!("{}.m", p.name), p.m.shallow_clone()));
            out.push((format!("{}.v", p.name), p.v.shallow_clone()));
        }
        (self.step, out)
    }

    /// Restores what [`Optimizer::state`] saved; unknown or missing names are an error.
    pub fn load_state(&mut self, step: i64, state: &[(String, Tensor)]) -> Result<(), String> {
        let map: std::collections::HashMap<&str, &Tensor> =
            state.iter().map(|(n, t)| (n.as_str(), t)).collect();
        for p in &mut self.params {
            for (suffix, slot) in [("m", &mut p.m), ("v", &mut p.v)] {
                let key = format!("{}.{suffix}", p.name);
                let src =
                    map.get(key.as_str()).ok_or_else(|| format!("optimizer state lacks {key}"))?;
                if src.size() != slot.size() {
                    return Err(format!(
                        "optimizer state {key}: shape {:?}, expected {:?}",
                        src.size(),
                        slot.size()
                    ));
                }
                tch::no_grad(|| slot.copy_(src));
            }
        }
        self.step = step;
        Ok(())
    }

    pub fn group_sizes(&self) -> [usize; 3] {
        let count = |g| self.params.iter().filter(|p| p.group == g).count();
        [count(Group::Decay), count(Group::NoDecay), count(Group::Bias)]
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Minimises (w - 3)² and checks both optimisers converge, decay or not.
    fn converge(kind: OptimizerKind) -> f64 {
        let w = Tensor::zeros([2, 2], (Kind::Float, tch::Device::Cpu)).set_requires_grad(true);
        let mut opt = Optimizer::new(kind, 0.0, vec![("layer.weight".into(), w.shallow_clone())]);
        for _ in 0..300 {
            opt.zero_grad();
            let loss = (&w - 3.0).pow_tensor_scalar(2).sum(Kind::Float);
            loss.backward();
            opt.step(0.05, 0.05, 0.9);
        }
        w.mean(Kind::Float).double_value(&[])
    }

    #[test]
    fn both_optimisers_converge() {
        assert!((converge(OptimizerKind::AdamW) - 3.0).abs() < 0.05);
        assert!((converge(OptimizerKind::Sgd) - 3.0).abs() < 0.05);
    }

    #[test]
    fn decay_only_on_weights() {
        let w = Tensor::ones([2, 2], (Kind::Float, tch::Device::Cpu)).set_requires_grad(true);
        let b = Tensor::ones([2], (Kind::Float, tch::Device::Cpu)).set_requires_grad(true);
        let bn = Tensor::ones([2], (Kind::Float, tch::Device::Cpu)).set_requires_grad(true);
        let mut opt = Optimizer::new(
            OptimizerKind::AdamW,
            0.5,
            vec![
                ("c.weight".into(), w.shallow_clone()),
                ("c.bias".into(), b.shallow_clone()),
                ("bn.weight".into(), bn.shallow_clone()),
            ],
        );
        assert_eq!(opt.group_sizes(), [1, 1, 1]);
        // zero gradients: only decay moves anything
        let loss = (&w * 0.0).sum(Kind::Float)
            + (&b * 0.0).sum(Kind::Float)
            + (&bn * 0.0).sum(Kind::Float);
        loss.backward();
        opt.step(0.1, 0.1, 0.9);
        assert!((w.double_value(&[0, 0]) - 0.95).abs() < 1e-6);
        assert_eq!(b.double_value(&[0]), 1.0);
        assert_eq!(bn.double_value(&[0]), 1.0);
    }

    #[test]
    fn state_round_trip() {
        let w = Tensor::ones([3], (Kind::Float, tch::Device::Cpu)).set_requires_grad(true);
        let mut opt =
            Optimizer::new(OptimizerKind::AdamW, 0.0, vec![("a.weight".into(), w.shallow_clone())]);
        (&w * 2.0).sum(Kind::Float).backward();
        opt.step(0.1, 0.1, 0.9);
        let (step, state) = opt.state();
        let saved: Vec<(String, Tensor)> =
            state.iter().map(|(n, t)| (n.clone(), t.copy())).collect();
        let mut other =
            Optimizer::new(OptimizerKind::AdamW, 0.0, vec![("a.weight".into(), w.zeros_like())]);
        other.load_state(step, &saved).unwrap();
        assert_eq!(other.state().0, 1);
        assert!(other.load_state(1, &[]).is_err());
    }
}
