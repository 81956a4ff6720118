//! Exponential moving average of model weights (ultralytics' `ModelEMA`): the averaged copy is
//! what gets validated and saved. The decay ramps up as `decay · (1 − exp(−updates / tau))`
//! so early, noisy weights are forgotten quickly.

use tch::{Kind, Tensor};

pub struct Ema {
    /// `(name, averaged copy)` for every floating-point variable and buffer.
    shadow: Vec<(String, Tensor)>,
    pub updates: u64,
    pub decay: f64,
    pub tau: f64,
}

impl Ema {
    /// Starts from a copy of `vars` (all named variables, buffers included).
    pub fn new(vars: &[(String, Tensor)]) -> Self {
        let shadow = vars
            .iter()
            .filter(|(_, t)| t.is_floating_point())
            .map(|(n, t)| (n.clone(), t.detach().copy()))
            .collect();
        Self { shadow, updates: 0, decay: 0.9999, tau: 2000.0 }
    }

    pub fn current_decay(&self) -> f64 {
        self.decay * (1.0 - (-(self.updates as f64) / self.tau).exp())
    }

    /// Moves the average towards the live weights; `vars` in any order, by name.
    pub fn update(&mut self, vars: &[(String, Tensor)]) {
        self.updates += 1;
        let d = self.current_decay();
        let live: std::collections::HashMap<&str, &Tensor> =
            vars.iter().map(|(n, t)| (n.as_str(), t)).collect();
        tch::no_grad(|| {
            for (name, s) in &mut self.shadow {
                if let Some(v) = live.get(name.as_str()) {
                    let _ = s.g_mul_scalar_(d).g_add_(&(v.detach().to_kind(s.kind()) * (1.0 - d)));
                }
            }
        });
    }

    /// The averaged tensors by name (to copy into an evaluation model or a checkpoint).
    pub fn tensors(&self) -> &[(String, Tensor)] {
        &self.shadow
    }

    /// Restores the averages (resume); missing names keep their value.
    pub fn load(&mut self, tensors: &[(String, Tensor)], updates: u64) {
        let map: std::collections::HashMap<&str, &Tensor> =
            tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
        tch::no_grad(|| {
            for (name, s) in &mut self.shadow {
                if let Some(t) = map.get(name.as_str()) {
                    s.copy_(&t.to_kind(Kind::Float).to_kind(s.kind()));
                }
            }
        });
        self.updates = updates;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn average_follows_with_ramped_decay() {
        let w = Tensor::zeros([3], (Kind::Float, tch::Device::Cpu));
        let vars = vec![("w".to_string(), w.shallow_clone())];
        let mut ema = Ema::new(&vars);
        ema.tau = 10.0;
        ema.decay = 0.9;
        tch::no_grad(|| {
            let _ = w.shallow_clone().fill_(1.0);
        });
        ema.update(&vars);
        let d1 = 0.9 * (1.0 - (-0.1f64).exp());
        let v = ema.tensors()[0].1.double_value(&[0]);
        assert!((v - (1.0 - d1)).abs() < 1e-6, "{v}");
        for _ in 0..200 {
            ema.update(&vars);
        }
        assert!((ema.tensors()[0].1.double_value(&[0]) - 1.0).abs() < 1e-3);
    }
}
