"""Reference numbers for our Rust detection metrics, from the installed peers: pycocotools'
COCOeval (the 12 COCO stats), faster-coco-eval when importable (benchmark only), and
ultralytics' validator matching + ap_per_class (P/R/F1/mAP). Test and benchmark dependency
only: the product never runs this.

  coco_eval.py --cases DIR               DIR/<case>/{gt,dt}.json -> JSON {case: {stats: [12],
                                         bits: [12 float64 bit patterns]}}
  coco_eval.py --prf FILE                FILE: list of cases, each a list of images
                                         {gt_boxes, gt_classes, pred_boxes, pred_scores,
                                         pred_classes} (xyxy) -> JSON [{values: {p, r, f1, conf,
                                         map50, map}, bits: {the same as bit patterns}}]
  coco_eval.py --bench GT DT [--runs N]  times loading, and evaluate+accumulate+summarize,
                                         median of N runs -> JSON {impl: {load_s, eval_s, stats}}
"""
import argparse
import contextlib
import io
import json
import os
import struct
import sys
import time


def bits(x):
    """The float64's bit pattern: serde_json (without float_roundtrip) may parse a printed
    17-digit float 1 ulp off, and the parity tests compare bit for bit."""
    return struct.unpack("<Q", struct.pack("<d", float(x)))[0]


def coco_stats(gt_path, dt_path):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(gt_path)
        with open(dt_path) as f:
            dets = json.load(f)
        if dets:
            dt = gt.loadRes(dets)
        else:
            # loadRes cannot take an empty list (it looks at dets[0]); an empty result set is a
            # results COCO object without annotations.
            dt = COCO()
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
        stats = coco_stats(os.path.join(d, "gt.json"), os.path.join(d, "dt.json"))
        out[name] = {"stats": stats, "bits": [bits(x) for x in stats]}
    json.dump(out, sys.stdout)


def prf(path):
    os.environ.setdefault("YOLO_OFFLINE", "1")
    import types

    import numpy as np
    import torch

    # ultralytics' first import on a machine prints "Creating new Ultralytics Settings" to
    # stdout, which carries this script's JSON: send it to stderr.
    with contextlib.redirect_stdout(sys.stderr):
        from ultralytics.engine.validator import BaseValidator
        from ultralytics.utils.metrics import ap_per_class, box_iou, smooth

    # What DetectionValidator._process_batch does, on a stand-in for the validator.
    validator = types.SimpleNamespace(iouv=torch.linspace(0.5, 0.95, 10))
    results = []
    with open(path) as f:
        all_cases = json.load(f)
    for case in all_cases:
        tps, confs, pcls, tcls = [], [], [], []
        for img in case:
            gt = torch.tensor(img["gt_boxes"], dtype=torch.float32).reshape(-1, 4)
            gc = torch.tensor(img["gt_classes"], dtype=torch.float32)
            pb = torch.tensor(img["pred_boxes"], dtype=torch.float32).reshape(-1, 4)
            pc = torch.tensor(img["pred_classes"], dtype=torch.float32)
            ps = torch.tensor(img["pred_scores"], dtype=torch.float32)
            # The validator sees predictions in NMS output order: descending confidence.
            order = torch.argsort(-ps, stable=True)
            pb, pc, ps = pb[order], pc[order], ps[order]
            if gc.shape[0] == 0 or pc.shape[0] == 0:
                correct = np.zeros((pc.shape[0], 10), dtype=bool)
            else:
                iou = box_iou(gt, pb)
                correct = BaseValidator.match_predictions(validator, pc, gc, iou).cpu().numpy()
            tps.append(correct)
            confs.append(ps.numpy())
            pcls.append(pc.numpy())
            tcls.append(gc.numpy())
        tp = np.concatenate(tps, 0)
        conf = np.concatenate(confs, 0)
        pred_cls = np.concatenate(pcls, 0)
        target_cls = np.concatenate(tcls, 0)
        r = ap_per_class(tp, conf, pred_cls, target_cls)
        p, rr, f1, ap, x = r[2], r[3], r[4], r[5], r[10]
        f1_curve = r[9]
        best = int(smooth(f1_curve.mean(0), 0.1).argmax()) if len(f1_curve) else 0  # as ap_per_class
        values = {
            "p": float(p.mean()) if len(p) else 0.0,
            "r": float(rr.mean()) if len(rr) else 0.0,
            "f1": float(f1.mean()) if len(f1) else 0.0,
            "conf": float(x[best]),
            "map50": float(ap[:, 0].mean()) if len(ap) else 0.0,
            "map": float(ap.mean()) if len(ap) else 0.0,
        }
        results.append({"values": values, "bits": {k: bits(v) for k, v in values.items()}})
    json.dump(results, sys.stdout)


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2]


def time_runs(coco_cls, eval_cls, gt_path, dt_path, runs):
    load, ev = [], []
    for _ in range(runs):
        with contextlib.redirect_stdout(io.StringIO()):
            t0 = time.perf_counter()
            gt = coco_cls(gt_path)
            dt = gt.loadRes(dt_path)
            t1 = time.perf_counter()
            e = eval_cls(gt, dt, "bbox")
            e.evaluate()
            e.accumulate()
            e.summarize()
            t2 = time.perf_counter()
        load.append(t1 - t0)
        ev.append(t2 - t1)
    return {"load_s": median(load), "eval_s": median(ev), "stats": [float(x) for x in e.stats[:12]]}


def bench(gt_path, dt_path, runs):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    out = {"pycocotools": time_runs(COCO, COCOeval, gt_path, dt_path, runs)}
    try:
        from faster_coco_eval import COCO as FCOCO
        from faster_coco_eval import COCOeval_faster
    except ImportError:
        pass
    else:
        out["faster-coco-eval"] = time_runs(FCOCO, COCOeval_faster, gt_path, dt_path, runs)
    json.dump(out, sys.stdout)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--cases", metavar="DIR")
    mode.add_argument("--prf", metavar="FILE")
    mode.add_argument("--bench", nargs=2, metavar=("GT", "DT"))
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    if args.cases:
        cases(args.cases)
    elif args.prf:
        prf(args.prf)
    else:
        bench(args.bench[0], args.bench[1], args.runs)


if __name__ == "__main__":
    main()
