//! Isolation Forest (Liu, Ting & Zhou 2008), as scikit-learn's `IsolationForest` builds and
//! scores it: outliers are few and different, so random axis-parallel cuts isolate them in
//! fewer steps than ordinary points.
//!
//! - **A tree** is grown on ψ points drawn without replacement (ψ = min(256, n)): at each node
//!   pick a feature at random among those not constant on the node's points, cut at a
//!   uniform threshold between their min and max (`x ≤ t` goes left), and stop at one point
//!   or at depth `⌈log₂ ψ⌉`.
//! - **Path length** `h(x)` of a point in a tree: the depth of the leaf it falls into plus
//!   `c(m)` for the `m` training points left there (the expected depth of the subtree that was
//!   not grown), where `c(m) = 2 H(m − 1) − 2 (m − 1) / m` is the average path length of an
//!   unsuccessful search in a binary search tree, `H(i) ≈ ln i + γ`; `c(1) = 0`, `c(2) = 1`.
//! - **Anomaly score** `s(x) = 2^(−E[h(x)] / c(ψ))`, in (0, 1): near 1 for points isolated
//!   quickly, about 0.5 or less for ordinary ones. (scikit-learn's `score_samples` is `−s`.)
//!
//! Each tree has its own random stream of one seed, so the forest is the same whatever order
//! the trees are grown in.

use rand::seq::index::sample;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::matrix::Matrix;

/// Forest settings; [`Default`] is scikit-learn's (100 trees, ψ = 256).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IsolationForestConfig {
    pub trees: usize,
    /// Points per tree, ψ (capped at the number of points).
    pub subsample: usize,
    pub seed: u64,
}

impl Default for IsolationForestConfig {
    fn default() -> Self {
        Self { trees: 100, subsample: 256, seed: 0 }
    }
}

/// Euler–Mascheroni constant γ.
const EULER_GAMMA: f64 = 0.577_215_664_901_532_9;

