"""Reference COCO evaluation with pycocotools (and ultralytics' P/R/F1), for parity tests and
benchmarks of our Rust metrics. Test/benchmark dependency only: the product never runs this.

  coco_eval.py cases DIR          DIR/case_N/{gt,dt}.json -> prints JSON {N: [12 stats]}
  coco_eval.py prf FILE           FILE: list of images {gt_boxes, gt_classes, pred_boxes,
                                  pred_scores, pred_classes} -> JSON {p, r, f1, map50, map}
  coco_eval.py bench GT DT N      times loading and evaluate+accumulate+summarize, N runs
"""
import contextlib
import io
import json
import os
import sys
import time


def coco_stats(gt_path, dt_path):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(gt_path)
        dets = json.load(open(dt_path))
        dt = gt.loadRes(dets) if dets else COCO()
        if not dets:
            # pycocotools cannot loadRes an empty list; an empty result set scores as no detections.
            dt.dataset = {"images": gt.dataset["images"], "categories": gt.dataset["categories"], "annotations": []}
            dt.createIndex()
        e = COCOeval(gt, dt, "bbox")
        e.evaluate()
        e.accumulate()
        e.summarize()
    return [float(x) for x in e.stats]


def cases(root):
    out = {}
    for name in sorted(os.listdir(root)):
        d = os.path.join(root, name)
        out[name] = coco_stats(os.path.join(d, "gt.json"), os.path.join(d, "dt.json"))
    json.dump(out, sys.stdout)


def prf(path):
    import numpy as np
    import torch
    from ultralytics.utils.metrics import ap_per_class, box_iou

    iouv = torch.linspace(0.5, 0.95, 10)
    results = []
    for case in json.load(open(path)):
        tps, confs, pcls, tcls = [], [], [], []
        for img in case:
            gt = torch.tensor(img["gt_boxes"], dtype=torch.float32).reshape(-1, 4)
            gc = torch.tensor(img["gt_classes"], dtype=torch.float32)
            pb = torch.tensor(img["pred_boxes"], dtype=torch.float32).reshape(-1, 4)
            pc = torch.tensor(img["pred_classes"], dtype=torch.float32)
            ps = torch.tensor(img["pred_scores"], dtype=torch.float32)
            correct = np.zeros((pb.shape[0], 10), dtype=bool)
            if pb.shape[0] and gt.shape[0]:
                # ultralytics' BaseValidator.match_predictions (use_scipy=False)
                iou = box_iou(gt, pb)
                correct_class = gc[:, None] == pc
                iou = (iou * correct_class).cpu().numpy()
                for i, threshold in enumerate(iouv.cpu().tolist()):
                    matches = np.nonzero(iou >= threshold)
                    matches = np.array(matches).T
                    if matches.shape[0]:
                        if matches.shape[0] > 1:
                            matches = matches[iou[matches[:, 0], matches[:, 1]].argsort()[::-1]]
                            matches = matches[np.unique(matches[:, 1], return_index=True)[1]]
                            matches = matches[np.unique(matches[:, 0], return_index=True)[1]]
                        correct[matches[:, 1].astype(int), i] = True
            tps.append(correct)
            confs.append(ps.numpy())
            pcls.append(pc.numpy())
            tcls.append(gc.numpy())
        tp = np.concatenate(tps, 0)
        conf = np.concatenate(confs, 0)
        pred_cls = np.concatenate(pcls, 0)
        target_cls = np.concatenate(tcls, 0)
        r = ap_per_class(tp, conf, pred_cls, target_cls)
        p, rr, f1, ap = r[2], r[3], r[4], r[5]
        results.append({
            "p": float(p.mean()) if len(p) else 0.0,
            "r": float(rr.mean()) if len(rr) else 0.0,
            "f1": float(f1.mean()) if len(f1) else 0.0,
            "map50": float(ap[:, 0].mean()) if len(ap) else 0.0,
            "map": float(ap.mean()) if len(ap) else 0.0,
        })
    json.dump(results, sys.stdout)


def bench(gt_path, dt_path, runs):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    def median(xs):
        xs = sorted(xs)
        return xs[len(xs) // 2]

    out = {}
    load, ev = [], []
    for _ in range(runs):
        with contextlib.redirect_stdout(io.StringIO()):
            t0 = time.perf_counter()
            gt = COCO(gt_path)
            dt = gt.loadRes(dt_path)
            t1 = time.perf_counter()
            e = COCOeval(gt, dt, "bbox")
            e.evaluate()
            e.accumulate()
            e.summarize()
            t2 = time.perf_counter()
        load.append(t1 - t0)
        ev.append(t2 - t1)
    out["pycocotools"] = {"load_s": median(load), "eval_s": median(ev), "stats": [float(x) for x in e.stats]}
    try:
        from faster_coco_eval import COCO as FCOCO, COCOeval_faster
        load, ev = [], []
        for _ in range(runs):
            with contextlib.redirect_stdout(io.StringIO()):
                t0 = time.perf_counter()
                gt = FCOCO(gt_path)
                dt = gt.loadRes(dt_path)
                t1 = time.perf_counter()
                e = COCOeval_faster(gt, dt, "bbox")
                e.evaluate()
                e.accumulate()
                e.summarize()
                t2 = time.perf_counter()
            load.append(t1 - t0)
            ev.append(t2 - t1)
        out["faster-coco-eval"] = {"load_s": median(load), "eval_s": median(ev), "stats": [float(x) for x in e.stats[:12]]}
    except ImportError:
        pass
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "cases":
        cases(sys.argv[2])
    elif mode == "prf":
        prf(sys.argv[2])
    elif mode == "bench":
        bench(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        sys.exit(f"unknown mode {mode}")
