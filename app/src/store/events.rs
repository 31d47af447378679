//! Events: the durable history of what happened to links, clicks included.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::types::Json;
use utoipa::ToSchema;

use std::collections::BTreeMap;

use sqlx::{PgPool, SqlitePool};

use super::{on_pool, Backend, Page, Pool, Store, StoreError};

/// An event as stored and as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow, ToSchema)]
pub struct Event {
    /// Identifier.
    pub id: i64,
    /// The link the event belongs to.
    pub url_id: i64,
    /// The user who caused it, when known.
    pub user_id: Option<i64>,
    /// `created`, `updated`, `deleted`, `click`, `expired`, or a client's own name.
    pub event_type: String,
    /// When it happened.
    pub timestamp: DateTime<Utc>,
    /// A JSON object with what else is known.
    #[schema(value_type = Object)]
    pub details: Json<Value>,
}

/// An event to insert.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// Requested id (imports); the database picks one when absent.
    pub id: Option<i64>,
    /// The link.
    pub url_id: i64,
    /// The user, when known.
    pub user_id: Option<i64>,
    /// Event type.
    pub event_type: String,
    /// When it happened.
    pub timestamp: DateTime<Utc>,
    /// A JSON object.
    pub details: Value,
}

/// Filters of the event listing.
#[derive(Debug, Default, Clone)]
pub struct EventFilter {
    /// Only events of this link.
    pub url_id: Option<i64>,
    /// Only events of this user.
    pub user_id: Option<i64>,
    /// Only events of this type.
    pub event_type: Option<String>,
}

/// Clicks on one day (UTC).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow, ToSchema)]
pub struct DayCount {
    /// The day, `YYYY-MM-DD`.
    pub day: String,
    /// Clicks served that day.
    pub clicks: i64,
}

/// Clicks that came from one referrer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow, ToSchema)]
pub struct ReferrerCount {
    /// The `Referer` the clicks carried.
    pub referrer: String,
    /// Clicks with that referrer.
    pub clicks: i64,
}

const EVENT_COLUMNS: &str = "id, url_id, user_id, event_type, timestamp, details";

/// How many referrers the statistics list.
const TOP_REFERRERS: i64 = 10;

impl Store {
    /// Inserts one event.
    pub async fn insert_event(&self, new: &NewEvent) -> Result<Event, StoreError> {
        let _guard = self.write_guard().await;
        let sql = format!(
            "INSERT INTO events (url_id, user_id, event_type, timestamp, details) \
             VALUES ($1, $2, $3, $4, $5) RETURNING {EVENT_COLUMNS}"
        );
        let event = on_pool!(self, |pool| {
            sqlx::query_as::<_, Event>(&sql)
                .bind(new.url_id)
                .bind(new.user_id)
                .bind(&new.event_type)
                .bind(new.timestamp)
                .bind(Json(&new.details))
                .fetch_one(pool)
                .await?
        });
        Ok(event)
    }

    /// Looks up an event.
    pub async fn event(&self, id: i64) -> Result<Option<Event>, StoreError> {
        let sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE id = $1");
        let event = on_pool!(self, |pool| {
            sqlx::query_as::<_, Event>(&sql)
                .bind(id)
                .fetch_optional(pool)
                .await?
        });
        Ok(event)
    }

