//! Managed links: the queries behind the ShortLink operator. Each write runs in
//! one transaction with its event row; the link service invalidates caches.

use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::types::Json;

use super::{on_pool, Backend, Link, Store, StoreError};

/// The columns a [`Link`] is read from.
const LINK_COLUMNS: &str = "id, user_id, short_code, original_url, title, is_active, created_at, \
     updated_at, expires_at, max_visits, redirect_status, click_count, managed_by";

/// Inserts one event row of a managed link inside the open transaction `$tx`.
macro_rules! insert_event {
    ($tx:expr, $url_id:expr, $event_type:expr, $now:expr, $details:expr) => {
        sqlx::query(
            "INSERT INTO events (url_id, user_id, event_type, timestamp, details) \
             VALUES ($1, NULL, $2, $3, $4)",
        )
        .bind($url_id)
        .bind($event_type)
        .bind($now)
        .bind(Json($details))
        .execute(&mut *$tx)
        .await
    };
}

/// A managed link as its ShortLink declares it, already validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedLink {
    /// The owning ShortLink, `namespace/name`; stored in `managed_by`.
    pub owner: String,
    /// Short code.
    pub short_code: String,
    /// Target URL.
    pub original_url: String,
    /// 301, 302, 307 or 308.
    pub redirect_status: i32,
    /// Absolute expiry, if any.
    pub expires_at: Option<DateTime<Utc>>,
    /// Visit limit, if any.
    pub max_visits: Option<i64>,
    /// Whether the resource wants the link to serve (before expiry is applied).
    pub is_active: bool,
}

impl ManagedLink {
    /// Whether the expiry has passed at `now`.
    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }

    /// Whether the stored link should serve at `now`: active and not expired.
    pub fn serves_at(&self, now: DateTime<Utc>) -> bool {
        self.is_active && !self.is_expired(now)
    }
}

/// What applying a managed link did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManagedOutcome {
    /// The link did not exist and was created (`created` event).
    Created(Link),
    /// Fields changed (`updated` event naming them).
    Updated(Link),
    /// The link was serving and its expiry has passed: it was deactivated
    /// (`expired` event, plus `updated` when other fields changed too).
    Expired(Link),
    /// The stored link already matched; nothing was written.
    Unchanged(Link),
    /// Another link holds the short code; nothing was written.
    CodeTaken {
        /// The ShortLink (`namespace/name`) that holds it, `None` for a link
        /// created through the HTTP API.
        holder: Option<String>,
    },
}

/// What happens to a managed link when its ShortLink is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReclaimPolicy {
    /// The link stays stored and visible with its analytics, inactive and
    /// still owned, so that re-creating the resource adopts it again.
    Deactivate,
    /// The link is deleted like the HTTP API deletes links: its short code
    /// becomes free (its rows stay in the database, out of the API's view).
    Delete,
}

impl Store {
    /// Creates or updates the live link with `link.short_code` owned by
    /// `link.owner`, at time `now`, in one transaction with its event rows.
    pub(crate) async fn apply_managed(
        &self,
        link: &ManagedLink,
        now: DateTime<Utc>,
    ) -> Result<ManagedOutcome, StoreError> {
        let _guard = self.write_guard().await;
        let lock = match self.backend() {
            Backend::Postgres => " FOR UPDATE",
            Backend::Sqlite => "",
        };
        let select = format!(
            "SELECT {LINK_COLUMNS} FROM links WHERE short_code = $1 AND deleted_at IS NULL{lock}"
        );
        let result = on_pool!(self, |pool| {
            async {
                let mut tx = pool.begin().await?;
                let current = sqlx::query_as::<_, Link>(&select)
                    .bind(&link.short_code)
                    .fetch_optional(&mut *tx)
                    .await?;
                let outcome = match current {
                    Some(current) if current.managed_by.as_deref() != Some(link.owner.as_str()) => {
                        return Ok(ManagedOutcome::CodeTaken {
                            holder: current.managed_by,
                        });
                    }
                    None => {
                        let created = sqlx::query_as::<_, Link>(&insert_sql(self))
                            .bind(&link.short_code)
                            .bind(&link.original_url)
                            .bind(link.serves_at(now))
                            .bind(link.redirect_status)
                            .bind(link.expires_at)
                            .bind(link.max_visits)
                            .bind(&link.owner)
                            .bind(now)
                            .fetch_one(&mut *tx)
                            .await?;
                        let details = json!({
                            "short_code": created.short_code,
                            "original_url": created.original_url,
                            "managed_by": link.owner,
                        });
                        insert_event!(tx, created.id, "created", now, details)?;
                        ManagedOutcome::Created(created)
                    }
                    Some(current) => {
                        let fields = changed_fields(&current, link, now);
                        if fields.is_empty() {
                            return Ok(ManagedOutcome::Unchanged(current));
                        }
                        let expiring = current.is_active && link.is_active && link.is_expired(now);
                        let updated = sqlx::query_as::<_, Link>(&update_sql())
                            .bind(current.id)
                            .bind(&link.original_url)
                            .bind(link.serves_at(now))
                            .bind(link.redirect_status)
                            .bind(link.expires_at)
                            .bind(link.max_visits)
                            .bind(now)
                            .fetch_one(&mut *tx)
                            .await?;
                        let other_fields: Vec<&str> = fields
                            .iter()
                            .copied()
                            .filter(|f| *f != "is_active")
                            .collect();
                        if !expiring || !other_fields.is_empty() {
                            let listed = if expiring { other_fields } else { fields };
                            insert_event!(
                                tx,
                                updated.id,
                                "updated",
                                now,
                                json!({ "fields": listed })
                            )?;
                        }
                        if expiring {
                            let details = json!({
                                "short_code": updated.short_code,
                                "expires_at": updated.expires_at,
                                "managed_by": link.owner,
                            });
                            insert_event!(tx, updated.id, "expired", now, details)?;
                            ManagedOutcome::Expired(updated)
                        } else {
                            ManagedOutcome::Updated(updated)
                        }
                    }
                };
                tx.commit().await?;
                Ok::<_, StoreError>(outcome)
            }
            .await
        });
        match result {
            // Another writer inserted the code between our read and our insert.
            Err(StoreError::Conflict(_)) => {
                let holder = self.link_by_code(&link.short_code).await?;
                Ok(ManagedOutcome::CodeTaken {
                    holder: holder.and_then(|l| l.managed_by),
                })
            }
            other => other,
        }
    }