/// `c(m)`: the average path length of an unsuccessful search in a binary search tree of `m`
/// points, used to normalise path lengths.
pub fn average_path_length(m: usize) -> f64 {
    match m {
        0 | 1 => 0.0,
        2 => 1.0,
        _ => {
            let m = m as f64;
            2.0 * ((m - 1.0).ln() + EULER_GAMMA) - 2.0 * (m - 1.0) / m
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    /// `x[feature] ≤ threshold` goes to `left`, else `right` (indices into the tree's nodes).
    Split { feature: usize, threshold: f64, left: usize, right: usize },
    /// `size` training points ended here.
    Leaf { size: usize },
}

/// One isolation tree.
#[derive(Debug, Clone, PartialEq)]
struct Tree {
    nodes: Vec<Node>,
}

impl Tree {
    /// Grows a tree on the rows `points` of `x`.
    fn grow(x: &Matrix, points: Vec<usize>, max_depth: usize, rng: &mut ChaCha8Rng) -> Self {
        let mut tree = Tree { nodes: Vec::new() };
        // The features in a random order, reshuffled lazily (a running Fisher–Yates).
        let mut features: Vec<usize> = (0..x.cols()).collect();
        tree.grow_node(x, points, 0, max_depth, &mut features, rng);
        tree
    }

    /// Adds the node for `points` at `depth` and returns its index.
    fn grow_node(
        &mut self,
        x: &Matrix,
        mut points: Vec<usize>,
        depth: usize,
        max_depth: usize,
        features: &mut [usize],
        rng: &mut ChaCha8Rng,
    ) -> usize {
        let index = self.nodes.len();
        self.nodes.push(Node::Leaf { size: points.len() });
        if depth >= max_depth || points.len() <= 1 {
            return index;
        }
        // Draw features without replacement until one varies on these points.
        let d = features.len();
        let mut cut = None;
        for k in 0..d {
            features.swap(k, rng.random_range(k..d));
            let f = features[k];
            let (lo, hi) =
                points.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &p| {
                    let v = x.row(p)[f];
                    (lo.min(v), hi.max(v))
                });
            if hi > lo {
                // Uniform in [lo, hi); lo ≤ t < hi keeps both sides non-empty.
                let mut t = lo + rng.random::<f64>() * (hi - lo);
                if t >= hi {
                    t = lo;
                }
                cut = Some((f, t));
                break;
            }
        }
        // Every feature constant: the points cannot be told apart.
        let Some((feature, threshold)) = cut else { return index };
        let right_points: Vec<usize> =
            points.iter().copied().filter(|&p| x.row(p)[feature] > threshold).collect();
        points.retain(|&p| x.row(p)[feature] <= threshold);
        let left = self.grow_node(x, points, depth + 1, max_depth, features, rng);
        let right = self.grow_node(x, right_points, depth + 1, max_depth, features, rng);
        self.nodes[index] = Node::Split { feature, threshold, left, right };
        index
    }

    /// `h(x)`: the leaf's depth plus `c(size)` for the points left in it.
    fn path_length(&self, row: &[f64]) -> f64 {
        let (mut node, mut depth) = (0, 0usize);
        loop {
            match self.nodes[node] {
                Node::Split { feature, threshold, left, right } => {
                    node = if row[feature] <= threshold { left } else { right };
                    depth += 1;
                }
                Node::Leaf { size } => return depth as f64 + average_path_length(size),
            }
        }
    }
}

/// A fitted forest.
#[derive(Debug, Clone, PartialEq)]
pub struct IsolationForest {
    trees: Vec<Tree>,
    /// ψ actually used.
    subsample: usize,
    cols: usize,
}

impl IsolationForest {
    /// Grows `cfg.trees` trees on the rows of `x`.
    pub fn fit(x: &Matrix, cfg: &IsolationForestConfig) -> Self {
        let n = x.rows();
        let psi = cfg.subsample.min(n);
        // ⌈log₂ ψ⌉: about the average depth of a tree of ψ points.
        let max_depth = (psi.max(2) as f64).log2().ceil() as usize;
        let trees = (0..cfg.trees)
            .into_par_iter()
            .map(|t| {
                let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
                rng.set_stream(t as u64);
                let points = sample(&mut rng, n, psi).into_vec();
                Tree::grow(x, points, max_depth, &mut rng)
            })
            .collect();
        Self { trees, subsample: psi, cols: x.cols() }
    }

    /// `E[h(x)]` over the trees.
    pub fn mean_path_length(&self, row: &[f64]) -> f64 {
        if self.trees.is_empty() {
            return 0.0;
        }
        self.trees.iter().map(|t| t.path_length(row)).sum::<f64>() / self.trees.len() as f64
    }

    /// `s(x) = 2^(−E[h(x)] / c(ψ))`; 0.5 (no information) when ψ < 2 or `row` has the wrong
    /// length.
    pub fn score(&self, row: &[f64]) -> f64 {
        let c = average_path_length(self.subsample);
        if c <= 0.0 || row.len() != self.cols {
            return 0.5;
        }
        2f64.powf(-self.mean_path_length(row) / c)
    }

    /// [`IsolationForest::score`] of every row of `x`.
    pub fn score_all(&self, x: &Matrix) -> Vec<f64> {
        (0..x.rows()).into_par_iter().map(|i| self.score(x.row(i))).collect()
    }
}

/// Indices of the `k` highest scores, highest first (ties: the earlier row first).
pub fn top_k(scores: &[f64], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    order.truncate(k);
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 300 points of a unit Gaussian cloud in 8-D plus one far away (row 123).
    fn cloud_with_outlier() -> Matrix {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut rows: Vec<Vec<f64>> =
            (0..300).map(|_| (0..8).map(|_| rng.random::<f64>() * 2.0 - 1.0).collect()).collect();
        rows[123] = vec![6.0, -5.0, 7.0, 6.0, -6.0, 5.0, 6.0, -7.0];
        Matrix::from_rows(&rows).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn average_path_length_matches_the_paper() {
        assert_eq!(average_path_length(1), 0.0);
        assert_eq!(average_path_length(2), 1.0);
        // c(256) = 2 (ln 255 + γ) − 2·255/256 ≈ 10.2448
        assert!((average_path_length(256) - 10.244_770_920_8).abs() < 1e-6);
    }

    #[test]
    fn a_planted_far_point_scores_highest() {
        let x = cloud_with_outlier();
        let forest =
            IsolationForest::fit(&x, &IsolationForestConfig { seed: 3, ..Default::default() });
        let scores = forest.score_all(&x);
        assert!(scores.iter().all(|&s| s > 0.0 && s < 1.0), "scores in (0, 1)");
        assert_eq!(top_k(&scores, 1), vec![123]);
        assert!(scores[123] > 0.7, "{}", scores[123]);
        let median = {
            let mut s = scores.clone();
            s.sort_by(f64::total_cmp);
            s[s.len() / 2]
        };
        assert!(median < 0.5, "ordinary points score about 0.5 or less: {median}");
        // Deterministic for a seed, different for another.
        let again =
            IsolationForest::fit(&x, &IsolationForestConfig { seed: 3, ..Default::default() });
        assert_eq!(scores, again.score_all(&x));
        let other =
            IsolationForest::fit(&x, &IsolationForestConfig { seed: 4, ..Default::default() });
        assert_ne!(scores, other.score_all(&x));
    }

    #[test]
    fn constant_and_tiny_inputs() {
        let same = Matrix::from_rows(&vec![vec![1.0, 1.0]; 10]).unwrap_or_else(|e| panic!("{e}"));
        let f = IsolationForest::fit(&same, &IsolationForestConfig::default());
        // One leaf of 10 points per tree: h = c(10), s = 2^(−c(10)/c(10)) = 0.5.
        assert!(f.score_all(&same).iter().all(|&s| (s - 0.5).abs() < 1e-12));
        let one = Matrix::from_rows(&[vec![1.0]]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            IsolationForest::fit(&one, &IsolationForestConfig::default()).score(&[1.0]),
            0.5
        );
        assert_eq!(top_k(&[0.1, 0.9, 0.9, 0.3], 3), vec![1, 2, 3]);
    }
}
