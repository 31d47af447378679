//! The HTTP service: the resource API, the redirect route, health and the
//! OpenAPI document. [`app`] builds the router from an [`AppState`].

pub mod error;
pub mod events;
pub mod extract;
pub mod health;
pub mod openapi;
pub mod redirect;
pub mod urls;
pub mod users;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderValue, StatusCode};
use axum::routing::{get, post};
use axum::Router;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
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

/// Everything a request handler needs. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// The link service (and through it the store and cache).
    pub links: LinkService,
    /// Where redirects queue their clicks.
    pub clicks: ClickQueue,
    /// Metric handles.
    pub metrics: Metrics,
    /// Base of short URLs, without a trailing slash.
    pub public_base: Arc<str>,
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
        .route("/{short_code}", get(redirect::follow))
        .fallback(unknown_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_JSON_BODY_BYTES))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(TraceLayer::new_for_http().make_span_with(crate::telemetry::request_span))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
        .with_state(state)
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

/// The metrics exposition, for the metrics listener.
pub fn metrics_app(metrics: Metrics, clicks: ClickQueue) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let metrics = metrics.clone();
            let depth = clicks.depth();
            async move {
                metrics.click_queue_depth.set(depth as i64);
                (
                    [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                    metrics.render(),
                )
            }
        }),
    )
}