    /// Lists events by id.
    pub async fn events(&self, filter: &EventFilter, page: Page) -> Result<Vec<Event>, StoreError> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE ($1 IS NULL OR url_id = $1) \
             AND ($2 IS NULL OR user_id = $2) AND ($3 IS NULL OR event_type = $3) \
             ORDER BY id LIMIT $4 OFFSET $5"
        );
        let events = on_pool!(self, |pool| {
            sqlx::query_as::<_, Event>(&sql)
                .bind(filter.url_id)
                .bind(filter.user_id)
                .bind(filter.event_type.as_deref())
                .bind(page.limit)
                .bind(page.offset)
                .fetch_all(pool)
                .await?
        });
        Ok(events)
    }

    /// Click statistics of a link: clicks per day (oldest first) and the top
    /// referrers.
    pub async fn click_stats(
        &self,
        url_id: i64,
    ) -> Result<(Vec<DayCount>, Vec<ReferrerCount>), StoreError> {
        let (day, referrer) = match self.backend() {
            Backend::Sqlite => (
                "substr(timestamp, 1, 10)",
                "json_extract(details, '$.referrer')",
            ),
            Backend::Postgres => (
                "to_char(timestamp AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
                "details->>'referrer'",
            ),
        };
        let days_sql = format!(
            "SELECT {day} AS day, COUNT(*) AS clicks FROM events \
             WHERE url_id = $1 AND event_type = 'click' GROUP BY 1 ORDER BY 1"
        );
        let referrers_sql = format!(
            "SELECT {referrer} AS referrer, COUNT(*) AS clicks FROM events \
             WHERE url_id = $1 AND event_type = 'click' AND {referrer} IS NOT NULL \
             GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT $2"
        );
        let stats = on_pool!(self, |pool| {
            let days = sqlx::query_as::<_, DayCount>(&days_sql)
                .bind(url_id)
                .fetch_all(pool)
                .await?;
            let referrers = sqlx::query_as::<_, ReferrerCount>(&referrers_sql)
                .bind(url_id)
                .bind(TOP_REFERRERS)
                .fetch_all(pool)
                .await?;
            (days, referrers)
        });
        Ok(stats)
    }
}

/// How the click writer wants a batch stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// The writer keeps up: rows go to PostgreSQL in short statements, so that
    /// the processes sharing its cores run in between.
    Steady,
    /// Clicks are piling up (a full batch is waiting, or the process is
    /// draining): the whole batch goes in one statement, since every extra
    /// round trip waits its turn behind the redirects of a busy process.
    CatchUp,
}

/// A served redirect, as the click writer stores it.
#[derive(Debug, Clone)]
pub struct ClickRow {
    /// The link that was clicked.
    pub url_id: i64,
    /// When the redirect was served.
    pub timestamp: DateTime<Utc>,
    /// Referrer, anonymised client and user agent, as a JSON object's text.
    pub details: String,
    /// Whether the link's click count already includes this click (links with
    /// a visit limit are counted at redirect time).
    pub counted: bool,
}

impl Store {
    /// Stores a batch of clicks as `click` events and adds them to their links'
    /// click counts, in one transaction with one insert and one folded update.
    pub(crate) async fn insert_clicks(
        &self,
        clicks: &[ClickRow],
        pace: Pace,
    ) -> Result<(), StoreError> {
        if clicks.is_empty() {
            return Ok(());
        }
        let mut per_link: BTreeMap<i64, i64> = Default::default();
        for click in clicks.iter().filter(|c| !c.counted) {
            *per_link.entry(click.url_id).or_default() += 1;
        }
        let _guard = self.write_guard().await;
        let _in_flight = self.enter();
        match &self.pool {
            Pool::Postgres(pool) => {
                let rows_per_copy = match pace {
                    Pace::Steady => STEADY_COPY_ROWS,
                    Pace::CatchUp => clicks.len(),
                };
                insert_clicks_postgres(self, pool, clicks, rows_per_copy, &per_link).await
            }
            Pool::Sqlite(pool) => insert_clicks_sqlite(pool, clicks, &per_link).await,
        }
    }
}

/// Clicks per `COPY` within a batch's transaction while the writer keeps up.
/// PostgreSQL works through one statement without pause; shorter statements
/// let the processes sharing its cores run in between.
const STEADY_COPY_ROWS: usize = 250;

/// Rows per SQLite insert: four parameters each, well under SQLite's limit
/// of 32,766 per statement.
const SQLITE_INSERT_ROWS: usize = 250;

/// The statement every chunk of clicks is stored with.
const COPY_CLICKS: &str =
    "COPY events (url_id, event_type, timestamp, details) FROM STDIN (FORMAT binary)";

