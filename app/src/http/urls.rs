//! `/urls`: create, list, read, change and delete links, and their click
//! statistics.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::SchemaType;
use utoipa::openapi::{Object, ObjectBuilder, Type};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ErrorBody};
use super::extract::{
    empty_as_none, flag, flag_or_empty, integer_or_empty, nullable, JsonObject, Paging, Path, Query,
};
use super::AppState;
use crate::links::{LinkRequest, REDIRECT_STATUSES};
use crate::store::{DayCount, Link, LinkFilter, LinkPatch, ReferrerCount};

/// A link as the API returns it: the stored link and its short URL.
#[derive(Debug, Serialize, ToSchema)]
pub struct UrlView {
    /// The stored link.
    #[serde(flatten)]
    pub link: Link,
    /// The public URL that redirects.
    pub short_url: String,
}

/// Body of `POST /urls`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateUrl {
    /// Owner.
    #[schema(example = 1)]
    pub user_id: i64,
    /// Absolute http(s) URL with a host, at most 2,048 bytes.
    #[schema(
        min_length = 1,
        max_length = 2048,
        example = "https://example.com/launch"
    )]
    pub original_url: String,
    /// Free-form title, at most 512 characters.
    #[schema(max_length = 512)]
    pub title: Option<String>,
    /// Custom code: 3 to 64 characters of `[A-Za-z0-9_-]`, not a reserved name.
    #[schema(min_length = 3, max_length = 64, pattern = "^[A-Za-z0-9_-]+$")]
    pub short_code: Option<String>,
    /// After this time (RFC 3339) the link answers 410 Gone.
    pub expires_at: Option<DateTime<Utc>>,
    /// The link serves this many redirects, then answers 410 Gone.
    #[schema(minimum = 1)]
    pub max_visits: Option<i64>,
    /// 301, 302 (default), 307 or 308.
    #[schema(schema_with = redirect_status_schema)]
    pub redirect_status: Option<i32>,
    /// Create the link inactive (`false`); active when absent.
    pub is_active: Option<bool>,
}

/// Body of `PUT /urls/{id}`; absent fields keep their value, `null` clears
/// the nullable ones.
#[derive(Debug, Deserialize, ToSchema)]
pub struct UpdateUrl {
    /// New target URL.
    #[schema(min_length = 1, max_length = 2048)]
    pub original_url: Option<String>,
    /// New title.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, max_length = 512)]
    pub title: Option<Option<String>>,
    /// Activate or deactivate.
    pub is_active: Option<bool>,
    /// New expiry.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<DateTime<Utc>>)]
    pub expires_at: Option<Option<DateTime<Utc>>>,
    /// New visit limit.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<i64>, minimum = 1)]
    pub max_visits: Option<Option<i64>>,
    /// New redirect status.
    #[schema(schema_with = redirect_status_schema)]
    pub redirect_status: Option<i32>,
    /// Short codes never change; a different one is refused.
    pub short_code: Option<String>,
    /// Owners never change through this route; a different one is refused.
    pub user_id: Option<i64>,
}

/// The schema of a redirect status: one of [`REDIRECT_STATUSES`], or null.
fn redirect_status_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Integer, Type::Null]))
        .enum_values(Some(REDIRECT_STATUSES.into_iter().map(Some).chain([None])))
        .build()
}

/// Filters of `GET /urls`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UrlQuery {
    /// Only links of this user.
    #[serde(default, deserialize_with = "empty_as_none")]
    #[param(schema_with = integer_or_empty)]
    pub user_id: Option<i64>,
    /// Only active (`true`) or inactive (`false`) links.
    #[serde(default, deserialize_with = "flag")]
    #[param(schema_with = flag_or_empty)]
    pub is_active: Option<bool>,
    /// Paging.
    #[serde(flatten)]
    #[param(ignore)]
    pub paging: Paging,
}

/// Click statistics of a link.
#[derive(Debug, Serialize, ToSchema)]
pub struct UrlStats {
    /// The link.
    pub url_id: i64,
    /// Its short code.
    pub short_code: String,
    /// Clicks served and stored.
    pub total_clicks: i64,
    /// Clicks per day (UTC), oldest first.
    pub clicks_per_day: Vec<DayCount>,
    /// The most frequent referrers, most clicks first.
    pub top_referrers: Vec<ReferrerCount>,
}

