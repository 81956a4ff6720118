//! `fracture calibrate` on a Faster R-CNN bundle: random ResNet50-FPN v2 weights (a plain
//! torchvision-named state_dict, exported with `--arch` and `--nc` at 160 px) calibrated on a
//! few phantoms. The graph is traced with NonMaxSuppression and RoiAlign computed by libtorch,
//! every convolution (the RPN head's, shared across FPN levels, once) gets Q/DQ, and the bundle
//! gains `model.int8.onnx`, `calibration.cache` and `calibration.json` and still verifies.
//! The cache names only tensors of `model.onnx`; the INT8 graph runs in ONNX Runtime (the
//! report scores it). Random weights find nothing, so accuracy is reported, not asserted: the
//! YOLO test (`calibrate.rs`) holds the accuracy bound on a trained model.
//! `--auto-keep-float` (a YOLO `output0` analysis) is refused with a clear message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeSet;

use fracture_calibration::CalibrationCache;
use fracture_models::bundle::Bundle;
use fracture_models::frcnn::{FasterRcnn, FrcnnConfig};
use fracture_models::onnx::proto::ModelProto;
use prost::Message;
use support::{fracture, fracture_fails};
use tch::{Device, Tensor, nn};

fn read_model(path: &std::path::Path) -> ModelProto {
    ModelProto::decode(std::fs::read(path).unwrap().as_slice()).unwrap()
}

#[test]
fn faster_rcnn_int8_lands_in_the_bundle() {
    let tmp = tempfile::tempdir().unwrap();
    let t = |p: &str| tmp.path().join(p).to_string_lossy().into_owned();
    fracture(&[
        "synth",
        "--out",
        &t("data"),
        "--count",
        "24",
        "--seed",
        "5",
        "--fractured-fraction",
        "0.5",
        "--size-min",
        "160",
        "--size-max",
        "192",
    ]);
    fracture(&["split", "--data", &t("data"), "--out", &t("split.json"), "--seed", "1"]);

    tch::manual_seed(3);
    let vs = nn::VarStore::new(Device::Cpu);
    let _model = FasterRcnn::new(&vs.root(), &FrcnnConfig::new(2)).unwrap();
    let vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    let named: Vec<(&str, &Tensor)> = vars.iter().map(|(n, t)| (n.as_str(), t)).collect();
    Tensor::write_safetensors(&named, tmp.path().join("frcnn.safetensors")).unwrap();
    fracture(&[
        "export",
        "--weights",
        &t("frcnn.safetensors"),
        "--arch",
        "frcnn-r50-fpn-v2",
        "--nc",
        "1",
        "--imgsz",
        "160",
        "--bundle",
        &t("bundle"),
    ]);

    let refused = fracture_fails(&[
        "calibrate",
        "--bundle",
        &t("bundle"),
        "--data",
        &t("data"),
        "--auto-keep-float",
        "2",
    ]);
    assert!(refused.contains("--auto-keep-float") && refused.contains("--keep-float"), "{refused}");

    let out = fracture(&[
        "calibrate",
        "--bundle",
        &t("bundle"),
        "--data",
        &t("data"),
        "--split-file",
        &t("split.json"),
        "--images",
        "8",
        "--method",
        "entropy,max",
        "--out",
        &t("report"),
    ]);
    assert!(out.contains("fewer than the 300 recommended"), "{out}");
    let report: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(tmp.path().join("report/calibration-report.json")).unwrap(),
    )
    .unwrap();
    let fp32 = report["fp32"]["map50"].as_f64().unwrap();
    let onnx = read_model(&tmp.path().join("bundle/model.onnx"));
    let graph = onnx.graph.as_ref().unwrap();
    let convs = graph.node.iter().filter(|n| n.op_type.as_deref() == Some("Conv")).count();
    for m in report["int8"].as_array().unwrap() {
        let quantized = m["quantized_convs"].as_u64().unwrap() as usize;
        println!(
            "{}: mAP50 {:.4} (fp32 {fp32:.4}), {quantized}/{convs} convolutions quantised",
            m["method"],
            m["score"]["map50"].as_f64().unwrap()
        );
        assert_eq!(quantized, convs, "every Conv quantised (none kept float)");
    }

    fracture(&["bundle", "verify", &t("bundle")]);
    let bundle = Bundle::open(&tmp.path().join("bundle")).unwrap();
    for f in ["model.onnx", "model.int8.onnx", "calibration.cache", "calibration.json"] {
        assert!(bundle.manifest.files.contains_key(f), "{f} not listed");
    }
    assert!(bundle.manifest.int8.is_some());

    // The cache: TensorRT's header, every name a tensor of model.onnx, the graph's input and
    // the RoiAlign inputs (the FPN levels) among them.
    let text = std::fs::read_to_string(tmp.path().join("bundle/calibration.cache")).unwrap();
    assert!(text.starts_with("TRT-100300-EntropyCalibration2\n"), "{}", &text[..40]);
    let cache = CalibrationCache::parse(&text).unwrap();
    let tensors: BTreeSet<&str> = graph
        .node
        .iter()
        .flat_map(|n| n.output.iter().chain(&n.input))
        .map(String::as_str)
        .collect();
    for name in cache.scales.keys() {
        assert!(tensors.contains(name.as_str()), "cache names `{name}`, not in model.onnx");
    }
    assert!(cache.scales.contains_key("images"));
    for n in graph.node.iter().filter(|n| n.op_type.as_deref() == Some("RoiAlign")) {
        assert!(cache.scales.contains_key(&n.input[0]), "no scale for {}", n.input[0]);
    }

    // The INT8 graph: Q/DQ pairs, int8 weights, each shared RPN weight quantised once.
    let int8 = read_model(&tmp.path().join("bundle/model.int8.onnx"));
    let g8 = int8.graph.as_ref().unwrap();
    let count = |op: &str| g8.node.iter().filter(|n| n.op_type.as_deref() == Some(op)).count();
    assert!(count("QuantizeLinear") >= convs && count("DequantizeLinear") > convs);
    let mut names = BTreeSet::new();
    for init in &g8.initializer {
        assert!(names.insert(init.name.clone().unwrap()), "initializer {:?} twice", init.name);
    }
    // The INT8 graph ran: the report has its score next to FP32's.
    assert!(report["int8"][0]["score"]["map50"].as_f64().is_some());
}
