//! t-SNE (van der Maaten & Hinton 2008), the exact O(n²) method, as scikit-learn's
//! `TSNE(method="exact")` computes it: fine for up to a few thousand images (memory: one
//! `n × n` f64 matrix, 130 MB at 4,000 images).
//!
//! 1. **Affinities in the input space.** For each point `i`, a Gaussian over the squared
//!    distances, `p(j|i) = exp(−β_i d_ij²) / Σ_k exp(−β_i d_ik²)`, with `β_i` found by binary
//!    search so that the entropy `H_i = −Σ_j p(j|i) ln p(j|i)` equals `ln(perplexity)` (the
//!    "effective number of neighbours"). Then the joint `p_ij = (p(j|i) + p(i|j)) / 2n`.
//! 2. **Affinities in the map.** A Student t with one degree of freedom:
//!    `q_ij = (1 + ‖y_i − y_j‖²)⁻¹ / Z`, `Z = Σ_{k≠l} (1 + ‖y_k − y_l‖²)⁻¹`.
//! 3. **Gradient descent on KL(P‖Q)**, whose gradient is
//!    `∂C/∂y_i = 4 Σ_j (p_ij − q_ij)(1 + ‖y_i − y_j‖²)⁻¹ (y_i − y_j)`, in two stages
//!    (scikit-learn's): 250 iterations with P multiplied by the early exaggeration 12 and
//!    momentum 0.5, then the rest (to 1000) with momentum 0.8, each stage starting with zero
//!    velocity and unit gains; per-coordinate gains grow by 0.2 while the gradient keeps its
//!    sign against the velocity and shrink by ×0.8 otherwise (floor 0.01). The learning rate
//!    is scikit-learn's `"auto"`, `max(n / exaggeration / 4, 50)`.
//!
//! The initial map is scikit-learn's default: the first two principal components scaled to a
//! standard deviation of 1e-4 along the first; or, with [`TsneInit::Random`], Gaussian noise of
//! that size from the seed. Every step is deterministic (rows are computed in parallel, but
//! each sum runs in a fixed order). Unlike scikit-learn there is no early stop: all iterations
//! run. The perplexity is capped at `(n − 1) / 3` so small data sets still work.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::matrix::Matrix;
use super::pca::pca;

/// How the map starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TsneInit {
    /// The first two principal components (scikit-learn's default since 1.2).
    Pca,
    /// Gaussian noise from the seed.
    Random,
}

/// t-SNE settings; [`Default`] is scikit-learn's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TsneConfig {
    pub perplexity: f64,
    pub early_exaggeration: f64,
    /// Iterations with exaggerated affinities (scikit-learn's `_EXPLORATION_N_ITER`).
    pub exaggeration_iterations: usize,
    /// All iterations, both stages.
    pub iterations: usize,
    /// `None`: `max(n / early_exaggeration / 4, 50)`.
    pub learning_rate: Option<f64>,
    pub init: TsneInit,
    pub seed: u64,
}

impl Default for TsneConfig {
    fn default() -> Self {
        Self {
            perplexity: 30.0,
            early_exaggeration: 12.0,
            exaggeration_iterations: 250,
            iterations: 1000,
            learning_rate: None,
            init: TsneInit::Pca,
            seed: 0,
        }
    }
}

/// The 2-D map and how well it fits.
#[derive(Debug, Clone, PartialEq)]
pub struct Tsne {
    pub points: Vec<[f64; 2]>,
    /// KL(P‖Q) of the final map.
    pub kl_divergence: f64,
    /// The perplexity used (the asked one, capped at `(n − 1) / 3`).
    pub perplexity: f64,
}

/// scikit-learn's `MACHINE_EPSILON` (`np.finfo(np.double).eps`): the floor of p and q.
const EPS: f64 = f64::EPSILON;
/// Binary search: |H − ln(perplexity)| tolerance and step limit (scikit-learn's).
const ENTROPY_TOLERANCE: f64 = 1e-5;
const SEARCH_STEPS: usize = 100;
const MIN_GAIN: f64 = 0.01;

/// The perplexity actually used for `n` points.
pub fn effective_perplexity(perplexity: f64, n: usize) -> f64 {
    perplexity.min(n.saturating_sub(1) as f64 / 3.0).max(1.0)
}

