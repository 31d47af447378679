//! QR codes of short URLs, drawn by Kadi as SVG so that no outside service
//! learns which links exist.

use qrcode::render::svg;
use qrcode::{EcLevel, QrCode};

/// Smallest side of the drawn code, in SVG units (modules scale to fit).
const MIN_SIDE: u32 = 240;

/// The SVG document of a QR code encoding `text`, with medium error
/// correction (a printed code survives a smudge).
pub fn qr_svg(text: &str) -> Result<String, qrcode::types::QrError> {
    let code = QrCode::with_error_correction_level(text.as_bytes(), EcLevel::M)?;
    Ok(code
        .render::<svg::Color<'_>>()
        .min_dimensions(MIN_SIDE, MIN_SIDE)
        .quiet_zone(true)
        .build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_urls_become_svg_documents() {
        let svg = qr_svg("https://sho.rt/launch").unwrap();
        assert!(svg.contains("<svg"), "{svg}");
        assert!(svg.contains("<path"));
        assert!(!svg.contains("style="));
    }

    #[test]
    fn too_long_text_is_an_error() {
        assert!(qr_svg(&"x".repeat(8_000)).is_err());
    }
}
