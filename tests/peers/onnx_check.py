"""Checks an ONNX model written by the project's exporter, for the Rust export tests
(models/tests/onnx_yolo.rs, models/tests/onnx_frcnn.rs).

Each `--case DIR` names a folder holding `model.onnx` and `input.safetensors` (tensor `images`,
[B, 3, H, W] float32, and optionally more inputs for the same model named `images<suffix>`,
e.g. another image size). For each it runs the ONNX checker with `full_check=True` (shape
inference included), then ONNX Runtime (CPU, fp32, default graph optimisations: what a
deployment runs) on each whole batch and, for batches of more than one image, on its first image
alone (the batch dimension is dynamic), and writes into OUT/<basename of DIR>/:

  tensors.safetensors  <output name><suffix> for each batch (every output of the model),
                       <output name><suffix>_b1 for its first image alone
  meta.json            checker result, ir_version, opsets, producer, graph inputs and outputs
                       (name, element type, dims: ints or dim_param strings), op types used
"""

import argparse
import json
import os


def dims(value_info):
    out = []
    for d in value_info.type.tensor_type.shape.dim:
        out.append(d.dim_param if d.HasField("dim_param") else d.dim_value)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--case", action="append", required=True)
    args = ap.parse_args()

    import numpy as np
    import onnx
    import onnxruntime as ort
    from safetensors.numpy import load_file, save_file

    for case in args.case:
        path = os.path.join(case, "model.onnx")
        onnx.checker.check_model(path, full_check=True)
        model = onnx.load(path)
        inputs = load_file(os.path.join(case, "input.safetensors"))

        so = ort.SessionOptions()
        so.intra_op_num_threads = 2
        sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        names = [o.name for o in sess.get_outputs()]
        tensors = {}
        for key, images in sorted(inputs.items()):
            if not key.startswith("images"):
                continue
            suffix = key[len("images"):]
            for n, v in zip(names, sess.run(names, {"images": images})):
                tensors[n + suffix] = np.ascontiguousarray(v)
            if images.shape[0] > 1:
                for n, v in zip(names, sess.run(names, {"images": images[:1]})):
                    tensors[n + suffix + "_b1"] = np.ascontiguousarray(v)

        meta = {
            "checker": "ok",
            "ir_version": model.ir_version,
            "opsets": {o.domain: o.version for o in model.opset_import},
            "producer": model.producer_name,
            "inputs": [
                {"name": i.name, "elem_type": i.type.tensor_type.elem_type, "dims": dims(i)}
                for i in model.graph.input
            ],
            "outputs": [
                {"name": o.name, "elem_type": o.type.tensor_type.elem_type, "dims": dims(o)}
                for o in model.graph.output
            ],
            "ops": sorted({n.op_type for n in model.graph.node}),
        }
        out = os.path.join(args.out, os.path.basename(os.path.normpath(case)))
        os.makedirs(out, exist_ok=True)
        save_file(tensors, os.path.join(out, "tensors.safetensors"))
        with open(os.path.join(out, "meta.json"), "w") as f:
            json.dump(meta, f, indent=1)


if __name__ == "__main__":
    main()
