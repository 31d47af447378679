//! The queries behind the web dashboard: its sessions, the searchable link
//! listing, users with their link counts, and click analytics bucketed by day
//! or hour, for one link or for all of them.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::types::Json;

use super::{on_pool, Backend, Link, Page, ReferrerCount, Store, StoreError, User};

/// A signed-in dashboard session, as its cookie token finds it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct DashboardSession {
    /// Identifier.
    pub id: i64,
    /// The API key the session was opened with.
    pub key_id: i64,
    /// Name of that key, to show who is signed in.
    pub key_name: String,
    /// The token every form of the session must carry.
    pub csrf_token: String,
    /// When the session ends.
    pub expires_at: DateTime<Utc>,
}

/// What the link listing searches for.
#[derive(Debug, Default, Clone)]
pub struct LinkSearch {
    /// Text to find, case-insensitively, in the short code, target URL or title.
    pub text: Option<String>,
    /// Only links of this owner.
    pub user_id: Option<i64>,
}

/// A link of the listing, with its owner's name.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ListedLink {
    /// The link.
    #[sqlx(flatten)]
    pub link: Link,
    /// Username of the owner, when the link has a live one.
    pub owner: Option<String>,
}

/// A user with the number of live links it owns.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct UserSummary {
    /// The user.
    #[sqlx(flatten)]
    pub user: User,
    /// Live links it owns.
    pub links: i64,
}

/// How finely clicks are counted over time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Granularity {
    /// Per UTC day; buckets read `YYYY-MM-DD`.
    Day,
    /// Per UTC hour; buckets read `YYYY-MM-DDTHH`.
    Hour,
}

/// Clicks in one time bucket.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct BucketCount {
    /// The bucket, `YYYY-MM-DD` or `YYYY-MM-DDTHH` (UTC).
    pub bucket: String,
    /// Clicks in it.
    pub clicks: i64,
}

/// Clicks that sent one user agent (absent when the client sent none).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AgentCount {
    /// The `User-Agent` header as stored.
    pub user_agent: Option<String>,
    /// Clicks with it.
    pub clicks: i64,
}

/// One stored click, newest first in listings.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct RecentClick {
    /// The link clicked.
    pub url_id: i64,
    /// Its short code.
    pub short_code: String,
    /// When the redirect was served.
    pub timestamp: DateTime<Utc>,
    /// Referrer, user agent and anonymised client.
    pub details: Json<Value>,
}

/// The columns of a [`Link`] read through the alias `l`.
const LISTED_LINK_COLUMNS: &str = "l.id, l.user_id, l.short_code, l.original_url, l.title, \
     l.is_active, l.created_at, l.updated_at, l.expires_at, l.max_visits, l.redirect_status, \
     l.click_count, l.managed_by";

/// The search condition of the link listing; `$1` is the LIKE pattern (or
/// NULL), `$2` the owner (or NULL).
const LINK_SEARCH_WHERE: &str = "l.deleted_at IS NULL AND ($1 IS NULL \
     OR LOWER(l.short_code) LIKE $1 ESCAPE '\\' \
     OR LOWER(l.original_url) LIKE $1 ESCAPE '\\' \
     OR LOWER(COALESCE(l.title, '')) LIKE $1 ESCAPE '\\') \
     AND ($2 IS NULL OR l.user_id = $2)";

