//! The INT8 sensitivity analysis behind `fracture calibrate --auto-keep-float`, on the
//! repository's demo model (yolo11n trained on phantoms; a random-init network's activations
//! fade through its ~90 layers, so its output hardly depends on any one of them) exported at
//! 256×256, max-calibrated on four fractured phantoms:
//! 1. every quantisable Conv is ranked, with finite damages, most damaging first;
//! 2. [`TARGET`], a Conv of the stride-8 neck that ranks far from first (checked), is made
//!    quantisation-hostile — its output's calibration range inflated by one outlier
//!    ([`OUTLIER`]×), so its int8 grid crushes the values it really takes — and is ranked
//!    again with the ten worst: it must now come first, well above every layer's plain
//!    damage, while the others' damages do not move (each layer is measured alone, and a
//!    Conv's output feeds only its activation, never another Conv);
//! 3. in the full INT8 model, keeping that Conv float cuts the output's error against FP32,
//!    far more than keeping the least sensitive Conv does.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Instant;

use fracture_calibration::{Calibrator, Method};
use fracture_host::calibrate::sensitivity::{Batch, Damage, analyse, candidates, damage};
use fracture_host::calibrate::{dfl_convs, for_each_activation};
use fracture_host::synth::{SynthConfig, generate};
use fracture_models::letterbox::Letterbox;
use fracture_models::onnx::proto::ModelProto;
use fracture_models::onnx::qdq::{QdqOptions, quantize};
use fracture_models::onnx::{export_yolo, trace_yolo};
use fracture_models::pixels::GrayF32;
use fracture_models::tensor::{batch_from_gray, nchw_from_gray};
use fracture_models::yolo::{PredictOptions, YoloPredictor};
use fracture_runtime::ort_model::OutputData;
use fracture_runtime::{OrtModel, OrtOptions};

/// The demo model's training size.
const SIZE: u32 = 256;
const IMAGES: usize = 4;
/// How much the hostile layer's calibration range is inflated.
const OUTLIER: f32 = 100.0;
/// The layer made hostile: in the stride-8 path that finds small fractures, and of middling
/// sensitivity when calibrated honestly (measured: #22 of 87, a 24th of the worst's damage).
const TARGET: &str = "model.16.m.0.cv1.conv";

fn demo_weights() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../demo/bundle/weights.safetensors")
}

/// Fractured phantoms (a seed the demo model never saw), letterboxed to [`SIZE`].
fn phantoms() -> Vec<GrayF32> {
    let config = SynthConfig {
        seed: 7,
        fractured_fraction: 1.0,
        size_min: 224,
        size_max: 256,
        ..SynthConfig::default()
    };
    (0..IMAGES)
        .map(|i| {
            let p = generate(&config, i);
            let img = GrayF32 {
                width: p.width,
                height: p.height,
                data: p.pixels.iter().map(|&v| f32::from(v) / 65535.0).collect(),
                bit_depth: 16,
            };
            Letterbox::square(img.width, img.height, SIZE).apply(&img)
        })
        .collect()
}

/// Max calibration of every float activation of the traced graph, as `fracture calibrate`
/// observes them.
fn calibrate(predictor: &YoloPredictor, images: &[GrayF32]) -> BTreeMap<String, f32> {
    let mut cal = Calibrator::new(Method::Max).unwrap();
    for img in images {
        let x = batch_from_gray(std::slice::from_ref(img)).unwrap();
        let trace = tch::no_grad(|| trace_yolo(predictor.model(), &x)).unwrap();
        for_each_activation(&trace, |name, values| cal.observe(name, values)).unwrap();
    }
    if !cal.is_complete() {
        cal.end_pass().unwrap();
    }
    cal.finish().unwrap()
}

/// `output0` of `model` on `batch`, flat, and its row count.
fn output0(model: &ModelProto, batch: &Batch, ort: &OrtOptions) -> (Vec<f32>, usize) {
    let session = OrtModel::from_proto(model, Path::new("test model"), ort).unwrap();
    let out = session.run(&batch.data, batch.batch, &["output0"]).unwrap().remove(0);
    let OutputData::F32(data) = out.data else { panic!("output0 is not float32") };
    (data, out.shape[1] as usize)
}

/// The full INT8 model's damage against FP32 with `keep` float.
fn int8_damage(
    proto: &ModelProto,
    amax: &BTreeMap<String, f32>,
    keep: &BTreeSet<String>,
    batch: &Batch,
    reference: &[f32],
    ort: &OrtOptions,
) -> Damage {
    let opts = QdqOptions { keep_float: keep.clone(), only: None };
    let (q, _) = quantize(proto, amax, &opts).unwrap();
    let (got, rows) = output0(&q, batch, ort);
    damage(reference, &got, batch.batch, rows)
}

