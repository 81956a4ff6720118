"""torchvision's Faster R-CNN ResNet50-FPN v2 timings for `fracture-bench frcnn`.

Builds `fasterrcnn_resnet50_fpn_v2(weights=None, weights_backbone=None, num_classes=2,
min_size=SIZE, max_size=SIZE, rpn_post_nms_top_n_test=PROPOSALS)` from the seed
(BatchNorm2d, every layer trainable: what torchvision builds without pretrained weights),
with 2 torch threads, and writes into OUT/:

  weights.safetensors  its state_dict, for the Rust side to load the same network
  inputs.safetensors   image0 [3,H0,W0], image1 [3,H1,W1] in [0,1]; boxes0/boxes1 [N,4]
                       (x1,y1,x2,y2 pixels), labels0/labels1 [N] (int64, 1 = fracture)
  bench.json           forward_ms: median eval forward of image0 (batch 1, no_grad),
                       step_ms: median training step on [image0, image1] (forward with the
                       four losses, backward of their sum, AdamW step), each after one warm-up

Nothing is downloaded.
"""

import argparse
import json
import os
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--size", type=int, default=416)
    ap.add_argument("--proposals", type=int, default=1000)
    ap.add_argument("--passes", type=int, default=5)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)

    import torch
    from safetensors.torch import save_file
    from torchvision.models.detection import fasterrcnn_resnet50_fpn_v2

    torch.set_num_threads(2)
    torch.manual_seed(args.seed)
    s = args.size
    model = fasterrcnn_resnet50_fpn_v2(weights=None, weights_backbone=None, num_classes=2,
                                       min_size=s, max_size=s,
                                       rpn_post_nms_top_n_test=args.proposals)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()},
              os.path.join(args.out, "weights.safetensors"))
    g = torch.Generator().manual_seed(args.seed + 1)
    images = [torch.rand(3, s, s * 7 // 8, generator=g), torch.rand(3, s * 7 // 8, s, generator=g)]
    targets = [
        dict(boxes=torch.tensor([[30.0, 40.0, 120.0, 150.0], [200.0, 60.0, 260.0, 140.0]]),
             labels=torch.tensor([1, 1])),
        dict(boxes=torch.tensor([[50.0, 50.0, 90.0, 100.0]]), labels=torch.tensor([1])),
    ]
    tensors = {}
    for i, (im, t) in enumerate(zip(images, targets)):
        tensors[f"image{i}"] = im.contiguous()
        tensors[f"boxes{i}"] = t["boxes"]
        tensors[f"labels{i}"] = t["labels"]
    save_file(tensors, os.path.join(args.out, "inputs.safetensors"))

    model.eval()
    fwd = []
    with torch.no_grad():
        for i in range(args.passes + 1):
            t0 = time.perf_counter()
            model([images[0]])
            if i:
                fwd.append(time.perf_counter() - t0)
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    steps = []
    for i in range(args.steps + 1):
        t0 = time.perf_counter()
        opt.zero_grad()
        losses = model(images, targets)
        sum(losses.values()).backward()
        opt.step()
        if i:
            steps.append(time.perf_counter() - t0)
    med = lambda xs: sorted(xs)[len(xs) // 2] * 1e3
    with open(os.path.join(args.out, "bench.json"), "w") as f:
        json.dump(dict(forward_ms=med(fwd), step_ms=med(steps), threads=torch.get_num_threads()), f)


if __name__ == "__main__":
    main()
