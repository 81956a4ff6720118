//! Splitting a dataset for training: a stratified train/val/test split and stratified k-fold,
//! both deterministic by seed. Strata are (fractured flag, primary body part); byte-identical
//! duplicates always land in the same partition, so no test image is also a training image.

use std::collections::BTreeMap;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::duplicates::group_leaders;
use super::loader::Dataset;

/// Indices into `Dataset::images` for each partition, each sorted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Split {
    pub train: Vec<usize>,
    pub val: Vec<usize>,
    pub test: Vec<usize>,
}

#[derive(Debug, thiserror::Error)]
pub enum SplitError {
    #[error("fractions must be in [0, 1) and sum below 1 (val {val}, test {test})")]
    BadFractions { val: f64, test: f64 },
    #[error("k-fold needs at least 2 folds, got {0}")]
    TooFewFolds(usize),
}

/// A group of duplicate images (usually one) and its stratum.
struct Group {
    members: Vec<usize>,
}

/// Groups per stratum, in a deterministic order.
fn strata(dataset: &Dataset) -> BTreeMap<(bool, &'static str), Vec<Group>> {
    let leaders = group_leaders(dataset.images.iter().map(|r| r.sha256.as_str()));
    let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, leader) in leaders.iter().enumerate() {
        groups.entry(*leader).or_default().push(i);
    }
    let mut out: BTreeMap<(bool, &'static str), Vec<Group>> = BTreeMap::new();
    for (leader, members) in groups {
        // A group is fractured if any member is (labels of duplicates may disagree).
        let fractured = members.iter().any(|&i| dataset.images[i].meta.is_fractured());
        let part = dataset.images[leader].meta.primary_part_name();
        out.entry((fractured, part)).or_default().push(Group { members });
    }
    out
}

