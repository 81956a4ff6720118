//! Principal component analysis: the directions of largest variance of the centred
//! embeddings, from an eigen-decomposition in f64 (libtorch's `linalg_eigh`).
//!
//! With `X_c` the `n × d` centred data, the principal axes are the eigenvectors of the
//! covariance `C = X_cᵀ X_c / (n − 1)` with the largest eigenvalues λ (the variance along each
//! axis), and a point's coordinates are its projections `X_c v`. When there are fewer points
//! than dimensions (`n < d`, e.g. 2048-d ResNet features of a few hundred images), the `n × n`
//! Gram matrix `G = X_c X_cᵀ / (n − 1)` is smaller and has the same non-zero eigenvalues: an
//! eigenvector `u` of `G` gives the axis `v = X_cᵀ u / ‖X_cᵀ u‖`.
//!
//! Signs are made deterministic as scikit-learn does: each axis is flipped so that its
//! largest-magnitude loading is positive.

use tch::{Device, Kind, Tensor};

use super::matrix::Matrix;

/// The first `k` principal components of a data set.
#[derive(Debug, Clone, PartialEq)]
pub struct Pca {
    /// Per point, its coordinates on the components: `[n][k]`.
    pub scores: Vec<Vec<f64>>,
    /// Unit axes in the input space, largest variance first: `[k][d]`.
    pub components: Vec<Vec<f64>>,
    /// Variance along each axis (the eigenvalues λ).
    pub explained_variance: Vec<f64>,
    /// `λ / total variance` (0 when the data have no variance).
    pub explained_variance_ratio: Vec<f64>,
}

fn to_vec(t: &Tensor) -> Vec<f64> {
    let flat = t.to_kind(Kind::Double).contiguous().view([-1]);
    Vec::<f64>::try_from(&flat).unwrap_or_default()
}

