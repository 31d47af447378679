//! Managed links: what the ShortLink operator does through the link service,
//! on SQLite and PostgreSQL: every write with its event row, caches dropped,
//! taken codes reported and never overwritten.

mod common;

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use common::TestApp;
use kadi::cache::{CacheConfig, Cached, LinkCache};
use kadi::links::{LinkError, LinkService, TargetPolicy};
use kadi::managed::{ManagedLink, ManagedOutcome, ReclaimPolicy};
use kadi::store::{EventFilter, LinkTarget, Page};
use reqwest::StatusCode;
use serde_json::json;

const OWNER: &str = "marketing/launch-notes";

fn service(app: &TestApp) -> LinkService {
    LinkService::new(
        app.store.clone(),
        LinkCache::new(CacheConfig::default()),
        TargetPolicy::for_public_url(&"http://sho.rt.test".parse().unwrap()),
    )
}

fn declared(code: &str, target: &str) -> ManagedLink {
    ManagedLink {
        owner: OWNER.to_owned(),
        short_code: code.to_owned(),
        original_url: target.to_owned(),
        redirect_status: 302,
        expires_at: None,
        max_visits: None,
        is_active: true,
    }
}

async fn event_types(app: &TestApp, url_id: i64) -> Vec<String> {
    let filter = EventFilter {
        url_id: Some(url_id),
        ..EventFilter::default()
    };
    let page = Page {
        offset: 0,
        limit: 100,
    };
    let events = app.store.events(&filter, page).await.unwrap();
    events.into_iter().map(|e| e.event_type).collect()
}

fn cache_something(links: &LinkService, code: &str) {
    let target = LinkTarget {
        id: 0,
        original_url: "https://stale.example/".to_owned(),
        is_active: true,
        redirect_status: 302,
        expires_at: None,
        max_visits: None,
    };
    let cache = links.cache();
    cache.insert_if_current(code, Cached::Found(Arc::new(target)), cache.generation());
    assert!(cache.get(code).is_some());
}

