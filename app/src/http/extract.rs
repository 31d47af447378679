//! Request extractors whose every rejection is an [`ApiError`] in the JSON
//! error shape.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use utoipa::openapi::schema::AnyOfBuilder;
use utoipa::openapi::{Object, ObjectBuilder, Schema, Type};

use super::error::ApiError;

/// A path parameter; a value of the wrong type is a 400.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

/// Query parameters; a value of the wrong type is a 400.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

/// A JSON object body. A wrong content type is a 415, malformed JSON or a
/// value that is not an object a 400, and an object whose fields have the
/// wrong types or are missing a 422.
pub struct JsonObject<T>(pub T);

impl<S, T> FromRequest<S> for JsonObject<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        if !has_json_content_type(&request) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "expected a body with content type application/json",
            ));
        }
        let bytes = Bytes::from_request(request, state).await?;
        let value: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::bad_request("malformed_json", format!("malformed JSON: {e}")))?;
        if !value.is_object() {
            return Err(ApiError::bad_request(
                "not_an_object",
                "the body must be a JSON object",
            ));
        }
        T::deserialize(value)
            .map(JsonObject)
            .map_err(|e| ApiError::invalid("invalid_field", e.to_string()))
    }
}

fn has_json_content_type(request: &Request) -> bool {
    let Some(value) = request.headers().get(header::CONTENT_TYPE) else {
        return false;
    };
    let Ok(value) = value.to_str() else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Deserializes a query value where an empty string means absent, so that
/// `?user_id=` filters nothing instead of failing.
pub fn empty_as_none<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    let raw: Option<String> = Option::deserialize(deserializer)?;
    match raw.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(text) => text.parse().map(Some).map_err(serde::de::Error::custom),
    }
}

/// Deserializes a query flag from `true`/`false`/`1`/`0` (any case); empty is
/// absent.
pub fn flag<'de, D>(deserializer: D) -> Result<Option<bool>, D::Error>
where
    D: Deserializer<'de>,
{
    let raw: Option<String> = Option::deserialize(deserializer)?;
    match raw.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(text) if text.eq_ignore_ascii_case("true") || text == "1" => Ok(Some(true)),
        Some(text) if text.eq_ignore_ascii_case("false") || text == "0" => Ok(Some(false)),
        Some(text) => Err(serde::de::Error::custom(format!(
            "expected true or false, got {text:?}"
        ))),
    }
}

/// Deserializes a field that may be absent (outer `None`), null (inner
/// `None`) or a value; use with `#[serde(default)]`.
pub fn nullable<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// The schema of a query value read with [`empty_as_none`]: an integer, or
/// empty for absent.
pub fn integer_or_empty() -> Schema {
    or_empty(Object::with_type(Type::Integer))
}

/// Like [`integer_or_empty`], for values of at least 1.
pub fn positive_integer_or_empty() -> Schema {
    or_empty(
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(1))
            .build(),
    )
}

/// The schema of a query value read with [`flag`]: a boolean, `1` or `0` in
/// any case, or empty for absent.
pub fn flag_or_empty() -> Schema {
    let words = ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(
            r"^\s*([Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee]|[01])?\s*$",
        ))
        .build();
    AnyOfBuilder::new()
        .item(Object::with_type(Type::Boolean))
        .item(words)
        .build()
        .into()
}

fn or_empty(value: Object) -> Schema {
    let empty = ObjectBuilder::new()
        .schema_type(Type::String)
        .max_length(Some(0))
        .build();
    AnyOfBuilder::new().item(value).item(empty).build().into()
}

/// `page` and `per_page` of a listing.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Paging {
    /// Page number, from 1.
    #[serde(default, deserialize_with = "empty_as_none")]
    #[param(schema_with = positive_integer_or_empty)]
    pub page: Option<i64>,
    /// Rows per page, from 1 (default 20); more than 100 gets 100.
    #[serde(default, deserialize_with = "empty_as_none")]
    #[param(schema_with = positive_integer_or_empty)]
    pub per_page: Option<i64>,
}

/// Rows per page when the client does not say.
pub const DEFAULT_PER_PAGE: i64 = 20;

/// Most rows one page may hold; larger requests get this many.
pub const MAX_PER_PAGE: i64 = 100;

impl Paging {
    /// The page as an offset and limit; non-positive values are a 400.
    pub fn page(&self) -> Result<crate::store::Page, ApiError> {
        let page = self.page.unwrap_or(1);
        let per_page = self.per_page.unwrap_or(DEFAULT_PER_PAGE);
        if page < 1 {
            return Err(ApiError::bad_request(
                "invalid_query",
                "page must be at least 1",
            ));
        }
        if per_page < 1 {
            return Err(ApiError::bad_request(
                "invalid_query",
                "per_page must be at least 1",
            ));
        }
        let limit = per_page.min(MAX_PER_PAGE);
        Ok(crate::store::Page {
            offset: (page - 1).saturating_mul(limit),
            limit,
        })
    }
}

/// A multipart body; a request that is not multipart is a 400.
pub struct Multipart(pub axum::extract::Multipart);

impl<S: Send + Sync> FromRequest<S> for Multipart {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        Ok(Multipart(
            axum::extract::Multipart::from_request(request, state).await?,
        ))
    }
}
