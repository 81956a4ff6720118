"""Reference training losses and gradients of torchvision's Faster R-CNN ResNet50-FPN v2 for the
Rust parity test (models/tests/frcnn_loss_parity.rs).

For each case `name:nc:min_size:max_size:HxW[,HxW...]:nboxes[,nboxes...]` it builds
`fasterrcnn_resnet50_fpn_v2(weights=None, weights_backbone=None, num_classes=nc,
min_size=min_size, max_size=max_size)` with a fixed seed, randomises it as the eval parity
reference does (`frcnn_reference.randomize`: spread-out heads, so the losses are not trivial),
draws images and ground-truth boxes (labels in 1..nc-1; an image may have none), and runs one
training step in `model.train()`: the four losses, their sum's backward. Both samplers
(`rpn.fg_bg_sampler`, `roi_heads.fg_bg_sampler`) are wrapped to record, per image, the indices
they drew (positives, negatives), so the Rust side can replay them. Writes into OUT/<name>/:

  weights.safetensors  the state_dict before the step
  tensors.safetensors  image{i} [3,H,W]; boxes{i} [N,4] (original pixels); labels{i} [N];
                       rpn_pos{i}/rpn_neg{i}, roi_pos{i}/roi_neg{i} (int64 indices);
                       prop{i} [K,4] (training proposals, resized pixels);
                       box_features [S,1024] (the box head's output for the sampled RoIs);
                       grad:<parameter> for a few parameters
  meta.json            the four losses (float64 of the float32 values), counts, timings

Nothing is downloaded (no pretrained weights are requested). Exactly tied proposal scores are
ordered by index (`frcnn_reference.stable_nms_ties`), as on the Rust side.
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

GRAD_PARAMS = [
    "roi_heads.box_predictor.cls_score.weight",
    "roi_heads.box_predictor.bbox_pred.weight",
    "roi_heads.box_head.5.weight",
    "roi_heads.box_head.0.0.weight",
    "rpn.head.cls_logits.weight",
    "rpn.head.bbox_pred.weight",
    "rpn.head.conv.0.0.weight",
    "backbone.fpn.layer_blocks.3.0.weight",
    "backbone.body.layer4.2.conv3.weight",
    "backbone.body.layer1.0.conv1.weight",
    "backbone.body.conv1.weight",
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--case", action="append", required=True,
                    help="name:nc:min_size:max_size:HxW[,HxW...]:nboxes[,nboxes...]")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)

    import torch
    torch.set_num_threads(2)
    for case in args.case:
        run_case(case, args.out, args.seed)


class Recorder:
    """Wraps a BalancedPositiveNegativeSampler; keeps each image's drawn indices."""

    def __init__(self, inner):
        self.inner = inner
        self.calls = []

    def __call__(self, labels):
        import torch
        pos, neg = self.inner(labels)
        self.calls.append([(torch.where(p)[0], torch.where(n)[0]) for p, n in zip(pos, neg)])
        return pos, neg


def random_boxes(g, n, h, w):
    import torch
    bw = (torch.rand(n, generator=g) * 0.5 + 0.1) * w
    bh = (torch.rand(n, generator=g) * 0.5 + 0.1) * h
    x1 = torch.rand(n, generator=g) * (w - bw)
    y1 = torch.rand(n, generator=g) * (h - bh)
    return torch.stack([x1, y1, x1 + bw, y1 + bh], 1)


