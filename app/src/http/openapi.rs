//! The OpenAPI document of the HTTP API, generated from the handlers and
//! served at `/openapi.json`. Answers that every route of a kind shares (the
//! JSON errors of extractors, the access layer and an unavailable database)
//! are added here, in one place, rather than repeated on each handler.

use std::sync::LazyLock;

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};
use utoipa::openapi::header::Header;
use utoipa::openapi::path::{Operation, ParameterIn, PathItem};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Object, Ref, RefOr, Response, ResponseBuilder, Type};
use utoipa::{Modify, OpenApi};

use super::{events, health, redirect, urls, users, AppState};
use crate::auth::AuthMode;

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
    components(schemas(super::error::ErrorBody)),
    tags(
        (name = "users", description = "Owners of links"),
        (name = "urls", description = "Links and their statistics"),
        (name = "events", description = "What happened to links"),
        (name = "redirect", description = "Short codes"),
        (name = "health", description = "Probes"),
    ),
    modifiers(&SharedAnswers)
)]
pub struct ApiDoc;

/// Name of the API-key security scheme in the document.
const API_KEY_SCHEME: &str = "api_key";

/// Path prefixes of the resource API, which the access layer guards.
const PROTECTED_PREFIXES: [&str; 3] = ["/users", "/urls", "/events"];

/// Paths whose handlers never touch the database, so never answer 503.
const WITHOUT_DATABASE: [&str; 3] = ["/health", "/livez", "/openapi.json"];

/// Response headers that are always present on the answers that document
/// them: a redirect's target, when to retry, and how to authenticate.
const ALWAYS_SENT_HEADERS: [&str; 3] = ["Location", "Retry-After", "WWW-Authenticate"];

/// The document as this service serves it: with `--auth off` the resource
/// API takes no key, so it has neither a security requirement nor a 401.
pub fn document_for(auth: AuthMode) -> Value {
    let mut openapi = ApiDoc::openapi();
    if auth == AuthMode::Off {
        drop_api_keys(&mut openapi);
    }
    let mut document = serde_json::to_value(openapi).expect("the OpenAPI document serializes");
    require_headers(&mut document);
    add_links(&mut document);
    document
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "health",
    responses((status = 200, description = "The OpenAPI document",
               content_type = "application/json", body = Object)))]
pub async fn document(State(state): State<AppState>) -> Json<Value> {
    static OPEN: LazyLock<Value> = LazyLock::new(|| document_for(AuthMode::Off));
    static KEYED: LazyLock<Value> = LazyLock::new(|| document_for(AuthMode::Required));
    Json(match state.access.auth {
        AuthMode::Off => OPEN.clone(),
        AuthMode::Required => KEYED.clone(),
    })
}

/// Adds to each operation the answers of the layers around its handler.
struct SharedAnswers;

impl Modify for SharedAnswers {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            API_KEY_SCHEME,
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
        for (path, item) in openapi.paths.paths.iter_mut() {
            let protected = PROTECTED_PREFIXES
                .iter()
                .any(|prefix| path == prefix || path.starts_with(&format!("{prefix}/")));
            let is_redirect = path == "/{short_code}";
            let uses_database = !WITHOUT_DATABASE.contains(&path.as_str());
            for operation in operations_mut(item) {
                add_input_errors(operation, is_redirect);
                if protected {
                    add_api_access(operation);
                }
                if is_redirect {
                    add_answer(operation, "429", rate_limited());
                }
                if uses_database {
                    add_answer(operation, "503", unavailable());
                }
            }
        }
    }
}

/// The operations of a path, whichever methods it has.
fn operations_mut(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
    ]
    .into_iter()
    .flatten()
}

/// 400, 413, 415 and 422: what the extractors refuse before the handler runs.
fn add_input_errors(operation: &mut Operation, is_redirect: bool) {
    let parameters = operation.parameters.as_deref().unwrap_or_default();
    // A short code is any text: a malformed one is simply unknown (404).
    let typed_path = !is_redirect
        && parameters
            .iter()
            .any(|p| p.parameter_in == ParameterIn::Path);
    let has_query = parameters
        .iter()
        .any(|p| p.parameter_in == ParameterIn::Query);
    let body_types: Vec<String> = operation
        .request_body
        .as_ref()
        .map(|body| body.content.keys().cloned().collect())
        .unwrap_or_default();
    let json_body = body_types.iter().any(|t| t == "application/json");
    let multipart_body = body_types.iter().any(|t| t == "multipart/form-data");

    if typed_path || has_query || json_body || multipart_body {
        add_answer(
            operation,
            "400",
            error("A malformed path, query or body (`invalid_path`, `invalid_query`, …)"),
        );
    }
    if json_body || multipart_body {
        add_answer(operation, "413", error("The body is over the size limit"));
    }
    if json_body {
        add_answer(
            operation,
            "415",
            error("The body is not `application/json`"),
        );
        add_answer(
            operation,
            "422",
            error("A field is missing, has the wrong type or breaks a rule"),
        );
    }
}

