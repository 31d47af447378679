//! `/users`: create, list, read, change and delete users, and bulk upserts
//! from CSV.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody};
use super::extract::{JsonObject, Multipart, Paging, Path, Query};
use super::AppState;
use crate::store::{StoreError, User, UserPatch, UserUpsert};

/// Longest username accepted, in characters.
const MAX_USERNAME_LEN: usize = 64;

/// Longest e-mail address accepted, in bytes (the SMTP limit).
const MAX_EMAIL_LEN: usize = 254;

/// Body of `POST /users`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateUser {
    /// Unique name, 1 to 64 characters, without spaces or control characters.
    #[schema(min_length = 1, max_length = 64, example = "ada")]
    pub username: String,
    /// Unique e-mail address, at most 254 bytes.
    #[schema(min_length = 3, max_length = 254, example = "ada@example.com")]
    pub email: String,
}

/// Body of `PUT /users/{id}`; absent fields keep their value.
#[derive(Debug, Deserialize, ToSchema)]
pub struct UpdateUser {
    /// New name.
    #[schema(min_length = 1, max_length = 64)]
    pub username: Option<String>,
    /// New e-mail address.
    #[schema(min_length = 3, max_length = 254)]
    pub email: Option<String>,
}

/// Answer of `POST /users/bulk`.
#[derive(Debug, Serialize, ToSchema)]
pub struct BulkImported {
    /// Rows processed, new and existing users alike.
    pub imported: usize,
}

/// Checks a username.
pub fn check_username(username: &str) -> Result<(), String> {
    if username.trim().is_empty() {
        return Err("username must not be empty".into());
    }
    if username.chars().count() > MAX_USERNAME_LEN {
        return Err(format!(
            "username must be at most {MAX_USERNAME_LEN} characters"
        ));
    }
    if username
        .chars()
        .any(|c| c.is_control() || c.is_whitespace())
    {
        return Err("username must not contain spaces or control characters".into());
    }
    Ok(())
}

/// Checks an e-mail address: one `@` between a non-empty local part and a
/// domain, no spaces.
pub fn check_email(email: &str) -> Result<(), String> {
    if email.len() > MAX_EMAIL_LEN {
        return Err(format!("email must be at most {MAX_EMAIL_LEN} bytes"));
    }
    let valid = match email.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        }
        None => false,
    };
    if valid {
        Ok(())
    } else {
        Err(format!("email {email:?} is not an e-mail address"))
    }
}

fn taken(error: StoreError) -> ApiError {
    match error {
        StoreError::Conflict(_) => {
            ApiError::conflict("user_taken", "username or email is already taken")
        }
        other => other.into(),
    }
}

/// Creates a user.
#[utoipa::path(post, path = "/users", tag = "users", request_body = CreateUser,
    responses((status = 201, body = User), (status = 409, body = ErrorBody),
              (status = 422, body = ErrorBody)))]
pub async fn create_user(
    State(state): State<AppState>,
    JsonObject(body): JsonObject<CreateUser>,
) -> Result<(StatusCode, Json<User>), ApiError> {
    check_username(&body.username).map_err(|m| ApiError::invalid("invalid_field", m))?;
    check_email(&body.email).map_err(|m| ApiError::invalid("invalid_field", m))?;
    let user = state
        .store()
        .insert_user(&body.username, &body.email)
        .await
        .map_err(taken)?;
    Ok((StatusCode::CREATED, Json(user)))
}

/// Lists users by id.
#[utoipa::path(get, path = "/users", tag = "users", params(Paging),
    responses((status = 200, body = [User]), (status = 400, body = ErrorBody)))]
pub async fn list_users(
    State(state): State<AppState>,
    Query(paging): Query<Paging>,
) -> Result<Json<Vec<User>>, ApiError> {
    Ok(Json(state.store().users(paging.page()?).await?))
}

/// Reads a user.
#[utoipa::path(get, path = "/users/{id}", tag = "users", params(("id" = i64, Path)),
    responses((status = 200, body = User), (status = 404, body = ErrorBody)))]
