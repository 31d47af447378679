//! The service of the public listener. A `GET` or `HEAD` of a short code, the
//! request Kadi exists to answer fast, is served directly; every other request
//! goes through the router and its layers.
//!
//! The direct path does what those layers do for the redirect route, in the
//! same order: a request id, the request span, the redirect rate limit, the
//! answer, the request-duration metric, the security headers, the
//! `Content-Length`, and no body for `HEAD`. What it skips is their machinery:
//! route matching, path parameters, request extensions and a boxed service
//! per layer, which together cost the redirect more than the lookup and the
//! click. Paths that are not plainly a short code (a reserved name, anything
//! percent-encoded) still take the router, whose redirect route answers them
//! the same way.

use std::net::SocketAddr;
use std::time::Instant;

use axum::body::Body;
use axum::body::HttpBody as _;
use axum::extract::ConnectInfo;
use axum::http::request::Parts;
use axum::http::{header, HeaderName, HeaderValue, Method, Request};
use axum::response::Response;
use axum::Router;
use tower::ServiceExt;
use tracing::Instrument;

use super::headers::add_security_headers;
use super::redirect::{answer, ClickContext};
use super::{AppState, SequentialRequestId, REDIRECT_ROUTE};
use crate::links::{is_code_shaped, is_reserved};

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The public listener's service. Cheap to clone: clones share everything.
#[derive(Clone)]
pub struct PublicService {
    router: Router,
    state: AppState,
    request_ids: SequentialRequestId,
    https: bool,
}

impl PublicService {
    /// The service of `state`: its router, and the direct redirect path.
    pub fn new(state: AppState) -> PublicService {
        let request_ids = SequentialRequestId::new();
        let router = super::app_with_request_ids(state.clone(), request_ids.clone());
        let https = state.public_base().starts_with("https://");
        PublicService {
            router,
            state,
            request_ids,
            https,
        }
    }

    /// Whether the direct path answers `request`; if so, its parts go to
    /// [`PublicService::redirect`] and its body, empty for `GET` and `HEAD`, is
    /// dropped.
    pub fn takes<B>(&self, request: &Request<B>) -> bool {
        is_direct_redirect(request.method(), request.uri().path())
    }

    /// Answers a request the direct path takes; see [`PublicService::takes`].
    pub async fn redirect(&self, parts: Parts, peer: SocketAddr) -> Response {
        let started = Instant::now();
        let request_id = match parts.headers.get(&REQUEST_ID) {
            Some(id) => id.clone(),
            None => self.request_ids.next_id(),
        };
        let span = crate::telemetry::span_for(
            &parts.method,
            REDIRECT_ROUTE,
            request_id.to_str().unwrap_or(""),
        );
        let client = Some(peer.ip());
        let code = &parts.uri.path()[1..];
        let mut response = async {
            tracing::debug!("started processing request");
            match self.state.access.refuse_redirect(&parts.headers, client) {
                Some(refusal) => refusal,
                None => {
                    let context = ClickContext::new(&parts.headers, client);
                    answer(&self.state, &parts.method, code, context).await
                }
            }
        }
        .instrument(span.clone())
        .await;

        let status = response.status();
        self.state.metrics.observe_request(
            REDIRECT_ROUTE,
            parts.method.as_str(),
            status.as_u16(),
            started.elapsed().as_secs_f64(),
        );
        let size = response.body().size_hint().exact();
        let headers = response.headers_mut();
        add_security_headers(headers, status.is_redirection(), self.https);
        span.in_scope(|| {
            tracing::debug!(
                latency = %format_args!("{} ms", started.elapsed().as_millis()),
                status = status.as_u16(),
                "finished processing request"
            );
        });
        headers.entry(REQUEST_ID).or_insert(request_id);
        if let (false, Some(size)) = (headers.contains_key(header::CONTENT_LENGTH), size) {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
        }
        if parts.method == Method::HEAD {
            *response.body_mut() = Body::empty();
        }
        response
    }

    /// Answers a request through the router, with the client's address as
    /// [`ConnectInfo`].
    pub async fn route(&self, mut request: Request<Body>, peer: SocketAddr) -> Response {
        request.extensions_mut().insert(ConnectInfo(peer));
        match self.router.clone().oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        }
    }
}

/// Whether a request is a plain `GET` or `HEAD` of a short code: one path
/// segment of code characters that names none of the service's own routes.
fn is_direct_redirect(method: &Method, path: &str) -> bool {
    if method != Method::GET && method != Method::HEAD {
        return false;
    }
    match path.strip_prefix('/') {
        Some(code) => is_code_shaped(code) && !is_reserved(code),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_code_paths_take_the_direct_path() {
        for path in ["/abc", "/lt000001", "/A-b_9"] {
            assert!(is_direct_redirect(&Method::GET, path), "{path}");
            assert!(is_direct_redirect(&Method::HEAD, path), "{path}");
        }
        assert!(!is_direct_redirect(&Method::POST, "/abc"));
        assert!(!is_direct_redirect(&Method::DELETE, "/abc"));
        for path in [
            "/",
            "",
            "/health",
            "/Users",
            "/dashboard",
            "/openapi.json",
            "/a/b",
            "/abc/",
            "/a%62c",
            "/abc.def",
        ] {
            assert!(!is_direct_redirect(&Method::GET, path), "{path}");
        }
    }
}
