//! The HTTP service: the resource API, the redirect route, health and the
//! OpenAPI document. [`app`] builds the router from an [`AppState`].

pub mod access;
pub mod connections;
pub mod error;
pub mod events;
pub mod extract;
pub mod headers;
pub mod health;
pub mod openapi;
pub mod public;
pub mod redirect;
pub mod urls;
pub mod users;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, MatchedPath, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use tower::ServiceBuilder;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::TraceLayer;

use crate::clicks::ClickQueue;
use crate::links::LinkService;
use crate::metrics::Metrics;
use crate::store::Store;
use error::ApiError;

/// Largest JSON body accepted; link and user bodies are far smaller.
pub const MAX_JSON_BODY_BYTES: usize = 64 * 1024;

/// Largest CSV upload accepted by `POST /users/bulk`.
pub const MAX_BULK_BODY_BYTES: usize = 16 * 1024 * 1024;

/// The route template of the redirect.
pub const REDIRECT_ROUTE: &str = "/{short_code}";

/// Everything a request handler needs. Cloning is a single reference count:
/// axum clones the state for every extractor and middleware of every request.
#[derive(Clone)]
pub struct AppState(Arc<StateParts>);

impl AppState {
    /// Shares `parts` between every request.
    pub fn new(parts: StateParts) -> AppState {
        AppState(Arc::new(parts))
    }
}

impl std::ops::Deref for AppState {
    type Target = StateParts;

    fn deref(&self) -> &StateParts {
        &self.0
    }
}

/// What [`AppState`] holds.
pub struct StateParts {
    /// The link service (and through it the store and cache).
    pub links: LinkService,
    /// Where redirects queue their clicks.
    pub clicks: ClickQueue,
    /// Metric handles.
    pub metrics: Metrics,
    /// Base of short URLs, without a trailing slash.
    pub public_base: Arc<str>,
    /// API keys and rate limits.
    pub access: Arc<access::Access>,
}

impl AppState {
    /// The store.
    pub fn store(&self) -> &Store {
        self.links.store()
    }

    /// Base of short URLs, without a trailing slash.
    pub fn public_base(&self) -> &str {
        &self.public_base
    }
}

/// The router of the public listener.
pub fn app(state: AppState) -> Router {
    app_with_request_ids(state, SequentialRequestId::new())
}

/// The router of the public listener, drawing request ids from `request_ids`.
fn app_with_request_ids(state: AppState, request_ids: SequentialRequestId) -> Router {
    let request_id = header::HeaderName::from_static("x-request-id");
    Router::new()
        .route("/health", get(health::health))
        .route("/livez", get(health::livez))
        .route("/readyz", get(health::readyz))
        .route("/openapi.json", get(openapi::document))
        .merge(resource_api(state.clone()))
        .merge(crate::dashboard::router(state.clone()))
        .route(
            REDIRECT_ROUTE,
            get(redirect::follow).route_layer(axum::middleware::from_fn_with_state(
                state.clone(),
                access::guard_redirect,
            )),
        )
        .fallback(unknown_route)
        .method_not_allowed_fallback(method_not_allowed)
        // One layer of layers, outermost first: every `Router::layer` call
        // boxes the routes again, and each request clones every box.
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(request_id.clone(), request_ids))
                .layer(PropagateRequestIdLayer::new(request_id))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(crate::telemetry::request_span)
                        // ApiError logs each 5xx once, with its error chain.
                        .on_failure(()),
                )
                .layer(axum::middleware::from_fn_with_state(
                    state.clone(),
                    headers::set_security_headers,
                ))
                .layer(DefaultBodyLimit::max(MAX_JSON_BODY_BYTES))
                .layer(axum::middleware::from_fn_with_state(
                    state.metrics.clone(),
                    record_request,
                )),
        )
        .with_state(state)
}

/// The routes of users, links and events: every one needs an API key when
/// authentication is on, and counts against the API rate limits.
fn resource_api(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/users", post(users::create_user).get(users::list_users))
        .route(
            "/users/bulk",
            post(users::bulk_users).layer(DefaultBodyLimit::max(MAX_BULK_BODY_BYTES)),
        )
        .route(
            "/users/{id}",
            get(users::get_user)
                .put(users::update_user)
                .delete(users::delete_user),
        )
        .route("/urls", post(urls::create_url).get(urls::list_urls))
        .route(
            "/urls/{id}",
            get(urls::get_url)
                .put(urls::update_url)
                .delete(urls::delete_url),
        )
        .route("/urls/{id}/stats", get(urls::url_stats))
        .route(
            "/events",
            post(events::create_event).get(events::list_events),
        )
        .route("/events/{id}", get(events::get_event))
        .route_layer(axum::middleware::from_fn_with_state(
            state,
            access::guard_api,
        ))
}