/// The first `k` principal components of the rows of `x` (`k` is capped at `min(n, d)`; with
/// fewer than two rows every score is 0).
pub fn pca(x: &Matrix, k: usize) -> Pca {
    let (n, d) = (x.rows(), x.cols());
    let k = k.min(n).min(d);
    if n < 2 || k == 0 {
        return Pca {
            scores: vec![vec![0.0; k]; n],
            components: (0..k)
                .map(|i| (0..d).map(|j| f64::from(u8::from(i == j))).collect())
                .collect(),
            explained_variance: vec![0.0; k],
            explained_variance_ratio: vec![0.0; k],
        };
    }
    let opts = (Kind::Double, Device::Cpu);
    let data = Tensor::from_slice(x.data()).view([n as i64, d as i64]).to_kind(Kind::Double);
    // X_c = X − mean(X)                                            [n, d]
    let xc = &data - data.mean_dim(0, true, Kind::Double);
    let denom = (n - 1) as f64;
    // Total variance = trace(C) = Σ x_c² / (n − 1).
    let total = xc.square().sum(Kind::Double).double_value(&[]) / denom;

    // Eigenpairs in ascending order; the axes we want are the last k.
    let top = |values: &Tensor, vectors: &Tensor| {
        let m = values.size()[0];
        let idx =
            Tensor::arange_start_step(m - 1, m - 1 - k as i64, -1, (Kind::Int64, Device::Cpu));
        (values.index_select(0, &idx), vectors.index_select(1, &idx))
    };
    let (lambda, axes) = if d <= n {
        // C = X_cᵀ X_c / (n − 1)                                    [d, d]
        let c = xc.transpose(0, 1).matmul(&xc) / denom;
        let (w, v) = c.linalg_eigh("L");
        top(&w, &v) // axes: [d, k]
    } else {
        // G = X_c X_cᵀ / (n − 1)                                    [n, n]
        let g = xc.matmul(&xc.transpose(0, 1)) / denom;
        let (w, u) = g.linalg_eigh("L");
        let (lambda, u) = top(&w, &u);
        // v = X_cᵀ u / ‖X_cᵀ u‖ (a zero column stays zero: no variance along it)  [d, k]
        let v = xc.transpose(0, 1).matmul(&u);
        let norm = v.square().sum_dim_intlist(0, true, Kind::Double).sqrt().clamp_min(1e-300);
        (lambda, v / norm)
    };
    // Sign: the largest-|loading| entry of each axis positive.
    let argmax = axes.abs().argmax(0, true); // [1, k]
    let sign = axes.gather(0, &argmax, false).sign();
    let sign = sign.where_self(&sign.ne(0.0), &Tensor::ones([1, k as i64], opts));
    let axes = axes * sign;
    // Scores: X_c v                                                 [n, k]
    let scores = to_vec(&xc.matmul(&axes));
    let components = to_vec(&axes.transpose(0, 1));
    // Round-off can make a zero eigenvalue slightly negative.
    let explained_variance: Vec<f64> = to_vec(&lambda).into_iter().map(|l| l.max(0.0)).collect();
    let explained_variance_ratio =
        explained_variance.iter().map(|l| if total > 0.0 { l / total } else { 0.0 }).collect();
    Pca {
        scores: scores.chunks(k).map(<[f64]>::to_vec).collect(),
        components: components.chunks(d).map(<[f64]>::to_vec).collect(),
        explained_variance,
        explained_variance_ratio,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// A standard normal draw (Box–Muller).
    fn normal(rng: &mut impl Rng) -> f64 {
        let u: f64 = rng.random::<f64>().max(1e-300);
        let v: f64 = rng.random();
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }

    /// `n` points of a Gaussian in `d` dimensions with standard deviations `sd` along the
    /// orthonormal axes `axes`, centred at `centre`.
    fn anisotropic(n: usize, axes: &[Vec<f64>], sd: &[f64], centre: f64, seed: u64) -> Matrix {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let d = axes[0].len();
        let rows: Vec<Vec<f64>> = (0..n)
            .map(|_| {
                let mut p = vec![centre; d];
                for (a, &s) in axes.iter().zip(sd) {
                    let t = s * normal(&mut rng);
                    p.iter_mut().zip(a).for_each(|(p, a)| *p += t * a);
                }
                p
            })
            .collect();
        Matrix::from_rows(&rows).unwrap_or_else(|e| panic!("{e}"))
    }

    fn unit(v: Vec<f64>) -> Vec<f64> {
        let n = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        v.into_iter().map(|x| x / n).collect()
    }

    fn dot(a: &[f64], b: &[f64]) -> f64 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    /// Orthonormal axes in 5-D: a tilted main axis and a second one orthogonal to it.
    fn axes() -> Vec<Vec<f64>> {
        let a = unit(vec![1.0, 2.0, -1.0, 0.5, 0.0]);
        let b = unit(vec![2.0, -1.0, 0.0, 0.0, 1.0]);
        assert!(dot(&a, &b).abs() < 1e-12);
        vec![a, b]
    }

    #[test]
    fn recovers_the_principal_axes_of_an_anisotropic_gaussian() {
        let axes = axes();
        // Standard deviations 10 and 3 along the axes, nothing else.
        let x = anisotropic(2000, &axes, &[10.0, 3.0], 5.0, 1);
        let p = pca(&x, 2);
        assert!(dot(&p.components[0], &axes[0]).abs() > 0.999, "{:?}", p.components[0]);
        assert!(dot(&p.components[1], &axes[1]).abs() > 0.99, "{:?}", p.components[1]);
        assert!((p.explained_variance[0] / 100.0 - 1.0).abs() < 0.1, "{:?}", p.explained_variance);
        assert!((p.explained_variance[1] / 9.0 - 1.0).abs() < 0.1, "{:?}", p.explained_variance);
        let ratio: f64 = p.explained_variance_ratio.iter().sum();
        assert!((ratio - 1.0).abs() < 1e-9, "all the variance lies in two axes: {ratio}");
        // Scores are the centred projections: mean 0, variance λ.
        let s0: Vec<f64> = p.scores.iter().map(|s| s[0]).collect();
        let mean = s0.iter().sum::<f64>() / s0.len() as f64;
        let var = s0.iter().map(|s| s * s).sum::<f64>() / (s0.len() - 1) as f64;
        assert!(mean.abs() < 1e-9 && (var - p.explained_variance[0]).abs() < 1e-6 * var);
        // Largest loading positive.
        for c in &p.components {
            let m = c.iter().copied().fold(0.0f64, |m, v| if v.abs() > m.abs() { v } else { m });
            assert!(m > 0.0);
        }
    }

    #[test]
    fn fewer_points_than_dimensions_use_the_gram_matrix_and_agree() {
        // 5 points in 5-D take the covariance path, padded to 12-D the Gram path.
        let axes = axes();
        let x = anisotropic(5, &axes, &[10.0, 3.0], 0.0, 2);
        let wide: Vec<Vec<f64>> = (0..5).map(|i| [x.row(i), &[0.0; 7][..]].concat()).collect();
        let wide = Matrix::from_rows(&wide).unwrap_or_else(|e| panic!("{e}"));
        let (a, b) = (pca(&x, 2), pca(&wide, 2));
        for (sa, sb) in a.scores.iter().zip(&b.scores) {
            for (u, v) in sa.iter().zip(sb) {
                assert!((u - v).abs() < 1e-8, "{sa:?} vs {sb:?}");
            }
        }
        assert_eq!(b.components[0].len(), 12);
    }

    #[test]
    fn degenerate_inputs() {
        let one = Matrix::from_rows(&[vec![1.0, 2.0]]).unwrap_or_else(|e| panic!("{e}"));
        // k is capped at min(n, d).
        assert_eq!(pca(&one, 2).scores, vec![vec![0.0]]);
        let same = Matrix::from_rows(&[vec![1.0, 2.0], vec![1.0, 2.0], vec![1.0, 2.0]])
            .unwrap_or_else(|e| panic!("{e}"));
        let p = pca(&same, 2);
        assert!(p.scores.iter().flatten().all(|s| s.abs() < 1e-12));
        assert_eq!(p.explained_variance_ratio, vec![0.0, 0.0]);
    }
}
