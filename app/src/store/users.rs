//! Users: the owners of links.

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::{advance_sequence_sql, on_pool, Backend, Page, Store, StoreError};

/// A user as stored and as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow, ToSchema)]
pub struct User {
    /// Identifier.
    pub id: i64,
    /// Unique name.
    pub username: String,
    /// Unique e-mail address.
    pub email: String,
    /// When the user was created.
    pub created_at: DateTime<Utc>,
}

/// Fields to change on a user; `None` keeps the stored value.
#[derive(Debug, Default, Clone)]
pub struct UserPatch {
    /// New name.
    pub username: Option<String>,
    /// New e-mail address.
    pub email: Option<String>,
}

/// One row of a bulk upsert or import.
#[derive(Debug, Clone)]
pub struct UserUpsert {
    /// Requested id; used when the username is new and the id is free.
    pub id: Option<i64>,
    /// Name, the key of the upsert.
    pub username: String,
    /// E-mail address.
    pub email: String,
    /// Creation time to keep; now when absent.
    pub created_at: Option<DateTime<Utc>>,
}

/// What an upsert did with its row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upserted {
    /// A new user with this id.
    Inserted(i64),
    /// The user with this username already existed and has this id.
    Existing(i64),
}

impl Upserted {
    /// The id of the user the row ended up as.
    pub fn id(self) -> i64 {
        match self {
            Upserted::Inserted(id) | Upserted::Existing(id) => id,
        }
    }
}

const USER_COLUMNS: &str = "id, username, email, created_at";

impl Store {
    /// Creates a user; a taken username or e-mail address is a conflict.
    pub async fn insert_user(&self, username: &str, email: &str) -> Result<User, StoreError> {
        let _guard = self.write_guard().await;
        let now = Utc::now();
        let sql = format!(
            "INSERT INTO users (username, email, created_at) VALUES ($1, $2, $3) \
             RETURNING {USER_COLUMNS}"
        );
        let user = on_pool!(self, |pool| {
            sqlx::query_as::<_, User>(&sql)
                .bind(username)
                .bind(email)
                .bind(now)
                .fetch_one(pool)
                .await?
        });
        Ok(user)
    }

    /// Looks up a live user.
    pub async fn user(&self, id: i64) -> Result<Option<User>, StoreError> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1 AND deleted_at IS NULL");
        let user = on_pool!(self, |pool| {
            sqlx::query_as::<_, User>(&sql)
                .bind(id)
                .fetch_optional(pool)
                .await?
        });
        Ok(user)
    }

    /// Lists live users by id.
    pub async fn users(&self, page: Page) -> Result<Vec<User>, StoreError> {
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM users WHERE deleted_at IS NULL \
             ORDER BY id LIMIT $1 OFFSET $2"
        );
        let users = on_pool!(self, |pool| {
            sqlx::query_as::<_, User>(&sql)
                .bind(page.limit)
                .bind(page.offset)
                .fetch_all(pool)
                .await?
        });
        Ok(users)
    }

    /// Changes a live user; `None` when there is none with this id.
    pub async fn update_user(
        &self,
        id: i64,
        patch: &UserPatch,
    ) -> Result<Option<User>, StoreError> {
        let _guard = self.write_guard().await;
        let sql = format!(
            "UPDATE users SET username = COALESCE($2, username), email = COALESCE($3, email) \
             WHERE id = $1 AND deleted_at IS NULL RETURNING {USER_COLUMNS}"
        );
        let user = on_pool!(self, |pool| {
            sqlx::query_as::<_, User>(&sql)
                .bind(id)
                .bind(patch.username.as_deref())
                .bind(patch.email.as_deref())
                .fetch_optional(pool)
                .await?
        });
        Ok(user)
    }

    /// Upserts users by username in one transaction. A new username keeps its
    /// requested id when that id is free; an existing one gets the new e-mail
    /// address and keeps its id.
    pub async fn upsert_users(&self, rows: &[UserUpsert]) -> Result<Vec<Upserted>, StoreError> {
        let _guard = self.write_guard().await;
        let now = Utc::now();
        let outcome = on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            let mut outcome = Vec::with_capacity(rows.len());
            for row in rows {
                let existing: Option<(i64,)> = sqlx::query_as(
                    "SELECT id FROM users WHERE username = $1 AND deleted_at IS NULL",
                )
                .bind(&row.username)
                .fetch_optional(&mut *tx)
                .await?;
                if let Some((id,)) = existing {
                    sqlx::query("UPDATE users SET email = $2 WHERE id = $1 AND email <> $2")
                        .bind(id)
                        .bind(&row.email)
                        .execute(&mut *tx)
                        .await?;
                    outcome.push(Upserted::Existing(id));
                    continue;
                }
                let id_free = match row.id {
                    Some(id) => sqlx::query_as::<_, (i64,)>("SELECT id FROM users WHERE id = $1")
                        .bind(id)
                        .fetch_optional(&mut *tx)
                        .await?
                        .is_none(),
                    None => false,
                };
                let created_at = row.created_at.unwrap_or(now);
                let (id,): (i64,) = if id_free {
                    sqlx::query_as(
                        "INSERT INTO users (id, username, email, created_at) \
                         VALUES ($1, $2, $3, $4) RETURNING id",
                    )
                    .bind(row.id)
                    .bind(&row.username)
                    .bind(&row.email)
                    .bind(created_at)
                    .fetch_one(&mut *tx)
                    .await?
                } else {
                    sqlx::query_as(
                        "INSERT INTO users (username, email, created_at) \
                         VALUES ($1, $2, $3) RETURNING id",
                    )
                    .bind(&row.username)
                    .bind(&row.email)
                    .bind(created_at)
                    .fetch_one(&mut *tx)
                    .await?
                };
                outcome.push(Upserted::Inserted(id));
            }
            if self.backend() == Backend::Postgres {
                sqlx::query(&advance_sequence_sql("users"))
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            outcome
        });
        Ok(outcome)
    }
}

impl Store {
    /// Deletes a live user and every live link it owns, recording a `deleted`
    /// event for each link, in one transaction. Returns the short codes of the
    /// deleted links (so that caches can drop them), or `None` for no such user.
    pub(crate) async fn delete_user(&self, id: i64) -> Result<Option<Vec<String>>, StoreError> {
        let _guard = self.write_guard().await;
        let now = Utc::now();
        let codes = on_pool!(self, |pool| {
            async {
                let mut tx = pool.begin().await?;
                let deleted = sqlx::query(
                    "UPDATE users SET deleted_at = $2 WHERE id = $1 AND deleted_at IS NULL",
                )
                .bind(id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                if deleted.rows_affected() == 0 {
                    return Ok(None);
                }
                let links: Vec<(i64, String)> = sqlx::query_as(
                    "UPDATE links SET deleted_at = $2, is_active = FALSE, updated_at = $2 \
                     WHERE user_id = $1 AND deleted_at IS NULL RETURNING id, short_code",
                )
                .bind(id)
                .bind(now)
                .fetch_all(&mut *tx)
                .await?;
                for (link_id, code) in &links {
                    let details =
                        serde_json::json!({ "short_code": code, "reason": "owner deleted" });
                    sqlx::query(
                        "INSERT INTO events (url_id, user_id, event_type, timestamp, details) \
                         VALUES ($1, $2, 'deleted', $3, $4)",
                    )
                    .bind(link_id)
                    .bind(id)
                    .bind(now)
                    .bind(sqlx::types::Json(details))
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok::<_, StoreError>(Some(links.into_iter().map(|(_, code)| code).collect()))
            }
            .await?
        });
        Ok(codes)
    }
}
