//! The OpenAPI document of the HTTP API, generated from the handlers and
//! served at `/openapi.json`.

use axum::Json;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::ResponseBuilder;
use utoipa::{Modify, OpenApi};

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
    ),
    modifiers(&ApiKeys)
)]
pub struct ApiDoc;

/// Name of the API-key security scheme in the document.
const API_KEY_SCHEME: &str = "api_key";

/// Marks the resource API (users, links, events) as needing an API key, with
/// the 401 and 429 answers of the access layer.
struct ApiKeys;

impl Modify for ApiKeys {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            API_KEY_SCHEME,
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
        for (path, item) in openapi.paths.paths.iter_mut() {
            let protected = ["/users", "/urls", "/events"]
                .iter()
                .any(|prefix| path == prefix || path.starts_with(&format!("{prefix}/")));
            if !protected {
                continue;
            }
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
            ];
            for operation in operations.into_iter().flatten() {
                mark_protected(operation);
            }
        }
    }
}

fn mark_protected(operation: &mut Operation) {
    operation.security = Some(vec![SecurityRequirement::new(
        API_KEY_SCHEME,
        Vec::<String>::new(),
    )]);
    let responses = &mut operation.responses.responses;
    responses.insert(
        "401".to_owned(),
        ResponseBuilder::new()
            .description("No valid API key (when the service requires keys)")
            .build()
            .into(),
    );
    responses.insert(
        "429".to_owned(),
        ResponseBuilder::new()
            .description("Rate limit reached; see Retry-After and RateLimit-* headers")
            .build()
            .into(),
    );
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "health",
    responses((status = 200, description = "The OpenAPI document")))]
pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