async fn unknown_route() -> ApiError {
    ApiError::not_found("no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed on this route",
    )
}

/// The router of the metrics listener: `/metrics` only.
pub fn metrics_app(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(render_metrics))
        .with_state(state)
}

async fn render_metrics(State(state): State<AppState>) -> impl IntoResponse {
    let metrics = &state.metrics;
    metrics.click_queue_depth.set(state.clicks.depth() as i64);
    metrics.cache_entries.set(state.links.cache().len() as i64);
    let usage = state.store().usage();
    let connections = &metrics.db_connections;
    connections.with_label_values(&["in_use"]).set(usage.in_use);
    connections.with_label_values(&["idle"]).set(usage.idle);
    metrics.db_max_connections.set(usage.max);
    metrics.db_waiting.set(usage.waiting);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        metrics.render(),
    )
}

/// Records `kadi_http_request_duration_seconds` for every request, labelled
/// with the route template (never the raw path), method and status class.
async fn record_request(
    State(metrics): State<Metrics>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let started = std::time::Instant::now();
    let route = request.extensions().get::<MatchedPath>().cloned();
    let method = request.method().clone();
    let response = next.run(request).await;
    let method = match method.as_str() {
        "GET" | "HEAD" | "POST" | "PUT" | "DELETE" | "PATCH" | "OPTIONS" => method.as_str(),
        _ => "other",
    };
    metrics.observe_request(
        route.as_ref().map_or("unmatched", MatchedPath::as_str),
        method,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

/// Request ids for requests that arrive without one: a random per-process
/// prefix and a counter, `<16 hex digits>-<counter in hex>`. Unique across
/// replicas without a random draw per request, and written into a stack buffer
/// without the formatting machinery, which the redirect path would pay on
/// every click.
#[derive(Clone)]
struct SequentialRequestId {
    prefix: [u8; 16],
    next: Arc<std::sync::atomic::AtomicU64>,
}

impl SequentialRequestId {
    fn new() -> SequentialRequestId {
        let mut prefix = [0; 16];
        hex_digits(rand::random::<u64>(), &mut prefix);
        SequentialRequestId {
            prefix,
            next: Arc::new(std::sync::atomic::AtomicU64::new(0)),
        }
    }

    /// The next id.
    fn next_id(&self) -> axum::http::HeaderValue {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut counter = [0; 16];
        let digits = hex_digits(n, &mut counter);
        let mut id = [0; 33];
        id[..16].copy_from_slice(&self.prefix);
        id[16] = b'-';
        id[17..17 + digits.len()].copy_from_slice(digits);
        // Hex digits and a hyphen are always a valid header value.
        axum::http::HeaderValue::from_bytes(&id[..17 + digits.len()])
            .unwrap_or(axum::http::HeaderValue::from_static("0"))
    }
}

impl MakeRequestId for SequentialRequestId {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        Some(RequestId::new(self.next_id()))
    }
}

/// Writes `n` in lower-case hex into the end of `buffer` and returns the
/// digits written: all 16 when `buffer` is filled from the start by a caller
/// that wants leading zeros, as few as `n` needs otherwise.
fn hex_digits(mut n: u64, buffer: &mut [u8; 16]) -> &[u8] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut start = 16;
    buffer.fill(b'0');
    loop {
        start -= 1;
        buffer[start] = DIGITS[(n & 0xf) as usize];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    &buffer[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_digits_match_the_formatter() {
        for n in [0, 1, 0xf, 0x10, 0xdead_beef, u64::MAX] {
            let mut buffer = [0; 16];
            let digits = hex_digits(n, &mut buffer);
            assert_eq!(std::str::from_utf8(digits).unwrap(), format!("{n:x}"));
            assert_eq!(std::str::from_utf8(&buffer).unwrap(), format!("{n:016x}"));
        }
    }

    #[test]
    fn request_ids_share_a_prefix_and_count_up() {
        let mut ids = SequentialRequestId::new();
        let request = axum::http::Request::new(());
        let mut next = || {
            let id = ids.make_request_id(&request).unwrap();
            id.header_value().to_str().unwrap().to_owned()
        };
        let (first, second) = (next(), next());
        let (prefix, counter) = first.split_once('-').unwrap();
        assert_eq!(prefix.len(), 16);
        assert!(prefix.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(counter, "0");
        assert_eq!(second, format!("{prefix}-1"));
    }
}
