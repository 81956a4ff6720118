//! Box geometry shared by every model and metric: corner/centre/COCO conversions and IoU.

/// `[x1, y1, x2, y2]` corners.
pub type Xyxy = [f32; 4];

pub fn xywh_to_xyxy([x, y, w, h]: [f32; 4]) -> Xyxy {
    [x, y, x + w, y + h]
}

pub fn xyxy_to_xywh([x1, y1, x2, y2]: Xyxy) -> [f32; 4] {
    [x1, y1, x2 - x1, y2 - y1]
}

pub fn cxcywh_to_xyxy([cx, cy, w, h]: [f32; 4]) -> Xyxy {
    [cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0]
}

pub fn xyxy_to_cxcywh([x1, y1, x2, y2]: Xyxy) -> [f32; 4] {
    [(x1 + x2) / 2.0, (y1 + y2) / 2.0, x2 - x1, y2 - y1]
}

pub fn area(b: Xyxy) -> f32 {
    (b[2] - b[0]).max(0.0) * (b[3] - b[1]).max(0.0)
}

/// Intersection over union of two corner boxes; 0 when the union is empty.
pub fn iou(a: Xyxy, b: Xyxy) -> f32 {
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    let union = area(a) + area(b) - inter;
    if union > 0.0 { inter / union } else { 0.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_round_trip() {
        let b = [10.0, 20.0, 50.0, 80.0];
        assert_eq!(xywh_to_xyxy(xyxy_to_xywh(b)), b);
        assert_eq!(cxcywh_to_xyxy(xyxy_to_cxcywh(b)), b);
    }

    #[test]
    fn iou_cases() {
        let a = [0.0, 0.0, 10.0, 10.0];
        assert_eq!(iou(a, a), 1.0);
        assert_eq!(iou(a, [10.0, 10.0, 20.0, 20.0]), 0.0);
        assert!((iou(a, [5.0, 0.0, 15.0, 10.0]) - 50.0 / 150.0).abs() < 1e-6);
        assert_eq!(iou([0.0; 4], [0.0; 4]), 0.0);
    }
}
