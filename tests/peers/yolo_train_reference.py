"""ultralytics' YOLO11 training on a FracAtlas-layout dataset, for `fracture-bench train` (the
training-speed comparison) and for checking that our trainer learns as fast as the reference.

Builds an ultralytics dataset view (symlinks: images/{train,val}, labels/{train,val}) from
DATA and a split.json written by `fracture train` (so both trainers see the same images),
trains `yolo11<scale>.yaml` from scratch with the given settings on CPU, and writes
OUT/summary.json: per epoch the training seconds (validation excluded, timed with callbacks),
losses and mAP50 / mAP50-95, plus images per second over the training passes.
"""

import argparse
import json
import os
import time


def build_view(data, split, root):
    for part, key in (("train", "train"), ("val", "val")):
        os.makedirs(os.path.join(root, "images", part), exist_ok=True)
        os.makedirs(os.path.join(root, "labels", part), exist_ok=True)
        for name in split[key]:
            stem = os.path.splitext(name)[0]
            src = None
            for cls in ("Fractured", "Non_fractured"):
                cand = os.path.join(data, "images", cls, name)
                if os.path.exists(cand):
                    src = cand
            if src is None:
                raise SystemExit(f"{name}: not found under {data}/images")
            os.symlink(os.path.abspath(src), os.path.join(root, "images", part, name))
            label = os.path.join(data, "Annotations", "YOLO", stem + ".txt")
            dst = os.path.join(root, "labels", part, stem + ".txt")
            if os.path.exists(label):
                os.symlink(os.path.abspath(label), dst)
            else:
                open(dst, "w").close()
    yaml = os.path.join(root, "data.yaml")
    with open(yaml, "w") as f:
        f.write(f"path: {root}\ntrain: images/train\nval: images/val\nnames:\n  0: fracture\n")
    return yaml, len(split["train"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--split", required=True, help="split.json with train/val lists")
    ap.add_argument("--out", required=True)
    ap.add_argument("--scale", default="n")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--imgsz", type=int, default=416)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--close-mosaic", type=int, default=10, help="mosaic off for the last N epochs")
    ap.add_argument("--no-val", action="store_true", help="skip validation (speed runs)")
    ap.add_argument(
        "--export",
        help="also write the final checkpoint's model (as ultralytics saved it: EMA, float16) "
        "as a plain state_dict in this safetensors file",
    )
    args = ap.parse_args()

    os.makedirs(args.out, exist_ok=True)
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_VERBOSE"] = "False"
    os.environ.setdefault("YOLO_CONFIG_DIR", os.path.join(args.out, "ultralytics-config"))

    import torch
    from ultralytics import YOLO
    from ultralytics.utils import torch_utils

    torch.set_num_threads(args.threads)
    torch_utils.NUM_THREADS = args.threads  # it would silently use cpu_count - 1 = 1 here

    with open(args.split) as f:
        split = json.load(f)
    yaml, n_train = build_view(args.data, split, os.path.join(args.out, "view"))

    epochs = []
    state = {}

    def on_epoch_start(trainer):
        state["t0"] = time.perf_counter()

    def on_epoch_end(trainer):  # before validation
        state["train_s"] = time.perf_counter() - state["t0"]

    def on_fit_epoch_end(trainer):  # after validation (ultralytics calls it again at the end)
        if epochs and epochs[-1]["epoch"] == trainer.epoch + 1:
            return
        m = trainer.metrics
        epochs.append(
            dict(
                epoch=trainer.epoch + 1,
                train_seconds=state["train_s"],
                losses={k: float(v) for k, v in trainer.label_loss_items(trainer.tloss, prefix="train").items()},
                map50=float(m.get("metrics/mAP50(B)", 0.0)),
                map50_95=float(m.get("metrics/mAP50-95(B)", 0.0)),
            )
        )

    model = YOLO(f"yolo11{args.scale}.yaml", task="detect")
    model.add_callback("on_train_epoch_start", on_epoch_start)
    model.add_callback("on_train_epoch_end", on_epoch_end)
    model.add_callback("on_fit_epoch_end", on_fit_epoch_end)
    model.train(
        data=yaml,
        epochs=args.epochs,
        imgsz=args.imgsz,
        batch=args.batch,
        device="cpu",
        workers=0,
        seed=args.seed,
        pretrained=False,
        amp=False,
        plots=False,
        val=not args.no_val,
        project=os.path.abspath(args.out),
        name="run",
        exist_ok=True,
        verbose=False,
        hsv_h=0.0,
        hsv_s=0.0,
        hsv_v=0.1,
        close_mosaic=args.close_mosaic,
    )
    if args.export:
        from safetensors.torch import save_file

        ckpt = torch.load(os.path.join(model.trainer.save_dir, "weights", "last.pt"), weights_only=False)
        sd = {k: v.contiguous() for k, v in ckpt["model"].state_dict().items()}
        save_file(sd, args.export)
    train_s = sum(e["train_seconds"] for e in epochs)
    summary = dict(
        images=n_train,
        epochs=epochs,
        train_images_per_second=n_train * len(epochs) / train_s if train_s > 0 else None,
        threads=torch.get_num_threads(),
    )
    with open(os.path.join(args.out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
