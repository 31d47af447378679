//! Importing the original service's CSV exports, on SQLite and PostgreSQL:
//! ids are kept, duplicates reported, a second run changes nothing, and new
//! rows never collide with imported ids.

mod common;

use std::path::PathBuf;

use kadi::import::{import, ImportFiles, ImportReport};
use reqwest::StatusCode;
use serde_json::{json, Value};

fn data_dir(variant: &str) -> PathBuf {
    common::seed_data_dir().join(variant)
}

async fn import_dir(app: &common::TestApp, variant: &str) -> ImportReport {
    let dir = data_dir(variant);
    let (users, urls, events) = (
        dir.join("users.csv"),
        dir.join("urls.csv"),
        dir.join("events.csv"),
    );
    import(
        &app.state.links,
        ImportFiles {
            users: Some(&users),
            urls: Some(&urls),
            events: Some(&events),
            progress: false,
        },
    )
    .await
    .expect("import")
}

async fn assert_new_rows_do_not_collide(app: &common::TestApp) {
    let response = app
        .post(
            "/users",
            json!({"username": "newcomer", "email": "newcomer@example.com"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let user: Value = response.json().await.unwrap();
    assert!(user["id"].as_i64().unwrap() > 400, "{user}");
    let url = app
        .create_url(
            user["id"].as_i64().unwrap(),
            "https://example.com/new",
            json!({}),
        )
        .await;
    assert!(url["id"].as_i64().unwrap() > 2000, "{url}");
    let response = app
        .post(
            "/events",
            json!({"url_id": url["id"], "event_type": "shared"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let event: Value = response.json().await.unwrap();
    assert!(event["id"].as_i64().unwrap() > 3422, "{event}");
}

on_both_backends! {
    async fn seed_data_imports_with_ids_and_reported_duplicates(app) {
        let report = import_dir(&app, "").await;
        assert_eq!(report.users.read, 400);
        assert_eq!(report.users.inserted, 399);
        assert_eq!(report.users.skipped.len(), 1, "{report}");
        let (line, reason) = &report.users.skipped[0];
        assert_eq!(*line, 274);
        assert!(reason.contains("vividcanyon32") && reason.contains("136"), "{reason}");
        assert_eq!((report.urls.read, report.urls.inserted), (2000, 2000), "{report}");
        assert_eq!((report.events.read, report.events.inserted), (3422, 3422), "{report}");

        // Ids and fields are kept; links of the duplicate user moved to the first one.
        let link: Value = app.get("/urls/1").await.json().await.unwrap();
        assert_eq!(link["short_code"], "0Tnlrx");
        assert_eq!(link["original_url"], "https://acme.dev/rapid/engine/1");
        assert_eq!(link["created_at"], "2025-11-30T03:43:59Z");
        let moved: Value = app.get("/urls/1060").await.json().await.unwrap();
        assert_eq!(moved["user_id"], 136);
        let event: Value = app.get("/events/1").await.json().await.unwrap();
        assert_eq!(event["details"]["short_code"], "0Tnlrx");
        assert_eq!(app.get("/0Tnlrx").await.headers()["location"], "https://acme.dev/rapid/engine/1");

        assert_new_rows_do_not_collide(&app).await;
    }

    async fn importing_twice_changes_nothing(app) {
        import_dir(&app, "").await;
        let again = import_dir(&app, "").await;
        assert_eq!(again.users.inserted + again.urls.inserted + again.events.inserted, 0, "{again}");
        assert_eq!(again.users.already_present, 399);
        assert_eq!(again.urls.already_present, 2000);
        assert_eq!(again.events.already_present, 3422);
        let users: Vec<Value> = app.get("/users?per_page=100&page=5").await.json().await.unwrap();
        assert_eq!(users.len(), 0, "399 users fill four pages of 100");
        assert_new_rows_do_not_collide(&app).await;
    }

    async fn events_naming_a_missing_user_or_link_are_skipped(app) {
        import_dir(&app, "").await;
        let dir = std::env::temp_dir().join(format!("kadi-import-missing-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let events = dir.join(format!("events-{:?}.csv", app.state.links.store().backend()));
        std::fs::write(
            &events,
            "id,url_id,user_id,event_type,timestamp,details\n\
             900001,1,987654,viewed,2025-10-17 21:05:31,{}\n\
             900002,987654,1,viewed,2025-10-17 21:05:31,{}\n\
             900003,1,1,viewed,2025-10-17 21:05:31,{}\n",
        )
        .unwrap();
        let files = ImportFiles { users: None, urls: None, events: Some(&events), progress: false };
        let report = import(&app.state.links, files).await.expect("import");
        std::fs::remove_file(&events).ok();
        assert_eq!((report.events.read, report.events.inserted), (3, 1), "{report}");
        let reasons: Vec<&str> = report.events.skipped.iter().map(|(_, r)| r.as_str()).collect();
        assert!(reasons.iter().any(|r| r.contains("user 987654 does not exist")), "{report}");
        assert!(reasons.iter().any(|r| r.contains("url 987654 does not exist")), "{report}");
        assert_eq!(app.get("/events/900001").await.status(), StatusCode::NOT_FOUND);
        assert_eq!(app.get("/events/900002").await.status(), StatusCode::NOT_FOUND);
        assert_eq!(app.get("/events/900003").await.status(), StatusCode::OK);
    }

    async fn the_kadi_variant_imports_too(app) {
        let report = import_dir(&app, "kadi").await;
        assert_eq!(report.users.inserted, 400, "{report}");
        assert_eq!(report.urls.inserted, 2000, "{report}");
        assert_eq!(report.events.inserted, 3422, "{report}");
        assert_new_rows_do_not_collide(&app).await;
    }
}
