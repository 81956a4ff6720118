"""Reference outputs of ultralytics' YOLO11 for the Rust parity test (models/tests/yolo_parity.rs).

For each case `name:scale:nc:imgsz:batch` it builds `DetectionModel('yolo11<scale>.yaml', nc=nc)`
offline, randomises weights and batch-norm statistics (so eval-mode batch norm is exercised and
class scores spread out), and writes into OUT/<name>/:

  weights.safetensors  the state_dict (num_batches_tracked included: the loader must skip it)
  tensors.safetensors  input [B,3,S,S]; raw0..raw2 per-level [B,64+nc,H,W]; pred [B,4+nc,N];
                       pred_fused (after model.fuse()); train_boxes [B,64,N] and train_scores
                       [B,nc,N] (training-mode forward) and train_<bn>.running_mean/var after it;
                       per NMS setting k and image b:
                       nms{k}_b{b}_det [K,6] (x1,y1,x2,y2,score,class) and nms{k}_b{b}_idx [K]
  meta.json            parameter count, case, NMS settings

`--bench` also times a fused forward of the first case at its size with 2 threads.
Nothing is downloaded: YOLO_OFFLINE is set and the settings file goes into OUT.
"""

import argparse
import json
import os
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--case", action="append", required=True, help="name:scale:nc:imgsz:batch")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bench", action="store_true")
    args = ap.parse_args()

    os.makedirs(args.out, exist_ok=True)
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_VERBOSE"] = "False"
    os.environ.setdefault("YOLO_CONFIG_DIR", os.path.join(args.out, "ultralytics-config"))

    import torch
    import torchvision  # noqa: F401  (ultralytics' NMS uses torchvision.ops.nms when it is imported)
    from safetensors.torch import save_file
    from ultralytics.utils.nms import non_max_suppression

    torch.set_num_threads(2)
    nms_settings = [
        dict(conf=0.05, iou=0.45, max_det=300, max_nms=30000, agnostic=False),
        dict(conf=0.01, iou=0.7, max_det=50, max_nms=500, agnostic=False),
        dict(conf=0.2, iou=0.3, max_det=300, max_nms=30000, agnostic=True),
    ]

    for case in args.case:
        name, scale, nc, imgsz, batch = case.split(":")
        nc, imgsz, batch = int(nc), int(imgsz), int(batch)
        model = randomized_model(scale, nc, imgsz, args.seed)
        params = sum(p.numel() for p in model.parameters())
        det = model.model[-1]
        bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]

        x = torch.rand(batch, 3, imgsz, imgsz)
        with torch.no_grad():
            pred, preds = model(x)
            feats = preds["feats"]
            raw = [torch.cat((det.cv2[i](f), det.cv3[i](f)), 1) for i, f in enumerate(feats)]

        tensors = {"input": x, "pred": pred}
        tensors.update({f"raw{i}": r for i, r in enumerate(raw)})
        for k, s in enumerate(nms_settings):
            out, keep = non_max_suppression(
                pred.clone(),
                conf_thres=s["conf"],
                iou_thres=s["iou"],
                agnostic=s["agnostic"],
                max_det=s["max_det"],
                max_nms=s["max_nms"],
                return_idxs=True,
            )
            for b in range(batch):
                tensors[f"nms{k}_b{b}_det"] = out[b].float()
                tensors[f"nms{k}_b{b}_idx"] = keep[b].long().view(-1)

        case_dir = os.path.join(args.out, name)
        os.makedirs(case_dir, exist_ok=True)
        sd = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
        save_file(sd, os.path.join(case_dir, "weights.safetensors"))

        # Training mode: batch-statistics BN on the same input, raw outputs flattened as
        # ultralytics' loss sees them, and the running statistics after that one step.
        import copy

        trained = copy.deepcopy(model).train()
        with torch.no_grad():
            tp = trained(x)
        tensors["train_boxes"], tensors["train_scores"] = tp["boxes"], tp["scores"]
        tsd = trained.state_dict()
        for key in ("model.0.bn", "model.10.m.0.attn.pe.bn", "model.23.cv3.2.1.1.bn"):
            tensors[f"train_{key}.running_mean"] = tsd[f"{key}.running_mean"]
            tensors[f"train_{key}.running_var"] = tsd[f"{key}.running_var"]

        model.fuse()
        with torch.no_grad():
            tensors["pred_fused"] = model(x)[0]
        save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(case_dir, "tensors.safetensors"))

        meta = dict(name=name, scale=scale, nc=nc, imgsz=imgsz, batch=batch, params=params, nms=nms_settings)
        if args.bench and case == args.case[0]:
            xb = torch.rand(1, 3, imgsz, imgsz)
            timings = {}
            for label, fmt in (("fused", torch.contiguous_format), ("fused_channels_last", torch.channels_last)):
                m = model.to(memory_format=fmt)
                xi = xb.to(memory_format=fmt)
                with torch.inference_mode():
                    for _ in range(3):
                        m(xi)
                    ts = []
                    for _ in range(10):
                        t0 = time.perf_counter()
                        m(xi)
                        ts.append(time.perf_counter() - t0)
                timings[label] = sorted(ts)[len(ts) // 2] * 1000.0
            meta["bench_ms"] = timings
            meta["threads"] = torch.get_num_threads()
        with open(os.path.join(case_dir, "meta.json"), "w") as f:
            json.dump(meta, f, indent=1)
        print(f"{name}: yolo11{scale} nc={nc} params={params} -> {case_dir}", file=sys.stderr)


def randomized_model(scale, nc, imgsz, seed):
    """yolo11<scale> with nc classes, randomised weights and batch-norm statistics (so eval-mode
    batch norm is exercised and class scores spread out), in eval mode."""
    import torch
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(seed)
    model = DetectionModel(f"yolo11{scale}.yaml", nc=nc, verbose=False)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    with torch.no_grad():
        for m in bns:
            m.weight.uniform_(0.5, 1.5)
            m.bias.uniform_(-0.2, 0.2)
        det = model.model[-1]
        for seq in (*det.cv2, *det.cv3):  # moderate logits: distinct, unsaturated scores
            seq[-1].weight.mul_(0.1)
        for seq in det.cv3:
            seq[-1].bias.uniform_(-4.0, 0.0)  # spread class scores so NMS has work to do
        # Running statistics from one training-mode pass (cumulative average), then jittered:
        # activations stay well scaled through all layers, and eval-mode BN is not the
        # batch statistics of any input.
        for m in bns:
            m.reset_running_stats()
            m.momentum = None
        model.train()
        model(torch.rand(4, 3, imgsz, imgsz))
        for m in bns:
            m.momentum = 0.03
            m.running_mean.add_(torch.empty_like(m.running_mean).uniform_(-0.1, 0.1))
            m.running_var.mul_(torch.empty_like(m.running_var).uniform_(0.8, 1.25))
    model.eval()
    return model


if __name__ == "__main__":
    main()
