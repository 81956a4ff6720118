"""Reference numbers of ultralytics' YOLO11 training loss for the Rust parity test
(models/tests/yolo_loss_parity.rs).

For each case `name:nc:height:width:batch:counts:seed` (counts = boxes per image joined by `-`,
e.g. `0-3-25`) it draws, from the seed, random raw head outputs per level
`[B, 4*16 + nc, H/s, W/s]` (s = 8, 16, 32) and a random targets batch `[N, 6]` =
(batch_idx, cls, cx, cy, w, h normalised, sorted by image as ultralytics' collate makes them;
some boxes smaller than a stride, some duplicated), builds `v8DetectionLoss` from an offline
`DetectionModel('yolo11n.yaml', nc=nc)` whose `args` are ultralytics' default hyperparameters
(box 7.5, cls 0.5, dfl 1.5), calls it on those predictions and back-propagates
`loss.sum()` (what the trainer does). It writes into OUT/<name>/:

  tensors.safetensors  level0..level2 (the predictions), targets [N,6], loss [3] (the detached,
                       gained box/cls/dfl components), total [1] (= loss.sum() after the batch
                       size factor), grad0..grad2 (d total / d level), and the assigner's
                       outputs: fg_mask [B,A] (0/1 float), target_scores [B,A,nc],
                       target_bboxes [B,A,4] (pixels, xyxy)
  meta.json            the case and ultralytics' version

Nothing is downloaded: YOLO_OFFLINE is set and the settings file goes into OUT.
"""

import argparse
import json
import os


def make_case(torch, nc, height, width, batch, counts, seed):
    """Random predictions (requiring grad) and a targets batch for one case."""
    g = torch.Generator().manual_seed(seed)
    levels = []
    for s in (8, 16, 32):
        h, w = height // s, width // s
        box = torch.randn(batch, 64, h, w, generator=g) * 1.5
        cls = torch.randn(batch, nc, h, w, generator=g) * 1.5 - 2.0
        levels.append(torch.cat([box, cls], 1).requires_grad_(True))
    rows = []
    for b, k in enumerate(counts):
        for j in range(k):
            if j > 0 and j % 7 == 0:  # an exact duplicate of the previous box (same image)
                rows.append(list(rows[-1]))
                continue
            small = torch.rand(1, generator=g).item() < 0.25
            lo, hi = (0.005, 0.04) if small else (0.04, 0.6)
            w_ = lo + (hi - lo) * torch.rand(1, generator=g).item()
            h_ = lo + (hi - lo) * torch.rand(1, generator=g).item()
            cx = w_ / 2 + (1 - w_) * torch.rand(1, generator=g).item()
            cy = h_ / 2 + (1 - h_) * torch.rand(1, generator=g).item()
            c = int(torch.randint(0, nc, (1,), generator=g).item())
            rows.append([float(b), float(c), cx, cy, w_, h_])
    targets = torch.tensor(rows, dtype=torch.float32).view(-1, 6)
    return levels, targets


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--case", action="append", required=True,
                    help="name:nc:height:width:batch:counts:seed")
    args = ap.parse_args()

    os.makedirs(args.out, exist_ok=True)
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_VERBOSE"] = "False"
    os.environ.setdefault("YOLO_CONFIG_DIR", os.path.join(args.out, "ultralytics-config"))

    import torch
    import ultralytics
    from safetensors.torch import save_file
    from ultralytics.cfg import get_cfg
    from ultralytics.nn.tasks import DetectionModel
    from ultralytics.utils.loss import v8DetectionLoss

    torch.set_num_threads(2)
    models = {}
    for case in args.case:
        name, nc, height, width, batch, counts, seed = case.split(":")
        nc, height, width, batch, seed = int(nc), int(height), int(width), int(batch), int(seed)
        counts = [int(c) for c in counts.split("-")]
        assert len(counts) == batch, f"{name}: {len(counts)} counts for batch {batch}"
        if nc not in models:
            torch.manual_seed(0)
            model = DetectionModel("yolo11n.yaml", nc=nc, verbose=False)
            model.args = get_cfg()  # default hyperparameters: box 7.5, cls 0.5, dfl 1.5
            assert (model.args.box, model.args.cls, model.args.dfl) == (7.5, 0.5, 1.5)
            models[nc] = model
        crit = v8DetectionLoss(models[nc])

        captured = {}
        assign = crit.assigner.forward

        def spy(*a, **k):
            out = assign(*a, **k)
            captured["out"] = out
            return out

        crit.assigner.forward = spy

        levels, targets = make_case(torch, nc, height, width, batch, counts, seed)
        bs = batch
        preds = {
            "boxes": torch.cat([x[:, :64].reshape(bs, 64, -1) for x in levels], -1),
            "scores": torch.cat([x[:, 64:].reshape(bs, nc, -1) for x in levels], -1),
            "feats": levels,
        }
        data = {"batch_idx": targets[:, 0], "cls": targets[:, 1:2], "bboxes": targets[:, 2:]}
        loss, items = crit(preds, data)
        total = loss.sum()
        total.backward()
        _, target_bboxes, target_scores, fg_mask, _ = captured["out"]

        t = {f"level{i}": x.detach().contiguous() for i, x in enumerate(levels)}
        t.update({f"grad{i}": x.grad.contiguous() for i, x in enumerate(levels)})
        t["targets"] = targets.contiguous()
        if isinstance(items, dict):  # 8.4 returns {"box_loss": ..., "cls_loss": ..., "dfl_loss": ...}
            items = torch.stack([items[k] for k in ("box_loss", "cls_loss", "dfl_loss")])
        t["loss"] = items.detach().float().contiguous()
        t["total"] = total.detach().view(1).contiguous()
        t["fg_mask"] = fg_mask.float().contiguous()
        t["target_scores"] = target_scores.float().contiguous()
        t["target_bboxes"] = target_bboxes.float().contiguous()
        d = os.path.join(args.out, name)
        os.makedirs(d, exist_ok=True)
        save_file(t, os.path.join(d, "tensors.safetensors"))
        meta = dict(name=name, nc=nc, height=height, width=width, batch=batch, counts=counts,
                    seed=seed, ultralytics=ultralytics.__version__, torch=torch.__version__,
                    positives=int(fg_mask.sum()))
        with open(os.path.join(d, "meta.json"), "w") as f:
            json.dump(meta, f)


if __name__ == "__main__":
    main()
