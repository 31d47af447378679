//! The HTTP contract of the original service, and Kadi's extensions, over real
//! HTTP against SQLite and PostgreSQL.

mod common;

use common::{assert_error, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

async fn json_of(response: reqwest::Response) -> Value {
    response.json().await.expect("JSON body")
}

async fn count(app: &TestApp, path: &str) -> usize {
    json_of(app.get(path).await)
        .await
        .as_array()
        .expect("array")
        .len()
}

async fn user_crud(app: &TestApp) {
    // Create.
    let response = app
        .post(
            "/users",
            json!({"username": "ann", "email": "ann@example.com"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let user = json_of(response).await;
    let id = user["id"].as_i64().unwrap();
    assert_eq!(user["username"], "ann");
    assert_eq!(user["email"], "ann@example.com");
    assert!(chrono::DateTime::parse_from_rfc3339(user["created_at"].as_str().unwrap()).is_ok());

    // Read, change, conflict on change.
    assert_eq!(json_of(app.get(&format!("/users/{id}")).await).await, user);
    let response = app
        .put(&format!("/users/{id}"), json!({"email": "ann@new.example"}))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(json_of(response).await["email"], "ann@new.example");
    app.create_user("bob").await;
    let response = app
        .put(&format!("/users/{id}"), json!({"username": "bob"}))
        .await;
    assert_error(response, StatusCode::CONFLICT).await;
    let response = app
        .put(&format!("/users/{id}"), json!({"username": 7}))
        .await;
    assert_error(response, StatusCode::UNPROCESSABLE_ENTITY).await;

    // Delete.
    assert_eq!(
        app.delete(&format!("/users/{id}")).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_error(
        app.get(&format!("/users/{id}")).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_error(
        app.delete(&format!("/users/{id}")).await,
        StatusCode::NOT_FOUND,
    )
    .await;
}

on_both_backends! {
    async fn health_answers_ok(app) {
        let response = app.get("/health").await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(json_of(response).await, json!({"status": "ok"}));
        assert_eq!(app.get("/readyz").await.status(), StatusCode::OK);
    }

    async fn users_are_created_read_changed_and_deleted(app) {
        user_crud(&app).await;
    }

    async fn user_creation_refuses_bad_input(app) {
        app.create_user("ann").await;
        let dup_name = app.post("/users", json!({"username": "ann", "email": "x@example.com"})).await;
        assert_error(dup_name, StatusCode::CONFLICT).await;
        let dup_mail = app.post("/users", json!({"username": "zed", "email": "ann@example.com"})).await;
        assert_error(dup_mail, StatusCode::CONFLICT).await;
        let missing = app.post("/users", json!({"username": "zed"})).await;
        assert_error(missing, StatusCode::UNPROCESSABLE_ENTITY).await;
        let wrong_type = app.post("/users", json!({"username": 5, "email": "z@example.com"})).await;
        assert_error(wrong_type, StatusCode::UNPROCESSABLE_ENTITY).await;
        let bad_mail = app.post("/users", json!({"username": "zed", "email": "nope"})).await;
        assert_error(bad_mail, StatusCode::UNPROCESSABLE_ENTITY).await;
        let array = app.send_raw(Method::POST, "/users", "application/json", b"[1,2]").await;
        assert_error(array, StatusCode::BAD_REQUEST).await;
        let malformed = app.send_raw(Method::POST, "/users", "application/json", b"{\"user").await;
        assert_error(malformed, StatusCode::BAD_REQUEST).await;
        let form = app.send_raw(Method::POST, "/users", "text/plain", b"username=x").await;
        assert_error(form, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
        let listed: Vec<Value> = json_of(app.get("/users").await).await.as_array().unwrap().clone();
        assert_eq!(listed.len(), 1, "refused requests stored nothing");
    }

    async fn user_ids_of_the_wrong_type_or_unknown_are_refused(app) {
        assert_error(app.get("/users/abc").await, StatusCode::BAD_REQUEST).await;
        assert_error(app.get("/users/99999").await, StatusCode::NOT_FOUND).await;
        assert_error(app.put("/users/99999", json!({"email": "a@b.c"})).await, StatusCode::NOT_FOUND).await;
        assert_error(app.get("/users/99999999999999999999999").await, StatusCode::BAD_REQUEST).await;
    }

    async fn users_are_listed_as_a_paged_bare_array(app) {
        for i in 0..5 {
            app.create_user(&format!("user{i}")).await;
        }
        let all = json_of(app.get("/users").await).await;
        assert_eq!(all.as_array().unwrap().len(), 5);
        let page: Vec<Value> = json_of(app.get("/users?page=2&per_page=2").await).await.as_array().unwrap().clone();
        assert_eq!(page.len(), 2);
        assert_eq!(page[0]["username"], "user2");
        let beyond = json_of(app.get("/users?page=99&per_page=2").await).await;
        assert_eq!(beyond, json!([]));
        let huge = app.get("/users?per_page=100000").await;
        assert_eq!(huge.status(), StatusCode::OK);
        for bad in ["page=abc", "page=0", "per_page=-1", "page=-5", "per_page=1.5",
                    "page=99999999999999999999", "page=9223372036854775807&per_page=100"] {
            let response = app.get(&format!("/users?{bad}")).await;
            assert!(response.status().is_client_error() || response.status() == StatusCode::OK,
                "{bad} gave {}", response.status());
        }
    }

    async fn bulk_upserts_users_by_username(app) {
        let csv = "id,username,email,created_at\n\
                   10,ann,ann@example.com,2025-01-02 03:04:05\n\
                   11,bob,bob@example.com,2025-02-03T04:05:06Z\n";
        let send = |csv: String| {
            let form = reqwest::multipart::Form::new()
                .part("file", reqwest::multipart::Part::text(csv).file_name("users.csv"));
            app.client.post(app.url("/users/bulk")).multipart(form).send()
        };
        let response = send(csv.to_owned()).await.unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        assert_eq!(json_of(response).await, json!({"imported": 2}));
        let ann = json_of(app.get("/users/10").await).await;
        assert_eq!(ann["created_at"], "2025-01-02T03:04:05Z");

        // Again, with a changed e-mail address: rows processed, no new users.
        let again = csv.replace("bob@example.com", "bob@new.example");
        let response = send(again).await.unwrap();
        assert_eq!(json_of(response).await, json!({"imported": 2}));
        assert_eq!(json_of(app.get("/users").await).await.as_array().unwrap().len(), 2);
        assert_eq!(json_of(app.get("/users/11").await).await["email"], "bob@new.example");

        // A new user after the bulk insert gets a fresh id.
        let id = app.create_user("cid").await;
        assert!(id > 11, "new id {id} collides with bulk ids");

        let malformed = send("id,username,email,created_at\n12,dan,not-an-email,\n".into()).await.unwrap();
        let body = assert_error(malformed, StatusCode::BAD_REQUEST).await;
        assert!(body["error"].as_str().unwrap().contains("line 2"), "{body}");
        let ragged = send("id,username,email\n12,dan\n".into()).await.unwrap();
        let body = assert_error(ragged, StatusCode::BAD_REQUEST).await;
        assert!(body["error"].as_str().unwrap().contains("line 2"), "{body}");

        let no_file = reqwest::multipart::Form::new().text("other", "x");
        let response = app.client.post(app.url("/users/bulk")).multipart(no_file).send().await.unwrap();
        assert_error(response, StatusCode::BAD_REQUEST).await;
        let not_multipart = app.send_raw(Method::POST, "/users/bulk", "application/json", b"{}").await;
        assert_error(not_multipart, StatusCode::BAD_REQUEST).await;
    }

    async fn urls_get_generated_codes_and_events(app) {
        let user = app.create_user("ann").await;
        let first = app.create_url(user, "https://example.com/page", json!({"title": "Page"})).await;
        let second = app.create_url(user, "https://example.com/page", json!({})).await;
        for url in [&first, &second] {
            let code = url["short_code"].as_str().unwrap();
            assert_eq!(code.len(), 6);
            assert!(code.bytes().all(|b| b.is_ascii_alphanumeric()));
            assert_eq!(url["is_active"], true);
            assert_eq!(url["user_id"], user);
            assert_eq!(url["short_url"], format!("http://sho.rt.test/{code}"));
        }
        assert_ne!(first["short_code"], second["short_code"]);
        assert_eq!(first["title"], "Page");

        let id = first["id"].as_i64().unwrap();
        let created = app.wait_for_events(&format!("url_id={id}&event_type=created"), 1).await;
        assert_eq!(created.len(), 1);
        assert_eq!(created[0]["details"]["short_code"], first["short_code"]);
        assert_eq!(created[0]["details"]["original_url"], "https://example.com/page");
    }

    async fn url_creation_refuses_bad_input(app) {
        let user = app.create_user("ann").await;
        for bad in ["not a url", "javascript:alert(1)", "data:text/html,x", "ftp://example.com/",
                    "http://sho.rt.test/loop", "http://", "https://exa mple.com/"] {
            let response = app.post("/urls", json!({"user_id": user, "original_url": bad})).await;
            assert_error(response, StatusCode::UNPROCESSABLE_ENTITY).await;
        }
        let long = format!("https://example.com/{}", "a".repeat(2048));
        let response = app.post("/urls", json!({"user_id": user, "original_url": long})).await;
        assert_error(response, StatusCode::UNPROCESSABLE_ENTITY).await;
        let response = app.post("/urls", json!({"user_id": 424242, "original_url": "https://example.com"})).await;
        assert_error(response, StatusCode::NOT_FOUND).await;
        let response = app.post("/urls", json!({"user_id": "one", "original_url": "https://example.com"})).await;
        assert_error(response, StatusCode::UNPROCESSABLE_ENTITY).await;
        let response = app.send_raw(Method::POST, "/urls", "application/json", b"\"https://example.com\"").await;
        assert_error(response, StatusCode::BAD_REQUEST).await;
        let response = app.send_raw(Method::POST, "/urls", "application/json", b"null").await;
        assert_error(response, StatusCode::BAD_REQUEST).await;
        assert_eq!(json_of(app.get("/urls").await).await, json!([]));
    }

    async fn urls_are_listed_filtered_and_paged(app) {
        let ann = app.create_user("ann").await;
        let bob = app.create_user("bob").await;
        for i in 0..3 {
            app.create_url(ann, &format!("https://example.com/{i}"), json!({})).await;
        }
        let bobs = app.create_url(bob, "https://example.com/bob", json!({})).await;
        let id = bobs["id"].as_i64().unwrap();
        app.put(&format!("/urls/{id}"), json!({"is_active": false})).await;

        assert_eq!(count(&app, "/urls").await, 4);
        assert_eq!(count(&app, &format!("/urls?user_id={ann}")).await, 3);
        assert_eq!(count(&app, "/urls?is_active=false").await, 1);
        assert_eq!(count(&app, "/urls?is_active=true").await, 3);
        assert_eq!(count(&app, "/urls?is_active=true&per_page=2&page=2").await, 1);
        assert_eq!(count(&app, "/urls?user_id=&is_active=").await, 4);
        assert_error(app.get("/urls?is_active=maybe").await, StatusCode::BAD_REQUEST).await;
        assert_error(app.get("/urls?user_id=x").await, StatusCode::BAD_REQUEST).await;
    }

    async fn urls_are_read_changed_and_deleted_with_events(app) {
        let user = app.create_user("ann").await;
        let url = app.create_url(user, "https://example.com/a", json!({"title": "A"})).await;
        let id = url["id"].as_i64().unwrap();
        let code = url["short_code"].as_str().unwrap().to_owned();

        assert_eq!(json_of(app.get(&format!("/urls/{id}")).await).await["short_code"], code);
        let response = app.put(&format!("/urls/{id}"),
            json!({"title": "B", "original_url": "https://example.com/b", "is_active": true})).await;
        assert_eq!(response.status(), StatusCode::OK);
        let changed = json_of(response).await;
        assert_eq!(changed["title"], "B");
        assert_eq!(changed["original_url"], "https://example.com/b");
        let redirect = app.get(&format!("/{code}")).await;
        assert_eq!(redirect.headers()["location"], "https://example.com/b");

        assert_error(app.put(&format!("/urls/{id}"), json!({"original_url": "javascript:x"})).await,
            StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_error(app.put(&format!("/urls/{id}"), json!({"short_code": "other1"})).await,
            StatusCode::UNPROCESSABLE_ENTITY).await;
        let same_code = app.put(&format!("/urls/{id}"), json!({"short_code": code})).await;
        assert_eq!(same_code.status(), StatusCode::OK);
        assert_error(app.put(&format!("/urls/{id}"), json!({"user_id": user + 1000})).await,
            StatusCode::UNPROCESSABLE_ENTITY).await;
        let unchanged = app.put(&format!("/urls/{id}"), json!({})).await;
        assert_eq!(unchanged.status(), StatusCode::OK);
        assert_error(app.put(&format!("/urls/{id}"), json!({"is_active": "yes"})).await,
            StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_error(app.put("/urls/777777", json!({"title": "x"})).await, StatusCode::NOT_FOUND).await;
        assert_error(app.get("/urls/777777").await, StatusCode::NOT_FOUND).await;
        assert_error(app.get("/urls/x1").await, StatusCode::BAD_REQUEST).await;

        assert_eq!(app.delete(&format!("/urls/{id}")).await.status(), StatusCode::NO_CONTENT);
        assert_error(app.get(&format!("/urls/{id}")).await, StatusCode::NOT_FOUND).await;
        assert_error(app.get(&format!("/{code}")).await, StatusCode::NOT_FOUND).await;
        assert_error(app.delete(&format!("/urls/{id}")).await, StatusCode::NOT_FOUND).await;

        // The click is stored by the background writer, possibly after the
        // delete: its id may be higher, its timestamp is not.
        let mut events = app.wait_for_events(&format!("url_id={id}"), 4).await;
        events.sort_by_key(|e| {
            chrono::DateTime::parse_from_rfc3339(e["timestamp"].as_str().unwrap()).unwrap()
        });
        let types: Vec<&str> = events.iter().map(|e| e["event_type"].as_str().unwrap()).collect();
        assert_eq!(types, ["created", "updated", "click", "deleted"]);
    }

    async fn redirects_record_one_click(app) {
        let user = app.create_user("ann").await;
        let url = app.create_url(user, "https://example.com/target?q=1", json!({})).await;
        let code = url["short_code"].as_str().unwrap();
        let id = url["id"].as_i64().unwrap();
        let response = app.client.get(app.url(&format!("/{code}")))
            .header("referer", "https://news.example/item")
            .send().await.unwrap();
        assert_eq!(response.status(), StatusCode::FOUND);
        assert_eq!(response.headers()["location"], "https://example.com/target?q=1");

        let clicks = app.wait_for_events(&format!("url_id={id}&event_type=click"), 1).await;
        assert_eq!(clicks.len(), 1);
        let details = &clicks[0]["details"];
        assert!(details.is_object());
        assert_eq!(details["referrer"], "https://news.example/item");
        assert_eq!(details["client"], "127.0.0.0", "client address is anonymised");

        let head = app.client.head(app.url(&format!("/{code}"))).send().await.unwrap();
        assert_eq!(head.status(), StatusCode::FOUND);
        assert_eq!(head.headers()["location"], "https://example.com/target?q=1");

        let stats = json_of(app.get(&format!("/urls/{id}/stats")).await).await;
        assert_eq!(stats["total_clicks"], 1);
        assert_eq!(stats["top_referrers"][0], json!({"referrer": "https://news.example/item", "clicks": 1}));
        assert_eq!(stats["clicks_per_day"][0]["clicks"], 1);
        let listed = json_of(app.get(&format!("/urls/{id}")).await).await;
        assert_eq!(listed["clicks"], 1);
    }

    async fn unknown_and_inactive_codes_answer_404_without_a_click(app) {
        assert_error(app.get("/nosuchcode").await, StatusCode::NOT_FOUND).await;
        assert_error(app.get("/no%20such%20code").await, StatusCode::NOT_FOUND).await;
        let user = app.create_user("ann").await;
        let url = app.create_url(user, "https://example.com/", json!({})).await;
        let id = url["id"].as_i64().unwrap();
        let code = url["short_code"].as_str().unwrap();
        assert_eq!(app.get(&format!("/{code}")).await.status(), StatusCode::FOUND);
        app.put(&format!("/urls/{id}"), json!({"is_active": false})).await;
        assert_error(app.get(&format!("/{code}")).await, StatusCode::NOT_FOUND).await;
        app.put(&format!("/urls/{id}"), json!({"is_active": true})).await;
        assert_eq!(app.get(&format!("/{code}")).await.status(), StatusCode::FOUND);
        let clicks = app.wait_for_events(&format!("url_id={id}&event_type=click"), 2).await;
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let settled = app.wait_for_events(&format!("url_id={id}&event_type=click"), 3).await;
        assert_eq!(clicks.len(), 2);
        assert_eq!(settled.len(), 2, "the inactive request recorded no click");
    }

    async fn events_are_recorded_listed_and_read(app) {
        let user = app.create_user("ann").await;
        let url = app.create_url(user, "https://example.com/", json!({})).await;
        let url_id = url["id"].as_i64().unwrap();
        let response = app.post("/events", json!({"url_id": url_id, "user_id": user,
            "event_type": "shared", "details": {"channel": "mail"}})).await;
        assert_eq!(response.status(), StatusCode::CREATED);
        let event = json_of(response).await;
        assert_eq!(event["details"], json!({"channel": "mail"}));
        let id = event["id"].as_i64().unwrap();
        assert_eq!(json_of(app.get(&format!("/events/{id}")).await).await, event);
        let without_details = app.post("/events", json!({"url_id": url_id, "event_type": "viewed"})).await;
        assert_eq!(json_of(without_details).await["details"], json!({}));

        let shared = json_of(app.get("/events?event_type=shared").await).await;
        assert_eq!(shared.as_array().unwrap().len(), 1);
        let mine = json_of(app.get(&format!("/events?user_id={user}&url_id={url_id}")).await).await;
        assert_eq!(mine.as_array().unwrap().len(), 2, "created and shared: {mine}");
        let paged = json_of(app.get("/events?per_page=1&page=2").await).await;
        assert_eq!(paged.as_array().unwrap().len(), 1);

        for (body, status) in [
            (json!({"url_id": url_id, "event_type": "x", "details": "text"}), StatusCode::UNPROCESSABLE_ENTITY),
            (json!({"url_id": url_id, "event_type": "x", "details": [1]}), StatusCode::UNPROCESSABLE_ENTITY),
            (json!({"url_id": url_id, "event_type": ""}), StatusCode::UNPROCESSABLE_ENTITY),
            (json!({"url_id": url_id, "event_type": "   "}), StatusCode::UNPROCESSABLE_ENTITY),
            (json!({"url_id": "1", "event_type": "x"}), StatusCode::UNPROCESSABLE_ENTITY),
            (json!({"url_id": url_id, "user_id": "me", "event_type": "x"}), StatusCode::UNPROCESSABLE_ENTITY),
            (json!({"url_id": 987654, "event_type": "x"}), StatusCode::NOT_FOUND),
            (json!({"url_id": url_id, "user_id": 987654, "event_type": "x"}), StatusCode::NOT_FOUND),
        ] {
            assert_error(app.post("/events", body).await, status).await;
        }
        assert_error(app.get("/events/987654").await, StatusCode::NOT_FOUND).await;
        assert_error(app.get("/events/x").await, StatusCode::BAD_REQUEST).await;
        assert_error(app.get("/events?url_id=x").await, StatusCode::BAD_REQUEST).await;
    }

    async fn custom_codes_are_kept_and_guarded(app) {
        let user = app.create_user("ann").await;
        let url = app.create_url(user, "https://example.com/", json!({"short_code": "Launch-2026_x"})).await;
        assert_eq!(url["short_code"], "Launch-2026_x");
        assert_eq!(app.get("/Launch-2026_x").await.status(), StatusCode::FOUND);
        assert_error(app.get("/launch-2026_x").await, StatusCode::NOT_FOUND).await;
        let taken = app.post("/urls", json!({"user_id": user, "original_url": "https://example.com/2",
            "short_code": "Launch-2026_x"})).await;
        assert_error(taken, StatusCode::CONFLICT).await;
        let other_case = app.create_url(user, "https://example.com/3", json!({"short_code": "launch-2026_x"})).await;
        assert_eq!(other_case["short_code"], "launch-2026_x");
        for bad in ["ab", "has space", "slash/y", "users", "HEALTH", "openapi.json", "é-code"] {
            let response = app.post("/urls", json!({"user_id": user, "original_url": "https://example.com/",
                "short_code": bad})).await;
            assert_error(response, StatusCode::UNPROCESSABLE_ENTITY).await;
        }
        let long = "a".repeat(65);
        let response = app.post("/urls", json!({"user_id": user, "original_url": "https://example.com/",
            "short_code": long})).await;
        assert_error(response, StatusCode::UNPROCESSABLE_ENTITY).await;

        // A deleted link frees its code.
        let id = url["id"].as_i64().unwrap();
        app.delete(&format!("/urls/{id}")).await;
        app.create_url(user, "https://example.com/new", json!({"short_code": "Launch-2026_x"})).await;
        assert_eq!(app.get("/Launch-2026_x").await.headers()["location"], "https://example.com/new");
    }

    async fn expired_links_answer_410_without_a_click(app) {
        let user = app.create_user("ann").await;
        let past = app.create_url(user, "https://example.com/old",
            json!({"expires_at": "2020-01-01T00:00:00Z"})).await;
        assert_eq!(past["expires_at"], "2020-01-01T00:00:00Z");
        assert_error(app.get(&format!("/{}", past["short_code"].as_str().unwrap())).await, StatusCode::GONE).await;
        let future = app.create_url(user, "https://example.com/new",
            json!({"expires_at": "2999-01-01T00:00:00+02:00"})).await;
        assert_eq!(future["expires_at"], "2998-12-31T22:00:00Z");
        let code = future["short_code"].as_str().unwrap();
        assert_eq!(app.get(&format!("/{code}")).await.status(), StatusCode::FOUND);

        // Expiring an existing link takes effect at once; clearing it revives.
        let id = future["id"].as_i64().unwrap();
        app.put(&format!("/urls/{id}"), json!({"expires_at": "2021-06-01T00:00:00Z"})).await;
        assert_error(app.get(&format!("/{code}")).await, StatusCode::GONE).await;
        app.put(&format!("/urls/{id}"), json!({"expires_at": null})).await;
        assert_eq!(app.get(&format!("/{code}")).await.status(), StatusCode::FOUND);

        let past_id = past["id"].as_i64().unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let clicks = app.wait_for_events(&format!("url_id={past_id}&event_type=click"), 1).await;
        assert!(clicks.is_empty(), "expired link recorded {clicks:?}");
        let response = app.post("/urls", json!({"user_id": user, "original_url": "https://example.com/",
            "expires_at": "tomorrow"})).await;
        assert_error(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    }

    async fn visit_limits_serve_exactly_that_many_redirects(app) {
        let user = app.create_user("ann").await;
        let url = app.create_url(user, "https://example.com/", json!({"max_visits": 2})).await;
        let code = url["short_code"].as_str().unwrap();
        assert_eq!(app.get(&format!("/{code}")).await.status(), StatusCode::FOUND);
        assert_eq!(app.get(&format!("/{code}")).await.status(), StatusCode::FOUND);
        assert_error(app.get(&format!("/{code}")).await, StatusCode::GONE).await;
        let id = url["id"].as_i64().unwrap();
        let clicks = app.wait_for_events(&format!("url_id={id}&event_type=click"), 2).await;
        assert_eq!(clicks.len(), 2);
        for bad in [json!(0), json!(-3), json!("ten")] {
            let response = app.post("/urls", json!({"user_id": user, "original_url": "https://example.com/",
                "max_visits": bad})).await;
            assert_error(response, StatusCode::UNPROCESSABLE_ENTITY).await;
        }
        let head = app.client.head(app.url(&format!("/{code}"))).send().await.unwrap();
        assert_eq!(head.status(), StatusCode::GONE, "HEAD respects a used-up limit");
        // Raising the limit serves again.
        app.put(&format!("/urls/{id}"), json!({"max_visits": 3})).await;
        assert_eq!(app.get(&format!("/{code}")).await.status(), StatusCode::FOUND);
        assert_error(app.get(&format!("/{code}")).await, StatusCode::GONE).await;
    }

    async fn redirect_status_is_chosen_per_link(app) {
        let user = app.create_user("ann").await;
        for status in [301u16, 302, 307, 308] {
            let url = app.create_url(user, "https://example.com/", json!({"redirect_status": status})).await;
            let response = app.get(&format!("/{}", url["short_code"].as_str().unwrap())).await;
            assert_eq!(response.status().as_u16(), status);
        }
        for bad in [json!(200), json!(303), json!("301")] {
            let response = app.post("/urls", json!({"user_id": user, "original_url": "https://example.com/",
                "redirect_status": bad})).await;
            assert_error(response, StatusCode::UNPROCESSABLE_ENTITY).await;
        }
    }

    async fn every_response_carries_a_request_id(app) {
        let first = app.get("/health").await;
        let second = app.get("/nosuchcode").await;
        let id = |r: &reqwest::Response| r.headers()["x-request-id"].to_str().unwrap().to_owned();
        assert!(!id(&first).is_empty());
        assert_ne!(id(&first), id(&second));
        let given = app.client.get(app.url("/health")).header("x-request-id", "trace-42")
            .send().await.unwrap();
        assert_eq!(id(&given), "trace-42");
    }

    async fn protocol_errors_are_json(app) {
        assert_error(app.get("/no/such/route").await, StatusCode::NOT_FOUND).await;
        assert_error(app.request(Method::PATCH, "/users", None).await, StatusCode::METHOD_NOT_ALLOWED).await;
        assert_error(app.request(Method::DELETE, "/health", None).await, StatusCode::METHOD_NOT_ALLOWED).await;
        let huge = format!("{{\"username\": \"{}\", \"email\": \"a@b.c\"}}", "x".repeat(200_000));
        let response = app.client.post(app.url("/users")).header("content-type", "application/json")
            .body(huge).send().await.unwrap();
        assert_error(response, StatusCode::PAYLOAD_TOO_LARGE).await;
    }

    async fn deleting_a_user_deletes_its_links(app) {
        let user = app.create_user("ann").await;
        let url = app.create_url(user, "https://example.com/", json!({})).await;
        let code = url["short_code"].as_str().unwrap();
        assert_eq!(app.get(&format!("/{code}")).await.status(), StatusCode::FOUND);
        app.delete(&format!("/users/{user}")).await;
        assert_error(app.get(&format!("/{code}")).await, StatusCode::NOT_FOUND).await;
        let id = url["id"].as_i64().unwrap();
        let deleted = app.wait_for_events(&format!("url_id={id}&event_type=deleted"), 1).await;
        assert_eq!(deleted.len(), 1);
        // The name is free again.
        app.create_user("ann").await;
    }
}