/// PostgreSQL gets the batch through `COPY` in its binary format: no statement
/// to parse or plan, no text to parse for numbers and times, and rows written
/// to the table a page at a time rather than one by one.
async fn insert_clicks_postgres(
    store: &Store,
    pool: &PgPool,
    clicks: &[ClickRow],
    rows_per_copy: usize,
    per_link: &BTreeMap<i64, i64>,
) -> Result<(), StoreError> {
    let written = async {
        let mut tx = pool.begin().await?;
        let mut data = Vec::new();
        for chunk in clicks.chunks(rows_per_copy.max(1)) {
            copy_data(chunk, &mut data);
            let mut copy = tx.copy_in_raw(COPY_CLICKS).await?;
            copy.send(data.as_slice()).await?;
            copy.finish().await?;
        }
        if !per_link.is_empty() {
            let (ids, counts): (Vec<i64>, Vec<i64>) =
                per_link.iter().map(|(id, n)| (*id, *n)).unzip();
            sqlx::query(
                "UPDATE links SET click_count = click_count + c.clicks \
                 FROM UNNEST($1::int8[], $2::int8[]) AS c(id, clicks) WHERE links.id = c.id",
            )
            .bind(ids)
            .bind(counts)
            .execute(&mut *tx)
            .await?;
        }
        Ok(tx)
    };
    // Up to the commit, a batch given up rolls back and is retried whole.
    let tx = store.within_deadline(written).await?;
    // The commit itself is waited for however long it takes: once sent it may
    // apply, and giving up on it here would store the retried batch twice.
    tx.commit().await?;
    Ok(())
}

/// Microseconds from the Unix epoch to PostgreSQL's, 2000-01-01 UTC.
const POSTGRES_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// Writes `clicks` into `out` (cleared first) as `COPY` binary data for
/// [`COPY_CLICKS`]: the signature, then per row the field count and each field
/// as its length and bytes in network order, then the end marker.
fn copy_data(clicks: &[ClickRow], out: &mut Vec<u8>) {
    const EVENT_TYPE: &[u8] = b"click";
    const JSONB_VERSION: u8 = 1;
    fn field(out: &mut Vec<u8>, len: usize) {
        // Details are at most a few kilobytes: two headers of 512 bytes each.
        out.extend_from_slice(&i32::try_from(len).unwrap_or(i32::MAX).to_be_bytes());
    }
    out.clear();
    out.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
    out.extend_from_slice(&0i32.to_be_bytes()); // flags
    out.extend_from_slice(&0i32.to_be_bytes()); // header extension length
    for click in clicks {
        out.extend_from_slice(&4i16.to_be_bytes());
        field(out, 8);
        out.extend_from_slice(&click.url_id.to_be_bytes());
        field(out, EVENT_TYPE.len());
        out.extend_from_slice(EVENT_TYPE);
        field(out, 8);
        let micros = click.timestamp.timestamp_micros() - POSTGRES_EPOCH_MICROS;
        out.extend_from_slice(&micros.to_be_bytes());
        field(out, 1 + click.details.len());
        out.push(JSONB_VERSION);
        out.extend_from_slice(click.details.as_bytes());
    }
    out.extend_from_slice(&(-1i16).to_be_bytes());
}

/// SQLite has no arrays or `COPY`: multi-row inserts and one folded update.
async fn insert_clicks_sqlite(
    pool: &SqlitePool,
    clicks: &[ClickRow],
    per_link: &BTreeMap<i64, i64>,
) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    for chunk in clicks.chunks(SQLITE_INSERT_ROWS) {
        let mut insert =
            sqlx::QueryBuilder::new("INSERT INTO events (url_id, event_type, timestamp, details) ");
        insert.push_values(chunk, |mut row, click| {
            row.push_bind(click.url_id)
                .push_bind("click")
                .push_bind(click.timestamp)
                .push_bind(click.details.as_str());
        });
        insert.build().execute(&mut *tx).await?;
    }
    if !per_link.is_empty() {
        let mut update = sqlx::QueryBuilder::new(
            "UPDATE links SET click_count = click_count + v.column2 FROM (",
        );
        update.push_values(per_link, |mut row, (id, n)| {
            row.push_bind(*id).push_bind(*n);
        });
        update.push(") AS v WHERE links.id = v.column1");
        update.build().execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(())
}
