//! DICOM decoding: the grayscale pipeline's numbers, and clear errors for what it refuses.

mod common;

use common::{DicomSpec, dicom};
use fracture_device::ingest::decode::{DecodeError, DecodeOptions, decode};
use fracture_device::ingest::dicom::DicomError;
use fracture_device::ingest::format::ImageFormat;

fn close(got: &[f32], want: &[f64]) {
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((f64::from(*g) - w).abs() < 1e-5, "pixel {i}: got {g}, want {w}");
    }
}

/// PS3.3 C.11.2.1.2.1 LINEAR.
fn linear(x: f64, c: f64, w: f64) -> f64 {
    if x <= c - 0.5 - (w - 1.0) / 2.0 {
        0.0
    } else if x > c - 0.5 + (w - 1.0) / 2.0 {
        1.0
    } else {
        (x - (c - 0.5)) / (w - 1.0) + 0.5
    }
}

const STORED: [u16; 6] = [500, 1000, 1500, 1750, 2000, 3000];

#[test]
fn monochrome1_with_window_is_windowed_then_inverted() {
    let bytes = dicom(&DicomSpec {
        photometric: "MONOCHROME1",
        window: Some((1500.0, 1001.0)),
        ..DicomSpec::default()
    });
    let d = decode(&bytes, &DecodeOptions::default()).expect("decode");
    assert_eq!(d.format, ImageFormat::Dicom);
    assert_eq!((d.image.width, d.image.height, d.image.bit_depth), (3, 2, 16));
    // Window: 500 -> 0, 1000 -> 0.0005, 1500 -> 0.5005, 1750 -> 0.7505, 2000 -> 1, 3000 -> 1;
    // then MONOCHROME1 inverts so bone is bright.
    let want: Vec<f64> =
        STORED.iter().map(|&x| 1.0 - linear(f64::from(x), 1500.0, 1001.0)).collect();
    close(&d.image.data, &want);
    assert!((want[1] - 0.9995).abs() < 1e-12 && want[4] == 0.0);
    let a = &d.acquisition;
    assert_eq!(a["study_instance_uid"], "2.25.77");
    assert_eq!(a["series_instance_uid"], "2.25.78");
    assert_eq!(a["sop_instance_uid"], "2.25.1001");
    assert_eq!(a["inverted"], true);
    assert_eq!(a["voi"]["kind"], "window");
    let text = a.to_string();
    assert!(!text.contains(common::PATIENT_NAME) && !text.contains(common::PATIENT_ID));
}

#[test]
fn rescale_applies_before_the_window() {
    // Stored 1250 with slope 2, intercept -1000 is 1500: the window's centre.
    let bytes = dicom(&DicomSpec {
        pixels: Some(vec![750, 1000, 1250, 1375, 1500, 2000]),
        rescale: Some((2.0, -1000.0)),
        window: Some((1500.0, 1001.0)),
        ..DicomSpec::default()
    });
    let d = decode(&bytes, &DecodeOptions::default()).expect("decode");
    let want: Vec<f64> = STORED.iter().map(|&x| linear(f64::from(x), 1500.0, 1001.0)).collect();
    close(&d.image.data, &want);
    assert_eq!(d.acquisition["rescale_slope"], 2.0);
}

#[test]
fn presentation_lut_shape_inverse_inverts_monochrome2() {
    let bytes = dicom(&DicomSpec {
        window: Some((1500.0, 1001.0)),
        presentation_lut_shape: Some("INVERSE"),
        ..DicomSpec::default()
    });
    let d = decode(&bytes, &DecodeOptions::default()).expect("decode");
    let want: Vec<f64> =
        STORED.iter().map(|&x| 1.0 - linear(f64::from(x), 1500.0, 1001.0)).collect();
    close(&d.image.data, &want);
    // IDENTITY leaves MONOCHROME2 as it is.
    let bytes = dicom(&DicomSpec {
        window: Some((1500.0, 1001.0)),
        presentation_lut_shape: Some("IDENTITY"),
        ..DicomSpec::default()
    });
    let d = decode(&bytes, &DecodeOptions::default()).expect("decode");
    let want: Vec<f64> = STORED.iter().map(|&x| linear(f64::from(x), 1500.0, 1001.0)).collect();
    close(&d.image.data, &want);
}

