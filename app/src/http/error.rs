//! The one mapping from failures to HTTP responses: a stable JSON error shape
//! and the right status code, with server faults logged once.

use axum::extract::multipart::{MultipartError, MultipartRejection};
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::links::LinkError;
use crate::store::StoreError;

/// Seconds a client is told to wait when the database is unavailable.
const RETRY_AFTER_SECS: &str = "5";

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong, for people.
    pub error: String,
    /// What went wrong, for programs: a stable snake_case name.
    pub code: &'static str,
    /// The HTTP status, repeated for clients that only keep the body.
    pub status: u16,
}

/// An error on its way to becoming a response.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// The failure behind a 5xx, logged with its chain and never sent.
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl ApiError {
    /// An error with a message the client may see.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            source: None,
        }
    }

    /// 400 Bad Request.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 422 Unprocessable Content.
    pub fn invalid(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    /// 404 Not Found.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 409 Conflict.
    pub fn conflict(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, code, message)
    }

    /// A server fault: the client gets a generic message, the log the chain.
    pub fn internal(source: impl std::error::Error + Send + Sync + 'static) -> ApiError {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "internal",
            message: "internal error".to_owned(),
            source: Some(Box::new(source)),
        }
    }

    /// The status this error answers with.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            let chain = self
                .source
                .as_deref()
                .map(|source| crate::error_chain(source))
                .unwrap_or_else(|| self.message.clone());
            tracing::error!(status = self.status.as_u16(), error = %chain, "Request failed");
        }
        let body = ErrorBody {
            error: self.message,
            code: self.code,
            status: self.status.as_u16(),
        };
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_static(RETRY_AFTER_SECS),
            );
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> ApiError {
        match error {
            StoreError::Unavailable(_) => ApiError {
                status: StatusCode::SERVICE_UNAVAILABLE,
                code: "unavailable",
                message: "database is unavailable, retry later".to_owned(),
                source: Some(Box::new(error)),
            },
            StoreError::TimedOut(_) => ApiError {
                status: StatusCode::SERVICE_UNAVAILABLE,
                code: "unavailable",
                message: format!("{error}, retry later"),
                source: Some(Box::new(error)),
            },
            StoreError::Conflict(_) => {
                ApiError::conflict("conflict", "conflicts with an existing row")
            }
            StoreError::MissingReference(_) => {
                ApiError::not_found("a referenced row does not exist")
            }
            other => ApiError::internal(other),
        }
    }
}

impl From<LinkError> for ApiError {
    fn from(error: LinkError) -> ApiError {
        let message = error.to_string();
        match error {
            LinkError::NotFound(_) | LinkError::UserNotFound(_) => ApiError::not_found(message),
            LinkError::CodeTaken(_) => ApiError::conflict("short_code_taken", message),
            LinkError::Managed(_) => ApiError::conflict("managed_link", message),
            LinkError::Invalid { .. } => ApiError::invalid("invalid_field", message),
            LinkError::CodesExhausted => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "codes_exhausted", message)
            }
            LinkError::Store(store) => store.into(),
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> ApiError {
        ApiError::bad_request("invalid_path", rejection.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> ApiError {
        ApiError::bad_request("invalid_query", rejection.body_text())
    }
}

impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> ApiError {
        let code = if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            "body_too_large"
        } else {
            "unreadable_body"
        };
        ApiError::new(rejection.status(), code, rejection.body_text())
    }
}

impl From<MultipartRejection> for ApiError {
    fn from(rejection: MultipartRejection) -> ApiError {
        ApiError::bad_request("invalid_multipart", rejection.body_text())
    }
}

impl From<MultipartError> for ApiError {
    fn from(error: MultipartError) -> ApiError {
        let code = if error.status() == StatusCode::PAYLOAD_TOO_LARGE {
            "body_too_large"
        } else {
            "invalid_multipart"
        };
        ApiError::new(error.status(), code, error.body_text())
    }
}
