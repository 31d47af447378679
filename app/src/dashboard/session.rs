//! Signing in and out of the dashboard, and the guard of every signed-in page.
//!
//! Signing in takes an API key and checks it against the key store. The
//! session lives in the database; the cookie holds only a random token whose
//! hash finds the session, never the key. Each session has its own CSRF token,
//! which every form carries in a hidden field and every POST must present.
//! The sign-in form, which has no session yet, is guarded by a token that is
//! both in a short-lived cookie and in the form.

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use chrono::{Duration, Utc};
use maud::html;
use rand::RngCore;
use subtle::ConstantTimeEq;

use super::error::PageError;
use super::forms::{FormData, QueryData};
use super::view::{self, Notice, Section, Shell};
use crate::auth::{self, AuthError};
use crate::http::{AppState, MAX_JSON_BODY_BYTES};

/// Cookie holding the session token.
pub const SESSION_COOKIE: &str = "kadi_session";

/// Cookie holding the token of the sign-in form.
pub const SIGN_IN_COOKIE: &str = "kadi_sign_in";

/// Form field carrying the CSRF token.
pub const CSRF_FIELD: &str = "csrf";

/// How long a session lasts from sign-in: a working day, so that a person
/// signs in about once a day and a forgotten browser is signed out by the next.
pub const SESSION_LIFETIME: Duration = Duration::hours(12);

/// How long a sign-in form stays usable: ample time to paste a key.
const SIGN_IN_FORM_LIFETIME: Duration = Duration::hours(1);

/// Random bytes of session and CSRF tokens: 256 bits, hopeless to guess.
const TOKEN_BYTES: usize = 32;

/// A signed-in session, as handlers of signed-in pages receive it.
#[derive(Debug, Clone)]
pub struct Session {
    /// Hash of the cookie token, which finds the session.
    pub token_hash: String,
    /// The API key the session was opened with.
    pub key_id: i64,
    /// That key's name.
    pub key_name: String,
    /// The token every form of this session carries.
    pub csrf_token: String,
}

/// Lets only signed-in requests through and checks the CSRF token of every
/// POST. Without a session, a page request goes to the sign-in form and a
/// form is refused.
pub async fn require_session(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let token = cookie(request.headers(), SESSION_COOKIE).map(str::to_owned);
    let session = match &token {
        Some(token) => find_session(&state, token).await,
        None => Ok(None),
    };
    let session = match session {
        Ok(session) => session,
        Err(error) => return error.into_response(),
    };
    let is_read = matches!(*request.method(), Method::GET | Method::HEAD);
    let Some(session) = session else {
        if !is_read {
            return PageError::new(
                StatusCode::FORBIDDEN,
                "Signed out",
                "You are not signed in (or your session has ended), so nothing was changed. \
                 Sign in again and repeat the change.",
            )
            .into_response();
        }
        let target = if token.is_some() {
            "/dashboard/sign-in?ended=1"
        } else {
            "/dashboard/sign-in"
        };
        let mut response = Redirect::to(target).into_response();
        if token.is_some() {
            clear_cookie(&mut response, &state, SESSION_COOKIE, "/dashboard");
        }
        return response;
    };
    let mut request = request;
    if !is_read {
        request = match check_csrf(request, &session.csrf_token).await {
            Ok(request) => request,
            Err(error) => return error.into_response(),
        };
    }
    request.extensions_mut().insert(session);
    next.run(request).await
}

async fn find_session(state: &AppState, token: &str) -> Result<Option<Session>, PageError> {
    let token_hash = auth::hash_key(token);
    let found = state
        .store()
        .dashboard_session(&token_hash, Utc::now())
        .await?;
    Ok(found.map(|row| Session {
        token_hash,
        key_id: row.key_id,
        key_name: row.key_name,
        csrf_token: row.csrf_token,
    }))
}

