//! Who may use the HTTP service and how fast: API keys on the resource API,
//! and token-bucket rate limits per client and per key on the API and per
//! client on redirects. Refusals use the JSON error shape.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::AppState;
use crate::auth::{self, AuthError, AuthMode};
use crate::ratelimit::{Quota, RateLimiter, Subject};

/// The access policy of one service.
#[derive(Clone)]
pub struct Access {
    /// Whether the resource API requires an API key.
    pub auth: AuthMode,
    /// Buckets of the resource API, per client and per key; `None` is no limit.
    pub api_limiter: Option<RateLimiter>,
    /// Buckets of redirects, per client; `None` is no limit.
    pub redirect_limiter: Option<RateLimiter>,
    /// Take the client from the first `X-Forwarded-For` hop instead of the
    /// peer address; only right behind a proxy that sets that header itself.
    pub trust_forwarded_for: bool,
}

impl Access {
    /// No keys and no limits: the original contract.
    pub fn open() -> Access {
        Access {
            auth: AuthMode::Off,
            api_limiter: None,
            redirect_limiter: None,
            trust_forwarded_for: false,
        }
    }

    /// The client a request counts against.
    pub fn client_ip(&self, request: &Request) -> IpAddr {
        let peer = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|info| info.0.ip());
        self.client_of(request.headers(), peer)
    }

    /// The client a request with these headers from `peer` counts against.
    pub fn client_of(&self, headers: &HeaderMap, peer: Option<IpAddr>) -> IpAddr {
        if self.trust_forwarded_for {
            if let Some(ip) = first_forwarded_hop(headers) {
                return ip;
            }
        }
        peer.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
    }

    /// The refusal of a redirect when the client has used up its redirect
    /// bucket; `None` lets the redirect through.
    pub fn refuse_redirect(&self, headers: &HeaderMap, peer: Option<IpAddr>) -> Option<Response> {
        let limiter = self.redirect_limiter.as_ref()?;
        let quota = limiter.check(Subject::client(self.client_of(headers, peer)));
        (!quota.allowed()).then(|| too_many_requests(quota))
    }
}

fn first_forwarded_hop(headers: &HeaderMap) -> Option<IpAddr> {
    let value = headers.get("x-forwarded-for")?.to_str().ok()?;
    value.split(',').next()?.trim().parse().ok()
}

/// The API key a request was let in with, for handlers that care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    /// Id of the key; `None` when the API needs no key.
    pub key_id: Option<i64>,
}

/// Guards the resource API: the client's bucket first (so that guessing keys
/// is throttled too), then the API key, then the key's bucket.
pub async fn guard_api(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let access = &state.access;
    let mut reported: Option<Quota> = None;
    if let Some(limiter) = &access.api_limiter {
        let quota = limiter.check(Subject::client(access.client_ip(&request)));
        if !quota.allowed() {
            return too_many_requests(quota);
        }
        reported = Some(quota);
    }

    let mut caller = Caller { key_id: None };
    if access.auth == AuthMode::Required {
        let token = bearer_token(request.headers()).map(str::to_owned);
        let key_id = match authenticate(&state, token.as_deref()).await {
            Ok(key_id) => key_id,
            Err(AuthError::Rejected) => return unauthorized(),
            Err(AuthError::Lookup(error)) => return ApiError::from(error).into_response(),
        };
        caller.key_id = Some(key_id);
        if let Some(limiter) = &access.api_limiter {
            let quota = limiter.check(Subject::Key(key_id));
            if !quota.allowed() {
                return too_many_requests(quota);
            }
            reported = tighter(reported, quota);
        }
    }
    request.extensions_mut().insert(caller);

    let mut response = next.run(request).await;
    if let Some(quota) = reported {
        set_quota_headers(response.headers_mut(), &quota);
    }
    response
}

/// Guards redirects with the client's redirect bucket.
pub async fn guard_redirect(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip());
    if let Some(refusal) = state.access.refuse_redirect(request.headers(), peer) {
        return refusal;
    }
    next.run(request).await
}

async fn authenticate(state: &AppState, token: Option<&str>) -> Result<i64, AuthError> {
    let token = token.ok_or(AuthError::Rejected)?;
    auth::verify_key(state.store(), token).await
}

/// The token of an `Authorization: Bearer <token>` header.
fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|token| !token.is_empty())
}

/// The one answer for a missing, malformed, unknown or revoked key, so that
/// it tells nothing about which keys exist.
fn unauthorized() -> Response {
    let mut response = ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "a valid API key is required: send it as Authorization: Bearer <key>",
    )
    .into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"kadi\""),
    );
    response
}

fn too_many_requests(quota: Quota) -> Response {
    let mut response = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        "too many requests, retry later",
    )
    .into_response();
    let headers = response.headers_mut();
    set_quota_headers(headers, &quota);
    if let Some(seconds) = quota.retry_after_secs {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

/// The quota with fewer requests left.
fn tighter(current: Option<Quota>, other: Quota) -> Option<Quota> {
    match current {
        Some(current) if current.remaining <= other.remaining => Some(current),
        _ => Some(other),
    }
}

/// `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset`, as in the
/// IETF draft on rate-limit header fields.
fn set_quota_headers(headers: &mut HeaderMap, quota: &Quota) {
    const LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
    const REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
    const RESET: HeaderName = HeaderName::from_static("ratelimit-reset");
    headers.insert(LIMIT, HeaderValue::from(quota.limit));
    headers.insert(REMAINING, HeaderValue::from(quota.remaining));
    headers.insert(RESET, HeaderValue::from(quota.reset_secs));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    #[test]
    fn bearer_token_is_read_in_any_case() {
        let map = headers(&[("authorization", "bearer  kadi_abc ")]);
        assert_eq!(bearer_token(&map), Some("kadi_abc"));
        assert_eq!(
            bearer_token(&headers(&[("authorization", "Basic x")])),
            None
        );
        assert_eq!(
            bearer_token(&headers(&[("authorization", "Bearer ")])),
            None
        );
        assert_eq!(bearer_token(&HeaderMap::new()), None);
    }

    #[test]
    fn first_forwarded_hop_is_the_client() {
        let map = headers(&[("x-forwarded-for", "203.0.113.9, 10.0.0.1")]);
        assert_eq!(
            first_forwarded_hop(&map),
            Some("203.0.113.9".parse().unwrap())
        );
        let junk = headers(&[("x-forwarded-for", "unknown")]);
        assert_eq!(first_forwarded_hop(&junk), None);
    }
}
