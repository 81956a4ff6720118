//! Metrics on a subset of images (one body part, one box-size bucket, one site): the same COCO
//! evaluation restricted to the chosen images, with the ground truth's category list kept.

use std::collections::HashSet;

use super::coco::{CocoError, CocoEval, evaluate};
use super::coco_json::{CocoDataset, Detection};

/// Evaluates only the images whose ids are in `subset`.
pub fn evaluate_subset(
    gt: &CocoDataset,
    dets: &[Detection],
    subset: &HashSet<i64>,
) -> Result<CocoEval, CocoError> {
    let sub = CocoDataset {
        images: gt.images.iter().filter(|i| subset.contains(&i.id)).cloned().collect(),
        annotations: gt
            .annotations
            .iter()
            .filter(|a| subset.contains(&a.image_id))
            .cloned()
            .collect(),
        categories: gt.categories.clone(),
    };
    let sub_dets: Vec<Detection> =
        dets.iter().filter(|d| subset.contains(&d.image_id)).copied().collect();
    evaluate(&sub, &sub_dets)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::metrics::coco_json::{CocoAnnotation, CocoCategory, CocoImage};

    #[test]
    fn subset_sees_only_its_images() {
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
        let all = evaluate(&gt, &dets).unwrap().stats;
        let one = evaluate_subset(&gt, &dets, &HashSet::from([1])).unwrap().stats;
        let two = evaluate_subset(&gt, &dets, &HashSet::from([2])).unwrap().stats;
        assert!((all.AR100 - 0.5).abs() < 1e-12);
        assert_eq!(one.AR100, 1.0);
        assert_eq!(two.AR100, 0.0);
    }
}
