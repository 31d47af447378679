//! `GET /{short_code}`: the redirect, and the click it records.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde_json::{json, Value};

use super::error::{ApiError, ErrorBody};
use super::extract::Path;
use super::AppState;
use crate::redirect::{resolve, Outcome};
use crate::store::ClickRow;

/// Longest referrer or user agent kept with a click, in bytes.
const MAX_CLICK_HEADER_LEN: usize = 512;

/// What a click records about the request: referrer, user agent and the
/// anonymised client address.
pub struct ClickContext {
    referrer: Option<HeaderValue>,
    user_agent: Option<HeaderValue>,
    client: Option<IpAddr>,
}

impl<S: Send + Sync> FromRequestParts<S> for ClickContext {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClickContext {
            referrer: parts.headers.get(header::REFERER).cloned(),
            user_agent: parts.headers.get(header::USER_AGENT).cloned(),
            client: parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|info| info.0.ip()),
        })
    }
}

impl ClickContext {
    fn details(&self) -> Value {
        let text = |value: &Option<HeaderValue>| {
            value
                .as_ref()
                .and_then(|v| v.to_str().ok())
                .map(|s| truncate(s, MAX_CLICK_HEADER_LEN).to_owned())
        };
        json!({
            "referrer": text(&self.referrer),
            "user_agent": text(&self.user_agent),
            "client": self.client.map(anonymise),
        })
    }
}

fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Drops the host part of an address: the last octet of IPv4, all but the
/// first 48 bits of IPv6, so that a click never stores who clicked.
pub fn anonymise(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            format!("{a}.{b}.{c}.0")
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => anonymise(IpAddr::V4(v4)),
            None => {
                let s = v6.segments();
                std::net::Ipv6Addr::new(s[0], s[1], s[2], 0, 0, 0, 0, 0).to_string()
            }
        },
    }
}

/// Redirects to the link's target and queues the click.
#[utoipa::path(get, path = "/{short_code}", tag = "redirect",
    params(("short_code" = String, Path, description = "The link's short code")),
    responses((status = 301), (status = 302, description = "Redirect to the target URL"),
              (status = 307), (status = 308),
              (status = 404, body = ErrorBody, description = "Unknown or inactive"),
              (status = 410, body = ErrorBody, description = "Expired or visits used up")))]
pub async fn follow(
    State(state): State<AppState>,
    method: Method,
    Path(code): Path<String>,
    context: ClickContext,
) -> Result<Response, ApiError> {
    let now = Utc::now();
    let counters = &state.metrics.redirects;
    let is_get = method == Method::GET;
    let outcome = resolve(&state.links, &code, now, is_get).await?;
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
        state.clicks.push(ClickRow {
            url_id: target.id,
            timestamp: now,
            details: context.details(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_lose_their_host_part() {
        assert_eq!(anonymise("203.0.113.77".parse().unwrap()), "203.0.113.0");
        assert_eq!(
            anonymise("2001:db8:abcd:12::1".parse().unwrap()),
            "2001:db8:abcd::"
        );
        assert_eq!(
            anonymise("::ffff:198.51.100.9".parse().unwrap()),
            "198.51.100.0"
        );
    }

    #[test]
    fn truncation_keeps_whole_characters() {
        assert_eq!(truncate("ééé", 3), "é");
        assert_eq!(truncate("abc", 10), "abc");
    }
}
