//! What the benchmarks share: radiograph-sized test images and the median they report.

use std::path::Path;

use anyhow::Context;

/// Radiograph-sized 8-bit test images (textured, so decoding does real work).
pub const PREDICT_SIZES: [(u32, u32); 6] =
    [(373, 454), (454, 373), (480, 352), (416, 416), (600, 800), (1024, 768)];

/// Writes a textured gray test image (format from the extension).
pub fn write_test_image(path: &Path, w: u32, h: u32) -> anyhow::Result<()> {
    let img = image::GrayImage::from_fn(w, h, |x, y| {
        let (fx, fy) = (x as f32, y as f32);
        let noise = ((x.wrapping_mul(2_654_435_761) ^ y.wrapping_mul(40_503)) % 41) as f32 - 20.0;
        let v = 128.0 + 60.0 * (fx / 17.0).sin() * (fy / 23.0).cos() + noise;
        image::Luma([v.clamp(0.0, 255.0) as u8])
    });
    img.save(path).with_context(|| format!("writing {}", path.display()))
}

/// One JPEG of each of [`PREDICT_SIZES`] in `dir`.
pub fn write_predict_images(dir: &Path) -> anyhow::Result<Vec<std::path::PathBuf>> {
    PREDICT_SIZES
        .iter()
        .map(|&(w, h)| {
            let p = dir.join(format!("img_{w}x{h}.jpg"));
            write_test_image(&p, w, h).map(|()| p)
        })
        .collect()
}

/// The median (upper median for even counts); `NaN` for no samples.
pub fn median(mut xs: Vec<f64>) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}