#[test]
fn sensitivity_ranks_a_quantisation_hostile_layer_first() {
    let predictor = YoloPredictor::load(
        &demo_weights(),
        None,
        PredictOptions { imgsz: Some(SIZE), rect: false, ..PredictOptions::default() },
    )
    .unwrap();
    let proto = export_yolo(predictor.model(), i64::from(SIZE), i64::from(SIZE)).unwrap();
    let images = phantoms();
    let amax = calibrate(&predictor, &images);
    let batch = Batch { data: images.iter().flat_map(nchw_from_gray).collect(), batch: IMAGES };
    let keep: BTreeSet<String> = dfl_convs(&proto).into_iter().collect();
    assert!(!keep.is_empty(), "the DFL projection is kept float, as calibrate does");
    let ort = OrtOptions::default();
    let (reference, rows) = output0(&proto, &batch, &ort);
    let best = reference
        .chunks(reference.len() / IMAGES)
        .map(|img| img[4 * img.len() / rows..].iter().fold(0.0f32, |m, &s| m.max(s)));
    println!("fp32 best score per phantom: {:?}", best.collect::<Vec<_>>());

    // 1. The plain ranking.
    let start = Instant::now();
    let plain = analyse(&proto, &amax, &batch, &keep, &ort, false).unwrap();
    let n = plain.ranking.len();
    println!(
        "{n} layers on {} images at {SIZE}x{SIZE}: {:.1} s (wall {:.1} s)",
        plain.images,
        plain.seconds,
        start.elapsed().as_secs_f64()
    );
    assert_eq!(n, candidates(&proto, &keep).len());
    assert!(n > 80, "yolo11n has ~88 convolutions; {n} ranked");
    assert!(plain.ranking.iter().all(|l| l.damage.is_finite() && l.damage >= 0.0));
    assert!(plain.ranking.windows(2).all(|w| w[0].damage >= w[1].damage));
    assert!(plain.ranking.iter().all(|l| !keep.contains(&l.conv) && !keep.contains(&l.node)));
    for (i, l) in plain.ranking.iter().enumerate().filter(|(i, _)| *i < 10 || i % 10 == 0) {
        println!(
            "plain #{:2}: {:28} damage {:.5} (background {:.5}, score {:.5}, boxes {:.5})",
            i + 1,
            l.conv,
            l.damage,
            l.background,
            l.score,
            l.boxes
        );
    }
    let last = plain.ranking[n - 1].clone();
    println!("plain last: {} damage {:.6}", last.conv, last.damage);

    // 2. The target made hostile, ranked with the ten worst (the others are kept float here
    //    only to skip re-measuring them: their damage cannot change, checked below).
    let rank = plain.ranking.iter().position(|l| l.conv == TARGET).expect("TARGET is ranked");
    let target = plain.ranking[rank].clone();
    println!("target (plain #{}): {} damage {:.6}", rank + 1, target.conv, target.damage);
    assert!(rank >= 10 && target.damage < 0.1 * plain.ranking[0].damage, "{target:?}");
    let mut hostile = amax.clone();
    *hostile.get_mut(&target.conv).expect("the conv's output has a range") *= OUTLIER;
    let mut rerun: BTreeSet<String> = plain.top(10).into_iter().collect();
    rerun.insert(target.conv.clone());
    let skip: BTreeSet<String> = keep
        .iter()
        .cloned()
        .chain(plain.ranking.iter().map(|l| l.conv.clone()).filter(|c| !rerun.contains(c)))
        .collect();
    let ranked = analyse(&proto, &hostile, &batch, &skip, &ort, false).unwrap();
    assert_eq!(ranked.ranking.len(), 11);
    for (i, l) in ranked.ranking.iter().take(3).enumerate() {
        println!("hostile #{}: {} damage {:.5}", i + 1, l.conv, l.damage);
    }
    assert_eq!(ranked.top(1), vec![target.conv.clone()], "the hostile layer must rank first");
    let worst_plain = plain.ranking[0].damage;
    assert!(
        ranked.ranking[0].damage > 2.0 * worst_plain,
        "{} vs the plain ranking's worst {worst_plain}",
        ranked.ranking[0].damage
    );
    let before: BTreeMap<&str, f64> =
        plain.ranking.iter().map(|l| (l.conv.as_str(), l.damage)).collect();
    for l in &ranked.ranking[1..] {
        let b = before[l.conv.as_str()];
        assert!((l.damage - b).abs() <= 1e-6 * b.max(1e-3), "{}: {b} -> {}", l.conv, l.damage);
    }

    // 3. Keeping it float helps the full INT8 model — back to what honest calibration gives —
    //    while keeping the least sensitive Conv does nothing.
    let honest = int8_damage(&proto, &amax, &keep, &batch, &reference, &ort);
    let full = int8_damage(&proto, &hostile, &keep, &batch, &reference, &ort);
    let with = |conv: &str| {
        let mut k = keep.clone();
        k.insert(conv.to_string());
        int8_damage(&proto, &hostile, &k, &batch, &reference, &ort)
    };
    let kept_target = with(&target.conv);
    let kept_last = with(&last.conv);
    println!(
        "full INT8 damage: honest {:.5}, hostile {:.5}; hostile keeping {} float {:.5}, \
         keeping {} float {:.5}",
        honest.total(),
        full.total(),
        target.conv,
        kept_target.total(),
        last.conv,
        kept_last.total()
    );
    assert!(full.total() > 1.4 * honest.total(), "{full:?} vs {honest:?}");
    assert!(kept_target.total() < 1.2 * honest.total(), "{kept_target:?} vs {honest:?}");
    assert!(kept_last.total() > 0.9 * full.total(), "{kept_last:?} vs {full:?}");

    // With honest ranges, keeping the four worst float helps more than keeping four others.
    let keeping = |convs: Vec<String>| {
        let k = keep.iter().cloned().chain(convs).collect();
        int8_damage(&proto, &amax, &k, &batch, &reference, &ort)
    };
    let top4 = keeping(plain.top(4));
    let mid4 = keeping(plain.ranking[n / 2..n / 2 + 4].iter().map(|l| l.conv.clone()).collect());
    println!(
        "honest INT8 damage {:.5}: keeping the 4 worst float {:.5}, 4 middling ones {:.5}",
        honest.total(),
        top4.total(),
        mid4.total()
    );
    assert!(top4.total() < 0.8 * honest.total(), "{top4:?} vs {honest:?}");
    assert!(top4.total() < 0.8 * mid4.total(), "{top4:?} vs {mid4:?}");
}
