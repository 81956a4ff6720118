//! Metrics on a subset of images (one body part, one box-size bucket, one site): the COCO stats
//! and the ultralytics P/R/F1 of the same evaluation restricted to the chosen images, with the
//! ground truth's category list kept (so a class absent from the subset stays -1 / absent
//! rather than shifting the others).

use std::collections::{BTreeMap, HashSet};

use super::coco::{CocoError, CocoEval, CocoStats, evaluate};
use super::coco_json::{CocoDataset, Detection};
use super::prf::{PrfSummary, images_from_coco, precision_recall_f1};

/// Everything measured on one subset.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SubsetMetrics {
    /// Ground-truth images in the subset.
    pub images: usize,
    /// Their annotations (crowd included) and detections (all categories).
    pub annotations: usize,
    pub detections: usize,
    pub stats: CocoStats,
    pub prf: PrfSummary,
    /// The full accumulated COCO arrays, for PR curves.
    #[serde(skip)]
    pub eval: CocoEval,
}

/// Evaluates the ground-truth images whose id satisfies `keep`. A detection for an image the
/// ground truth lacks is an error, as in [`evaluate`], even outside the subset.
pub fn evaluate_subset(
    gt: &CocoDataset,
    dets: &[Detection],
    keep: impl Fn(i64) -> bool,
) -> Result<SubsetMetrics, CocoError> {
    let known: HashSet<i64> = gt.images.iter().map(|i| i.id).collect();
    if let Some((index, d)) = dets.iter().enumerate().find(|(_, d)| !known.contains(&d.image_id)) {
        return Err(CocoError::UnknownImage { index, image_id: d.image_id });
    }
    let sub = CocoDataset {
        images: gt.images.iter().filter(|i| keep(i.id)).cloned().collect(),
        annotations: gt.annotations.iter().filter(|a| keep(a.image_id)).cloned().collect(),
        categories: gt.categories.clone(),
    };
    let sub_dets: Vec<Detection> = dets.iter().filter(|d| keep(d.image_id)).copied().collect();
    let eval = evaluate(&sub, &sub_dets)?;
    let prf = precision_recall_f1(&images_from_coco(&sub, &sub_dets));
    let n_images = sub.images.iter().map(|i| i.id).collect::<HashSet<_>>().len();
    Ok(SubsetMetrics {
        images: n_images,
        annotations: sub.annotations.iter().filter(|a| known.contains(&a.image_id)).count(),
        detections: sub_dets.len(),
        stats: eval.stats,
        prf,
        eval,
    })
}

/// Evaluates the images whose ids are in `ids`.
pub fn evaluate_image_set(
    gt: &CocoDataset,
    dets: &[Detection],
    ids: &HashSet<i64>,
) -> Result<SubsetMetrics, CocoError> {
    evaluate_subset(gt, dets, |id| ids.contains(&id))
}

/// One [`SubsetMetrics`] per named group (e.g. body part -> image ids); groups may overlap.
pub fn evaluate_groups(
    gt: &CocoDataset,
    dets: &[Detection],
    groups: &BTreeMap<String, HashSet<i64>>,
) -> Result<BTreeMap<String, SubsetMetrics>, CocoError> {
    groups
        .iter()
        .map(|(name, ids)| Ok((name.clone(), evaluate_image_set(gt, dets, ids)?)))
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::metrics::coco_json::{CocoAnnotation, CocoCategory, CocoImage};

    fn data() -> (CocoDataset, Vec<Detection>) {
        let image = |id| CocoImage { id, file_name: String::new(), width: 100, height: 100 };
        let ann = |id, image_id| CocoAnnotation {
            id,
            image_id,
            category_id: 1,
            bbox: [10.0, 10.0, 40.0, 40.0],
            area: 1600.0,
            iscrowd: 0,
        };
        let gt = CocoDataset {
            images: vec![image(1), image(2)],
            annotations: vec![ann(1, 1), ann(2, 2)],
            categories: vec![CocoCategory { id: 1, name: "fracture".into() }],
        };
        // Image 1 found, image 2 missed.
        let dets = vec![Detection {
            image_id: 1,
            category_id: 1,
            bbox: [10.0, 10.0, 40.0, 40.0],
            score: 0.9,
        }];
        (gt, dets)
    }

    #[test]
    fn subset_sees_only_its_images() {
        let (gt, dets) = data();
        let all = evaluate(&gt, &dets).unwrap().stats;
        let one = evaluate_image_set(&gt, &dets, &HashSet::from([1])).unwrap();
        let two = evaluate_subset(&gt, &dets, |id| id == 2).unwrap();
        assert!((all.AR100 - 0.5).abs() < 1e-12);
        assert_eq!(one.stats.AR100, 1.0);
        assert_eq!((one.images, one.annotations, one.detections), (1, 1, 1));
        assert!((one.prf.recall - 1.0).abs() < 1e-6 && (one.prf.precision - 1.0).abs() < 1e-6);
        assert_eq!(two.stats.AR100, 0.0);
        assert_eq!(two.prf.recall, 0.0);
    }

    #[test]
    fn groups_and_unknown_images() {
        let (gt, mut dets) = data();
        let groups = BTreeMap::from([
            ("hand".to_string(), HashSet::from([1])),
            ("leg".to_string(), HashSet::from([2])),
        ]);
        let by = evaluate_groups(&gt, &dets, &groups).unwrap();
        assert!((by["hand"].stats.AP - 1.0).abs() < 1e-12);
        assert_eq!(by["leg"].stats.AP, 0.0);
        dets[0].image_id = 9;
        assert!(matches!(
            evaluate_subset(&gt, &dets, |_| true),
            Err(CocoError::UnknownImage { image_id: 9, .. })
        ));
    }
}
