//! The dashboard's stylesheet, script and icon, compiled into the binary and
//! served under a path that carries a hash of their content, so that browsers
//! may cache them for a year and still never run a stale copy.

use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::error::PageError;

/// Cache lifetime of versioned assets: a year, with `immutable`, since a
/// changed file gets a new path.
const ASSET_CACHE_CONTROL: &str = "public, max-age=31536000, immutable";

/// Every asset: file name, content type, content.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("assets/app.css"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/app.js"),
    ),
    ("icon.svg", "image/svg+xml", include_str!("assets/icon.svg")),
];

/// The version segment of asset paths: the start of a SHA-256 over every
/// asset, computed once.
pub fn version() -> &'static str {
    static VERSION: OnceLock<String> = OnceLock::new();
    VERSION.get_or_init(|| {
        let mut hash = Sha256::new();
        for (name, _, content) in ASSETS {
            hash.update(name.as_bytes());
            hash.update(content.as_bytes());
        }
        hex::encode(&hash.finalize()[..6])
    })
}

/// The path of an asset, version included.
pub fn url(file: &str) -> String {
    format!("/dashboard/assets/{}/{file}", version())
}

/// `GET /dashboard/assets/{version}/{file}`. An old version is a 404: its
/// content is gone, and serving today's under the old path would let caches
/// keep the wrong file for a year.
pub async fn serve(Path((asked, file)): Path<(String, String)>) -> Response {
    let found = ASSETS.iter().find(|(name, _, _)| *name == file);
    match found {
        Some((_, content_type, content)) if asked == version() => (
            [
                (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
                (
                    header::CACHE_CONTROL,
                    HeaderValue::from_static(ASSET_CACHE_CONTROL),
                ),
            ],
            *content,
        )
            .into_response(),
        _ => PageError::not_found("There is no such dashboard asset.").into_response(),
    }
}