def run_case(case, out, seed):
    import torch
    from safetensors.torch import save_file
    from torchvision.models.detection import fasterrcnn_resnet50_fpn_v2
    from frcnn_reference import randomize, stable_nms_ties

    stable_nms_ties()  # exactly tied proposals in index order on every CPU (see there)

    name, nc, min_size, max_size, sizes, nboxes = case.split(":")
    nc, min_size, max_size = int(nc), int(min_size), int(max_size)
    sizes = [tuple(int(v) for v in s.split("x")) for s in sizes.split(",")]
    nboxes = [int(v) for v in nboxes.split(",")]

    torch.manual_seed(seed)
    model = fasterrcnn_resnet50_fpn_v2(
        weights=None, weights_backbone=None, num_classes=nc, min_size=min_size, max_size=max_size
    )
    randomize(model, sizes)
    sd = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}

    g = torch.Generator().manual_seed(seed + 7)
    images = [torch.rand(3, h, w, generator=g) for h, w in sizes]
    targets = []
    for (h, w), n in zip(sizes, nboxes):
        targets.append({
            "boxes": random_boxes(g, n, h, w),
            "labels": torch.randint(1, nc, (n,), generator=g, dtype=torch.int64),
        })

    rpn_rec = Recorder(model.rpn.fg_bg_sampler)
    roi_rec = Recorder(model.roi_heads.fg_bg_sampler)
    model.rpn.fg_bg_sampler = rpn_rec
    model.roi_heads.fg_bg_sampler = roi_rec
    captured = {}
    filter_proposals = model.rpn.filter_proposals

    def capture_proposals(*a, **k):
        res = filter_proposals(*a, **k)
        captured["proposals"] = [b.clone() for b in res[0]]
        return res

    model.rpn.filter_proposals = capture_proposals
    model.roi_heads.box_head.register_forward_hook(
        lambda module, inputs, output: captured.__setitem__("box_features", output.detach().clone())
    )

    model.train()
    t0 = time.perf_counter()
    losses = model([im.clone() for im in images], [{k: v.clone() for k, v in t.items()} for t in targets])
    forward_s = time.perf_counter() - t0
    total = sum(losses.values())
    t0 = time.perf_counter()
    total.backward()
    backward_s = time.perf_counter() - t0
    params = dict(model.named_parameters())

    tensors = {}
    for i, (img, t) in enumerate(zip(images, targets)):
        tensors[f"image{i}"] = img
        tensors[f"boxes{i}"] = t["boxes"]
        tensors[f"labels{i}"] = t["labels"]
    assert len(rpn_rec.calls) == 1 and len(roi_rec.calls) == 1
    for i, (p, n) in enumerate(rpn_rec.calls[0]):
        tensors[f"rpn_pos{i}"], tensors[f"rpn_neg{i}"] = p, n
    for i, (p, n) in enumerate(roi_rec.calls[0]):
        tensors[f"roi_pos{i}"], tensors[f"roi_neg{i}"] = p, n
    for i, b in enumerate(captured["proposals"]):
        tensors[f"prop{i}"] = b
    tensors["box_features"] = captured["box_features"]
    for k in GRAD_PARAMS:
        tensors[f"grad:{k}"] = params[k].grad

    case_dir = os.path.join(out, name)
    os.makedirs(case_dir, exist_ok=True)
    save_file(sd, os.path.join(case_dir, "weights.safetensors"))
    save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(case_dir, "tensors.safetensors"))
    meta = dict(
        name=name, nc=nc, min_size=min_size, max_size=max_size, sizes=sizes, nboxes=nboxes,
        losses={k: float(v.detach()) for k, v in losses.items()},
        rpn_sampled=[[int(p.numel()), int(n.numel())] for p, n in rpn_rec.calls[0]],
        roi_sampled=[[int(p.numel()), int(n.numel())] for p, n in roi_rec.calls[0]],
        proposals=[int(b.shape[0]) for b in captured["proposals"]],
        forward_s=forward_s, backward_s=backward_s, threads=torch.get_num_threads(),
        grad_params=GRAD_PARAMS,
    )
    with open(os.path.join(case_dir, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print(f"{name}: losses {meta['losses']} rpn {meta['rpn_sampled']} roi {meta['roi_sampled']} "
          f"forward {forward_s:.2f}s backward {backward_s:.2f}s -> {case_dir}", file=sys.stderr)


if __name__ == "__main__":
    main()
