//! Quasi-random points for the search: the Halton sequence (one prime base per dimension),
//! rotated by a seeded random shift modulo 1 (Cranley–Patterson), so `--seed` moves the points
//! while they keep covering the unit cube evenly. Trial `i` uses point `i`.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The first `n` primes.
pub fn primes(n: usize) -> Vec<u64> {
    let mut out: Vec<u64> = Vec::with_capacity(n);
    let mut candidate = 2u64;
    while out.len() < n {
        if out.iter().take_while(|&&p| p * p <= candidate).all(|&p| !candidate.is_multiple_of(p)) {
            out.push(candidate);
        }
        candidate += 1;
    }
    out
}

/// Van der Corput radical inverse of `i` in `base`: the digits of `i` mirrored about the
/// radix point, in [0, 1).
pub fn radical_inverse(mut i: u64, base: u64) -> f64 {
    let inv = 1.0 / base as f64;
    let mut scale = inv;
    let mut x = 0.0;
    while i > 0 {
        x += (i % base) as f64 * scale;
        i /= base;
        scale *= inv;
    }
    x
}

/// A shifted Halton sequence in `dims` dimensions.
#[derive(Debug, Clone)]
pub struct Halton {
    bases: Vec<u64>,
    shift: Vec<f64>,
}

impl Halton {
    /// Bases 2, 3, 5, ...; the shift is drawn from `seed`.
    pub fn new(dims: usize, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let shift = (0..dims).map(|_| rng.random::<f64>()).collect();
        Self { bases: primes(dims), shift }
    }

    /// Without a shift: the plain Halton sequence (tests).
    pub fn unshifted(dims: usize) -> Self {
        Self { bases: primes(dims), shift: vec![0.0; dims] }
    }

    pub fn dims(&self) -> usize {
        self.bases.len()
    }

    /// Point `i` (0-based), every coordinate in [0, 1).
    pub fn point(&self, i: u64) -> Vec<f64> {
        self.bases
            .iter()
            .zip(&self.shift)
            .map(|(&b, &s)| {
                let x = radical_inverse(i, b) + s;
                let x = x - x.floor();
                if x >= 1.0 { 0.0 } else { x }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_primes() {
        assert_eq!(primes(8), vec![2, 3, 5, 7, 11, 13, 17, 19]);
    }

    #[test]
    fn radical_inverse_mirrors_digits() {
        assert_eq!(radical_inverse(0, 2), 0.0);
        assert_eq!(radical_inverse(1, 2), 0.5);
        assert_eq!(radical_inverse(6, 2), 0.375); // 110b -> 0.011b
        assert!((radical_inverse(5, 3) - 7.0 / 9.0).abs() < 1e-12); // 12 in base 3 -> 0.21
    }

    #[test]
    fn points_lie_in_the_unit_cube_and_depend_on_the_seed() {
        let h = Halton::new(6, 3);
        for i in 0..2000 {
            let p = h.point(i);
            assert_eq!(p.len(), 6);
            assert!(p.iter().all(|x| (0.0..1.0).contains(x)), "{p:?}");
        }
        assert_eq!(Halton::new(6, 3).point(5), h.point(5));
        assert_ne!(Halton::new(6, 4).point(5), h.point(5));
    }

    /// Each of the first b^k points puts exactly one coordinate in every cell of width b^-k,
    /// with or without the rotation (a rotation modulo 1 maps the grid j/b^k onto itself
    /// shifted, one point per cell still).
    #[test]
    fn stratified_in_every_dimension() {
        for h in [Halton::unshifted(3), Halton::new(3, 11)] {
            for (d, n) in [(0, 64usize), (1, 81), (2, 125)] {
                let mut cells = vec![0usize; n];
                for i in 0..n as u64 {
                    // (the unshifted points sit on the cell edges: round-off must not
                    // push them into the cell below)
                    let cell = (h.point(i)[d] * n as f64 + 1e-9) as usize;
                    cells[cell.min(n - 1)] += 1;
                }
                assert!(cells.iter().all(|&c| c == 1), "dimension {d}: {cells:?}");
            }
        }
    }

    /// Low discrepancy in 2D: every box [0,a)x[0,b) on a grid holds close to n·a·b of the
    /// first n points, much closer than independent uniform points typically do.
    #[test]
    fn low_discrepancy_in_two_dimensions() {
        let n = 1000;
        let h = Halton::new(2, 1);
        let pts: Vec<Vec<f64>> = (0..n).map(|i| h.point(i)).collect();
        let mut worst: f64 = 0.0;
        for a in 1..=10 {
            for b in 1..=10 {
                let (a, b) = (a as f64 / 10.0, b as f64 / 10.0);
                let inside = pts.iter().filter(|p| p[0] < a && p[1] < b).count() as f64;
                worst = worst.max((inside / n as f64 - a * b).abs());
            }
        }
        // Random points: ~1/sqrt(n) ≈ 0.03; Halton: O(log²n / n).
        assert!(worst < 0.01, "local discrepancy {worst}");
    }
}