impl AppState {
    fn view(&self, link: Link) -> UrlView {
        let short_url = format!("{}/{}", self.public_base(), link.short_code);
        UrlView { link, short_url }
    }
}

/// Creates a link with a generated or custom short code.
#[utoipa::path(post, path = "/urls", tag = "urls", request_body = CreateUrl,
    responses((status = 201, body = UrlView), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 422, body = ErrorBody)))]
pub async fn create_url(
    State(state): State<AppState>,
    JsonObject(body): JsonObject<CreateUrl>,
) -> Result<(StatusCode, Json<UrlView>), ApiError> {
    let link = state
        .links
        .create_link(LinkRequest {
            user_id: Some(body.user_id),
            original_url: body.original_url,
            title: body.title,
            short_code: body.short_code,
            expires_at: body.expires_at,
            max_visits: body.max_visits,
            redirect_status: body.redirect_status,
            is_active: body.is_active,
        })
        .await?;
    Ok((StatusCode::CREATED, Json(state.view(link))))
}

/// Lists links by id.
#[utoipa::path(get, path = "/urls", tag = "urls", params(UrlQuery, Paging),
    responses((status = 200, body = [UrlView]), (status = 400, body = ErrorBody)))]
pub async fn list_urls(
    State(state): State<AppState>,
    Query(query): Query<UrlQuery>,
) -> Result<Json<Vec<UrlView>>, ApiError> {
    let filter = LinkFilter {
        user_id: query.user_id,
        is_active: query.is_active,
    };
    let links = state.store().links(&filter, query.paging.page()?).await?;
    Ok(Json(links.into_iter().map(|l| state.view(l)).collect()))
}

/// Reads a link.
#[utoipa::path(get, path = "/urls/{id}", tag = "urls", params(("id" = i64, Path)),
    responses((status = 200, body = UrlView), (status = 404, body = ErrorBody)))]
pub async fn get_url(
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Json<UrlView>, ApiError> {
    let link = state.store().link(id).await?;
    let link = link.ok_or_else(|| ApiError::not_found(format!("url {id} does not exist")))?;
    Ok(Json(state.view(link)))
}

/// Changes a link's target, title, state or limits.
#[utoipa::path(put, path = "/urls/{id}", tag = "urls", params(("id" = i64, Path)),
    request_body = UpdateUrl,
    responses((status = 200, body = UrlView), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update_url(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    JsonObject(body): JsonObject<UpdateUrl>,
) -> Result<Json<UrlView>, ApiError> {
    if body.short_code.is_some() || body.user_id.is_some() {
        let current = state.store().link(id).await?;
        let current =
            current.ok_or_else(|| ApiError::not_found(format!("url {id} does not exist")))?;
        if body
            .short_code
            .as_ref()
            .is_some_and(|c| *c != current.short_code)
        {
            return Err(ApiError::invalid(
                "immutable_field",
                "short_code cannot be changed",
            ));
        }
        if body.user_id.is_some_and(|u| Some(u) != current.user_id) {
            return Err(ApiError::invalid(
                "immutable_field",
                "user_id cannot be changed",
            ));
        }
    }
    let patch = LinkPatch {
        original_url: body.original_url,
        title: body.title,
        is_active: body.is_active,
        redirect_status: body.redirect_status,
        expires_at: body.expires_at,
        max_visits: body.max_visits,
    };
    let link = state.links.update_link(id, patch).await?;
    Ok(Json(state.view(link)))
}

/// Deletes a link; its short code becomes free and its analytics are kept.
#[utoipa::path(delete, path = "/urls/{id}", tag = "urls", params(("id" = i64, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn delete_url(
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    state.links.delete_link(id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Click statistics of a link.
#[utoipa::path(get, path = "/urls/{id}/stats", tag = "urls", params(("id" = i64, Path)),
    responses((status = 200, body = UrlStats), (status = 404, body = ErrorBody)))]
pub async fn url_stats(
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Json<UrlStats>, ApiError> {
    let link = state.store().link(id).await?;
    let link = link.ok_or_else(|| ApiError::not_found(format!("url {id} does not exist")))?;
    let (clicks_per_day, top_referrers) = state.store().click_stats(id).await?;
    Ok(Json(UrlStats {
        url_id: link.id,
        short_code: link.short_code,
        total_clicks: clicks_per_day.iter().map(|d| d.clicks).sum(),
        clicks_per_day,
        top_referrers,
    }))
}
