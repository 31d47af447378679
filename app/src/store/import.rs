//! Bulk inserts with explicit ids, for importing the original service's
//! exports. Each batch is one transaction; rows already present are skipped,
//! so an import can run twice.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::types::Json;

use super::{advance_sequence_sql, on_pool, Backend, Store, StoreError};

/// A user row of an export.
#[derive(Debug, Clone)]
pub struct ImportUser {
    /// Id in the export.
    pub id: i64,
    /// Name.
    pub username: String,
    /// E-mail address.
    pub email: String,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

/// A link row of an export.
#[derive(Debug, Clone)]
pub struct ImportLink {
    /// Id in the export.
    pub id: i64,
    /// Owner, already mapped to a stored user.
    pub user_id: i64,
    /// Short code.
    pub short_code: String,
    /// Target URL.
    pub original_url: String,
    /// Title.
    pub title: Option<String>,
    /// Active flag.
    pub is_active: bool,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// An event row of an export.
#[derive(Debug, Clone)]
pub struct ImportEvent {
    /// Id in the export.
    pub id: i64,
    /// The link.
    pub url_id: i64,
    /// The user, already mapped to a stored user.
    pub user_id: Option<i64>,
    /// Event type.
    pub event_type: String,
    /// When it happened.
    pub timestamp: DateTime<Utc>,
    /// Details object.
    pub details: Value,
}

/// What happened to one imported row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowOutcome {
    /// Inserted under its own id.
    Inserted,
    /// The same row (same id and key) was already stored.
    AlreadyPresent,
    /// Another stored row holds its key; the row was skipped and its id
    /// stands for that row's id from now on.
    SameAs(i64),
    /// Skipped: it conflicts with a stored row in a way no mapping fixes.
    Conflict(String),
}

impl Store {
    /// Inserts users keeping their ids.
    pub(crate) async fn import_users(
        &self,
        rows: &[ImportUser],
    ) -> Result<Vec<RowOutcome>, StoreError> {
        let _guard = self.write_guard().await;
        let is_postgres = self.backend() == Backend::Postgres;
        let outcome = on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            let mut outcome = Vec::with_capacity(rows.len());
            for row in rows {
                let inserted = sqlx::query(
                    "INSERT INTO users (id, username, email, created_at) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                )
                .bind(row.id)
                .bind(&row.username)
                .bind(&row.email)
                .bind(row.created_at)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if inserted == 1 {
                    outcome.push(RowOutcome::Inserted);
                    continue;
                }
                let by_id: Option<(String,)> =
                    sqlx::query_as("SELECT username FROM users WHERE id = $1")
                        .bind(row.id)
                        .fetch_optional(&mut *tx)
                        .await?;
                let by_key: Option<(i64,)> = sqlx::query_as(
                    "SELECT id FROM users WHERE (username = $1 OR email = $2) \
                     AND deleted_at IS NULL ORDER BY id LIMIT 1",
                )
                .bind(&row.username)
                .bind(&row.email)
                .fetch_optional(&mut *tx)
                .await?;
                outcome.push(match (by_id, by_key) {
                    (Some((name,)), _) if name == row.username => RowOutcome::AlreadyPresent,
                    (_, Some((id,))) => RowOutcome::SameAs(id),
                    (Some((name,)), None) => {
                        RowOutcome::Conflict(format!("id {} belongs to user {name:?}", row.id))
                    }
                    (None, None) => RowOutcome::Conflict("refused by the database".into()),
                });
            }
            if is_postgres {
                sqlx::query(&advance_sequence_sql("users"))
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            outcome
        });
        Ok(outcome)
    }

    /// Inserts links keeping their ids. Only the link service calls this, so
    /// that caches drop the imported codes.
    pub(crate) async fn import_links(
        &self,
        rows: &[ImportLink],
    ) -> Result<Vec<RowOutcome>, StoreError> {
        let _guard = self.write_guard().await;
        let is_postgres = self.backend() == Backend::Postgres;
        let outcome = on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            let mut outcome = Vec::with_capacity(rows.len());
            for row in rows {
                let owner: Option<(i64,)> = sqlx::query_as("SELECT id FROM users WHERE id = $1")
                    .bind(row.user_id)
                    .fetch_optional(&mut *tx)
                    .await?;
                if owner.is_none() {
                    outcome.push(RowOutcome::Conflict(format!(
                        "user {} does not exist",
                        row.user_id
                    )));
                    continue;
                }
                let inserted = sqlx::query(
                    "INSERT INTO links (id, user_id, short_code, original_url, title, \
                     is_active, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                     ON CONFLICT DO NOTHING",
                )
                .bind(row.id)
                .bind(row.user_id)
                .bind(&row.short_code)
                .bind(&row.original_url)
                .bind(row.title.as_deref())
                .bind(row.is_active)
                .bind(row.created_at)
                .bind(row.updated_at)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if inserted == 1 {
                    outcome.push(RowOutcome::Inserted);
                    continue;
                }
                let by_id: Option<(String,)> =
                    sqlx::query_as("SELECT short_code FROM links WHERE id = $1")
                        .bind(row.id)
                        .fetch_optional(&mut *tx)
                        .await?;
                outcome.push(match by_id {
                    Some((code,)) if code == row.short_code => RowOutcome::AlreadyPresent,
                    Some((code,)) => RowOutcome::Conflict(format!(
                        "id {} belongs to the link with code {code:?}",
                        row.id
                    )),
                    None => RowOutcome::Conflict(format!(
                        "short code {:?} is taken by another link",
                        row.short_code
                    )),
                });
            }
            if is_postgres {
                sqlx::query(&advance_sequence_sql("links"))
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            outcome
        });
        Ok(outcome)
    }

    /// Inserts events keeping their ids.
    pub(crate) async fn import_events(
        &self,
        rows: &[ImportEvent],
    ) -> Result<Vec<RowOutcome>, StoreError> {
        let _guard = self.write_guard().await;
        let is_postgres = self.backend() == Backend::Postgres;
        let outcome = on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            let mut outcome = Vec::with_capacity(rows.len());
            for row in rows {
                let link: Option<(i64,)> = sqlx::query_as("SELECT id FROM links WHERE id = $1")
                    .bind(row.url_id)
                    .fetch_optional(&mut *tx)
                    .await?;
                if link.is_none() {
                    outcome.push(RowOutcome::Conflict(format!(
                        "url {} does not exist",
                        row.url_id
                    )));
                    continue;
                }
                if let Some(user_id) = row.user_id {
                    let user: Option<(i64,)> = sqlx::query_as("SELECT id FROM users WHERE id = $1")
                        .bind(user_id)
                        .fetch_optional(&mut *tx)
                        .await?;
                    if user.is_none() {
                        outcome.push(RowOutcome::Conflict(format!(
                            "user {user_id} does not exist"
                        )));
                        continue;
                    }
                }
                let inserted = sqlx::query(
                    "INSERT INTO events (id, url_id, user_id, event_type, timestamp, details) \
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
                )
                .bind(row.id)
                .bind(row.url_id)
                .bind(row.user_id)
                .bind(&row.event_type)
                .bind(row.timestamp)
                .bind(Json(&row.details))
                .execute(&mut *tx)
                .await?
                .rows_affected();
                outcome.push(if inserted == 1 {
                    RowOutcome::Inserted
                } else {
                    RowOutcome::AlreadyPresent
                });
            }
            if is_postgres {
                sqlx::query(&advance_sequence_sql("events"))
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            outcome
        });
        Ok(outcome)
    }
}
