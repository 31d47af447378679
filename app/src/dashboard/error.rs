//! Failures of dashboard requests as HTML pages with the right status: the
//! counterpart of the API's JSON errors, in words for a person.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use maud::html;

use super::view::{self, Notice, Section, Shell};
use crate::links::LinkError;
use crate::store::StoreError;

/// Seconds a person is asked to wait when the database is unavailable.
const UNAVAILABLE_RETRY_SECS: u64 = 5;

/// A dashboard request that failed, on its way to becoming an error page.
#[derive(Debug)]
pub struct PageError {
    status: StatusCode,
    title: &'static str,
    message: String,
    retry_after_secs: Option<u64>,
    /// The error chain behind a 5xx, logged and never shown.
    cause: Option<String>,
}

impl PageError {
    /// An error whose message the person may read.
    pub fn new(status: StatusCode, title: &'static str, message: impl Into<String>) -> PageError {
        PageError {
            status,
            title,
            message: message.into(),
            retry_after_secs: None,
            cause: None,
        }
    }

    /// 404: the thing asked for does not exist.
    pub fn not_found(message: impl Into<String>) -> PageError {
        PageError::new(StatusCode::NOT_FOUND, "Not found", message)
    }

    /// 400: the request itself is malformed.
    pub fn bad_request(message: impl Into<String>) -> PageError {
        PageError::new(StatusCode::BAD_REQUEST, "Bad request", message)
    }

    /// 403: a form arrived without the token of the session it claims.
    pub fn forged_form() -> PageError {
        PageError::new(
            StatusCode::FORBIDDEN,
            "Form refused",
            "This form did not carry the security token of your session, so nothing was \
             changed. It may come from another site, an old tab or a session that has \
             ended. Reload the page and try again.",
        )
    }

    /// 429: too many requests from this client.
    pub fn rate_limited(retry_after_secs: Option<u64>) -> PageError {
        let mut error = PageError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many requests",
            "Too many requests came from your address. Wait a moment, then reload the page.",
        );
        error.retry_after_secs = retry_after_secs;
        error
    }

    /// 503: the database cannot be reached.
    pub fn unavailable(source: StoreError) -> PageError {
        PageError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            title: "Database unavailable",
            message: format!(
                "The database is unavailable right now, so nothing was read or changed. \
                 Retry in {UNAVAILABLE_RETRY_SECS} seconds."
            ),
            retry_after_secs: Some(UNAVAILABLE_RETRY_SECS),
            cause: Some(crate::error_chain(&source)),
        }
    }

    /// 500: a fault of Kadi; the person gets a generic page, the log the chain.
    pub fn internal(source: impl std::error::Error + Send + Sync + 'static) -> PageError {
        PageError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            title: "Internal error",
            message: "Kadi failed to answer this request. The failure is logged.".to_owned(),
            retry_after_secs: None,
            cause: Some(crate::error_chain(&source)),
        }
    }

    /// The status this error answers with.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The message shown to the person.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            let error = self.cause.as_deref().unwrap_or(&self.message);
            tracing::error!(
                status = self.status.as_u16(),
                error,
                "Dashboard request failed"
            );
        }
        let shell = Shell {
            title: self.title,
            session: None,
            section: Section::None,
            notice: Some(Notice::Error(self.message)),
        };
        let content = html! {
            p class="error-code" { "HTTP " (self.status.as_u16()) }
            p { a href="/dashboard" { "Back to the dashboard" } }
        };
        let mut response =
            (self.status, Html(view::page(shell, content).into_string())).into_response();
        if let Some(seconds) = self.retry_after_secs {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<StoreError> for PageError {
    fn from(error: StoreError) -> PageError {
        match error {
            StoreError::Unavailable(_) | StoreError::TimedOut(_) => PageError::unavailable(error),
            StoreError::Conflict(_) => PageError::new(
                StatusCode::CONFLICT,
                "Conflict",
                "This conflicts with something that already exists.",
            ),
            StoreError::MissingReference(_) => {
                PageError::not_found("Something this refers to does not exist.")
            }
            other => PageError::internal(other),
        }
    }
}

impl From<LinkError> for PageError {
    fn from(error: LinkError) -> PageError {
        match error {
            LinkError::NotFound(id) => PageError::not_found(format!("No link has id {id}.")),
            LinkError::UserNotFound(id) => PageError::not_found(format!("No user has id {id}.")),
            LinkError::CodeTaken(code) => PageError::new(
                StatusCode::CONFLICT,
                "Short code taken",
                format!("The short code {code:?} is taken by another link."),
            ),
            LinkError::Managed(owner) => PageError::new(
                StatusCode::CONFLICT,
                "Managed link",
                format!(
                    "This link is managed by the ShortLink {owner}; change the resource \
                     in Kubernetes instead."
                ),
            ),
            LinkError::Invalid { field, reason } => PageError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Invalid input",
                format!("{}: {reason}", super::forms::field_label(field)),
            ),
            LinkError::CodesExhausted => PageError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "No free short code",
                "No free short code was found; choose a custom one.",
            ),
            LinkError::Store(store) => store.into(),
        }
    }
}