/// Row `i` of the conditional affinities `p(j|i)` (0 at `j = i`), by binary search on β so
/// that the row's entropy is `ln(perplexity)` (natural logarithms, as scikit-learn).
fn conditional_row(x: &Matrix, i: usize, perplexity: f64) -> Vec<f64> {
    let n = x.rows();
    let d2: Vec<f64> =
        (0..n).map(|j| if j == i { 0.0 } else { x.squared_distance(i, j) }).collect();
    let target = perplexity.ln();
    let (mut beta, mut beta_min, mut beta_max) = (1.0f64, f64::NEG_INFINITY, f64::INFINITY);
    let mut p = vec![0.0; n];
    for _ in 0..SEARCH_STEPS {
        // p_j ∝ exp(−β d_j²)
        let mut sum = 0.0;
        for j in (0..n).filter(|&j| j != i) {
            p[j] = (-d2[j] * beta).exp();
            sum += p[j];
        }
        if sum == 0.0 {
            sum = 1e-8; // scikit-learn's EPSILON_DBL: every neighbour underflowed
        }
        // H = ln Σ exp(−β d²) + β Σ p_j d_j²  (the entropy of the normalised row)
        let mut mean_d2 = 0.0;
        for j in 0..n {
            p[j] /= sum;
            mean_d2 += d2[j] * p[j];
        }
        let diff = sum.ln() + beta * mean_d2 - target;
        if diff.abs() <= ENTROPY_TOLERANCE {
            break;
        }
        // Too flat (entropy too high): sharpen with a larger β; else soften.
        if diff > 0.0 {
            beta_min = beta;
            beta = if beta_max.is_infinite() { beta * 2.0 } else { (beta + beta_max) / 2.0 };
        } else {
            beta_max = beta;
            beta = if beta_min.is_infinite() { beta / 2.0 } else { (beta + beta_min) / 2.0 };
        }
    }
    p
}

/// The joint affinities `p_ij = max((p(j|i) + p(i|j)) / Σ, EPS)` off the diagonal, 0 on it,
/// as one row-major `n × n` matrix.
pub fn joint_probabilities(x: &Matrix, perplexity: f64) -> Vec<f64> {
    let n = x.rows();
    let cond: Vec<Vec<f64>> =
        (0..n).into_par_iter().map(|i| conditional_row(x, i, perplexity)).collect();
    let total: f64 = cond.iter().map(|r| r.iter().sum::<f64>()).sum::<f64>() * 2.0;
    let total = total.max(EPS);
    let mut p = vec![0.0; n * n];
    p.par_chunks_mut(n.max(1)).enumerate().for_each(|(i, row)| {
        for (j, v) in row.iter_mut().enumerate() {
            if i != j {
                *v = ((cond[i][j] + cond[j][i]) / total).max(EPS);
            }
        }
    });
    p
}

/// Per row `i`: the attractive sum `Σ_j p_ij w_ij (y_i − y_j)`, the repulsive sum
/// `Σ_j w_ij² (y_i − y_j)` and `Σ_j w_ij`, with `w_ij = (1 + ‖y_i − y_j‖²)⁻¹`. The gradient is
/// then `4 (attractive − repulsive / Z)` with `Z = Σ_i Σ_j w_ij`, since `q_ij = w_ij / Z`.
fn row_forces(p: &[f64], y: &[[f64; 2]], i: usize) -> ([f64; 2], [f64; 2], f64) {
    let n = y.len();
    let pi = &p[i * n..(i + 1) * n];
    let (mut attract, mut repulse, mut z) = ([0.0; 2], [0.0; 2], 0.0);
    for j in (0..n).filter(|&j| j != i) {
        let dx = y[i][0] - y[j][0];
        let dy = y[i][1] - y[j][1];
        let w = 1.0 / (1.0 + dx * dx + dy * dy);
        let a = pi[j] * w;
        let r = w * w;
        attract[0] += a * dx;
        attract[1] += a * dy;
        repulse[0] += r * dx;
        repulse[1] += r * dy;
        z += w;
    }
    (attract, repulse, z)
}

