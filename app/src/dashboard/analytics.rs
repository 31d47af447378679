//! Click analytics, for one link or for all: clicks over time per day or per
//! hour, top referrers, browsers and devices, and the latest clicks. Also the
//! overview page, which shows them for every link.

use std::collections::HashMap;

use axum::extract::State;
use axum::response::Html;
use axum::Extension;
use chrono::{DateTime, Duration, DurationRound, Utc};
use maud::{html, Markup};

use super::agents;
use super::charts::{self, Bar};
use super::error::PageError;
use super::forms::QueryData;
use super::session::Session;
use super::view::{self, Section, Shell};
use crate::http::AppState;
use crate::store::{Granularity, LinkSearch, Page, RecentClick, Store, StoreError};

/// Days the per-day chart covers: a month shows weekly rhythm and trends.
const DAYS_SHOWN: i64 = 30;

/// Hours the per-hour chart covers: two days show the daily rhythm.
const HOURS_SHOWN: i64 = 48;

/// Referrers listed.
const TOP_REFERRERS: i64 = 10;

/// Distinct user agents classified into browsers and devices.
///
/// Limitation: only the most frequent user agents of the period are
/// classified; a long tail of rare ones is left out of the breakdown.
const USER_AGENTS_CLASSIFIED: i64 = 500;

/// Latest clicks listed.
const RECENT_CLICKS: i64 = 20;

/// Everything the analytics section shows.
pub struct Analytics {
    granularity: Granularity,
    bars: Vec<Bar>,
    referrers: Vec<(String, i64)>,
    browsers: Vec<(String, i64)>,
    devices: Vec<(String, i64)>,
    recent: Vec<RecentClick>,
}

impl Analytics {
    /// Clicks in the charted period.
    pub fn total(&self) -> i64 {
        self.bars.iter().map(|bar| bar.count).sum()
    }
}

/// The granularity a query asks for: `?by=hour`, else per day.
pub fn granularity(query: &QueryData) -> Granularity {
    if query.0.get("by") == "hour" {
        Granularity::Hour
    } else {
        Granularity::Day
    }
}

/// Loads the analytics of one link (`url_id`) or of all links at `now`.
pub async fn load(
    store: &Store,
    url_id: Option<i64>,
    granularity: Granularity,
    now: DateTime<Utc>,
) -> Result<Analytics, StoreError> {
    let (buckets, since) = periods(granularity, now);
    let counted = store.clicks_over_time(url_id, since, granularity).await?;
    let counted: HashMap<String, i64> = counted.into_iter().map(|b| (b.bucket, b.clicks)).collect();
    let bars = buckets
        .into_iter()
        .map(|label| Bar {
            count: counted.get(&label).copied().unwrap_or(0),
            label,
        })
        .collect();
    let referrers = store
        .top_referrers(url_id, since, TOP_REFERRERS)
        .await?
        .into_iter()
        .map(|r| (r.referrer, r.clicks))
        .collect();
    let agents = store
        .user_agent_counts(url_id, since, USER_AGENTS_CLASSIFIED)
        .await?;
    let mut browsers = Tally::default();
    let mut devices = Tally::default();
    for agent in &agents {
        let text = agent.user_agent.as_deref();
        browsers.add(agents::browser(text), agent.clicks);
        devices.add(agents::device(text), agent.clicks);
    }
    let recent = store.recent_clicks(url_id, RECENT_CLICKS).await?;
    Ok(Analytics {
        granularity,
        bars,
        referrers,
        browsers: browsers.ranked(),
        devices: devices.ranked(),
        recent,
    })
}

/// The labels of every bucket of the charted period, oldest first, and the
/// start of the period.
fn periods(granularity: Granularity, now: DateTime<Utc>) -> (Vec<String>, DateTime<Utc>) {
    let (unit, count, format) = match granularity {
        Granularity::Day => (Duration::days(1), DAYS_SHOWN, "%Y-%m-%d"),
        Granularity::Hour => (Duration::hours(1), HOURS_SHOWN, "%Y-%m-%dT%H"),
    };
    let current = now.duration_trunc(unit).unwrap_or(now);
    let since = current - unit * (count - 1) as i32;
    let labels = (0..count)
        .map(|i| (since + unit * i as i32).format(format).to_string())
        .collect();
    (labels, since)
}