/// Stratified split; within each stratum the groups are shuffled with `seed` and the first
/// `round(n * test)` images go to test, the next `round(n * val)` to val, the rest to train.
pub fn stratified_split(
    dataset: &Dataset,
    val: f64,
    test: f64,
    seed: u64,
) -> Result<Split, SplitError> {
    if !(0.0..1.0).contains(&val) || !(0.0..1.0).contains(&test) || val + test >= 1.0 {
        return Err(SplitError::BadFractions { val, test });
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut split = Split { train: Vec::new(), val: Vec::new(), test: Vec::new() };
    for (_, mut groups) in strata(dataset) {
        groups.shuffle(&mut rng);
        let n: usize = groups.iter().map(|g| g.members.len()).sum();
        let n_test = (n as f64 * test).round() as usize;
        let n_val = (n as f64 * val).round() as usize;
        let (mut in_test, mut in_val) = (0, 0);
        for g in groups {
            let target = if in_test < n_test {
                in_test += g.members.len();
                &mut split.test
            } else if in_val < n_val {
                in_val += g.members.len();
                &mut split.val
            } else {
                &mut split.train
            };
            target.extend(g.members);
        }
    }
    split.train.sort_unstable();
    split.val.sort_unstable();
    split.test.sort_unstable();
    Ok(split)
}

/// Stratified k-fold: the fold (0..k) of every image. Within each stratum, shuffled groups go
/// to the fold that has the fewest images of that stratum so far.
pub fn stratified_kfold(dataset: &Dataset, k: usize, seed: u64) -> Result<Vec<usize>, SplitError> {
    if k < 2 {
        return Err(SplitError::TooFewFolds(k));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut fold_of = vec![0; dataset.images.len()];
    // Start each stratum at a different fold so small strata do not all pile into fold 0.
    for (offset, (_, mut groups)) in strata(dataset).into_iter().enumerate() {
        groups.shuffle(&mut rng);
        let mut sizes = vec![0usize; k];
        for g in groups {
            let fold = (0..k).map(|j| (j + offset) % k).min_by_key(|&j| sizes[j]).unwrap_or(0);
            sizes[fold] += g.members.len();
            for i in g.members {
                fold_of[i] = fold;
            }
        }
    }
    Ok(fold_of)
}

/// Train/val indices of fold `fold` given a k-fold assignment.
pub fn fold_split(fold_of: &[usize], fold: usize) -> (Vec<usize>, Vec<usize>) {
    (0..fold_of.len()).partition(|&i| fold_of[i] != fold)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::dataset::loader::ImageRecord;
    use crate::dataset::record::ImageMeta;

    fn record(i: usize, fractured: bool, part: usize, sha: &str) -> ImageRecord {
        let f = |p| u8::from(part == p);
        ImageRecord {
            meta: ImageMeta {
                image_id: format!("IMG{i:07}.jpg"),
                hand: f(0),
                leg: f(1),
                hip: f(2),
                shoulder: f(3),
                mixed: 0,
                hardware: 0,
                multiscan: 0,
                fractured: u8::from(fractured),
                fracture_count: u32::from(fractured),
                frontal: 1,
                lateral: 0,
                oblique: 0,
            },
            path: format!("IMG{i:07}.jpg").into(),
            width: 10,
            height: 10,
            boxes: Vec::new(),
            sha256: sha.to_string(),
            in_fractured_folder: fractured,
        }
    }

    fn dataset(n: usize) -> Dataset {
        let images = (0..n)
            .map(|i| {
                // every 10th image duplicates the one before it
                let sha = if i % 10 == 9 { format!("h{}", i - 1) } else { format!("h{i}") };
                record(i, i % 5 == 0 || i % 10 == 9 && (i - 1) % 5 == 0, i % 4, &sha)
            })
            .collect();
        Dataset { root: ".".into(), images, issues: Vec::new() }
    }

    #[test]
    fn split_is_a_partition_stratified_and_deterministic() {
        let ds = dataset(1000);
        let s = stratified_split(&ds, 0.15, 0.15, 7).unwrap();
        let mut all: Vec<usize> = s.train.iter().chain(&s.val).chain(&s.test).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..1000).collect::<Vec<_>>());
        assert_eq!(s, stratified_split(&ds, 0.15, 0.15, 7).unwrap());
        assert_ne!(s, stratified_split(&ds, 0.15, 0.15, 8).unwrap());
        // each partition has close to the global fractured fraction
        let frac = |ids: &[usize]| {
            ids.iter().filter(|&&i| ds.images[i].meta.is_fractured()).count() as f64
                / ids.len() as f64
        };
        let global = frac(&(0..1000).collect::<Vec<_>>());
        for part in [&s.train, &s.val, &s.test] {
            assert!((frac(part) - global).abs() < 0.03, "{} vs {global}", frac(part));
        }
        assert!((s.test.len() as i64 - 150).abs() <= 12, "{}", s.test.len());
    }

    #[test]
    fn duplicates_stay_together() {
        let ds = dataset(1000);
        let s = stratified_split(&ds, 0.2, 0.2, 3).unwrap();
        let where_is = |i: usize| {
            if s.train.contains(&i) {
                0
            } else if s.val.contains(&i) {
                1
            } else {
                2
            }
        };
        for i in (9..1000).step_by(10) {
            assert_eq!(where_is(i), where_is(i - 1), "duplicate pair {} {i} split apart", i - 1);
        }
        let folds = stratified_kfold(&ds, 5, 3).unwrap();
        for i in (9..1000).step_by(10) {
            assert_eq!(folds[i], folds[i - 1]);
        }
    }

    #[test]
    fn kfold_is_balanced() {
        let ds = dataset(1000);
        let folds = stratified_kfold(&ds, 5, 1).unwrap();
        for f in 0..5 {
            let (train, val) = fold_split(&folds, f);
            assert_eq!(train.len() + val.len(), 1000);
            assert!((val.len() as i64 - 200).abs() <= 10, "fold {f}: {}", val.len());
            let fr = val.iter().filter(|&&i| ds.images[i].meta.is_fractured()).count();
            // 200 fractured images in all: 40 per fold
            assert!((fr as i64 - 40).abs() <= 3, "fold {f}: {fr} fractured");
        }
        assert!(stratified_kfold(&ds, 1, 1).is_err());
        assert!(stratified_split(&ds, 0.6, 0.5, 1).is_err());
    }
}