fn at(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

on_both_backends! {
    async fn applying_a_new_managed_link_creates_it_with_its_event(app) {
        let links = service(&app);
        let now = Utc::now();
        let outcome = links.apply_managed(&declared("launch", "https://example.com/a"), now).await.unwrap();
        let ManagedOutcome::Created(link) = outcome else { panic!("{outcome:?}") };
        assert_eq!(link.user_id, None);
        assert_eq!(link.managed_by.as_deref(), Some(OWNER));
        assert!(link.is_active);
        assert_eq!(event_types(&app, link.id).await, ["created"]);

        let again = links.apply_managed(&declared("launch", "https://example.com/a"), now).await.unwrap();
        assert_eq!(again, ManagedOutcome::Unchanged(link.clone()));
        assert_eq!(event_types(&app, link.id).await, ["created"]);

        let response = app.get("/launch").await;
        assert_eq!(response.status(), StatusCode::FOUND);
        assert_eq!(response.headers()["location"], "https://example.com/a");
    }

    async fn the_http_api_refuses_to_change_a_managed_link(app) {
        let links = service(&app);
        let outcome = links.apply_managed(&declared("launch", "https://example.com/a"), Utc::now()).await.unwrap();
        let ManagedOutcome::Created(link) = outcome else { panic!("{outcome:?}") };
        let response = app.put(&format!("/urls/{}", link.id), json!({"original_url": "https://evil.example/"})).await;
        let body = common::assert_error(response, StatusCode::CONFLICT).await;
        assert!(body["error"].as_str().unwrap().contains(OWNER), "{body}");
    }

    async fn changing_the_target_updates_the_link_and_drops_the_cached_code(app) {
        let links = service(&app);
        let now = Utc::now();
        links.apply_managed(&declared("launch", "https://example.com/a"), now).await.unwrap();
        cache_something(&links, "launch");
        let mut changed = declared("launch", "https://example.com/b");
        changed.redirect_status = 308;
        let outcome = links.apply_managed(&changed, now).await.unwrap();
        let ManagedOutcome::Updated(link) = outcome else { panic!("{outcome:?}") };
        assert_eq!(link.original_url, "https://example.com/b");
        assert_eq!(link.redirect_status, 308);
        assert!(links.cache().get("launch").is_none(), "cached code survived the update");
        assert_eq!(event_types(&app, link.id).await, ["created", "updated"]);
        let filter = EventFilter { url_id: Some(link.id), event_type: Some("updated".into()), ..EventFilter::default() };
        let updated = app.store.events(&filter, Page { offset: 0, limit: 10 }).await.unwrap();
        assert_eq!(updated[0].details.0, json!({"fields": ["original_url", "redirect_status"]}));
    }

    async fn a_code_held_through_the_api_is_reported_and_kept(app) {
        let links = service(&app);
        let user = app.create_user("ann").await;
        let held = app.create_url(user, "https://example.com/theirs", json!({"short_code": "launch"})).await;
        let outcome = links.apply_managed(&declared("launch", "https://example.com/ours"), Utc::now()).await.unwrap();
        assert_eq!(outcome, ManagedOutcome::CodeTaken { holder: None });
        let link = app.store.link_by_code("launch").await.unwrap().unwrap();
        assert_eq!(link.id, held["id"].as_i64().unwrap());
        assert_eq!(link.original_url, "https://example.com/theirs");
        assert_eq!(link.managed_by, None);
    }

    async fn a_code_held_by_another_shortlink_names_it(app) {
        let links = service(&app);
        let mut other = declared("launch", "https://example.com/other");
        other.owner = "sales/launch".to_owned();
        links.apply_managed(&other, Utc::now()).await.unwrap();
        let outcome = links.apply_managed(&declared("launch", "https://example.com/ours"), Utc::now()).await.unwrap();
        assert_eq!(outcome, ManagedOutcome::CodeTaken { holder: Some("sales/launch".to_owned()) });
        let link = app.store.link_by_code("launch").await.unwrap().unwrap();
        assert_eq!(link.original_url, "https://example.com/other");
    }

    async fn expiry_deactivates_once_with_an_expired_event_and_a_new_expiry_revives(app) {
        let links = service(&app);
        let created = at("2026-06-01T00:00:00Z");
        let mut timed = declared("launch", "https://example.com/a");
        timed.expires_at = Some(created + Duration::hours(72));
        let outcome = links.apply_managed(&timed, created).await.unwrap();
        let ManagedOutcome::Created(link) = outcome else { panic!("{outcome:?}") };
        assert_eq!(link.expires_at, timed.expires_at);

        let before = links.apply_managed(&timed, created + Duration::hours(71)).await.unwrap();
        assert!(matches!(before, ManagedOutcome::Unchanged(_)), "{before:?}");
        cache_something(&links, "launch");
        let after = created + Duration::hours(72);
        let outcome = links.apply_managed(&timed, after).await.unwrap();
        let ManagedOutcome::Expired(expired) = outcome else { panic!("{outcome:?}") };
        assert!(!expired.is_active);
        assert!(links.cache().get("launch").is_none());
        let again = links.apply_managed(&timed, after + Duration::minutes(5)).await.unwrap();
        assert!(matches!(again, ManagedOutcome::Unchanged(_)), "{again:?}");
        assert_eq!(event_types(&app, link.id).await, ["created", "expired"]);

        timed.expires_at = Some(created + Duration::days(30));
        let outcome = links.apply_managed(&timed, after + Duration::hours(1)).await.unwrap();
        let ManagedOutcome::Updated(revived) = outcome else { panic!("{outcome:?}") };
        assert!(revived.is_active);
        assert_eq!(event_types(&app, link.id).await, ["created", "expired", "updated"]);
    }

    async fn deactivating_release_keeps_the_link_and_its_code(app) {
        let links = service(&app);
        links.apply_managed(&declared("launch", "https://example.com/a"), Utc::now()).await.unwrap();
        cache_something(&links, "launch");
        let released = links.release_managed(OWNER, ReclaimPolicy::Deactivate, Utc::now()).await.unwrap();
        assert_eq!(released.len(), 1);
        assert!(!released[0].is_active);
        assert!(links.cache().get("launch").is_none());
        assert_eq!(event_types(&app, released[0].id).await, ["created", "updated"]);
        let response = app.get(&format!("/urls/{}", released[0].id)).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(app.get("/launch").await.status(), StatusCode::NOT_FOUND);
        let again = links.release_managed(OWNER, ReclaimPolicy::Deactivate, Utc::now()).await.unwrap();
        assert!(again.is_empty(), "a second release changed {again:?}");
    }

    async fn deleting_release_frees_the_code(app) {
        let links = service(&app);
        links.apply_managed(&declared("launch", "https://example.com/a"), Utc::now()).await.unwrap();
        let released = links.release_managed(OWNER, ReclaimPolicy::Delete, Utc::now()).await.unwrap();
        assert_eq!(released.len(), 1);
        assert_eq!(event_types(&app, released[0].id).await, ["created", "deleted"]);
        assert!(links.managed_links(OWNER).await.unwrap().is_empty());
        assert_eq!(app.get(&format!("/urls/{}", released[0].id)).await.status(), StatusCode::NOT_FOUND);
        let user = app.create_user("ann").await;
        app.create_url(user, "https://example.com/theirs", json!({"short_code": "launch"})).await;
    }

    async fn managed_links_follow_the_api_rules(app) {
        let links = service(&app);
        for (code, target) in [
            ("launch", "javascript:alert(1)"),
            ("launch", "https://sho.rt.test/loop"),
            ("users", "https://example.com/a"),
            ("a b", "https://example.com/a"),
        ] {
            let result = links.apply_managed(&declared(code, target), Utc::now()).await;
            assert!(matches!(result, Err(LinkError::Invalid { .. })), "{code} {target}: {result:?}");
        }
        let mut bad_owner = declared("launch", "https://example.com/a");
        bad_owner.owner = "no-namespace".to_owned();
        assert!(links.apply_managed(&bad_owner, Utc::now()).await.is_err());
        assert!(app.store.link_by_code("launch").await.unwrap().is_none());
    }

    async fn clicks_are_read_from_the_managed_link(app) {
        let links = service(&app);
        links.apply_managed(&declared("launch", "https://example.com/a"), Utc::now()).await.unwrap();
        for _ in 0..3 {
            assert_eq!(app.get("/launch").await.status(), StatusCode::FOUND);
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let clicks = links.managed_links(OWNER).await.unwrap()[0].click_count;
            if clicks == 3 {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "clicks stayed at {clicks}");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}
