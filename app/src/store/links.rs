//! Links: short codes bound to target URLs. Only the link service calls the
//! writing methods here, so that every change also invalidates caches.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;
use sqlx::types::Json;
use utoipa::ToSchema;

use super::{on_pool, Page, Store, StoreError};

/// A link as stored and as the API shows it (the `url` object).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow, ToSchema)]
pub struct Link {
    /// Identifier.
    pub id: i64,
    /// Owner; absent for managed links.
    pub user_id: Option<i64>,
    /// The path segment that redirects.
    pub short_code: String,
    /// The target URL.
    pub original_url: String,
    /// Free-form title.
    pub title: Option<String>,
    /// Inactive links answer 404.
    pub is_active: bool,
    /// When the link was created.
    pub created_at: DateTime<Utc>,
    /// When the link last changed.
    pub updated_at: DateTime<Utc>,
    /// After this time the link answers 410 Gone.
    pub expires_at: Option<DateTime<Utc>>,
    /// The link serves this many redirects, then answers 410 Gone.
    pub max_visits: Option<i64>,
    /// 301, 302, 307 or 308.
    pub redirect_status: i32,
    /// Clicks stored so far.
    #[serde(rename = "clicks")]
    pub click_count: i64,
    /// The ShortLink resource (`namespace/name`) that owns a managed link.
    pub managed_by: Option<String>,
}

/// What the redirect path needs to know about a live link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, sqlx::FromRow)]
pub struct LinkTarget {
    /// Identifier.
    pub id: i64,
    /// The target URL.
    pub original_url: String,
    /// Inactive links answer 404.
    pub is_active: bool,
    /// 301, 302, 307 or 308.
    pub redirect_status: i32,
    /// After this time the link answers 410 Gone.
    pub expires_at: Option<DateTime<Utc>>,
    /// The link serves this many redirects, then answers 410 Gone.
    pub max_visits: Option<i64>,
}

/// A link to insert, already validated.
#[derive(Debug, Clone)]
pub struct NewLink {
    /// Requested id (imports); the database picks one when absent.
    pub id: Option<i64>,
    /// Owner.
    pub user_id: Option<i64>,
    /// Short code.
    pub short_code: String,
    /// Target URL.
    pub original_url: String,
    /// Title.
    pub title: Option<String>,
    /// Active flag.
    pub is_active: bool,
    /// Redirect status code.
    pub redirect_status: i32,
    /// Expiry.
    pub expires_at: Option<DateTime<Utc>>,
    /// Visit limit.
    pub max_visits: Option<i64>,
    /// Owning ShortLink, for managed links.
    pub managed_by: Option<String>,
    /// Creation time to keep (imports); now when absent.
    pub created_at: Option<DateTime<Utc>>,
    /// Last change time to keep (imports); the creation time when absent.
    pub updated_at: Option<DateTime<Utc>>,
}

/// Fields to change on a link, already validated. `None` keeps the stored
/// value; for the nullable fields `Some(None)` clears it.
#[derive(Debug, Default, Clone)]
pub struct LinkPatch {
    /// New target URL.
    pub original_url: Option<String>,
    /// New title.
    pub title: Option<Option<String>>,
    /// New active flag.
    pub is_active: Option<bool>,
    /// New redirect status.
    pub redirect_status: Option<i32>,
    /// New expiry.
    pub expires_at: Option<Option<DateTime<Utc>>>,
    /// New visit limit.
    pub max_visits: Option<Option<i64>>,
}

/// Filters of the link listing.
#[derive(Debug, Default, Clone)]
pub struct LinkFilter {
    /// Only links of this owner.
    pub user_id: Option<i64>,
    /// Only active (or only inactive) links.
    pub is_active: Option<bool>,
}

const LINK_COLUMNS: &str = "id, user_id, short_code, original_url, title, is_active, created_at, \
     updated_at, expires_at, max_visits, redirect_status, click_count, managed_by";