/// `∂KL/∂y` with the affinities multiplied by `exaggeration`.
fn gradient(p: &[f64], y: &[[f64; 2]], exaggeration: f64) -> Vec<[f64; 2]> {
    let forces: Vec<([f64; 2], [f64; 2], f64)> =
        (0..y.len()).into_par_iter().map(|i| row_forces(p, y, i)).collect();
    let z: f64 = forces.iter().map(|f| f.2).sum::<f64>().max(EPS);
    forces
        .iter()
        .map(|(a, r, _)| {
            [4.0 * (exaggeration * a[0] - r[0] / z), 4.0 * (exaggeration * a[1] - r[1] / z)]
        })
        .collect()
}

/// KL(P‖Q) = Σ_{i≠j} p_ij ln(p_ij / q_ij), with q floored at EPS as scikit-learn does.
fn kl_divergence(p: &[f64], y: &[[f64; 2]]) -> f64 {
    let n = y.len();
    let w = |i: usize, j: usize| {
        let (dx, dy) = (y[i][0] - y[j][0], y[i][1] - y[j][1]);
        1.0 / (1.0 + dx * dx + dy * dy)
    };
    let z: f64 = (0..n)
        .into_par_iter()
        .map(|i| (0..n).filter(|&j| j != i).map(|j| w(i, j)).sum::<f64>())
        .collect::<Vec<f64>>()
        .iter()
        .sum::<f64>()
        .max(EPS);
    (0..n)
        .into_par_iter()
        .map(|i| {
            (0..n)
                .filter(|&j| j != i)
                .map(|j| {
                    let (pij, qij) = (p[i * n + j], (w(i, j) / z).max(EPS));
                    pij * (pij.max(EPS) / qij).ln()
                })
                .sum::<f64>()
        })
        .collect::<Vec<f64>>()
        .iter()
        .sum()
}

