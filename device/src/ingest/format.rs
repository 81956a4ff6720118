//! Which image format a file holds, told by its first bytes (magic numbers), never by its
//! name: capture software names files however it likes.

use serde::Serialize;

/// The formats the daemon decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageFormat {
    Png,
    Jpeg,
    Tiff,
    /// DICOM Part 10 file: 128-byte preamble, then `DICM`.
    Dicom,
}

impl ImageFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Png => "png",
            Self::Jpeg => "jpeg",
            Self::Tiff => "tiff",
            Self::Dicom => "dicom",
        }
    }
}

/// The format whose signature `bytes` start with, if any.
pub fn sniff(bytes: &[u8]) -> Option<ImageFormat> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some(ImageFormat::Png)
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(ImageFormat::Jpeg)
    } else if bytes.starts_with(b"II*\0") || bytes.starts_with(b"MM\0*") {
        Some(ImageFormat::Tiff)
    } else if bytes.len() >= 132 && &bytes[128..132] == b"DICM" {
        Some(ImageFormat::Dicom)
    } else {
        None
    }
}

/// Formats recognised by their signature but not accepted, named so the quarantine reason
/// says what the file is (a screenshot, a document, an archive), not just "unrecognised".
pub fn sniff_unsupported(bytes: &[u8]) -> Option<&'static str> {
    let at = |offset: usize, sig: &[u8]| bytes.get(offset..offset + sig.len()) == Some(sig);
    if at(0, b"GIF87a") || at(0, b"GIF89a") {
        Some("GIF")
    } else if at(0, b"BM") && bytes.len() >= 26 && at(6, &[0, 0, 0, 0]) {
        Some("BMP")
    } else if at(0, b"RIFF") && at(8, b"WEBP") {
        Some("WebP")
    } else if at(0, b"%PDF-") {
        Some("PDF")
    } else if at(0, b"PK\x03\x04") {
        Some("ZIP archive")
    } else if at(0, b"\x1f\x8b") {
        Some("gzip archive")
    } else if at(0, b"\0\0\0\x0cjP  \r\n\x87\n") || at(0, &[0xFF, 0x4F, 0xFF, 0x51]) {
        Some("JPEG 2000 (outside DICOM)")
    } else if at(4, b"ftyp") {
        Some("ISO media (HEIF/AVIF/MP4)")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures() {
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\nrest"), Some(ImageFormat::Png));
        assert_eq!(sniff(&[0xFF, 0xD8, 0xFF, 0xE0]), Some(ImageFormat::Jpeg));
        assert_eq!(sniff(b"II*\0...."), Some(ImageFormat::Tiff));
        assert_eq!(sniff(b"MM\0*...."), Some(ImageFormat::Tiff));
        let mut dicom = vec![0_u8; 128];
        dicom.extend_from_slice(b"DICM");
        assert_eq!(sniff(&dicom), Some(ImageFormat::Dicom));
        assert_eq!(sniff(b""), None);
        assert_eq!(sniff(b"hello world"), None);
        assert_eq!(sniff(&dicom[..131]), None);
    }

    #[test]
    fn unsupported_formats_are_named() {
        assert_eq!(sniff_unsupported(b"GIF89a\x01\x00"), Some("GIF"));
        let mut bmp = b"BM".to_vec();
        bmp.extend_from_slice(&[0x46, 0, 0, 0, 0, 0, 0, 0]);
        bmp.resize(30, 0);
        assert_eq!(sniff_unsupported(&bmp), Some("BMP"));
        assert_eq!(sniff_unsupported(b"RIFF\x10\0\0\0WEBPVP8 "), Some("WebP"));
        assert_eq!(sniff_unsupported(b"%PDF-1.7"), Some("PDF"));
        assert_eq!(sniff_unsupported(b"BMW is not a bitmap"), None);
        assert_eq!(sniff_unsupported(b"hello"), None);
    }
}
