"""Reference outputs of torchvision's Faster R-CNN ResNet50-FPN v2 for the Rust parity test
(models/tests/frcnn_parity.rs).

For each case `name:nc:min_size:max_size:HxW[,HxW...]:post_nms:score_thresh` it builds
`fasterrcnn_resnet50_fpn_v2(weights=None, weights_backbone=None, num_classes=nc,
min_size=min_size, max_size=max_size, rpn_post_nms_top_n_test=post_nms,
box_score_thresh=score_thresh)` with a fixed seed, randomises it so that eval mode is a real test
(see `randomize`), runs it in eval mode on random images of the given sizes, and writes into
OUT/<name>/:

  weights.safetensors  the state_dict (num_batches_tracked included: the loader must skip it)
  tensors.safetensors  image{i} [3,H,W]; batch [B,3,Hp,Wp] (after the transform);
                       feat_{0,1,2,3,pool} FPN levels; prop{i}_boxes [K,4] / prop{i}_scores [K]
                       (RPN proposals, resized-image pixels); res{i}_boxes/_scores/_labels (RoI
                       heads output, resized-image pixels); det{i}_boxes/_scores/_labels (final,
                       original pixels)
  meta.json            parameter count, case, image sizes, counts, timings

It also writes OUT/roi_align/tensors.safetensors: torchvision's MultiScaleRoIAlign and roi_align
on random feature maps and boxes that include degenerate, border and outside boxes.
Nothing is downloaded (no pretrained weights are requested).

Tied scores: see `stable_nms_ties`, applied before the model runs.
"""

import argparse
import json
import os
import sys
import time
from collections import OrderedDict


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--case", action="append", required=True,
                    help="name:nc:min_size:max_size:HxW[,HxW...]:post_nms:score_thresh")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)

    import torch
    torch.set_num_threads(2)

    roi_align_reference(os.path.join(args.out, "roi_align"), args.seed)
    for case in args.case:
        run_case(case, args.out, args.seed)


def stable_nms_ties():
    """Makes torchvision's per-category `batched_nms` order *exactly* equal scores by index.

    Above 1,000 boxes on the CPU, `batched_nms` runs one NMS per category and orders the union
    of the kept boxes with `scores.sort(descending=True)`, which promises nothing about ties:
    on an AVX2-only CPU, PyTorch's vectorised sort puts two proposals with bit-identical
    objectness in the other order than on AVX-512 machines (seen on the negative image of
    `frcnn_loss_parity`: the proposal lists then disagree at two positions, and the recorded
    RoI sample indices point at swapped boxes). Both orders are valid torchvision outputs; this
    wrapper picks the stable one (index order among ties) on every machine, which is what the
    Rust side does. It keeps torchvision's own NMS and only reorders what that returned.
    """
    import torchvision.ops.boxes as box_ops

    vanilla = box_ops._batched_nms_vanilla
    if getattr(vanilla, "stable_ties", False):
        return

    def vanilla_stable_ties(boxes, scores, idxs, iou_threshold):
        keep = vanilla(boxes, scores, idxs, iou_threshold).sort().values  # kept set, index order
        return keep[scores[keep].sort(descending=True, stable=True)[1]]

    vanilla_stable_ties.stable_ties = True
    box_ops._batched_nms_vanilla = vanilla_stable_ties


