//! The click writer under a backlog: more clicks queued at once than one batch
//! holds are all stored, each once, with exact per-link counts, on SQLite and
//! PostgreSQL.

mod common;

use std::net::IpAddr;
use std::time::Duration;

use axum::http::HeaderValue;
use kadi::clicks::{self, Click, MAX_BATCH};
use kadi::metrics::Metrics;
use kadi::store::{EventFilter, Page};
use serde_json::{json, Value};

on_both_backends! {
    async fn a_backlog_of_several_batches_is_stored_exactly(app) {
        let user = app.create_user("ann").await;
        let mut links = Vec::new();
        for i in 0..3 {
            let link = app
                .create_url(user, &format!("https://example.com/{i}"), json!({}))
                .await;
            links.push(link["id"].as_i64().expect("link id"));
        }
        let metrics = Metrics::new();
        let total = 2 * MAX_BATCH + 777;
        let (queue, writer) = clicks::start(app.store.clone(), total, metrics.clone());
        let client: IpAddr = "203.0.113.77".parse().unwrap();
        let mut expected_counts = [0i64; 3];
        for i in 0..total {
            let link = i % 3;
            // Every seventh click was counted when it was served, as on a
            // link with a visit limit: it gets its event but no second count.
            let counted = i % 7 == 0;
            if !counted {
                expected_counts[link] += 1;
            }
            queue.push(Click {
                url_id: links[link],
                at: chrono::Utc::now(),
                referrer: Some(HeaderValue::from_static("https://ref.example/?q=\"a\\b\"")),
                user_agent: Some(HeaderValue::from_str(&format!("agent {i}")).unwrap()),
                client: Some(client),
                counted,
            });
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while metrics.clicks_written.get() < total as u64 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} of {total} clicks stored after 60 s",
                metrics.clicks_written.get()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        writer.shutdown().await;
        assert_eq!(metrics.clicks_written.get(), total as u64);
        assert_eq!(metrics.clicks_dropped.get(), 0);

        for (link, id) in links.iter().enumerate() {
            let events = app
                .store
                .events(
                    &EventFilter {
                        url_id: Some(*id),
                        event_type: Some("click".to_owned()),
                        ..Default::default()
                    },
                    Page { offset: 0, limit: total as i64 },
                )
                .await
                .expect("events");
            let expected_events = (link..total).step_by(3).count();
            assert_eq!(events.len(), expected_events, "events of link {link}");
            let mut agents: Vec<u64> = events
                .iter()
                .map(|e| {
                    let agent = e.details.0["user_agent"].as_str().expect("user agent");
                    agent.trim_start_matches("agent ").parse().expect("agent number")
                })
                .collect();
            agents.sort_unstable();
            agents.dedup();
            assert_eq!(agents.len(), expected_events, "each click once, link {link}");
            let first = &events[0].details.0;
            assert_eq!(first["referrer"], Value::from("https://ref.example/?q=\"a\\b\""));
            assert_eq!(first["client"], Value::from("203.0.113.0"));

            let stored = app
                .store
                .link(*id)
                .await
                .expect("link")
                .expect("link exists");
            assert_eq!(stored.click_count, expected_counts[link], "count of link {link}");
        }
        app.stop().await;
    }
}

/// Every trigger on `events` runs once per stored click. PostgreSQL keeps none
/// there: foreign keys are enforced as triggers, and the application checks the
/// link and the user itself before it inserts an event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn click_rows_fire_no_trigger_on_postgresql() {
    let db = common::TestDb::new(kadi::store::Backend::Postgres).await;
    db.store().await.close().await;
    let pool = sqlx::PgPool::connect(&db.url).await.expect("connect");
    let triggers: Vec<(String,)> =
        sqlx::query_as("SELECT tgname::text FROM pg_trigger WHERE tgrelid = 'events'::regclass")
            .fetch_all(&pool)
            .await
            .expect("list triggers");
    pool.close().await;
    assert!(triggers.is_empty(), "triggers on events: {triggers:?}");
}