/// A standard normal draw (Box–Muller).
fn normal(rng: &mut impl Rng) -> f64 {
    let u: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let v: f64 = rng.random();
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

/// The initial map: the first two principal components scaled to std 1e-4 along the first
/// (random when asked, or when the data have no variance).
fn initial_map(x: &Matrix, cfg: &TsneConfig) -> Vec<[f64; 2]> {
    let n = x.rows();
    if cfg.init == TsneInit::Pca {
        let scores = pca(x, 2).scores;
        let first: Vec<f64> = scores.iter().map(|s| s.first().copied().unwrap_or(0.0)).collect();
        let mean = first.iter().sum::<f64>() / n.max(1) as f64;
        // np.std: the population standard deviation.
        let sd = (first.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n.max(1) as f64).sqrt();
        if sd > 0.0 && scores.iter().all(|s| s.len() == 2) {
            return scores.iter().map(|s| [s[0] / sd * 1e-4, s[1] / sd * 1e-4]).collect();
        }
    }
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    (0..n).map(|_| [1e-4 * normal(&mut rng), 1e-4 * normal(&mut rng)]).collect()
}

/// Runs t-SNE on the rows of `x`. `on_iteration(k)` is called after iteration `k` (1-based),
/// for progress bars.
pub fn tsne(x: &Matrix, cfg: &TsneConfig, mut on_iteration: impl FnMut(usize)) -> Tsne {
    let n = x.rows();
    let perplexity = effective_perplexity(cfg.perplexity, n);
    if n < 2 {
        return Tsne { points: vec![[0.0; 2]; n], kl_divergence: 0.0, perplexity };
    }
    let p = joint_probabilities(x, perplexity);
    let mut y = initial_map(x, cfg);
    let lr =
        cfg.learning_rate.unwrap_or_else(|| (n as f64 / cfg.early_exaggeration / 4.0).max(50.0));
    let stages = [
        (0..cfg.exaggeration_iterations.min(cfg.iterations), cfg.early_exaggeration, 0.5),
        (cfg.exaggeration_iterations.min(cfg.iterations)..cfg.iterations, 1.0, 0.8),
    ];
    for (range, exaggeration, momentum) in stages {
        // Each stage starts afresh, as scikit-learn's `_gradient_descent` calls do.
        let mut velocity = vec![[0.0f64; 2]; n];
        let mut gains = vec![[1.0f64; 2]; n];
        for it in range {
            let grad = gradient(&p, &y, exaggeration);
            for i in 0..n {
                for c in 0..2 {
                    // Opposite signs: still moving the right way, so speed up.
                    if velocity[i][c] * grad[i][c] < 0.0 {
                        gains[i][c] += 0.2;
                    } else {
                        gains[i][c] *= 0.8;
                    }
                    gains[i][c] = gains[i][c].max(MIN_GAIN);
                    velocity[i][c] = momentum * velocity[i][c] - lr * gains[i][c] * grad[i][c];
                    y[i][c] += velocity[i][c];
                }
            }
            on_iteration(it + 1);
        }
    }
    Tsne { kl_divergence: kl_divergence(&p, &y), points: y, perplexity }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two Gaussian clusters in 10-D, 30 points each, centres 20 apart (unit spread).
    fn two_clusters(seed: u64) -> (Matrix, Vec<usize>) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut rows = Vec::new();
        let mut labels = Vec::new();
        for k in 0..60 {
            let c = k % 2;
            let centre = if c == 0 { 0.0 } else { 20.0 / 10f64.sqrt() };
            rows.push((0..10).map(|_| centre + normal(&mut rng)).collect());
            labels.push(c);
        }
        (Matrix::from_rows(&rows).unwrap_or_else(|e| panic!("{e}")), labels)
    }

    fn fast() -> TsneConfig {
        TsneConfig { iterations: 500, ..TsneConfig::default() }
    }

    #[test]
    fn conditional_rows_reach_the_perplexity() {
        let (x, _) = two_clusters(3);
        for i in [0, 7, 59] {
            let p = conditional_row(&x, i, 10.0);
            assert_eq!(p[i], 0.0);
            assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-12);
            let h: f64 = -p.iter().filter(|&&v| v > 0.0).map(|v| v * v.ln()).sum::<f64>();
            assert!((h.exp() - 10.0).abs() < 1e-3, "perplexity {}", h.exp());
        }
        let p = joint_probabilities(&x, 10.0);
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        assert_eq!(p[1], p[60]); // symmetric
    }

    #[test]
    fn separated_clusters_stay_separated() {
        let (x, labels) = two_clusters(1);
        for init in [TsneInit::Pca, TsneInit::Random] {
            let t = tsne(&x, &TsneConfig { init, ..fast() }, |_| {});
            assert_eq!(t.perplexity, 59.0 / 3.0);
            assert!(t.kl_divergence.is_finite() && t.kl_divergence >= 0.0);
            for (i, a) in t.points.iter().enumerate() {
                let nearest = (0..t.points.len())
                    .filter(|&j| j != i)
                    .min_by(|&j, &k| {
                        let d = |b: &[f64; 2]| (a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2);
                        d(&t.points[j]).total_cmp(&d(&t.points[k]))
                    })
                    .unwrap_or(i);
                assert_eq!(labels[nearest], labels[i], "{init:?}: point {i}'s neighbour {nearest}");
            }
        }
    }

    #[test]
    fn same_seed_same_map() {
        let (x, _) = two_clusters(2);
        let cfg = TsneConfig { init: TsneInit::Random, iterations: 300, seed: 9, ..fast() };
        let mut calls = 0;
        let a = tsne(&x, &cfg, |_| calls += 1);
        assert_eq!(calls, 300);
        assert_eq!(a, tsne(&x, &cfg, |_| {}));
        assert_ne!(a.points, tsne(&x, &TsneConfig { seed: 10, ..cfg }, |_| {}).points);
        let pca_init = TsneConfig { iterations: 300, ..fast() };
        assert_eq!(tsne(&x, &pca_init, |_| {}), tsne(&x, &pca_init, |_| {}));
    }

    #[test]
    fn tiny_inputs() {
        let one = Matrix::from_rows(&[vec![1.0, 2.0]]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(tsne(&one, &fast(), |_| {}).points, vec![[0.0, 0.0]]);
        let two = Matrix::from_rows(&[vec![0.0], vec![1.0]]).unwrap_or_else(|e| panic!("{e}"));
        let t = tsne(&two, &TsneConfig { iterations: 50, ..fast() }, |_| {});
        assert!(t.points.iter().flatten().all(|v| v.is_finite()));
        assert_eq!(t.perplexity, 1.0);
    }
}