#[test]
fn voi_lut_table_and_min_max_fallback() {
    // Table of 4 entries from value 1000: below clamps to the first, above to the last.
    let table = vec![0, 1000, 30000, 65535];
    let bytes = dicom(&DicomSpec {
        pixels: Some(vec![500, 1000, 1001, 1002, 1003, 3000]),
        voi_lut: Some((1000, 16, table)),
        ..DicomSpec::default()
    });
    let d = decode(&bytes, &DecodeOptions::default()).expect("decode");
    let want = [0.0, 0.0, 1000.0 / 65535.0, 30000.0 / 65535.0, 1.0, 1.0];
    close(&d.image.data, &want);
    assert_eq!(d.acquisition["voi"]["kind"], "lut");

    // Neither window nor table: min-max over the image.
    let d = decode(&dicom(&DicomSpec::default()), &DecodeOptions::default()).expect("decode");
    let want: Vec<f64> = STORED.iter().map(|&x| (f64::from(x) - 500.0) / 2500.0).collect();
    close(&d.image.data, &want);
    assert_eq!(d.acquisition["voi"]["kind"], "min_max");
}

#[test]
fn refusals_say_why() {
    let options = DecodeOptions::default();
    let no_pixels = dicom(&DicomSpec { pixels: None, ..DicomSpec::default() });
    assert!(matches!(
        decode(&no_pixels, &options),
        Err(DecodeError::Dicom(DicomError::NoPixelData))
    ));

    let unknown_ts =
        dicom(&DicomSpec { transfer_syntax: "1.2.840.99999.9.9.9", ..DicomSpec::default() });
    match decode(&unknown_ts, &options) {
        Err(e @ DecodeError::Dicom(DicomError::UnsupportedTransferSyntax { .. })) => {
            assert!(e.to_string().contains("1.2.840.99999.9.9.9"), "{e}");
        }
        other => panic!("expected an unsupported transfer syntax, got {other:?}"),
    }

    let ct = dicom(&DicomSpec { modality: "CT", ..DicomSpec::default() });
    assert!(matches!(decode(&ct, &options), Err(DecodeError::Dicom(DicomError::Modality(..)))));

    let rgb = dicom(&DicomSpec { photometric: "RGB", ..DicomSpec::default() });
    assert!(matches!(decode(&rgb, &options), Err(DecodeError::Dicom(DicomError::Unsupported(_)))));

    let mut small = DecodeOptions::default();
    small.limits.max_width = 2;
    assert!(matches!(
        decode(&dicom(&DicomSpec::default()), &small),
        Err(DecodeError::Dicom(DicomError::TooLarge { .. }))
    ));

    let mut truncated = dicom(&DicomSpec::default());
    truncated.truncate(truncated.len() - 5);
    assert!(decode(&truncated, &options).is_err());
}

#[test]
fn jpeg_compressed_dicom_decodes() {
    let img = common::gray(32, 24, 7);
    let jpeg = common::encode(&img, image::ImageFormat::Jpeg);
    let bytes = dicom(&DicomSpec {
        rows: 24,
        cols: 32,
        pixels: None,
        bits_stored: 8,
        jpeg_baseline: Some(jpeg.clone()),
        ..DicomSpec::default()
    });
    let d = decode(&bytes, &DecodeOptions::default()).expect("decode");
    assert_eq!((d.image.width, d.image.height, d.image.bit_depth), (32, 24, 8));
    assert_eq!(d.acquisition["transfer_syntax"], common::JPEG_BASELINE);
    // The same pixels as decoding the JPEG itself (two JPEG decoders may differ by one
    // level), after the min-max stretch applied when there is no window.
    let direct = fracture_models::pixels::decode_gray(&jpeg).expect("jpeg");
    let min = direct.data.iter().copied().fold(f32::INFINITY, f32::min);
    let max = direct.data.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    for (got, v) in d.image.data.iter().zip(&direct.data) {
        let want = (v - min) / (max - min);
        assert!((got - want).abs() <= 2.0 / 255.0 / (max - min), "{got} vs {want}");
    }
}

#[test]
fn compressed_syntaxes_common_for_cr_dx_are_decodable() {
    use dicom_transfer_syntax_registry::{TransferSyntaxIndex, TransferSyntaxRegistry};
    for uid in [
        "1.2.840.10008.1.2.4.50", // JPEG baseline
        "1.2.840.10008.1.2.4.57", // JPEG lossless
        "1.2.840.10008.1.2.4.70", // JPEG lossless SV1
        "1.2.840.10008.1.2.4.90", // JPEG 2000 lossless
        "1.2.840.10008.1.2.4.91", // JPEG 2000
        "1.2.840.10008.1.2.5",    // RLE
    ] {
        let ts = TransferSyntaxRegistry.get(uid).expect("known");
        assert!(ts.can_decode_all(), "{uid} ({}) not decodable", ts.name());
    }
}
