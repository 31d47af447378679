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
pub mod redirect;
pub mod urls;
pub mod users;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, MatchedPath, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
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
    let request_id = header::HeaderName::from_static("x-request-id");
    Router::new()
        .route("/health", get(health::health))
        .route("/livez", get(health::livez))
        .route("/readyz", get(health::readyz))
        .route("/openapi.json", get(openapi::document))
        .merge(resource_api(state.clone()))
        .merge(crate::dashboard::router(state.clone()))
        .route(
            "/{short_code}",
            get(redirect::follow).route_layer(axum::middleware::from_fn_with_state(
                state.clone(),
                access::guard_redirect,
            )),
        )
        .fallback(unknown_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.metrics.clone(),
            record_request,
        ))
        .layer(DefaultBodyLimit::max(MAX_JSON_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            headers::set_security_headers,
        ))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(crate::telemetry::request_span)
                // ApiError logs each 5xx once, with its error chain.
                .on_failure(()),
        )
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(
            request_id,
            SequentialRequestId::new(),
        ))
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
    let class = match response.status().as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    };
    let method = match method.as_str() {
        "GET" | "HEAD" | "POST" | "PUT" | "DELETE" | "PATCH" | "OPTIONS" => method.as_str(),
        _ => "other",
    };
    metrics
        .http_requests
        .with_label_values(&[
            route.as_ref().map_or("unmatched", MatchedPath::as_str),
            method,
            class,
        ])
        .observe(started.elapsed().as_secs_f64());
    response
}

/// Request ids for requests that arrive without one: a random per-process
/// prefix and a counter. Unique across replicas without a random draw per
/// request, which the redirect path would pay on every click.
#[derive(Clone)]
struct SequentialRequestId {
    prefix: Arc<str>,
    next: Arc<std::sync::atomic::AtomicU64>,
}

impl SequentialRequestId {
    fn new() -> SequentialRequestId {
        SequentialRequestId {
            prefix: format!("{:016x}", rand::random::<u64>()).into(),
            next: Arc::new(std::sync::atomic::AtomicU64::new(0)),
        }
    }
}

impl MakeRequestId for SequentialRequestId {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        axum::http::HeaderValue::from_str(&format!("{}-{n:x}", self.prefix))
            .ok()
            .map(RequestId::new)
    }
}