/// Reads the form body, refuses it unless its CSRF field equals `expected`,
/// and hands the request on with the body restored.
async fn check_csrf(request: Request, expected: &str) -> Result<Request, PageError> {
    let (parts, body) = request.into_parts();
    let bytes = to_bytes(body, MAX_JSON_BODY_BYTES)
        .await
        .map_err(|_| PageError::bad_request("The form is too large or could not be read."))?;
    let presented = FormData::parse(&bytes)
        .optional(CSRF_FIELD)
        .map(str::to_owned);
    if !tokens_match(presented.as_deref(), expected) {
        tracing::warn!(path = %parts.uri.path(), "Dashboard form without its CSRF token refused");
        return Err(PageError::forged_form());
    }
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

/// Compares a presented token with the expected one in constant time.
fn tokens_match(presented: Option<&str>, expected: &str) -> bool {
    match presented {
        Some(presented) if !expected.is_empty() => {
            bool::from(presented.as_bytes().ct_eq(expected.as_bytes()))
        }
        _ => false,
    }
}

/// `GET /dashboard/sign-in`: the form, with a fresh sign-in token.
pub async fn sign_in_form(
    State(state): State<AppState>,
    QueryData(query): QueryData,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    if let Some(token) = cookie(&headers, SESSION_COOKIE) {
        if find_session(&state, token).await?.is_some() {
            return Ok(Redirect::to("/dashboard").into_response());
        }
    }
    let notice = if query.optional("signed_out").is_some() {
        Some(Notice::Success("You are signed out.".to_owned()))
    } else if query.optional("ended").is_some() {
        Some(Notice::Error(
            "Your session has ended. Sign in again to continue.".to_owned(),
        ))
    } else {
        None
    };
    let form_token = new_token();
    let mut response = sign_in_page(StatusCode::OK, notice, &form_token);
    set_cookie(
        &mut response,
        &state,
        SIGN_IN_COOKIE,
        &form_token,
        "/dashboard/sign-in",
        SIGN_IN_FORM_LIFETIME,
    );
    Ok(response)
}

/// `POST /dashboard/sign-in`: checks the form token and the key, opens a
/// session and sets its cookie.
pub async fn sign_in(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, PageError> {
    let form_token = cookie(&headers, SIGN_IN_COOKIE).unwrap_or("");
    let form = FormData::parse(&body);
    if !tokens_match(form.optional(CSRF_FIELD), form_token) {
        return Err(PageError::forged_form());
    }
    let key_id = match auth::verify_key(state.store(), form.get("key")).await {
        Ok(key_id) => key_id,
        Err(AuthError::Rejected) => {
            tracing::info!("Dashboard sign-in with an invalid key refused");
            let notice = Notice::Error(
                "This API key was not accepted: it is unknown, mistyped or revoked.".to_owned(),
            );
            return Ok(sign_in_page(
                StatusCode::UNAUTHORIZED,
                Some(notice),
                form_token,
            ));
        }
        Err(AuthError::Lookup(error)) => return Err(error.into()),
    };

    let token = new_token();
    let csrf_token = new_token();
    let expires_at = Utc::now() + SESSION_LIFETIME;
    state
        .store()
        .insert_dashboard_session(&auth::hash_key(&token), key_id, &csrf_token, expires_at)
        .await?;
    tracing::info!(key_id, "Dashboard session opened");
    let mut response = Redirect::to("/dashboard").into_response();
    set_cookie(
        &mut response,
        &state,
        SESSION_COOKIE,
        &token,
        "/dashboard",
        SESSION_LIFETIME,
    );
    clear_cookie(&mut response, &state, SIGN_IN_COOKIE, "/dashboard/sign-in");
    Ok(response)
}

/// `POST /dashboard/sign-out`: ends the session for good and clears its cookie.
pub async fn sign_out(
    State(state): State<AppState>,
    axum::Extension(session): axum::Extension<Session>,
) -> Result<Response, PageError> {
    state
        .store()
        .delete_dashboard_session(&session.token_hash)
        .await?;
    tracing::info!(key_id = session.key_id, "Dashboard session closed");
    let mut response = Redirect::to("/dashboard/sign-in?signed_out=1").into_response();
    clear_cookie(&mut response, &state, SESSION_COOKIE, "/dashboard");
    Ok(response)
}

fn sign_in_page(status: StatusCode, notice: Option<Notice>, form_token: &str) -> Response {
    let shell = Shell {
        title: "Sign in",
        session: None,
        section: Section::None,
        notice,
    };
    let content = html! {
        form class="card narrow" method="post" action="/dashboard/sign-in" {
            input type="hidden" name=(CSRF_FIELD) value=(form_token);
            div class="field" {
                label for="key" { "API key" }
                input id="key" name="key" type="password" required autocomplete="off"
                    spellcheck="false" placeholder="kadi_…" aria-describedby="key-help";
                p id="key-help" class="help" {
                    "Sign in with an API key. An operator creates one with "
                    code { "kadi keys create --name <who>" }
                    "; the key is shown once."
                }
            }
            button type="submit" { "Sign in" }
        }
    };
    (status, Html(view::page(shell, content).into_string())).into_response()
}

fn new_token() -> String {
    let mut bytes = [0_u8; TOKEN_BYTES];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// The value of the cookie `name`, from any `Cookie` header.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim())
        .filter(|value| !value.is_empty())
}

/// Sets a cookie only Kadi's own pages send back: HttpOnly, SameSite=Strict,
/// limited to `path`, and Secure when short URLs are https.
fn set_cookie(
    response: &mut Response,
    state: &AppState,
    name: &str,
    value: &str,
    path: &str,
    lifetime: Duration,
) {
    let secure = if state.public_base().starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    let text = format!(
        "{name}={value}; Path={path}; Max-Age={}; HttpOnly; SameSite=Strict{secure}",
        lifetime.num_seconds()
    );
    // Token values are hex, names and paths constants: always a valid header.
    if let Ok(value) = HeaderValue::from_str(&text) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}

fn clear_cookie(response: &mut Response, state: &AppState, name: &str, path: &str) {
    set_cookie(response, state, name, "", path, Duration::zero());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; kadi_session=abc"),
        );
        headers.append(header::COOKIE, HeaderValue::from_static("b=2"));
        assert_eq!(cookie(&headers, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&headers, "b"), Some("2"));
        assert_eq!(cookie(&headers, "kadi"), None);
    }

    #[test]
    fn tokens_must_be_present_and_equal() {
        assert!(tokens_match(Some("abc"), "abc"));
        assert!(!tokens_match(Some("abd"), "abc"));
        assert!(!tokens_match(None, "abc"));
        assert!(!tokens_match(Some(""), ""));
    }
}
