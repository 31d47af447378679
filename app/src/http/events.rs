//! `/events`: the event history, filtered and paged, and events that clients
//! record themselves.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::Utc;
use serde::Deserialize;
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ErrorBody};
use super::extract::{empty_as_none, integer_or_empty, JsonObject, Paging, Path, Query};
use super::AppState;
use crate::store::{Event, EventFilter, NewEvent};

/// Longest event type accepted, in characters.
const MAX_EVENT_TYPE_LEN: usize = 64;

/// Body of `POST /events`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateEvent {
    /// The link.
    pub url_id: i64,
    /// The user, when known.
    pub user_id: Option<i64>,
    /// A name such as `click` or a client's own: 1 to 64 printable
    /// characters, not only spaces.
    #[schema(min_length = 1, max_length = 64, example = "click")]
    pub event_type: String,
    /// A JSON object; `{}` when absent.
    #[schema(value_type = Option<Object>)]
    pub details: Option<Map<String, Value>>,
}

/// Filters of `GET /events`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventQuery {
    /// Only events of this link.
    #[serde(default, deserialize_with = "empty_as_none")]
    #[param(schema_with = integer_or_empty)]
    pub url_id: Option<i64>,
    /// Only events of this user.
    #[serde(default, deserialize_with = "empty_as_none")]
    #[param(schema_with = integer_or_empty)]
    pub user_id: Option<i64>,
    /// Only events of this type.
    #[serde(default, deserialize_with = "empty_as_none")]
    #[param(value_type = Option<String>)]
    pub event_type: Option<String>,
    /// Paging.
    #[serde(flatten)]
    #[param(ignore)]
    pub paging: Paging,
}

/// Lists events by id.
#[utoipa::path(get, path = "/events", tag = "events", params(EventQuery, Paging),
    responses((status = 200, body = [Event]), (status = 400, body = ErrorBody)))]
pub async fn list_events(
    State(state): State<AppState>,
    Query(query): Query<EventQuery>,
) -> Result<Json<Vec<Event>>, ApiError> {
    if query
        .event_type
        .as_deref()
        .is_some_and(|t| t.contains('\0'))
    {
        return Err(ApiError::bad_request(
            "invalid_query",
            "event_type must not contain NUL characters",
        ));
    }
    let filter = EventFilter {
        url_id: query.url_id,
        user_id: query.user_id,
        event_type: query.event_type,
    };
    Ok(Json(
        state.store().events(&filter, query.paging.page()?).await?,
    ))
}

/// Reads an event.
#[utoipa::path(get, path = "/events/{id}", tag = "events", params(("id" = i64, Path)),
    responses((status = 200, body = Event), (status = 404, body = ErrorBody)))]
pub async fn get_event(
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Json<Event>, ApiError> {
    let event = state.store().event(id).await?;
    event
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("event {id} does not exist")))
}

/// Records an event for a link.
#[utoipa::path(post, path = "/events", tag = "events", request_body = CreateEvent,
    responses((status = 201, body = Event), (status = 404, body = ErrorBody),
              (status = 422, body = ErrorBody)))]
pub async fn create_event(
    State(state): State<AppState>,
    JsonObject(body): JsonObject<CreateEvent>,
) -> Result<(StatusCode, Json<Event>), ApiError> {
    // The limit counts what the client sent, as the document states it;
    // surrounding spaces are dropped only afterwards.
    let event_type = body.event_type.trim();
    let too_long = body.event_type.chars().count() > MAX_EVENT_TYPE_LEN;
    if event_type.is_empty() {
        return Err(ApiError::invalid(
            "invalid_field",
            "event_type must not be empty",
        ));
    }
    if too_long || event_type.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "invalid_field",
            format!("event_type must be at most {MAX_EVENT_TYPE_LEN} printable characters"),
        ));
    }
    let details = Value::Object(body.details.unwrap_or_default());
    if contains_nul(&details) {
        return Err(ApiError::invalid(
            "invalid_field",
            "details must not contain NUL characters",
        ));
    }
    if state.store().link(body.url_id).await?.is_none() {
        return Err(ApiError::not_found(format!(
            "url {} does not exist",
            body.url_id
        )));
    }
    if let Some(user_id) = body.user_id {
        if state.store().user(user_id).await?.is_none() {
            return Err(ApiError::not_found(format!(
                "user {user_id} does not exist"
            )));
        }
    }
    let event = state
        .store()
        .insert_event(&NewEvent {
            id: None,
            url_id: body.url_id,
            user_id: body.user_id,
            event_type: event_type.to_owned(),
            timestamp: Utc::now(),
            details,
        })
        .await?;
    Ok((StatusCode::CREATED, Json(event)))
}

/// Whether a NUL character hides in any key or string of `value`. PostgreSQL
/// stores neither text nor JSON with one, so such input is refused up front
/// on every backend rather than failing as a 500 on one.
fn contains_nul(value: &Value) -> bool {
    match value {
        Value::String(text) => text.contains('\0'),
        Value::Array(items) => items.iter().any(contains_nul),
        Value::Object(members) => members
            .iter()
            .any(|(key, member)| key.contains('\0') || contains_nul(member)),
        _ => false,
    }
}
