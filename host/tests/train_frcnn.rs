//! Training Faster R-CNN through the real `fracture` binary on phantoms, at a small size
//! (min/max size 128/160, batch 2, few proposals): a one-epoch run started from an ImageNet-
//! style ResNet50 state_dict (`--init`, partial: the body only) writes every artefact with
//! torchvision tensor names and our metadata, keeps the frozen stem at its initial values,
//! resumes to a second epoch, its weights predict through `fracture predict`, and it exports
//! to a bundle the daemon runs.
//!
//! One libtorch thread: the test shares two cores with other jobs, and OpenMP threads that
//! outnumber the free cores make every Faster R-CNN step several times slower.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::process::Command;

use fracture_models::frcnn::{FasterRcnn, FrcnnConfig, FrcnnPredictOptions, FrcnnPredictor};
use support::fracture;
use tch::{Device, Kind, Tensor, nn};

fn csv(run: &Path) -> (Vec<String>, Vec<usize>) {
    let text = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap().split(',').map(String::from).collect();
    let epochs = lines.map(|l| l.split(',').next().unwrap().parse().unwrap()).collect();
    (header, epochs)
}

/// A plain torchvision `resnet50` state_dict (no `backbone.body.` prefix, with the ImageNet
/// classifier), as `torchvision.models.resnet50(weights=...).state_dict()` saved to
/// safetensors would be: here random, written from our own body.
fn write_resnet50(path: &Path) -> Tensor {
    tch::manual_seed(11);
    let vs = nn::VarStore::new(Device::Cpu);
    let _m = FasterRcnn::new(&vs.root(), &FrcnnConfig::new(2)).unwrap();
    let mut tensors: Vec<(String, Tensor)> = vs
        .variables()
        .into_iter()
        .filter_map(|(n, t)| n.strip_prefix("backbone.body.").map(|s| (s.to_string(), t)))
        .collect();
    tensors.push(("fc.weight".into(), Tensor::zeros([1000, 2048], (Kind::Float, Device::Cpu))));
    tensors.push(("fc.bias".into(), Tensor::zeros([1000], (Kind::Float, Device::Cpu))));
    Tensor::write_safetensors(&tensors, path).unwrap();
    vs.variables()["backbone.body.conv1.weight"].copy()
}

