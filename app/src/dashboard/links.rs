//! Link pages: the searchable listing, the create and edit forms, a link's
//! page with its short URL, QR code and analytics, and the actions that
//! deactivate, reactivate and delete it. Changes go through the link service;
//! managed links are shown read-only with the ShortLink that owns them.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Extension;
use chrono::{DateTime, Utc};
use maud::{html, Markup};

use super::analytics;
use super::error::PageError;
use super::forms::{expiry_value, FormData, IdPath, LinkInput, QueryData};
use super::qr;
use super::session::Session;
use super::view::{self, LinkState, Notice, Section, Shell};
use crate::http::AppState;
use crate::links::{LinkError, REDIRECT_STATUSES};
use crate::store::{Link, LinkPatch, LinkSearch, ListedLink, Page, User};

/// Links per page of the listing.
pub const LINKS_PER_PAGE: i64 = 25;

/// Users offered as owners in the create form.
///
/// Limitation: only the first users by id are offered; with more, a link for
/// a later user is created from that user's page, which preselects it.
const OWNER_CHOICES: i64 = 500;

/// `GET /dashboard/links`: search and page through live links.
pub async fn list_links(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    QueryData(query): QueryData,
) -> Result<Html<String>, PageError> {
    let text = query.get("q").to_owned();
    let (page, window) = query.page_window(LINKS_PER_PAGE);
    let search = LinkSearch {
        text: Some(text.clone()).filter(|t| !t.is_empty()),
        user_id: None,
    };
    let (links, total) = state.store().search_links(&search, window).await?;
    let href = |page: i64| {
        format!(
            "/dashboard/links?q={}&page={page}",
            view::query_value(&text)
        )
    };
    let content = html! {
        form class="search" method="get" action="/dashboard/links" role="search" {
            div class="field" {
                label for="q" { "Search by short code, target URL or title" }
                input id="q" name="q" type="search" value=(text);
            }
            button type="submit" { "Search" }
            @if !text.is_empty() {
                a href="/dashboard/links" { "Clear" }
            }
        }
        (link_table(&links, Utc::now(), "Links, newest first"))
        (view::pager(page, LINKS_PER_PAGE, total, href))
    };
    let shell = Shell {
        title: "Links",
        session: Some(&session),
        section: Section::Links,
        notice: notice(&query),
    };
    Ok(Html(view::page(shell, content).into_string()))
}