    /// Releases every live link `owner` manages, according to `policy`, with
    /// one event row each, in one transaction. Returns the links it changed.
    pub(crate) async fn release_managed(
        &self,
        owner: &str,
        policy: ReclaimPolicy,
        now: DateTime<Utc>,
    ) -> Result<Vec<Link>, StoreError> {
        let _guard = self.write_guard().await;
        let (sql, event_type) = match policy {
            ReclaimPolicy::Deactivate => (
                format!(
                    "UPDATE links SET is_active = FALSE, updated_at = $2 WHERE managed_by = $1 \
                     AND deleted_at IS NULL AND is_active RETURNING {LINK_COLUMNS}"
                ),
                "updated",
            ),
            ReclaimPolicy::Delete => (
                format!(
                    "UPDATE links SET deleted_at = $2, is_active = FALSE, updated_at = $2 \
                     WHERE managed_by = $1 AND deleted_at IS NULL RETURNING {LINK_COLUMNS}"
                ),
                "deleted",
            ),
        };
        let links = on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            let links = sqlx::query_as::<_, Link>(&sql)
                .bind(owner)
                .bind(now)
                .fetch_all(&mut *tx)
                .await?;
            for link in &links {
                let details = match policy {
                    ReclaimPolicy::Deactivate => {
                        json!({ "fields": ["is_active"], "released_by": owner })
                    }
                    ReclaimPolicy::Delete => {
                        json!({ "short_code": link.short_code, "released_by": owner })
                    }
                };
                insert_event!(tx, link.id, event_type, now, details)?;
            }
            tx.commit().await?;
            links
        });
        Ok(links)
    }

    /// The live links `owner` manages, by id.
    pub async fn managed_links(&self, owner: &str) -> Result<Vec<Link>, StoreError> {
        let sql = format!(
            "SELECT {LINK_COLUMNS} FROM links WHERE managed_by = $1 AND deleted_at IS NULL \
             ORDER BY id"
        );
        let links = on_pool!(self, |pool| {
            sqlx::query_as::<_, Link>(&sql)
                .bind(owner)
                .fetch_all(pool)
                .await?
        });
        Ok(links)
    }
}

fn insert_sql(store: &Store) -> String {
    let next_id = match store.backend() {
        Backend::Sqlite => "NULL".to_owned(),
        Backend::Postgres => "nextval(pg_get_serial_sequence('links', 'id'))".to_owned(),
    };
    format!(
        "INSERT INTO links (id, user_id, short_code, original_url, title, is_active, \
         redirect_status, expires_at, max_visits, managed_by, created_at, updated_at) \
         VALUES ({next_id}, NULL, $1, $2, NULL, $3, $4, $5, $6, $7, $8, $8) \
         RETURNING {LINK_COLUMNS}"
    )
}

fn update_sql() -> String {
    format!(
        "UPDATE links SET original_url = $2, is_active = $3, redirect_status = $4, \
         expires_at = $5, max_visits = $6, updated_at = $7 \
         WHERE id = $1 RETURNING {LINK_COLUMNS}"
    )
}

/// Names of the stored fields that differ from what `link` declares at `now`.
fn changed_fields(current: &Link, link: &ManagedLink, now: DateTime<Utc>) -> Vec<&'static str> {
    let mut fields = Vec::new();
    if current.original_url != link.original_url {
        fields.push("original_url");
    }
    if current.is_active != link.serves_at(now) {
        fields.push("is_active");
    }
    if current.redirect_status != link.redirect_status {
        fields.push("redirect_status");
    }
    if current.expires_at != link.expires_at {
        fields.push("expires_at");
    }
    if current.max_visits != link.max_visits {
        fields.push("max_visits");
    }
    fields
}
