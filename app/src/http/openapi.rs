//! The OpenAPI document of the HTTP API, generated from the handlers and
//! served at `/openapi.json`.

use axum::Json;
use utoipa::OpenApi;

use super::{events, health, redirect, urls, users};

/// The API description.
#[derive(OpenApi)]
#[openapi(
    info(title = "Kadi", description = "A URL shortener: links, users, events and redirects."),
    paths(
        health::health, health::livez, health::readyz,
        users::create_user, users::list_users, users::get_user, users::update_user,
        users::delete_user, users::bulk_users,
        urls::create_url, urls::list_urls, urls::get_url, urls::update_url, urls::delete_url,
        urls::url_stats,
        events::create_event, events::list_events, events::get_event,
        redirect::follow,
        document,
    ),
    tags(
        (name = "users", description = "Owners of links"),
        (name = "urls", description = "Links and their statistics"),
        (name = "events", description = "What happened to links"),
        (name = "redirect", description = "Short codes"),
        (name = "health", description = "Probes"),
    )
)]
pub struct ApiDoc;

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "health",
    responses((status = 200, description = "The OpenAPI document")))]
pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