/// The table of links the listing and user pages show.
pub fn link_table(links: &[ListedLink], now: DateTime<Utc>, caption: &str) -> Markup {
    html! {
        div class="table-wrap" {
            table id="links" {
                caption { (caption) }
                thead {
                    tr {
                        th scope="col" { "Code" }
                        th scope="col" { "Target" }
                        th scope="col" class="hide-narrow" { "Title" }
                        th scope="col" class="hide-narrow" { "Owner" }
                        th scope="col" { "State" }
                        th scope="col" class="num" { "Clicks" }
                        th scope="col" class="hide-narrow" { "Expires" }
                    }
                }
                tbody {
                    @if links.is_empty() {
                        tr { td colspan="7" class="empty" { "No links found." } }
                    }
                    @for listed in links {
                        @let link = &listed.link;
                        tr data-code=(link.short_code) {
                            td {
                                a href={ "/dashboard/links/" (link.id) } { (link.short_code) }
                                @if let Some(owner) = &link.managed_by {
                                    " " (view::managed_badge(owner))
                                }
                            }
                            td class="target" { (link.original_url) }
                            td class="hide-narrow" { (link.title.as_deref().unwrap_or("")) }
                            td class="hide-narrow" {
                                @if let (Some(id), Some(name)) = (link.user_id, &listed.owner) {
                                    a href={ "/dashboard/users/" (id) } { (name) }
                                } @else {
                                    "—"
                                }
                            }
                            td { (view::state_badge(LinkState::of(link, now))) }
                            td class="num" { (link.click_count) }
                            td class="hide-narrow" {
                                @if let Some(at) = link.expires_at { (view::time(at)) } @else { "never" }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `GET /dashboard/links/new`: the create form; `?user=` preselects an owner.
pub async fn new_link(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    QueryData(query): QueryData,
) -> Result<Response, PageError> {
    let input = LinkInput {
        user_id: query.get("user").to_owned(),
        redirect_status: "302".to_owned(),
        is_active: true,
        ..LinkInput::default()
    };
    create_form(&state, &session, &input, StatusCode::OK, None).await
}

/// `POST /dashboard/links`: creates a link, or shows the form again with
/// what went wrong.
pub async fn create_link(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    body: Bytes,
) -> Result<Response, PageError> {
    let input = LinkInput::from_form(&FormData::parse(&body));
    let request = match input.to_request() {
        Ok(request) => request,
        Err(message) => {
            return create_form(
                &state,
                &session,
                &input,
                StatusCode::BAD_REQUEST,
                Some(message),
            )
            .await
        }
    };
    match state.links.create_link(request).await {
        Ok(link) => Ok(
            Redirect::to(&format!("/dashboard/links/{}?notice=created", link.id)).into_response(),
        ),
        Err(error) => {
            let (status, message) = form_error(error)?;
            create_form(&state, &session, &input, status, Some(message)).await
        }
    }
}

/// The status and message a form shows for a failed change; failures that
/// are no fault of the input become error pages.
fn form_error(error: LinkError) -> Result<(StatusCode, String), PageError> {
    let error = PageError::from(match error {
        LinkError::UserNotFound(id) => {
            return Ok((
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("Owner: no user has id {id}."),
            ))
        }
        other => other,
    });
    if error.status().is_client_error() && error.status() != StatusCode::NOT_FOUND {
        Ok((error.status(), error.message().to_owned()))
    } else {
        Err(error)
    }
}

async fn create_form(
    state: &AppState,
    session: &Session,
    input: &LinkInput,
    status: StatusCode,
    error: Option<String>,
) -> Result<Response, PageError> {
    let users = state
        .store()
        .users(Page {
            offset: 0,
            limit: OWNER_CHOICES,
        })
        .await?;
    let content = link_form(session, input, FormMode::Create(&users));
    let shell = Shell {
        title: "New link",
        session: Some(session),
        section: Section::NewLink,
        notice: error.map(Notice::Error),
    };
    Ok((status, Html(view::page(shell, content).into_string())).into_response())
}

enum FormMode<'a> {
    Create(&'a [User]),
    Edit(&'a Link),
}

fn link_form(session: &Session, input: &LinkInput, mode: FormMode<'_>) -> Markup {
    let (action, submit) = match &mode {
        FormMode::Create(_) => ("/dashboard/links".to_owned(), "Create link"),
        FormMode::Edit(link) => (format!("/dashboard/links/{}/edit", link.id), "Save changes"),
    };
    html! {
        form class="card" method="post" action=(action) {
            (view::csrf_field(session))
            div class="field" {
                label for="original_url" { "Target URL" }
                input id="original_url" name="original_url" type="url" required
                    value=(input.original_url) placeholder="https://example.com/page"
                    aria-describedby="original_url-help";
                p id="original_url-help" class="help" { "An absolute http or https URL, at most 2,048 bytes." }
            }
            @if let FormMode::Create(users) = &mode {
                div class="field" {
                    label for="short_code" { "Custom short code (optional)" }
                    input id="short_code" name="short_code" type="text" value=(input.short_code)
                        autocomplete="off" spellcheck="false" aria-describedby="short_code-help";
                    p id="short_code-help" class="help" {
                        "3 to 64 characters of A–Z, a–z, 0–9, _ and -. Leave blank to generate one."
                    }
                }
                div class="field" {
                    label for="user_id" { "Owner" }
                    select id="user_id" name="user_id" {
                        option value="" { "No owner" }
                        @for user in *users {
                            @let id = user.id.to_string();
                            option value=(id) selected[id == input.user_id] { (user.username) " (#" (user.id) ")" }
                        }
                    }
                }
            }
            div class="field" {
                label for="title" { "Title (optional)" }
                input id="title" name="title" type="text" value=(input.title);
            }
            div class="field" {
                label for="expires_at" { "Expires at, UTC (optional)" }
                input id="expires_at" name="expires_at" type="datetime-local" value=(input.expires_at)
                    aria-describedby="expires_at-help";
                p id="expires_at-help" class="help" { "After this time the link answers 410 Gone. Blank: never." }
            }
            div class="field" {
                label for="max_visits" { "Visit limit (optional)" }
                input id="max_visits" name="max_visits" type="number" min="1" step="1"
                    value=(input.max_visits) aria-describedby="max_visits-help";
                p id="max_visits-help" class="help" { "The link serves this many redirects, then answers 410 Gone. Blank: no limit." }
            }
            div class="field" {
                label for="redirect_status" { "Redirect status" }
                select id="redirect_status" name="redirect_status" {
                    @for status in REDIRECT_STATUSES {
                        @let value = status.to_string();
                        option value=(value) selected[value == input.redirect_status] { (status_label(status)) }
                    }
                }
            }
            @if let FormMode::Create(_) = &mode {
                div class="field check" {
                    input id="is_active" name="is_active" type="checkbox" value="on" checked[input.is_active];
                    " "
                    label for="is_active" { "Active (redirects at once)" }
                }
            }
            div class="actions" {
                button type="submit" { (submit) }
                @if let FormMode::Edit(link) = &mode {
                    a href={ "/dashboard/links/" (link.id) } { "Cancel" }
                }
            }
        }
    }
}

fn status_label(status: i32) -> &'static str {
    match status {
        301 => "301 Moved Permanently (cached by browsers)",
        302 => "302 Found (temporary, the default)",
        307 => "307 Temporary Redirect (keeps the method)",
        _ => "308 Permanent Redirect (keeps the method)",
    }
}

/// `GET /dashboard/links/{id}`: the link, its short URL and QR code, the
/// actions, and its analytics.
pub async fn show_link(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    IdPath(id): IdPath,
    query: QueryData,
) -> Result<Html<String>, PageError> {
    let link = find_link(&state, id).await?;
    let owner = match link.user_id {
        Some(user_id) => state.store().user(user_id).await?,
        None => None,
    };
    let now = Utc::now();
    let analytics =
        analytics::load(state.store(), Some(id), analytics::granularity(&query), now).await?;
    let short_url = format!("{}/{}", state.public_base(), link.short_code);
    let content = html! {
        div class="grid" {
            div class="card" {
                (link_facts(&link, owner.as_ref(), now))
            }
            div class="card" {
                label for="short-url" { strong { "Short URL" } }
                div class="short-url" {
                    input id="short-url" type="text" readonly value=(short_url);
                    button type="button" class="secondary" data-copy="short-url" { "Copy" }
                }
                figure class="qr" {
                    img src={ "/dashboard/links/" (link.id) "/qr.svg" } width="192" height="192"
                        alt={ "QR code for " (short_url) };
                    figcaption {
                        a href={ "/dashboard/links/" (link.id) "/qr.svg" } download={ (link.short_code) ".svg" } {
                            "Download the QR code (SVG)"
                        }
                    }
                }
            }
        }
        (link_actions(&session, &link))
        (analytics::section(&analytics, &format!("/dashboard/links/{}", link.id), false))
    };
    let title = format!("Link {}", link.short_code);
    let shell = Shell {
        title: &title,
        session: Some(&session),
        section: Section::Links,
        notice: notice(&query.0),
    };
    Ok(Html(view::page(shell, content).into_string()))
}

fn link_facts(link: &Link, owner: Option<&User>, now: DateTime<Utc>) -> Markup {
    html! {
        dl class="facts" {
            dt { "Short code" } dd { code { (link.short_code) } }
            dt { "Target URL" } dd { a href=(link.original_url) rel="noopener noreferrer" { (link.original_url) } }
            dt { "Title" } dd { (link.title.as_deref().unwrap_or("—")) }
            dt { "State" } dd { (view::state_badge(LinkState::of(link, now))) }
            dt { "Owner" }
            dd {
                @match owner {
                    Some(user) => a href={ "/dashboard/users/" (user.id) } { (user.username) },
                    None => "—",
                }
            }
            @if let Some(managed_by) = &link.managed_by {
                dt { "Managed by" } dd { (view::managed_badge(managed_by)) }
            }
            dt { "Clicks" } dd { (link.click_count) }
            dt { "Visit limit" }
            dd { @if let Some(max) = link.max_visits { (max) } @else { "none" } }
            dt { "Expires" }
            dd { @if let Some(at) = link.expires_at { (view::time(at)) } @else { "never" } }
            dt { "Redirect status" } dd { (link.redirect_status) }
            dt { "Created" } dd { (view::time(link.created_at)) }
            dt { "Last changed" } dd { (view::time(link.updated_at)) }
        }
    }
}

fn link_actions(session: &Session, link: &Link) -> Markup {
    if let Some(owner) = &link.managed_by {
        return html! {
            p class="notice ok" role="note" {
                "This link is managed by the ShortLink " strong { (owner) }
                ". It is read-only here: change or delete the resource in Kubernetes."
            }
        };
    }
    let base = format!("/dashboard/links/{}", link.id);
    html! {
        div class="actions" {
            a class="button secondary" href={ (base) "/edit" } { "Edit" }
            @if link.is_active {
                form method="post" action={ (base) "/deactivate" } {
                    (view::csrf_field(session))
                    button type="submit" class="secondary" { "Deactivate" }
                }
            } @else {
                form method="post" action={ (base) "/reactivate" } {
                    (view::csrf_field(session))
                    button type="submit" class="secondary" { "Reactivate" }
                }
            }
            form method="post" action={ (base) "/delete" }
                data-confirm={ "Delete the link " (link.short_code) "? Its short code becomes free." } {
                (view::csrf_field(session))
                button type="submit" class="danger" { "Delete" }
            }
        }
    }
}

/// `GET /dashboard/links/{id}/edit`.
pub async fn edit_link(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    IdPath(id): IdPath,
) -> Result<Response, PageError> {
    let link = find_link(&state, id).await?;
    if let Some(owner) = link.managed_by {
        return Err(LinkError::Managed(owner).into());
    }
    let input = LinkInput {
        original_url: link.original_url.clone(),
        title: link.title.clone().unwrap_or_default(),
        expires_at: expiry_value(link.expires_at),
        max_visits: link.max_visits.map(|m| m.to_string()).unwrap_or_default(),
        redirect_status: link.redirect_status.to_string(),
        ..LinkInput::default()
    };
    Ok(edit_form(&session, &link, &input, StatusCode::OK, None))
}

/// `POST /dashboard/links/{id}/edit`.
pub async fn update_link(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    IdPath(id): IdPath,
    body: Bytes,
) -> Result<Response, PageError> {
    let input = LinkInput::from_form(&FormData::parse(&body));
    let link = find_link(&state, id).await?;
    let patch = match input.to_patch() {
        Ok(patch) => patch,
        Err(message) => {
            return Ok(edit_form(
                &session,
                &link,
                &input,
                StatusCode::BAD_REQUEST,
                Some(message),
            ))
        }
    };
    match state.links.update_link(id, patch).await {
        Ok(_) => Ok(Redirect::to(&format!("/dashboard/links/{id}?notice=updated")).into_response()),
        Err(error) => {
            let (status, message) = form_error(error)?;
            Ok(edit_form(&session, &link, &input, status, Some(message)))
        }
    }
}

fn edit_form(
    session: &Session,
    link: &Link,
    input: &LinkInput,
    status: StatusCode,
    error: Option<String>,
) -> Response {
    let title = format!("Edit link {}", link.short_code);
    let shell = Shell {
        title: &title,
        session: Some(session),
        section: Section::Links,
        notice: error.map(Notice::Error),
    };
    let content = html! {
        p { "The short code and the owner of a link never change." }
        (link_form(session, input, FormMode::Edit(link)))
    };
    (status, Html(view::page(shell, content).into_string())).into_response()
}

/// `POST /dashboard/links/{id}/deactivate`: the link stops redirecting.
pub async fn deactivate(
    State(state): State<AppState>,
    IdPath(id): IdPath,
) -> Result<Redirect, PageError> {
    set_active(&state, id, false).await?;
    Ok(Redirect::to(&format!(
        "/dashboard/links/{id}?notice=deactivated"
    )))
}

/// `POST /dashboard/links/{id}/reactivate`: the link redirects again.
pub async fn reactivate(
    State(state): State<AppState>,
    IdPath(id): IdPath,
) -> Result<Redirect, PageError> {
    set_active(&state, id, true).await?;
    Ok(Redirect::to(&format!(
        "/dashboard/links/{id}?notice=reactivated"
    )))
}

async fn set_active(state: &AppState, id: i64, active: bool) -> Result<(), PageError> {
    let patch = LinkPatch {
        is_active: Some(active),
        ..LinkPatch::default()
    };
    state.links.update_link(id, patch).await?;
    Ok(())
}

/// `POST /dashboard/links/{id}/delete`: deletes the link; its analytics stay.
pub async fn delete_link(
    State(state): State<AppState>,
    IdPath(id): IdPath,
) -> Result<Redirect, PageError> {
    state.links.delete_link(id).await?;
    Ok(Redirect::to("/dashboard/links?notice=deleted"))
}

/// `GET /dashboard/links/{id}/qr.svg`: the QR code of the short URL.
pub async fn qr_code(
    State(state): State<AppState>,
    IdPath(id): IdPath,
) -> Result<Response, PageError> {
    let link = find_link(&state, id).await?;
    let short_url = format!("{}/{}", state.public_base(), link.short_code);
    let svg = qr::qr_svg(&short_url).map_err(|_| {
        PageError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "No QR code",
            "This short URL is too long for a QR code.",
        )
    })?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("image/svg+xml"),
        )],
        svg,
    )
        .into_response())
}

async fn find_link(state: &AppState, id: i64) -> Result<Link, PageError> {
    state
        .store()
        .link(id)
        .await?
        .ok_or_else(|| LinkError::NotFound(id).into())
}

/// The notice a page shows after a change, from `?notice=`; only fixed
/// texts, never the parameter itself.
pub fn notice(query: &FormData) -> Option<Notice> {
    let text = match query.get("notice") {
        "created" => "Link created.",
        "updated" => "Link saved.",
        "deactivated" => "Link deactivated: it no longer redirects.",
        "reactivated" => "Link reactivated: it redirects again.",
        "deleted" => "Link deleted. Its short code is free again.",
        "user_created" => "User created.",
        _ => return None,
    };
    Some(Notice::Success(text.to_owned()))
}
