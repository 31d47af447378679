//! The web dashboard under `/dashboard`: server-rendered pages to manage links
//! and users and to read click analytics, signed in with an API key. Every
//! change goes through the link service, like the HTTP API's.

mod agents;
mod analytics;
mod assets;
mod charts;
mod error;
mod forms;
mod links;
mod qr;
mod session;
mod users;
mod view;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::{from_fn, from_fn_with_state, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::http::AppState;
use crate::ratelimit::Subject;
pub use assets::version as asset_version;
pub use error::PageError;
pub use session::{CSRF_FIELD, SESSION_COOKIE, SESSION_LIFETIME, SIGN_IN_COOKIE};

/// Where the dashboard lives; `dashboard` is a reserved short code.
pub const PREFIX: &str = "/dashboard";

/// The policy of every dashboard response: scripts, styles and images only
/// from Kadi itself, no inline script or style, no framing, forms that post
/// only back to Kadi, and no `<base>` that could redirect relative URLs.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; object-src 'none'; frame-ancestors 'none'; \
     form-action 'self'; base-uri 'none'";

/// The dashboard's routes, to merge into the public router.
pub fn router(state: AppState) -> Router<AppState> {
    let signed_in = Router::new()
        .route("/dashboard", get(analytics::overview))
        .route("/dashboard/sign-out", post(session::sign_out))
        .route(
            "/dashboard/links",
            get(links::list_links).post(links::create_link),
        )
        .route("/dashboard/links/new", get(links::new_link))
        .route("/dashboard/links/{id}", get(links::show_link))
        .route(
            "/dashboard/links/{id}/edit",
            get(links::edit_link).post(links::update_link),
        )
        .route("/dashboard/links/{id}/deactivate", post(links::deactivate))
        .route("/dashboard/links/{id}/reactivate", post(links::reactivate))
        .route("/dashboard/links/{id}/delete", post(links::delete_link))
        .route("/dashboard/links/{id}/qr.svg", get(links::qr_code))
        .route(
            "/dashboard/users",
            get(users::list_users).post(users::create_user),
        )
        .route("/dashboard/users/{id}", get(users::show_user))
        .route_layer(from_fn_with_state(state.clone(), session::require_session));
    Router::new()
        .merge(signed_in)
        .route("/dashboard/", get(|| async { Redirect::permanent(PREFIX) }))
        .route(
            "/dashboard/sign-in",
            get(session::sign_in_form).post(session::sign_in),
        )
        .route("/dashboard/{*rest}", get(no_such_page))
        .route_layer(from_fn_with_state(state, throttle))
        .route("/dashboard/assets/{version}/{file}", get(assets::serve))
        .route_layer(from_fn(set_page_headers))
}

/// Adds the dashboard's content security policy, and keeps pages out of
/// caches (they show data only a signed-in person may see). Assets set their
/// own long cache lifetime.
async fn set_page_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

/// Counts dashboard requests against the API's per-client rate limit, so that
/// the sign-in form is no faster way to guess keys than the API.
async fn throttle(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let access = &state.access;
    if let Some(limiter) = &access.api_limiter {
        let quota = limiter.check(Subject::client(access.client_ip(&request)));
        if !quota.allowed() {
            return PageError::rate_limited(quota.retry_after_secs).into_response();
        }
    }
    next.run(request).await
}

async fn no_such_page() -> PageError {
    PageError::not_found("There is no such dashboard page.")
}