pub async fn get_user(
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Json<User>, ApiError> {
    let user = state.store().user(id).await?;
    user.map(Json)
        .ok_or_else(|| ApiError::not_found(format!("user {id} does not exist")))
}

/// Changes a user's name or e-mail address.
#[utoipa::path(put, path = "/users/{id}", tag = "users", params(("id" = i64, Path)),
    request_body = UpdateUser,
    responses((status = 200, body = User), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update_user(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    JsonObject(body): JsonObject<UpdateUser>,
) -> Result<Json<User>, ApiError> {
    if let Some(username) = &body.username {
        check_username(username).map_err(|m| ApiError::invalid("invalid_field", m))?;
    }
    if let Some(email) = &body.email {
        check_email(email).map_err(|m| ApiError::invalid("invalid_field", m))?;
    }
    let patch = UserPatch {
        username: body.username,
        email: body.email,
    };
    let user = state.store().update_user(id, &patch).await.map_err(taken)?;
    user.map(Json)
        .ok_or_else(|| ApiError::not_found(format!("user {id} does not exist")))
}

/// Deletes a user and the links it owns (their analytics are kept).
#[utoipa::path(delete, path = "/users/{id}", tag = "users", params(("id" = i64, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete_user(
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    state.links.delete_user(id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Upserts users by username from a CSV file part named `file` with the
/// header `id,username,email,created_at` (`id` and `created_at` may be empty).
#[utoipa::path(post, path = "/users/bulk", tag = "users",
    request_body(content_type = "multipart/form-data", description = "CSV in a part named `file`"),
    responses((status = 201, body = BulkImported), (status = 400, body = ErrorBody)))]
pub async fn bulk_users(
    State(state): State<AppState>,
    Multipart(mut multipart): Multipart,
) -> Result<(StatusCode, Json<BulkImported>), ApiError> {
    let mut csv = None;
    while let Some(field) = multipart.next_field().await? {
        if field.name() == Some("file") {
            csv = Some(field.bytes().await?);
            break;
        }
    }
    let csv =
        csv.ok_or_else(|| ApiError::bad_request("missing_file", "no file part named `file`"))?;
    let rows = parse_users_csv(&csv).map_err(|m| ApiError::bad_request("malformed_csv", m))?;
    let outcome = state.store().upsert_users(&rows).await.map_err(taken)?;
    Ok((
        StatusCode::CREATED,
        Json(BulkImported {
            imported: outcome.len(),
        }),
    ))
}

/// Parses users CSV (`id,username,email,created_at`); an error names the line.
pub fn parse_users_csv(bytes: &[u8]) -> Result<Vec<UserUpsert>, String> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(bytes);
    let headers = reader
        .headers()
        .map_err(|e| format!("line 1: unreadable header: {e}"))?
        .clone();
    let column = |name: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(name));
    let (Some(username_at), Some(email_at)) = (column("username"), column("email")) else {
        return Err("line 1: the header must name username and email columns".into());
    };
    let (id_at, created_at) = (column("id"), column("created_at"));
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| {
            let line = e.position().map_or(0, |p| p.line());
            format!("line {line}: {e}")
        })?;
        let line = record.position().map_or(0, |p| p.line());
        let field = |at: Option<usize>| at.and_then(|i| record.get(i)).unwrap_or("");
        let username = field(Some(username_at)).to_owned();
        let email = field(Some(email_at)).to_owned();
        check_username(&username).map_err(|m| format!("line {line}: {m}"))?;
        check_email(&email).map_err(|m| format!("line {line}: {m}"))?;
        let id = match field(id_at) {
            "" => None,
            text => Some(
                text.parse::<i64>()
                    .ok()
                    .filter(|id| *id > 0)
                    .ok_or_else(|| format!("line {line}: id {text:?} is not a positive integer"))?,
            ),
        };
        let created_at =
            match field(created_at) {
                "" => None,
                text => Some(parse_timestamp(text).ok_or_else(|| {
                    format!("line {line}: created_at {text:?} is not a timestamp")
                })?),
            };
        rows.push(UserUpsert {
            id,
            username,
            email,
            created_at,
        });
    }
    Ok(rows)
}

/// Parses the timestamps of the original service's exports: RFC 3339, or
/// `YYYY-MM-DD HH:MM:SS[.fff]` taken as UTC.
pub fn parse_timestamp(text: &str) -> Option<DateTime<Utc>> {
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Some(at.with_timezone(&Utc));
    }
    ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"]
        .iter()
        .find_map(|format| NaiveDateTime::parse_from_str(text, format).ok())
        .map(|naive| naive.and_utc())
}
