"""ultralytics' own ONNX export of a random-init YOLO11, for the ONNX Runtime backend's
interoperability test (models/runtime/tests/ort_yolo_ultralytics.rs).

For each case `name:scale:nc:height:width:seed` it builds `DetectionModel('yolo11<scale>.yaml',
nc=nc)` with torch's seed, writes its state_dict as OUT/<name>/weights.safetensors, and exports
the fused model the way `yolo export format=onnx` lays out the graph (input `images`
[1, 3, H, W], output `output0` [1, 4 + nc, N]: xywh in input pixels, sigmoid scores) to
OUT/<name>/model.onnx with torch.onnx (TorchScript exporter, opset 17).

Nothing is downloaded: YOLO_OFFLINE is set and the settings file goes into OUT.
"""

import argparse
import os
import warnings


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--case", action="append", required=True)
    args = ap.parse_args()
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_CONFIG_DIR"] = args.out
    warnings.filterwarnings("ignore")

    import torch
    from safetensors.torch import save_file
    from ultralytics.nn.tasks import DetectionModel

    for case in args.case:
        name, scale, nc, height, width, seed = case.split(":")
        torch.manual_seed(int(seed))
        model = DetectionModel(f"yolo11{scale}.yaml", nc=int(nc), verbose=False).eval()
        out = os.path.join(args.out, name)
        os.makedirs(out, exist_ok=True)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()},
                  os.path.join(out, "weights.safetensors"))
        model = model.fuse(verbose=False)
        for m in model.modules():
            if hasattr(m, "export"):
                m.export = True
                m.format = "onnx"
        x = torch.zeros(1, 3, int(height), int(width))
        torch.onnx.export(model, x, os.path.join(out, "model.onnx"), opset_version=17,
                          input_names=["images"], output_names=["output0"], dynamo=False)


if __name__ == "__main__":
    main()