impl Store {
    /// Inserts a link with its `created` event in one transaction. A short code
    /// held by another live link is a [`StoreError::Conflict`].
    pub(crate) async fn insert_link(&self, new: &NewLink) -> Result<Link, StoreError> {
        let _guard = self.write_guard().await;
        let created_at = new.created_at.unwrap_or_else(Utc::now);
        let updated_at = new.updated_at.unwrap_or(created_at);
        let sql = format!(
            "INSERT INTO links (id, user_id, short_code, original_url, title, is_active, \
             redirect_status, expires_at, max_visits, managed_by, created_at, updated_at) \
             VALUES (COALESCE($1, {next_id}), $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
             RETURNING {LINK_COLUMNS}",
            next_id = self.next_id_sql("links"),
        );
        let details = json!({ "short_code": new.short_code, "original_url": new.original_url });
        let link = on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            let link = sqlx::query_as::<_, Link>(&sql)
                .bind(new.id)
                .bind(new.user_id)
                .bind(&new.short_code)
                .bind(&new.original_url)
                .bind(new.title.as_deref())
                .bind(new.is_active)
                .bind(new.redirect_status)
                .bind(new.expires_at)
                .bind(new.max_visits)
                .bind(new.managed_by.as_deref())
                .bind(created_at)
                .bind(updated_at)
                .fetch_one(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO events (url_id, user_id, event_type, timestamp, details) \
                 VALUES ($1, $2, 'created', $3, $4)",
            )
            .bind(link.id)
            .bind(link.user_id)
            .bind(created_at)
            .bind(Json(details))
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            link
        });
        Ok(link)
    }

    /// Looks up a live link by id.
    pub async fn link(&self, id: i64) -> Result<Option<Link>, StoreError> {
        let sql = format!("SELECT {LINK_COLUMNS} FROM links WHERE id = $1 AND deleted_at IS NULL");
        let link = on_pool!(self, |pool| {
            sqlx::query_as::<_, Link>(&sql)
                .bind(id)
                .fetch_optional(pool)
                .await?
        });
        Ok(link)
    }

    /// Looks up a live link by short code.
    pub async fn link_by_code(&self, code: &str) -> Result<Option<Link>, StoreError> {
        let sql = format!(
            "SELECT {LINK_COLUMNS} FROM links WHERE short_code = $1 AND deleted_at IS NULL"
        );
        let link = on_pool!(self, |pool| {
            sqlx::query_as::<_, Link>(&sql)
                .bind(code)
                .fetch_optional(pool)
                .await?
        });
        Ok(link)
    }

    /// What the redirect path needs of the live link with this short code.
    pub async fn link_target(&self, code: &str) -> Result<Option<LinkTarget>, StoreError> {
        let target = on_pool!(self, |pool| {
            sqlx::query_as::<_, LinkTarget>(
                "SELECT id, original_url, is_active, redirect_status, expires_at, max_visits \
                 FROM links WHERE short_code = $1 AND deleted_at IS NULL",
            )
            .bind(code)
            .fetch_optional(pool)
            .await?
        });
        Ok(target)
    }

    /// Lists live links by id.
    pub async fn links(&self, filter: &LinkFilter, page: Page) -> Result<Vec<Link>, StoreError> {
        let sql = format!(
            "SELECT {LINK_COLUMNS} FROM links WHERE deleted_at IS NULL \
             AND ($1 IS NULL OR user_id = $1) AND ($2 IS NULL OR is_active = $2) \
             ORDER BY id LIMIT $3 OFFSET $4"
        );
        let links = on_pool!(self, |pool| {
            sqlx::query_as::<_, Link>(&sql)
                .bind(filter.user_id)
                .bind(filter.is_active)
                .bind(page.limit)
                .bind(page.offset)
                .fetch_all(pool)
                .await?
        });
        Ok(links)
    }

    /// Applies a patch to a live link and records an `updated` event naming the
    /// changed fields, in one transaction. `None` when there is no such link.
    pub(crate) async fn update_link(
        &self,
        id: i64,
        patch: &LinkPatch,
        actor: Option<i64>,
    ) -> Result<Option<Link>, StoreError> {
        let _guard = self.write_guard().await;
        let now = Utc::now();
        let sql = format!(
            "UPDATE links SET \
             original_url = COALESCE($2, original_url), \
             title = CASE WHEN $3 THEN $4 ELSE title END, \
             is_active = COALESCE($5, is_active), \
             redirect_status = COALESCE($6, redirect_status), \
             expires_at = CASE WHEN $7 THEN $8 ELSE expires_at END, \
             max_visits = CASE WHEN $9 THEN $10 ELSE max_visits END, \
             updated_at = $11 \
             WHERE id = $1 AND deleted_at IS NULL RETURNING {LINK_COLUMNS}"
        );
        let details = json!({ "fields": patch.changed_fields() });
        let link = on_pool!(self, |pool| {
            async {
                let mut tx = pool.begin().await?;
                let link = sqlx::query_as::<_, Link>(&sql)
                    .bind(id)
                    .bind(patch.original_url.as_deref())
                    .bind(patch.title.is_some())
                    .bind(patch.title.clone().flatten())
                    .bind(patch.is_active)
                    .bind(patch.redirect_status)
                    .bind(patch.expires_at.is_some())
                    .bind(patch.expires_at.flatten())
                    .bind(patch.max_visits.is_some())
                    .bind(patch.max_visits.flatten())
                    .bind(now)
                    .fetch_optional(&mut *tx)
                    .await?;
                let Some(link) = link else {
                    return Ok(None);
                };
                sqlx::query(
                    "INSERT INTO events (url_id, user_id, event_type, timestamp, details) \
                     VALUES ($1, $2, 'updated', $3, $4)",
                )
                .bind(link.id)
                .bind(actor.or(link.user_id))
                .bind(now)
                .bind(Json(details))
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok::<_, StoreError>(Some(link))
            }
            .await?
        });
        Ok(link)
    }

    /// Deletes a live link (it stays in the table for its analytics, and its
    /// short code becomes free) and records a `deleted` event, in one
    /// transaction. `None` when there is no such link.
    pub(crate) async fn delete_link(&self, id: i64) -> Result<Option<Link>, StoreError> {
        let _guard = self.write_guard().await;
        let now = Utc::now();
        let sql = format!(
            "UPDATE links SET deleted_at = $2, is_active = FALSE, updated_at = $2 \
             WHERE id = $1 AND deleted_at IS NULL RETURNING {LINK_COLUMNS}"
        );
        let link = on_pool!(self, |pool| {
            async {
                let mut tx = pool.begin().await?;
                let link = sqlx::query_as::<_, Link>(&sql)
                    .bind(id)
                    .bind(now)
                    .fetch_optional(&mut *tx)
                    .await?;
                let Some(link) = link else {
                    return Ok(None);
                };
                let details = json!({ "short_code": link.short_code });
                sqlx::query(
                    "INSERT INTO events (url_id, user_id, event_type, timestamp, details) \
                     VALUES ($1, $2, 'deleted', $3, $4)",
                )
                .bind(link.id)
                .bind(link.user_id)
                .bind(now)
                .bind(Json(details))
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok::<_, StoreError>(Some(link))
            }
            .await?
        });
        Ok(link)
    }

    /// Counts one visit of a link with a visit limit, atomically: `true` when
    /// the visit was within the limit and is now counted.
    pub(crate) async fn take_visit(&self, id: i64) -> Result<bool, StoreError> {
        let _guard = self.write_guard().await;
        let result = on_pool!(self, |pool| {
            sqlx::query(
                "UPDATE links SET click_count = click_count + 1 \
                 WHERE id = $1 AND (max_visits IS NULL OR click_count < max_visits)",
            )
            .bind(id)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(result == 1)
    }

    /// Whether a link with a visit limit has visits left, without using one.
    pub(crate) async fn has_visits_left(&self, id: i64) -> Result<bool, StoreError> {
        let left = on_pool!(self, |pool| {
            sqlx::query_as::<_, (bool,)>(
                "SELECT max_visits IS NULL OR click_count < max_visits FROM links WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(pool)
            .await?
        });
        Ok(left.is_some_and(|(left,)| left))
    }

    /// SQL for an explicit id default, used where `COALESCE($1, …)` needs the
    /// engine's next id when no id was requested.
    fn next_id_sql(&self, table: &str) -> String {
        match self.backend() {
            // Inserting NULL into an INTEGER PRIMARY KEY picks the next rowid.
            super::Backend::Sqlite => "NULL".to_owned(),
            super::Backend::Postgres => {
                format!("nextval(pg_get_serial_sequence('{table}', 'id'))")
            }
        }
    }
}

impl LinkPatch {
    /// Names of the fields this patch sets, for the `updated` event.
    pub fn changed_fields(&self) -> Vec<&'static str> {
        let mut fields = Vec::new();
        if self.original_url.is_some() {
            fields.push("original_url");
        }
        if self.title.is_some() {
            fields.push("title");
        }
        if self.is_active.is_some() {
            fields.push("is_active");
        }
        if self.redirect_status.is_some() {
            fields.push("redirect_status");
        }
        if self.expires_at.is_some() {
            fields.push("expires_at");
        }
        if self.max_visits.is_some() {
            fields.push("max_visits");
        }
        fields
    }

    /// Whether the patch changes anything.
    pub fn is_empty(&self) -> bool {
        self.changed_fields().is_empty()
    }
}
