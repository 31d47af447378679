//! Concurrency: custom codes and visit limits stay exact under concurrent
//! requests, on SQLite and PostgreSQL.

mod common;

use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::json;

on_both_backends! {
    async fn fifty_concurrent_creations_of_one_code_give_one_link(app) {
        let user = app.create_user("ann").await;
        let requests = (0..50).map(|i| {
            app.post("/urls", json!({"user_id": user, "original_url": format!("https://example.com/{i}"),
                "short_code": "contested"}))
        });
        let statuses: Vec<StatusCode> = join_all(requests).await.iter().map(|r| r.status()).collect();
        let created = statuses.iter().filter(|s| **s == StatusCode::CREATED).count();
        let conflicts = statuses.iter().filter(|s| **s == StatusCode::CONFLICT).count();
        assert_eq!((created, conflicts), (1, 49), "{statuses:?}");
        let links = app.get("/urls").await.json::<Vec<serde_json::Value>>().await.unwrap();
        assert_eq!(links.len(), 1);
    }

    async fn fifty_concurrent_clicks_on_a_ten_visit_link_redirect_ten_times(app) {
        let user = app.create_user("ann").await;
        let url = app.create_url(user, "https://example.com/limited", json!({"max_visits": 10})).await;
        let path = format!("/{}", url["short_code"].as_str().unwrap());
        let statuses: Vec<StatusCode> = join_all((0..50).map(|_| app.get(&path)))
            .await.iter().map(|r| r.status()).collect();
        let served = statuses.iter().filter(|s| **s == StatusCode::FOUND).count();
        let gone = statuses.iter().filter(|s| **s == StatusCode::GONE).count();
        assert_eq!((served, gone), (10, 40), "{statuses:?}");
        let id = url["id"].as_i64().unwrap();
        let clicks = app.wait_for_events(&format!("url_id={id}&event_type=click"), 10).await;
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        assert_eq!(clicks.len(), 10);
        let link: serde_json::Value = app.get(&format!("/urls/{id}")).await.json().await.unwrap();
        assert_eq!(link["clicks"], 10);
    }
}
