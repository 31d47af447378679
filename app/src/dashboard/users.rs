//! User pages: the listing with a form to create a user, and a user's page
//! with the links it owns.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Extension;
use chrono::Utc;
use maud::html;

use super::error::PageError;
use super::forms::{FormData, IdPath, QueryData};
use super::links::{link_table, notice, LINKS_PER_PAGE};
use super::session::Session;
use super::view::{self, Notice, Section, Shell};
use crate::http::users::{check_email, check_username};
use crate::http::AppState;
use crate::store::{LinkSearch, StoreError};

/// Users per page of the listing.
const USERS_PER_PAGE: i64 = 50;

/// `GET /dashboard/users`.
pub async fn list_users(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    QueryData(query): QueryData,
) -> Result<Response, PageError> {
    let input = UserInput::default();
    users_page(
        &state,
        &session,
        &query,
        &input,
        StatusCode::OK,
        notice(&query),
    )
    .await
}

/// What a person typed into the user form.
#[derive(Debug, Default)]
struct UserInput {
    username: String,
    email: String,
}

/// `POST /dashboard/users`: creates a user, or shows the form again with what
/// went wrong.
pub async fn create_user(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    body: Bytes,
) -> Result<Response, PageError> {
    let form = FormData::parse(&body);
    let input = UserInput {
        username: form.get("username").to_owned(),
        email: form.get("email").to_owned(),
    };
    let refusal = match check_username(&input.username).and_then(|()| check_email(&input.email)) {
        Err(message) => (StatusCode::UNPROCESSABLE_ENTITY, capitalise(&message)),
        Ok(()) => match state
            .store()
            .insert_user(&input.username, &input.email)
            .await
        {
            Ok(user) => {
                let created = format!("/dashboard/users/{}?notice=user_created", user.id);
                return Ok(Redirect::to(&created).into_response());
            }
            Err(StoreError::Conflict(_)) => (
                StatusCode::CONFLICT,
                "This username or e-mail address is already taken.".to_owned(),
            ),
            Err(error) => return Err(error.into()),
        },
    };
    let (status, message) = refusal;
    let notice = Some(Notice::Error(message));
    users_page(
        &state,
        &session,
        &FormData::default(),
        &input,
        status,
        notice,
    )
    .await
}

fn capitalise(message: &str) -> String {
    let mut chars = message.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect::<String>() + ".",
        None => String::new(),
    }
}

async fn users_page(
    state: &AppState,
    session: &Session,
    query: &FormData,
    input: &UserInput,
    status: StatusCode,
    notice: Option<Notice>,
) -> Result<Response, PageError> {
    let (page, window) = query.page_window(USERS_PER_PAGE);
    let (users, total) = state.store().user_summaries(window).await?;
    let content = html! {
        div class="table-wrap" {
            table id="users" {
                caption { "Users" }
                thead {
                    tr {
                        th scope="col" class="num" { "Id" }
                        th scope="col" { "Username" }
                        th scope="col" { "E-mail address" }
                        th scope="col" class="num" { "Links" }
                        th scope="col" class="hide-narrow" { "Created" }
                    }
                }
                tbody {
                    @if users.is_empty() {
                        tr { td colspan="5" class="empty" { "No users yet." } }
                    }
                    @for summary in &users {
                        @let user = &summary.user;
                        tr {
                            td class="num" { (user.id) }
                            td { a href={ "/dashboard/users/" (user.id) } { (user.username) } }
                            td class="target" { (user.email) }
                            td class="num" { (summary.links) }
                            td class="hide-narrow" { (view::time(user.created_at)) }
                        }
                    }
                }
            }
        }
        (view::pager(page, USERS_PER_PAGE, total, |page| format!("/dashboard/users?page={page}")))
        h2 id="new-user" { "Create a user" }
        form class="card narrow" method="post" action="/dashboard/users" aria-labelledby="new-user" {
            (view::csrf_field(session))
            div class="field" {
                label for="username" { "Username" }
                input id="username" name="username" type="text" required maxlength="64"
                    autocomplete="off" value=(input.username);
            }
            div class="field" {
                label for="email" { "E-mail address" }
                input id="email" name="email" type="email" required value=(input.email);
            }
            button type="submit" { "Create user" }
        }
    };
    let shell = Shell {
        title: "Users",
        session: Some(session),
        section: Section::Users,
        notice,
    };
    Ok((status, Html(view::page(shell, content).into_string())).into_response())
}

/// `GET /dashboard/users/{id}`: the user and its links.
pub async fn show_user(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    IdPath(id): IdPath,
    QueryData(query): QueryData,
) -> Result<Html<String>, PageError> {
    let store = state.store();
    let user = store
        .user(id)
        .await?
        .ok_or_else(|| PageError::not_found(format!("No user has id {id}.")))?;
    let (page, window) = query.page_window(LINKS_PER_PAGE);
    let search = LinkSearch {
        text: None,
        user_id: Some(id),
    };
    let (links, total) = store.search_links(&search, window).await?;
    let content = html! {
        div class="card" {
            dl class="facts" {
                dt { "Id" } dd { (user.id) }
                dt { "E-mail address" } dd { (user.email) }
                dt { "Created" } dd { (view::time(user.created_at)) }
                dt { "Links" } dd { (total) }
            }
        }
        p class="actions" {
            a class="button" href={ "/dashboard/links/new?user=" (user.id) } { "Create a link for " (user.username) }
        }
        (link_table(&links, Utc::now(), "Links of this user, newest first"))
        (view::pager(page, LINKS_PER_PAGE, total, |page| format!("/dashboard/users/{id}?page={page}")))
    };
    let title = format!("User {}", user.username);
    let shell = Shell {
        title: &title,
        session: Some(&session),
        section: Section::Users,
        notice: notice(&query),
    };
    Ok(Html(view::page(shell, content).into_string()))
}