/// The API key requirement, 401 and 429 of the access layer, and its quota
/// headers on every answer.
fn add_api_access(operation: &mut Operation) {
    operation.security = Some(vec![SecurityRequirement::new(
        API_KEY_SCHEME,
        Vec::<String>::new(),
    )]);
    add_answer(operation, "401", unauthorized());
    add_answer(operation, "429", rate_limited());
    for answer in operation.responses.responses.values_mut() {
        if let RefOr::T(answer) = answer {
            for (name, header) in quota_headers() {
                answer.headers.entry(name.to_owned()).or_insert(header);
            }
        }
    }
}

fn add_answer(operation: &mut Operation, status: &str, answer: Response) {
    operation
        .responses
        .responses
        .entry(status.to_owned())
        .or_insert(answer.into());
}

/// An answer with the JSON error shape.
fn error(description: &str) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build(),
        )
        .build()
}

fn integer_header(description: &str) -> Header {
    let mut header = Header::new(Object::with_type(Type::Integer));
    header.description = Some(description.to_owned());
    header
}

fn quota_headers() -> [(&'static str, Header); 3] {
    [
        (
            "RateLimit-Limit",
            integer_header("Requests the bucket holds (when rate limits are on)"),
        ),
        (
            "RateLimit-Remaining",
            integer_header("Requests left in the bucket"),
        ),
        (
            "RateLimit-Reset",
            integer_header("Seconds until the bucket is full again"),
        ),
    ]
}

fn unauthorized() -> Response {
    let mut answer = error("No valid API key: send `Authorization: Bearer <key>`");
    let mut challenge = Header::default();
    challenge.description = Some("`Bearer realm=\"kadi\"`".to_owned());
    answer
        .headers
        .insert("WWW-Authenticate".to_owned(), challenge);
    answer
}

fn rate_limited() -> Response {
    retry_later("Rate limit reached (`rate_limited`)")
}

fn unavailable() -> Response {
    retry_later("The database is unavailable (`unavailable`)")
}

/// An error that tells the client when to try again.
fn retry_later(description: &str) -> Response {
    let mut answer = error(description);
    answer.headers.insert(
        "Retry-After".to_owned(),
        integer_header("Seconds to wait before retrying"),
    );
    answer
}

/// (operation, status, link name, target operation, parameter, expression):
/// OpenAPI links from the answers that create things to the operations that
/// use them, so that generated sequences reach real users, links and events.
#[rustfmt::skip]
const LINKS: &[(&str, &str, &str, &str, &str, &str)] = &[
    ("create_user", "201", "GetUser", "get_user", "id", "$response.body#/id"),
    ("create_user", "201", "UpdateUser", "update_user", "id", "$response.body#/id"),
    ("create_user", "201", "DeleteUser", "delete_user", "id", "$response.body#/id"),
    ("create_url", "201", "GetUrl", "get_url", "id", "$response.body#/id"),
    ("create_url", "201", "UpdateUrl", "update_url", "id", "$response.body#/id"),
    ("create_url", "201", "DeleteUrl", "delete_url", "id", "$response.body#/id"),
    ("create_url", "201", "GetUrlStats", "url_stats", "id", "$response.body#/id"),
    ("create_url", "201", "Follow", "follow", "short_code", "$response.body#/short_code"),
    ("create_event", "201", "GetEvent", "get_event", "id", "$response.body#/id"),
];

/// Adds [`LINKS`] to the answers they start from. Written as JSON because
/// utoipa's link type serializes `operation_id` instead of `operationId`.
fn add_links(document: &mut Value) {
    let Some(paths) = document.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    let operations = paths
        .values_mut()
        .filter_map(Value::as_object_mut)
        .flat_map(|item| item.values_mut());
    for operation in operations {
        let id = operation.get("operationId").and_then(Value::as_str);
        let id = id.unwrap_or_default().to_owned();
        for (_, status, name, target, parameter, expression) in
            LINKS.iter().filter(|link| link.0 == id)
        {
            let Some(answer) = operation.pointer_mut(&format!("/responses/{status}")) else {
                continue;
            };
            let Some(answer) = answer.as_object_mut() else {
                continue;
            };
            let links = answer.entry("links").or_insert_with(|| json!({}));
            links[*name] = json!({
                "operationId": target,
                "parameters": { *parameter: expression },
            });
        }
    }
}

/// Removes what only applies when the resource API needs a key.
fn drop_api_keys(openapi: &mut utoipa::openapi::OpenApi) {
    if let Some(components) = openapi.components.as_mut() {
        components.security_schemes.remove(API_KEY_SCHEME);
    }
    for item in openapi.paths.paths.values_mut() {
        for operation in operations_mut(item) {
            operation.security = None;
            operation.responses.responses.remove("401");
        }
    }
}

/// Marks the headers in [`ALWAYS_SENT_HEADERS`] as required wherever an
/// answer documents them (utoipa's header type has no such field). Reads
/// with `get_mut`: indexing would add `null` members to the document.
fn require_headers(document: &mut Value) {
    let Some(paths) = document.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    let answers = paths
        .values_mut()
        .filter_map(Value::as_object_mut)
        .flat_map(|item| item.values_mut())
        .filter_map(|operation| operation.get_mut("responses"))
        .filter_map(Value::as_object_mut)
        .flat_map(|responses| responses.values_mut());
    for answer in answers {
        let Some(headers) = answer.get_mut("headers").and_then(Value::as_object_mut) else {
            continue;
        };
        for (name, header) in headers.iter_mut() {
            if ALWAYS_SENT_HEADERS.contains(&name.as_str()) {
                header["required"] = Value::Bool(true);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn operation<'a>(document: &'a Value, path: &str, method: &str) -> &'a Value {
        &document["paths"][path][method]
    }

    #[test]
    fn keyed_document_has_security_and_401() {
        let document = document_for(AuthMode::Required);
        let create = operation(&document, "/urls", "post");
        assert!(create["security"].is_array());
        assert_eq!(
            create["responses"]["401"]["headers"]["WWW-Authenticate"]["required"],
            true
        );
        assert!(document["components"]["securitySchemes"][API_KEY_SCHEME].is_object());
    }

    #[test]
    fn open_document_has_neither_security_nor_401() {
        let document = document_for(AuthMode::Off);
        let create = operation(&document, "/urls", "post");
        assert!(create["security"].is_null());
        assert!(create["responses"]["401"].is_null());
        assert!(create["responses"]["429"].is_object());
    }

    #[test]
    fn json_bodies_document_every_extractor_answer() {
        let document = document_for(AuthMode::Off);
        let create = operation(&document, "/users", "post");
        for status in ["400", "413", "415", "422", "503"] {
            let schema = &create["responses"][status]["content"]["application/json"]["schema"];
            assert_eq!(schema["$ref"], "#/components/schemas/ErrorBody", "{status}");
        }
    }

    #[test]
    fn redirects_require_a_location_and_never_answer_400() {
        let document = document_for(AuthMode::Off);
        let follow = operation(&document, "/{short_code}", "get");
        for status in ["301", "302", "307", "308"] {
            assert_eq!(
                follow["responses"][status]["headers"]["Location"]["required"], true,
                "{status}"
            );
        }
        assert!(follow["responses"]["400"].is_null());
        let retry = &follow["responses"]["429"]["headers"]["Retry-After"];
        assert_eq!(retry["required"], true);
    }

    #[test]
    fn created_links_lead_to_their_redirect() {
        let document = document_for(AuthMode::Off);
        let link = &operation(&document, "/urls", "post")["responses"]["201"]["links"]["Follow"];
        assert_eq!(link["operationId"], "follow");
        assert_eq!(
            link["parameters"]["short_code"],
            "$response.body#/short_code"
        );
    }

    #[test]
    fn probes_without_database_never_answer_503() {
        let document = document_for(AuthMode::Off);
        assert!(operation(&document, "/health", "get")["responses"]["503"].is_null());
        assert!(operation(&document, "/readyz", "get")["responses"]["503"].is_object());
    }
}
