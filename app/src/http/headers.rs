//! Security headers on every response of the public listener.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;

use super::AppState;

/// Nothing Kadi serves loads scripts, styles or frames, so the strictest
/// policy costs nothing and blunts any content a response might reflect.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; frame-ancestors 'none'";

/// One year, the value HSTS preload lists expect; only sent when short URLs
/// are https, so that a plain-http test setup is never locked out.
const STRICT_TRANSPORT_SECURITY: &str = "max-age=31536000";

/// Adds the security headers a response lacks.
pub async fn set_security_headers(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let mut response = next.run(request).await;
    let is_redirect = response.status().is_redirection();
    let https = state.public_base().starts_with("https://");
    add_security_headers(response.headers_mut(), is_redirect, https);
    response
}

/// The security headers of one response, where it lacks them. Redirects keep
/// the referrer behaviour of the browser: a `Referrer-Policy` on them would
/// hide from the target where its visitors come from, which is not ours to
/// change. `https` is whether short URLs are https.
pub fn add_security_headers(headers: &mut HeaderMap, is_redirect: bool, https: bool) {
    headers
        .entry(header::X_CONTENT_TYPE_OPTIONS)
        .or_insert(HeaderValue::from_static("nosniff"));
    headers
        .entry(header::X_FRAME_OPTIONS)
        .or_insert(HeaderValue::from_static("DENY"));
    if !is_redirect {
        headers
            .entry(header::CONTENT_SECURITY_POLICY)
            .or_insert(HeaderValue::from_static(CONTENT_SECURITY_POLICY));
        headers
            .entry(header::REFERRER_POLICY)
            .or_insert(HeaderValue::from_static("no-referrer"));
    }
    if https {
        headers
            .entry(header::STRICT_TRANSPORT_SECURITY)
            .or_insert(HeaderValue::from_static(STRICT_TRANSPORT_SECURITY));
    }
}
