"""ultralytics' end-to-end `predict` for the Rust parity test of `fracture predict`
(host/tests/predict.rs).

Builds `DetectionModel('yolo11<scale>.yaml', nc)` offline with the same randomisation as
yolo_reference.py (spread, unsaturated class scores), saves its plain state_dict (no metadata
of ours: the Rust side must pass --arch/--nc) as OUT/weights.safetensors, then runs
`YOLO.predict` (cv2 decode, rect letterbox, fused forward, NMS, scale_boxes) on every --image
and writes OUT/predictions.json: [{image, boxes: [[x1,y1,x2,y2,score,class], ...]}], and
OUT/inputs.safetensors: `input{i}`, the network input ultralytics built for image i
([1,3,h,w], its cv2 8-bit letterbox). With --bench N, also times N passes of `predict` over
the images (file read included, the first pass having warmed up) into OUT/bench.json, with
the fused model's GFLOPs at imgsz x imgsz (ultralytics' own count).
"""

import argparse
import json
import os
import sys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--case", required=True, help="scale:nc:imgsz:conf:iou")
    ap.add_argument("--image", action="append", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bench", type=int, default=0, help="time N passes over the images")
    args = ap.parse_args()

    os.makedirs(args.out, exist_ok=True)
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_VERBOSE"] = "False"
    os.environ.setdefault("YOLO_CONFIG_DIR", os.path.join(args.out, "ultralytics-config"))

    import torch
    from safetensors.torch import save_file
    from ultralytics import YOLO
    from ultralytics.utils import torch_utils

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from yolo_reference import randomized_model

    torch.set_num_threads(2)
    torch_utils.NUM_THREADS = 2
    scale, nc, imgsz, conf, iou = args.case.split(":")
    nc, imgsz, conf, iou = int(nc), int(imgsz), float(conf), float(iou)
    model = randomized_model(scale, nc, imgsz, args.seed)
    sd = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(sd, os.path.join(args.out, "weights.safetensors"))

    yolo = YOLO(f"yolo11{scale}.yaml", task="detect")
    model.names = {i: str(i) for i in range(nc)}
    yolo.model = model
    import cv2

    out, inputs = [], {}
    for i, path in enumerate(args.image):
        r = yolo.predict(source=path, imgsz=imgsz, conf=conf, iou=iou, device="cpu", verbose=False)[0]
        b = r.boxes
        rows = torch.cat((b.xyxy, b.conf[:, None], b.cls[:, None]), 1).tolist()
        out.append(dict(image=path, boxes=rows))
        inputs[f"input{i}"] = yolo.predictor.preprocess([cv2.imread(path)]).contiguous()
    save_file(inputs, os.path.join(args.out, "inputs.safetensors"))
    if args.bench:
        import time

        times = []
        for _ in range(args.bench):
            for path in args.image:
                t0 = time.perf_counter()
                yolo.predict(source=path, imgsz=imgsz, conf=conf, iou=iou, device="cpu", verbose=False)
                times.append(time.perf_counter() - t0)
        times.sort()
        with open(os.path.join(args.out, "bench.json"), "w") as f:
            from ultralytics.utils.torch_utils import get_flops

            gflops = get_flops(yolo.model, imgsz)  # the fused model predict ran, at imgsz x imgsz
            json.dump(dict(median_ms=times[len(times) // 2] * 1e3, n=len(times),
                           threads=torch.get_num_threads(), gflops=gflops), f)
    with open(os.path.join(args.out, "predictions.json"), "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main()