impl Store {
    /// Opens a session and drops the sessions that have ended, so that the
    /// table stays as small as the number of people signed in.
    pub async fn insert_dashboard_session(
        &self,
        token_hash: &str,
        key_id: i64,
        csrf_token: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let _guard = self.write_guard().await;
        let now = Utc::now();
        on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            sqlx::query("DELETE FROM dashboard_sessions WHERE expires_at <= $1")
                .bind(now)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO dashboard_sessions \
                 (token_hash, key_id, csrf_token, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(token_hash)
            .bind(key_id)
            .bind(csrf_token)
            .bind(now)
            .bind(expires_at)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// The live session with this token hash: not expired at `now`, and opened
    /// with a key that is still valid.
    pub async fn dashboard_session(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<DashboardSession>, StoreError> {
        let session = on_pool!(self, |pool| {
            sqlx::query_as::<_, DashboardSession>(
                "SELECT s.id, s.key_id, k.name AS key_name, s.csrf_token, s.expires_at \
                 FROM dashboard_sessions s JOIN api_keys k ON k.id = s.key_id \
                 WHERE s.token_hash = $1 AND s.expires_at > $2 AND k.revoked_at IS NULL",
            )
            .bind(token_hash)
            .bind(now)
            .fetch_optional(pool)
            .await?
        });
        Ok(session)
    }

    /// Ends a session; `false` when there was none with this token hash.
    pub async fn delete_dashboard_session(&self, token_hash: &str) -> Result<bool, StoreError> {
        let _guard = self.write_guard().await;
        let deleted = on_pool!(self, |pool| {
            sqlx::query("DELETE FROM dashboard_sessions WHERE token_hash = $1")
                .bind(token_hash)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(deleted > 0)
    }

    /// One page of live links matching `search`, newest first, with their
    /// owners' names, and how many links match in all.
    pub async fn search_links(
        &self,
        search: &LinkSearch,
        page: Page,
    ) -> Result<(Vec<ListedLink>, i64), StoreError> {
        let pattern = search
            .text
            .as_deref()
            .map(str::trim)
            .filter(|text| !text.is_empty())
            .map(like_pattern);
        let rows_sql = format!(
            "SELECT {LISTED_LINK_COLUMNS}, u.username AS owner FROM links l \
             LEFT JOIN users u ON u.id = l.user_id AND u.deleted_at IS NULL \
             WHERE {LINK_SEARCH_WHERE} ORDER BY l.id DESC LIMIT $3 OFFSET $4"
        );
        let count_sql = format!("SELECT COUNT(*) FROM links l WHERE {LINK_SEARCH_WHERE}");
        let found = on_pool!(self, |pool| {
            let rows = sqlx::query_as::<_, ListedLink>(&rows_sql)
                .bind(pattern.as_deref())
                .bind(search.user_id)
                .bind(page.limit)
                .bind(page.offset)
                .fetch_all(pool)
                .await?;
            let (total,): (i64,) = sqlx::query_as(&count_sql)
                .bind(pattern.as_deref())
                .bind(search.user_id)
                .fetch_one(pool)
                .await?;
            (rows, total)
        });
        Ok(found)
    }

    /// One page of live users by id, each with its number of live links, and
    /// how many live users there are.
    pub async fn user_summaries(&self, page: Page) -> Result<(Vec<UserSummary>, i64), StoreError> {
        let found = on_pool!(self, |pool| {
            let rows = sqlx::query_as::<_, UserSummary>(
                "SELECT u.id, u.username, u.email, u.created_at, \
                 (SELECT COUNT(*) FROM links l WHERE l.user_id = u.id AND l.deleted_at IS NULL) \
                 AS links FROM users u WHERE u.deleted_at IS NULL ORDER BY u.id LIMIT $1 OFFSET $2",
            )
            .bind(page.limit)
            .bind(page.offset)
            .fetch_all(pool)
            .await?;
            let (total,): (i64,) =
                sqlx::query_as("SELECT COUNT(*) FROM users WHERE deleted_at IS NULL")
                    .fetch_one(pool)
                    .await?;
            (rows, total)
        });
        Ok(found)
    }

    /// Clicks since `since` per day or hour (UTC), oldest first; only buckets
    /// with clicks appear. `url_id` narrows them to one link.
    pub async fn clicks_over_time(
        &self,
        url_id: Option<i64>,
        since: DateTime<Utc>,
        granularity: Granularity,
    ) -> Result<Vec<BucketCount>, StoreError> {
        let bucket = match (self.backend(), granularity) {
            (Backend::Sqlite, Granularity::Day) => "substr(timestamp, 1, 10)",
            (Backend::Sqlite, Granularity::Hour) => "substr(timestamp, 1, 13)",
            (Backend::Postgres, Granularity::Day) => {
                "to_char(timestamp AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
            }
            (Backend::Postgres, Granularity::Hour) => {
                "to_char(timestamp AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24')"
            }
        };
        // Limitation: the all-links view (no `url_id`) scans the events table,
        // which has no index on time; on hundreds of millions of events it
        // wants an index on (timestamp) for clicks, or a rollup table.
        let sql = format!(
            "SELECT {bucket} AS bucket, COUNT(*) AS clicks FROM events \
             WHERE event_type = 'click' AND ($1 IS NULL OR url_id = $1) AND timestamp >= $2 \
             GROUP BY 1 ORDER BY 1"
        );
        let buckets = on_pool!(self, |pool| {
            sqlx::query_as::<_, BucketCount>(&sql)
                .bind(url_id)
                .bind(since)
                .fetch_all(pool)
                .await?
        });
        Ok(buckets)
    }

    /// The `limit` referrers with most clicks since `since`, most first.
    pub async fn top_referrers(
        &self,
        url_id: Option<i64>,
        since: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<ReferrerCount>, StoreError> {
        let referrer = self.detail_sql("referrer");
        let sql = format!(
            "SELECT {referrer} AS referrer, COUNT(*) AS clicks FROM events \
             WHERE event_type = 'click' AND ($1 IS NULL OR url_id = $1) AND timestamp >= $2 \
             AND {referrer} IS NOT NULL GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT $3"
        );
        let referrers = on_pool!(self, |pool| {
            sqlx::query_as::<_, ReferrerCount>(&sql)
                .bind(url_id)
                .bind(since)
                .bind(limit)
                .fetch_all(pool)
                .await?
        });
        Ok(referrers)
    }

    /// The `limit` user agents with most clicks since `since`, most first,
    /// for the browser and device breakdown.
    pub async fn user_agent_counts(
        &self,
        url_id: Option<i64>,
        since: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<AgentCount>, StoreError> {
        let agent = self.detail_sql("user_agent");
        let sql = format!(
            "SELECT {agent} AS user_agent, COUNT(*) AS clicks FROM events \
             WHERE event_type = 'click' AND ($1 IS NULL OR url_id = $1) AND timestamp >= $2 \
             GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT $3"
        );
        let agents = on_pool!(self, |pool| {
            sqlx::query_as::<_, AgentCount>(&sql)
                .bind(url_id)
                .bind(since)
                .bind(limit)
                .fetch_all(pool)
                .await?
        });
        Ok(agents)
    }

    /// The `limit` newest stored clicks, of one link or of all.
    pub async fn recent_clicks(
        &self,
        url_id: Option<i64>,
        limit: i64,
    ) -> Result<Vec<RecentClick>, StoreError> {
        let clicks = on_pool!(self, |pool| {
            sqlx::query_as::<_, RecentClick>(
                "SELECT e.url_id, l.short_code, e.timestamp, e.details FROM events e \
                 JOIN links l ON l.id = e.url_id \
                 WHERE e.event_type = 'click' AND ($1 IS NULL OR e.url_id = $1) \
                 ORDER BY e.id DESC LIMIT $2",
            )
            .bind(url_id)
            .bind(limit)
            .fetch_all(pool)
            .await?
        });
        Ok(clicks)
    }

    /// SQL reading one text field of an event's details.
    fn detail_sql(&self, field: &'static str) -> String {
        match self.backend() {
            Backend::Sqlite => format!("json_extract(details, '$.{field}')"),
            Backend::Postgres => format!("(details->>'{field}')"),
        }
    }
}

/// A LIKE pattern finding `text` anywhere, lower-cased, with `%`, `_` and the
/// escape character itself taken literally.
fn like_pattern(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns_take_wildcards_literally() {
        assert_eq!(like_pattern("Launch"), "%launch%");
        assert_eq!(like_pattern("50%_off\\"), "%50\\%\\_off\\\\%");
    }
}