def run_case(case, out, seed):
    import torch
    from safetensors.torch import save_file
    from torchvision.models.detection import fasterrcnn_resnet50_fpn_v2

    stable_nms_ties()
    name, nc, min_size, max_size, sizes, post_nms, thresh = case.split(":")
    nc, min_size, max_size, post_nms, thresh = int(nc), int(min_size), int(max_size), int(post_nms), float(thresh)
    sizes = [tuple(int(v) for v in s.split("x")) for s in sizes.split(",")]

    torch.manual_seed(seed)
    model = fasterrcnn_resnet50_fpn_v2(
        weights=None,
        weights_backbone=None,
        num_classes=nc,
        min_size=min_size,
        max_size=max_size,
        rpn_post_nms_top_n_test=post_nms,
        box_score_thresh=thresh,
    )
    params = sum(p.numel() for p in model.parameters())
    t0 = time.perf_counter()
    randomize(model, sizes)
    randomize_s = time.perf_counter() - t0
    images = [torch.rand(3, h, w) for h, w in sizes]

    captured = {}
    model.transform.register_forward_hook(lambda m, i, o: captured.__setitem__("transform", o))
    model.backbone.register_forward_hook(lambda m, i, o: captured.__setitem__("features", o))
    # The transform's postprocess rewrites the RoI heads' result dicts in place: copy them now.
    model.roi_heads.register_forward_hook(
        lambda m, i, o: captured.__setitem__("roi_heads", [{k: v.clone() for k, v in r.items()} for r in o[0]])
    )
    filter_proposals = model.rpn.filter_proposals

    def capture_proposals(*a, **k):
        res = filter_proposals(*a, **k)
        captured["proposals"] = res
        return res

    model.rpn.filter_proposals = capture_proposals
    model.eval()
    with torch.no_grad():
        t0 = time.perf_counter()
        dets = model(images)
        forward_s = time.perf_counter() - t0

    tensors = {f"image{i}": img for i, img in enumerate(images)}
    image_list, _ = captured["transform"]
    tensors["batch"] = image_list.tensors
    for k, v in captured["features"].items():
        tensors[f"feat_{k}"] = v
    boxes, scores = captured["proposals"]
    for i, (b, s) in enumerate(zip(boxes, scores)):
        tensors[f"prop{i}_boxes"], tensors[f"prop{i}_scores"] = b, s
    resized = captured["roi_heads"]
    for i, (r, d) in enumerate(zip(resized, dets)):
        for key in ("boxes", "scores", "labels"):
            tensors[f"res{i}_{key}"] = r[key]
            tensors[f"det{i}_{key}"] = d[key]

    case_dir = os.path.join(out, name)
    os.makedirs(case_dir, exist_ok=True)
    sd = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(sd, os.path.join(case_dir, "weights.safetensors"))
    save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(case_dir, "tensors.safetensors"))
    meta = dict(
        name=name, nc=nc, min_size=min_size, max_size=max_size, sizes=sizes, post_nms=post_nms,
        score_thresh=thresh, params=params, image_sizes=[list(s) for s in image_list.image_sizes],
        proposals=[int(b.shape[0]) for b in boxes], detections=[int(d["boxes"].shape[0]) for d in dets],
        forward_s=forward_s, randomize_s=randomize_s, threads=torch.get_num_threads(),
    )
    with open(os.path.join(case_dir, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print(f"{name}: nc={nc} params={params} proposals={meta['proposals']} detections={meta['detections']} "
          f"randomize {randomize_s:.2f}s forward {forward_s:.2f}s -> {case_dir}", file=sys.stderr)


def randomize(model, sizes):
    """Weights for which eval mode is a real test. Batch-norm statistics come from one
    training-mode pass on other random images of the same sizes (cumulative average) and are then
    jittered, so eval-mode BN is exercised and activations stay well scaled through ResNet50.
    Then, in eval mode, the heads' last layers are rescaled per
    output channel around the channel's mean, with a random offset, so that the largest deviation
    seen is 8 for objectness logits, 1 for RPN deltas, 4 for class logits and 3 for box deltas:
    the features have heavy tails (padding, image borders), and scaling by the extremes rather
    than the spread keeps the best scores away from saturation (sigmoid(8) = 0.99966; a score
    of exactly 1.0 would tie), while boxes still move off their anchors and proposals and the
    detections are non-trivial. Both passes keep only the top 100 RPN proposals (enough samples
    for the box head's statistics; a tenth of the box head's time)."""
    import torch

    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    calib = [torch.rand(3, h, w) for h, w in sizes]
    post = dict(model.rpn._post_nms_top_n)
    model.rpn._post_nms_top_n["testing"] = 100
    with torch.no_grad():
        for m in bns:
            m.weight.uniform_(0.5, 1.5)
            m.bias.uniform_(-0.2, 0.2)
            m.reset_running_stats()
            m.momentum = None
        model.eval()
        for m in bns:
            m.train()
        model(calib)
        for m in bns:
            m.momentum = 0.1
            m.running_mean.add_(torch.empty_like(m.running_mean).uniform_(-0.1, 0.1))
            m.running_var.mul_(torch.empty_like(m.running_var).uniform_(0.8, 1.25))
        model.eval()

        seen = {}
        head, pred = model.rpn.head, model.roi_heads.box_predictor
        layers = ((head.cls_logits, "obj", 8.0), (head.bbox_pred, "rpn_box", 1.0),
                  (pred.cls_score, "cls", 4.0), (pred.bbox_pred, "box", 3.0))

        def recorder(key):
            # Per output channel: [N, C] for linear layers, [B, C, H, W] -> [B·H·W, C] for convs.
            def hook(m, i, o):
                o = o.transpose(0, 1).flatten(1).T if o.dim() == 4 else o
                seen.setdefault(key, []).append(o)
            return hook

        hooks = [layer.register_forward_hook(recorder(key)) for layer, key, _ in layers]
        model(calib)
        model.rpn._post_nms_top_n = post
        for hk in hooks:
            hk.remove()
        for layer, key, target in layers:
            values = torch.cat(seen[key], 0)  # [N, C]
            mean = values.mean(0)
            scale = 0.8 * target / (values - mean).abs().amax(0).clamp_min(1e-12)
            shape = (-1,) + (1,) * (layer.weight.dim() - 1)
            layer.weight.mul_(scale.view(shape))
            offset = torch.empty_like(scale).uniform_(-0.2 * target, 0.2 * target)
            layer.bias.sub_(mean).mul_(scale).add_(offset)


def roi_align_reference(out_dir, seed):
    """torchvision's MultiScaleRoIAlign (what the detector uses) and plain roi_align variants."""
    import torch
    from safetensors.torch import save_file
    from torchvision.ops import MultiScaleRoIAlign, roi_align

    g = torch.Generator().manual_seed(seed + 1)
    image_shapes = [(369, 320), (312, 416)]  # resized sizes; batch padded to 384 x 416
    feats = OrderedDict((str(i), torch.randn(2, 8, 96 >> i, 104 >> i, generator=g)) for i in range(4))
    boxes = []
    for h, w in image_shapes:
        n = 60
        cx = torch.rand(n, generator=g) * (w + 40) - 20
        cy = torch.rand(n, generator=g) * (h + 40) - 20
        bw = torch.exp(torch.rand(n, generator=g) * 6.0)  # 1 .. 400 px
        bh = bw * torch.exp(torch.rand(n, generator=g) * 2.0 - 1.0)
        b = torch.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 1)
        special = torch.tensor([
            [10.0, 10.0, 10.0, 10.0],          # degenerate (forced to 1x1 feature pixel)
            [0.0, 0.0, float(w), float(h)],    # whole image: deepest level
            [w - 3.0, h - 3.0, w + 50.0, h + 50.0],  # over the border
            [-200.0, -200.0, -150.0, -120.0],  # outside
            [1000.0, 5.0, 1100.0, 30.0],       # outside on the right
            [3.3, 7.9, 4.1, 9.2],              # sub-pixel
        ])
        boxes.append(torch.cat([b, special], 0))
    pool = MultiScaleRoIAlign(["0", "1", "2", "3"], 7, 2)
    tensors = {f"feat_{k}": v for k, v in feats.items()}
    tensors.update({f"boxes{i}": b for i, b in enumerate(boxes)})
    tensors["msra"] = pool(feats, boxes, image_shapes)
    rois = torch.cat([torch.cat([torch.full((b.shape[0], 1), float(i)), b], 1) for i, b in enumerate(boxes)], 0)
    tensors["rois"] = rois
    tensors["ra_aligned"] = roi_align(feats["0"], rois, (7, 7), 0.25, 2, aligned=True)
    tensors["ra_s3"] = roi_align(feats["1"], rois, (5, 3), 0.125, 3, aligned=False)
    os.makedirs(out_dir, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(out_dir, "tensors.safetensors"))


if __name__ == "__main__":
    main()
