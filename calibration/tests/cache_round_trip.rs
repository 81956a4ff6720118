//! TensorRT calibration cache: write → read round trip is bit-exact, over many random scales
//! (every exponent, including zero, denormals and the largest finite value) and awkward
//! tensor names; and the file a Calibrator result produces reads back to the same amax.

use std::collections::BTreeMap;

use fracture_calibration::{CalibrationCache, Calibrator, Method, TrtVersion, scale_from_amax};

/// splitmix64.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[test]
fn random_scales_round_trip_bit_exact() {
    let mut rng = Rng(7);
    let mut scales = BTreeMap::new();
    let special = [
        0.0f32,
        f32::from_bits(1),           // smallest denormal
        f32::from_bits(0x007f_ffff), // largest denormal
        f32::MIN_POSITIVE,
        f32::MAX,
        1.0 / 127.0,
        f32::EPSILON,
    ];
    for (k, s) in special.iter().enumerate() {
        scales.insert(format!("special_{k}"), *s);
    }
    let mut denormals = 0;
    while scales.len() < 20_000 {
        // Any finite non-negative bit pattern: sign bit clear, exponent not all ones.
        let bits = (rng.next_u64() as u32) & 0x7fff_ffff;
        let s = f32::from_bits(bits);
        if !s.is_finite() {
            continue;
        }
        denormals += usize::from(s != 0.0 && !s.is_normal());
        let name = match scales.len() % 4 {
            0 => format!("/model.{}/conv/Conv_output_0", scales.len()),
            1 => format!("input_{}:0", scales.len()),
            2 => format!("a: b: {}", scales.len()),
            _ => format!("名前 {} ", scales.len()),
        };
        scales.insert(name, s);
    }
    assert!(denormals > 0, "the sample should hold random denormals too");
    for version in [TrtVersion::default(), TrtVersion::new(8, 6, 1).expect("8.6.1")] {
        let cache = CalibrationCache::new(version, scales.clone());
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("calibration.cache");
        cache.write(&path).expect("write");
        let text = std::fs::read_to_string(&path).expect("read text");
        let first = text.lines().next().expect("header");
        assert_eq!(first, format!("TRT-{}-EntropyCalibration2", version.code()));
        let back = CalibrationCache::read(&path).expect("read back");
        assert_eq!(back.version, version);
        assert_eq!(back.scales.len(), scales.len());
        for (name, s) in &scales {
            let b = back.scales.get(name).unwrap_or_else(|| panic!("{name:?} missing"));
            assert_eq!(b.to_bits(), s.to_bits(), "{name:?}");
        }
        // And the text itself is reproduced byte for byte.
        assert_eq!(back.to_text().expect("text"), text);
    }
}

#[test]
fn calibrator_result_to_cache_and_back() {
    let mut cal = Calibrator::new(Method::Entropy).expect("entropy");
    let images: Vec<Vec<f32>> = (0..4)
        .map(|k| (0..5000).map(|i| ((i * 31 + k * 7) % 997) as f32 / 99.7 - 5.0).collect())
        .collect();
    while !cal.is_complete() {
        for img in &images {
            cal.observe("/model.0/act/Mul_output_0", img).expect("observe");
            cal.observe("images", &img[..100]).expect("observe");
        }
        cal.end_pass().expect("pass");
    }
    let amax = cal.finish().expect("finish");
    let cache = CalibrationCache::from_amax(TrtVersion::default(), &amax);
    let text = cache.to_text().expect("text");
    assert!(text.starts_with("TRT-100300-EntropyCalibration2\n"), "{text}");
    let back = CalibrationCache::parse(&text).expect("parse");
    for (name, a) in &amax {
        assert_eq!(back.scales[name].to_bits(), scale_from_amax(*a).to_bits(), "{name}");
        let line = format!("{name}: {:08x}\n", scale_from_amax(*a).to_bits());
        assert!(text.contains(&line), "{line:?} in {text}");
    }
}