/// Counts per name, for the browser and device breakdowns.
#[derive(Default)]
struct Tally(HashMap<&'static str, i64>);

impl Tally {
    fn add(&mut self, name: &'static str, clicks: i64) {
        *self.0.entry(name).or_default() += clicks;
    }

    fn ranked(self) -> Vec<(String, i64)> {
        let mut rows: Vec<(String, i64)> = self
            .0
            .into_iter()
            .map(|(name, n)| (name.to_owned(), n))
            .collect();
        rows.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        rows
    }
}

/// The analytics section. `href` is the page the granularity switch links
/// to; `show_codes` adds the short code to the latest clicks.
pub fn section(analytics: &Analytics, href: &str, show_codes: bool) -> Markup {
    let (title, period) = match analytics.granularity {
        Granularity::Day => ("Clicks per day", format!("the last {DAYS_SHOWN} days")),
        Granularity::Hour => ("Clicks per hour", format!("the last {HOURS_SHOWN} hours")),
    };
    let is_day = analytics.granularity == Granularity::Day;
    html! {
        section aria-labelledby="analytics-heading" {
            h2 id="analytics-heading" { (title) " (UTC), " (period) }
            nav class="chart-switch" aria-label="Chart period" {
                @if is_day {
                    a href=(href) aria-current="page" { "Per day" }
                    a href={ (href) "?by=hour" } { "Per hour" }
                } @else {
                    a href=(href) { "Per day" }
                    a href={ (href) "?by=hour" } aria-current="page" { "Per hour" }
                }
            }
            p { strong { (analytics.total()) } " clicks in " (period) "." }
            (charts::time_chart("clicks-chart", title, &analytics.bars))
            div class="grid" {
                (charts::ranking("Top referrers", "Referrer", &analytics.referrers))
                (charts::ranking("Browsers", "Browser", &analytics.browsers))
                (charts::ranking("Devices", "Device", &analytics.devices))
            }
            h2 { "Latest clicks" }
            (recent_table(&analytics.recent, show_codes))
        }
    }
}

fn recent_table(clicks: &[RecentClick], show_codes: bool) -> Markup {
    let detail = |click: &RecentClick, field: &str| -> Option<String> {
        click
            .details
            .0
            .get(field)
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    };
    html! {
        div class="table-wrap" {
            table id="latest-clicks" {
                caption class="sr-only" { "Latest clicks, newest first" }
                thead {
                    tr {
                        th scope="col" { "When" }
                        @if show_codes { th scope="col" { "Short code" } }
                        th scope="col" { "Referrer" }
                        th scope="col" { "Browser" }
                        th scope="col" class="hide-narrow" { "Device" }
                        th scope="col" class="hide-narrow" { "Client network" }
                    }
                }
                tbody {
                    @if clicks.is_empty() {
                        tr { td colspan="6" class="empty" { "No clicks yet." } }
                    }
                    @for click in clicks {
                        @let agent = detail(click, "user_agent");
                        tr {
                            td { (view::time(click.timestamp)) }
                            @if show_codes {
                                td { a href={ "/dashboard/links/" (click.url_id) } { (click.short_code) } }
                            }
                            td class="target" { (detail(click, "referrer").unwrap_or_else(|| "—".to_owned())) }
                            td { (agents::browser(agent.as_deref())) }
                            td class="hide-narrow" { (agents::device(agent.as_deref())) }
                            td class="hide-narrow" { (detail(click, "client").unwrap_or_else(|| "—".to_owned())) }
                        }
                    }
                }
            }
        }
    }
}

/// `GET /dashboard`: totals and the analytics of every link.
pub async fn overview(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    query: QueryData,
) -> Result<Html<String>, PageError> {
    let store = state.store();
    let count_only = Page {
        offset: 0,
        limit: 0,
    };
    let (_, links) = store
        .search_links(&LinkSearch::default(), count_only)
        .await?;
    let (_, users) = store.user_summaries(count_only).await?;
    let analytics = load(store, None, granularity(&query), Utc::now()).await?;
    let content = html! {
        ul class="stats" {
            li { strong { (links) } " links" }
            li { strong { (users) } " users" }
            li { strong { (analytics.total()) } " clicks in the chart" }
        }
        p class="actions" {
            a class="button" href="/dashboard/links/new" { "Create a link" }
            a class="button secondary" href="/dashboard/links" { "All links" }
        }
        (section(&analytics, "/dashboard", true))
    };
    let shell = Shell {
        title: "Overview",
        session: Some(&session),
        section: Section::Overview,
        notice: None,
    };
    Ok(Html(view::page(shell, content).into_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_end_with_the_current_bucket() {
        let now = DateTime::parse_from_rfc3339("2026-12-04T10:30:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let (days, since) = periods(Granularity::Day, now);
        assert_eq!(days.len(), DAYS_SHOWN as usize);
        assert_eq!(days.last().unwrap(), "2026-12-04");
        assert_eq!(days[0], "2026-11-05");
        assert_eq!(since.to_rfc3339(), "2026-11-05T00:00:00+00:00");
        let (hours, _) = periods(Granularity::Hour, now);
        assert_eq!(hours.last().unwrap(), "2026-12-04T10");
        assert_eq!(hours[0], "2026-12-02T11");
    }
}
