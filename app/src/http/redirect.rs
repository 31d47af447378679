//! `GET /{short_code}`: the redirect, and the click it records.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::Utc;

use super::error::{ApiError, ErrorBody};
use super::extract::Path;
use super::AppState;
use crate::clicks::{detach, Click};
use crate::redirect::{resolve, Outcome};

/// What a click records about the request: referrer, user agent and the
/// anonymised client address.
pub struct ClickContext {
    referrer: Option<HeaderValue>,
    user_agent: Option<HeaderValue>,
    client: Option<IpAddr>,
}

impl ClickContext {
    /// What a click records of a request with these headers from `client`.
    pub fn new(headers: &HeaderMap, client: Option<IpAddr>) -> ClickContext {
        ClickContext {
            referrer: headers.get(header::REFERER).and_then(detach),
            user_agent: headers.get(header::USER_AGENT).and_then(detach),
            client,
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ClickContext {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let client = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|info| info.0.ip());
        Ok(ClickContext::new(&parts.headers, client))
    }
}

/// Redirects to the link's target and queues the click.
#[utoipa::path(get, path = "/{short_code}", tag = "redirect",
    params(("short_code" = String, Path, description = "The link's short code")),
    responses(
        (status = 301, description = "Permanent redirect (the link's `redirect_status`)",
         headers(("Location" = String, description = "The target URL"))),
        (status = 302, description = "Redirect to the target URL (the default)",
         headers(("Location" = String, description = "The target URL"),
                 ("Cache-Control" = String, description = "`no-store`"))),
        (status = 307, description = "Temporary redirect that keeps the method",
         headers(("Location" = String, description = "The target URL"),
                 ("Cache-Control" = String, description = "`no-store`"))),
        (status = 308, description = "Permanent redirect that keeps the method",
         headers(("Location" = String, description = "The target URL"))),
        (status = 404, body = ErrorBody, description = "Unknown or inactive"),
        (status = 410, body = ErrorBody, description = "Expired or visits used up")))]
pub async fn follow(
    State(state): State<AppState>,
    method: Method,
    Path(code): Path<String>,
    context: ClickContext,
) -> Response {
    answer(&state, &method, &code, context).await
}

/// The answer to a `GET` or `HEAD` of `/{code}`: the router's handler and the
/// direct redirect path of [`super::public`] both end here.
pub async fn answer(
    state: &AppState,
    method: &Method,
    code: &str,
    context: ClickContext,
) -> Response {
    redirect(state, method, code, context)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn redirect(
    state: &AppState,
    method: &Method,
    code: &str,
    context: ClickContext,
) -> Result<Response, ApiError> {
    let now = Utc::now();
    let counters = &state.metrics.redirects;
    let is_get = method == Method::GET;
    let outcome = resolve(&state.links, code, now, is_get).await?;
    let (target, counted) = match outcome {
        Outcome::Redirect { target, counted } => (target, counted),
        Outcome::NotFound | Outcome::Inactive => {
            if outcome == Outcome::NotFound {
                counters.not_found.inc();
            } else {
                counters.inactive.inc();
            }
            return Err(ApiError::not_found(format!(
                "no active link has code {code:?}"
            )));
        }
        Outcome::Expired => {
            counters.expired.inc();
            return Err(ApiError::new(
                StatusCode::GONE,
                "expired",
                "this link has expired",
            ));
        }
        Outcome::Limited => {
            counters.limited.inc();
            return Err(ApiError::new(
                StatusCode::GONE,
                "visits_used_up",
                "this link has served all its visits",
            ));
        }
    };
    counters.served.inc();
    if is_get {
        state.clicks.push(Click {
            url_id: target.id,
            at: now,
            referrer: context.referrer,
            user_agent: context.user_agent,
            client: context.client,
            counted,
        });
    }
    let status = StatusCode::from_u16(target.redirect_status as u16).unwrap_or(StatusCode::FOUND);
    let location = HeaderValue::from_str(&target.original_url).map_err(ApiError::internal)?;
    let mut response = (status, [(header::LOCATION, location)]).into_response();
    let limited = target.expires_at.is_some() || target.max_visits.is_some();
    if limited || matches!(status, StatusCode::FOUND | StatusCode::TEMPORARY_REDIRECT) {
        // Temporary redirects, and links that expire or run out, must reach
        // Kadi on every click to be counted and to stop on time.
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    Ok(response)
}