#[test]
fn frcnn_trains_from_a_resnet50_resumes_and_predicts() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let d = data.to_str().unwrap();
    fracture(&["synth", "--out", d, "--count", "16", "--seed", "5", "--fractured-fraction", "0.5"]);
    let resnet = tmp.path().join("resnet50.safetensors");
    let conv1 = write_resnet50(&resnet);
    // Fewer proposals and sampled RoIs than torchvision's defaults: the box head dominates a
    // step's time, and this test checks plumbing, not accuracy.
    let hyp = tmp.path().join("hyp.toml");
    std::fs::write(
        &hyp,
        "[frcnn]\nrpn_post_nms_top_n_train = 300\nrpn_post_nms_top_n_test = 100\n\
         box_batch_size_per_image = 64\nloss_box_reg = 2.0\n\
         anchor_sizes = [16.0, 32.0, 64.0, 128.0, 256.0]\n",
    )
    .unwrap();
    let run = tmp.path().join("run");
    let r = run.to_str().unwrap();
    let common = [
        "train",
        "--arch",
        "frcnn-r50-fpn-v2",
        "--data",
        d,
        "--out",
        r,
        "--imgsz",
        "160",
        "--min-size",
        "128",
        "--max-size",
        "160",
        "--batch",
        "2",
        "--seed",
        "1",
        "--threads",
        "1",
    ];

    // One epoch from the ResNet50.
    let mut args = common.to_vec();
    args.extend([
        "--epochs",
        "1",
        "--hyp",
        hyp.to_str().unwrap(),
        "--init",
        resnet.to_str().unwrap(),
    ]);
    let text = fracture(&args);
    assert!(text.contains("done: 1 epochs"), "{text}");
    assert!(text.contains("(a ResNet50 state_dict, as backbone.body)"), "{text}");
    assert!(text.contains("left at initialisation: backbone.fpn"), "{text}");
    assert!(text.contains("not in this model, ignored: fc (2)"), "{text}");
    for f in [
        "weights/last.safetensors",
        "weights/best.safetensors",
        "state.safetensors",
        "state.json",
        "metrics.csv",
        "hyp.toml",
        "split.json",
        "curves_losses.png",
        "curves_metrics.png",
    ] {
        assert!(run.join(f).is_file(), "{f} missing");
    }
    let (header, epochs) = csv(&run);
    assert_eq!(epochs, vec![1]);
    for name in ["loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg"] {
        assert!(header.contains(&format!("train/{name}")), "{header:?}");
        assert!(header.contains(&format!("val/{name}")), "{header:?}");
    }
    let hyp_written = std::fs::read_to_string(run.join("hyp.toml")).unwrap();
    assert!(hyp_written.contains("trainable_backbone_layers = 3"), "{hyp_written}");
    assert!(hyp_written.contains("loss_box_reg = 2.0"), "{hyp_written}");

    let best = run.join("weights/best.safetensors");
    let meta = fracture_models::weights_file::read_meta(&best).unwrap().unwrap();
    assert_eq!(meta.arch, "frcnn-r50-fpn-v2");
    assert_eq!(meta.classes, vec!["fracture".to_string()]);
    assert_eq!((meta.extra["min_size"].as_str(), meta.extra["max_size"].as_str()), ("128", "160"));
    // The anchors trained with travel with the weights and come back in the predictor.
    assert_eq!(meta.extra["anchor_sizes"], "16,32,64,128,256");
    let predictor = FrcnnPredictor::load(&best, None, FrcnnPredictOptions::default()).unwrap();
    let cells = predictor.model().rpn.anchor_generator.cell_anchors();
    // P2's square anchor (ratio 1) is 16 pixels wide: [-8, -8, 8, 8].
    let square: Vec<f32> = Vec::try_from(cells[0].get(1)).unwrap();
    assert_eq!(square, [-8.0, -8.0, 8.0, 8.0]);
    let weights: std::collections::HashMap<String, Tensor> =
        fracture_models::weights_file::load_tensors(&best).unwrap().into_iter().collect();
    assert_eq!(weights["roi_heads.box_predictor.cls_score.weight"].size(), [2, 1024]);
    assert_eq!(weights["backbone.fpn.inner_blocks.0.0.weight"].size(), [256, 256, 1, 1]);
    // Three trainable layers (torchvision's default with --init): the stem stays as loaded.
    let d = (&weights["backbone.body.conv1.weight"] - &conv1).abs().max().double_value(&[]);
    assert!(d < 1e-6, "frozen conv1 moved by {d}");

    // A second run into the same folder is refused without --resume.
    let out = Command::new(env!("CARGO_BIN_EXE_fracture")).args(&args).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--resume"));

    // Resumed (its hyp.toml: the same frozen layers, sizes and proposals) for a second epoch.
    let mut resume = common.to_vec();
    resume.extend(["--epochs", "2", "--resume"]);
    let text = fracture(&resume);
    assert!(text.contains("done: 2 epochs"), "{text}");
    assert_eq!(csv(&run).1, vec![1, 2]);
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("state.json")).unwrap()).unwrap();
    assert_eq!(state["epochs_done"], 2);
    let train_images = serde_json::from_str::<serde_json::Value>(
        &std::fs::read_to_string(run.join("split.json")).unwrap(),
    )
    .unwrap()["train"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(state["step"], 2 * train_images.div_ceil(2) as i64);

    // The weights predict.
    let image = data.join("images/Fractured").read_dir().unwrap().next().unwrap().unwrap().path();
    let out = support::fracture_stdout(&[
        "predict",
        "--weights",
        run.join("weights/last.safetensors").to_str().unwrap(),
        "--json",
        "--conf",
        "0.0",
        "--threads",
        "1",
        image.to_str().unwrap(),
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let first = &v[0];
    assert_eq!(first["image"].as_str().unwrap(), image.to_str().unwrap());
    let boxes = first["boxes"].as_array().unwrap();
    assert!(!boxes.is_empty() && boxes.len() <= 300, "{} boxes", boxes.len());
    for b in boxes {
        assert_eq!(b["label"], "fracture");
        assert!(b["x2"].as_f64().unwrap() <= first["width"].as_f64().unwrap() + 1e-3);
    }

    // ... and export to a bundle the daemon can run: Faster R-CNN's post-processing
    // (NMS 0.5, 100 boxes), the training sizes kept in the weights' metadata.
    let bundle = tmp.path().join("frcnn-bundle");
    let text = fracture(&[
        "export",
        "--weights",
        best.to_str().unwrap(),
        "--bundle",
        bundle.to_str().unwrap(),
    ]);
    assert!(text.contains("frcnn-r50-fpn-v2"), "{text}");
    let b = fracture_models::bundle::Bundle::open(&bundle).unwrap();
    assert_eq!((b.manifest.nms_iou, b.manifest.max_det), (0.5, 100));
    assert_eq!(b.manifest.preprocessing.resize, "min-max");
    let bundled = fracture_models::weights_file::read_meta(&b.weights()).unwrap().unwrap();
    assert_eq!(bundled.extra["min_size"], "128");
    fracture(&["bundle", "verify", bundle.to_str().unwrap()]);
    assert!(b.manifest.files.contains_key("model.onnx"), "{:?}", b.manifest.files.keys());

    // Its ONNX graph runs on ONNX Runtime (equal to libtorch: models/runtime/tests/ort_frcnn.rs).
    let image = image.to_str().unwrap();
    let text =
        fracture(&["predict", "--bundle", bundle.to_str().unwrap(), "--backend", "ort", image]);
    assert!(text.contains("backend: onnxruntime fp32 (as asked)"), "{text}");
}
