//! Duplicate images: groups of byte-identical files (same SHA-256). FracAtlas is known to hold
//! some; a split must keep each group in one partition or the test set leaks into training.

use std::collections::BTreeMap;

/// Groups of indices whose hashes are equal, each sorted, groups in order of first member.
/// Only groups of two or more are returned.
pub fn duplicate_groups<'a>(hashes: impl IntoIterator<Item = &'a str>) -> Vec<Vec<usize>> {
    let mut by_hash: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, h) in hashes.into_iter().enumerate() {
        by_hash.entry(h).or_default().push(i);
    }
    let mut groups: Vec<Vec<usize>> = by_hash.into_values().filter(|g| g.len() > 1).collect();
    groups.sort_by_key(|g| g[0]);
    groups
}

/// For every index, the smallest index of its duplicate group (itself when unique).
pub fn group_leaders<'a>(hashes: impl IntoIterator<Item = &'a str>) -> Vec<usize> {
    let mut first: BTreeMap<&str, usize> = BTreeMap::new();
    hashes.into_iter().enumerate().map(|(i, h)| *first.entry(h).or_insert(i)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_and_leaders() {
        let h = ["a", "b", "a", "c", "b", "a"];
        assert_eq!(duplicate_groups(h), vec![vec![0, 2, 5], vec![1, 4]]);
        assert_eq!(group_leaders(h), vec![0, 1, 0, 3, 1, 0]);
    }
}
