//! API keys: with authentication on, users, links and events need a valid
//! key while redirects, health and the OpenAPI document never do; missing,
//! wrong and revoked keys get one identical 401. Keys are made, listed and
//! revoked with `kadi keys`.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::TestApp;
use kadi::auth::{self, AuthError, AuthMode};
use kadi::store::Backend;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// Declares each test once per backend, with authentication required.
macro_rules! with_auth_on_both_backends {
    ($(async fn $name:ident($app:ident) $body:block)*) => {
        mod sqlite {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let $app = spawn_with_auth(Backend::Sqlite).await;
                    $body
                }
            )*
        }
        mod postgres {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let $app = spawn_with_auth(Backend::Postgres).await;
                    $body
                }
            )*
        }
    };
}

async fn spawn_with_auth(backend: Backend) -> TestApp {
    common::spawn_with(backend, |options| options.auth = AuthMode::Required).await
}

async fn new_key(app: &TestApp, name: &str) -> String {
    auth::create_key(&app.store, name)
        .await
        .expect("create key")
        .secret
}

async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    body: Option<Value>,
    key: Option<&str>,
) -> reqwest::Response {
    let mut request = app.client.request(method, app.url(path));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.expect("request")
}

/// A link (with its owner and its `created` event) made through the API with
/// `key`: (user id, link id, short code, event id).
async fn seed(app: &TestApp, key: &str) -> (i64, i64, String, i64) {
    let user = json!({"username": "ann", "email": "ann@example.com"});
    let response = send(app, Method::POST, "/users", Some(user), Some(key)).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let user_id = response.json::<Value>().await.unwrap()["id"]
        .as_i64()
        .unwrap();
    let link = json!({"user_id": user_id, "original_url": "https://example.com/a"});
    let response = send(app, Method::POST, "/urls", Some(link), Some(key)).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let link: Value = response.json().await.unwrap();
    let events: Vec<Value> = send(app, Method::GET, "/events", None, Some(key))
        .await
        .json()
        .await
        .unwrap();
    (
        user_id,
        link["id"].as_i64().unwrap(),
        link["short_code"].as_str().unwrap().to_owned(),
        events[0]["id"].as_i64().unwrap(),
    )
}

/// Every protected route, reads and writes, with a body that would be valid.
fn protected_requests(user: i64, link: i64, event: i64) -> Vec<(Method, String, Option<Value>)> {
    vec![
        (Method::GET, "/users".into(), None),
        (
            Method::POST,
            "/users".into(),
            Some(json!({"username": "bob", "email": "bob@example.com"})),
        ),
        (Method::GET, format!("/users/{user}"), None),
        (
            Method::PUT,
            format!("/users/{user}"),
            Some(json!({"email": "ann@example.org"})),
        ),
        (Method::GET, "/urls".into(), None),
        (
            Method::POST,
            "/urls".into(),
            Some(json!({"user_id": user, "original_url": "https://example.com/b"})),
        ),
        (Method::GET, format!("/urls/{link}"), None),
        (
            Method::PUT,
            format!("/urls/{link}"),
            Some(json!({"title": "renamed"})),
        ),
        (Method::GET, format!("/urls/{link}/stats"), None),
        (Method::GET, "/events".into(), None),
        (
            Method::POST,
            "/events".into(),
            Some(json!({"url_id": link, "user_id": user, "event_type": "updated"})),
        ),
        (Method::GET, format!("/events/{event}"), None),
        (Method::DELETE, format!("/urls/{link}"), None),
    ]
}

async fn assert_unauthorized(response: reqwest::Response) -> Value {
    let challenge = response
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert!(challenge.starts_with("Bearer"), "challenge {challenge:?}");
    common::assert_error(response, StatusCode::UNAUTHORIZED).await
}

with_auth_on_both_backends! {
    async fn protected_routes_refuse_missing_wrong_and_revoked_keys_alike(app) {
        let valid = new_key(&app, "valid").await;
        let revoked = auth::create_key(&app.store, "revoked").await.unwrap();
        app.store.revoke_api_key(revoked.key.id).await.unwrap().expect("revoked");
        let unknown = format!("kadi_{}", "0".repeat(64));
        let (user, link, _, event) = seed(&app, &valid).await;

        let mut first_body: Option<Value> = None;
        for (method, path, body) in protected_requests(user, link, event) {
            for key in [None, Some("not-a-key"), Some(unknown.as_str()), Some(&revoked.secret)] {
                let response = send(&app, method.clone(), &path, body.clone(), key).await;
                let error = assert_unauthorized(response).await;
                match &first_body {
                    None => first_body = Some(error),
                    Some(first) => assert_eq!(&error, first, "{method} {path} with {key:?}"),
                }
            }
            let response = send(&app, method.clone(), &path, body.clone(), Some(&valid)).await;
            assert!(
                response.status().is_success(),
                "{method} {path} with a valid key: {}",
                response.status()
            );
        }
        let response = send(&app, Method::DELETE, &format!("/users/{user}"), None, None).await;
        assert_unauthorized(response).await;
        let response =
            send(&app, Method::DELETE, &format!("/users/{user}"), None, Some(&valid)).await;
        assert!(response.status().is_success(), "{}", response.status());
        let bulk = app
            .client
            .post(app.url("/users/bulk"))
            .body("username,email\n")
            .send()
            .await
            .unwrap();
        assert_unauthorized(bulk).await;
        app.stop().await;
    }

    async fn redirects_health_and_openapi_never_need_a_key(app) {
        let key = new_key(&app, "seed").await;
        let (_, _, code, _) = seed(&app, &key).await;
        let redirect = app.get(&format!("/{code}")).await;
        assert_eq!(redirect.status(), StatusCode::FOUND);
        for path in ["/health", "/livez", "/readyz", "/openapi.json"] {
            assert_eq!(app.get(path).await.status(), StatusCode::OK, "{path}");
        }
        let doc: Value = app.get("/openapi.json").await.json().await.unwrap();
        assert_eq!(doc["components"]["securitySchemes"]["api_key"]["scheme"], "bearer");
        assert!(doc["paths"]["/urls"]["post"]["security"].is_array());
        assert!(doc["paths"]["/{short_code}"]["get"]["security"].is_null());
        // An unknown code stays a plain 404: no hint that keys exist.
        assert_eq!(app.get("/no-such-code").await.status(), StatusCode::NOT_FOUND);
        app.stop().await;
    }

    async fn a_key_works_until_it_is_revoked(app) {
        let created = auth::create_key(&app.store, "rotating").await.unwrap();
        let response = send(&app, Method::GET, "/users", None, Some(&created.secret)).await;
        assert_eq!(response.status(), StatusCode::OK);
        app.store.revoke_api_key(created.key.id).await.unwrap();
        let response = send(&app, Method::GET, "/users", None, Some(&created.secret)).await;
        assert_unauthorized(response).await;
        let replacement = new_key(&app, "rotated").await;
        let response = send(&app, Method::GET, "/users", None, Some(&replacement)).await;
        assert_eq!(response.status(), StatusCode::OK);
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_auth_the_original_contract_needs_no_key() {
    let app = common::spawn(Backend::Sqlite).await;
    let response = app.get("/users").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().get("www-authenticate").is_none());
    app.stop().await;
}

fn kadi(database_url: &str, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_kadi"))
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .env_remove("KADI_AUTH")
        .args(["--database-url", database_url, "--log-format", "text"])
        .args(args)
        .output()
        .expect("run kadi")
}

fn stdout(output: &std::process::Output) -> String {
    assert!(
        output.status.success(),
        "kadi failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_created_listed_and_revoked_with_the_cli() {
    let db = common::TestDb::new(Backend::Sqlite).await;

    let created = stdout(&kadi(&db.url, &["keys", "create", "--name", "ci-bot"]));
    let field = |name: &str| {
        created
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{name}: ")))
            .unwrap_or_else(|| panic!("no {name} in {created}"))
            .to_owned()
    };
    let key = field("key");
    let id = field("id");
    assert!(key.starts_with("kadi_") && key.len() == 69, "{key}");

    let store = db.store().await;
    let key_id = auth::verify_key(&store, &key).await.expect("valid key");
    assert_eq!(key_id.to_string(), id);
    let stored = store.api_keys().await.unwrap();
    assert_eq!(stored.len(), 1);
    assert!(key.starts_with(&stored[0].prefix));
    assert!(!stored[0].prefix.is_empty() && stored[0].prefix.len() < 20);

    let listed = stdout(&kadi(&db.url, &["keys", "list"]));
    assert!(listed.contains("ci-bot"), "{listed}");
    assert!(listed.contains(&stored[0].prefix), "{listed}");
    assert!(!listed.contains(&key), "the list never shows a key");

    let revoked = stdout(&kadi(&db.url, &["keys", "revoke", &id]));
    assert!(revoked.contains("revoked"), "{revoked}");
    assert!(matches!(
        auth::verify_key(&store, &key).await,
        Err(AuthError::Rejected)
    ));
    let listed = stdout(&kadi(&db.url, &["keys", "list"]));
    let row = listed.lines().find(|l| l.contains("ci-bot")).unwrap();
    assert!(!row.contains(" - "), "revocation time in {row}");

    let unnamed = kadi(&db.url, &["keys", "create", "--name", " "]);
    assert!(!unnamed.status.success());

    let missing = kadi(&db.url, &["keys", "revoke", "999"]);
    assert!(!missing.status.success());
    store.close().await;
}

/// Starts the real binary on the embedded default on loopback (no auth
/// settings in the environment) and returns its base URL and log.
fn start_embedded(db_url: &str, extra: &[&str]) -> (std::process::Child, String, Vec<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kadi"))
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .env_remove("KADI_AUTH")
        .args(["--listen", "127.0.0.1:0", "--log-format", "json"])
        .args(["--database-url", db_url])
        .args(extra)
        .stderr(Stdio::piped())
        .spawn()
        .expect("start kadi");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            seen.push(line.clone());
            if let Ok(entry) = serde_json::from_str::<Value>(&line) {
                if entry["message"] == "Kadi is listening" {
                    let url = entry["url"].as_str().unwrap_or("").to_owned();
                    let _ = tx.send((url, seen.clone()));
                }
            }
        }
    });
    let (base, log) = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("kadi did not start");
    (child, base, log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_default_on_loopback_starts_open_and_says_so() {
    let db = common::TestDb::new(Backend::Sqlite).await;
    let (mut child, base, log) = start_embedded(&db.url, &[]);
    let log = log.join("\n");
    assert!(log.contains("API keys are off"), "{log}");
    assert!(log.contains(r#""auth":"off""#), "{log}");
    let response = reqwest::get(format!("{base}/users")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let _ = child.kill();
    let _ = child.wait();

    let (mut child, base, _) = start_embedded(&db.url, &["--auth", "required"]);
    let response = reqwest::get(format!("{base}/users")).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bootstrap_key_from_the_environment_opens_the_api() {
    let db = common::TestDb::new(kadi::store::Backend::Sqlite).await;
    let secret = format!("kadi_{}", "ab".repeat(32));
    let start = || {
        std::env::set_var("KADI_BOOTSTRAP_API_KEY", &secret);
        let process =
            common::KadiProcess::start(&["--database-url", &db.url, "--auth", "required"]);
        std::env::remove_var("KADI_BOOTSTRAP_API_KEY");
        process
    };
    let kadi = start();
    let client = reqwest::Client::new();
    let without = client
        .get(format!("{}/users", kadi.base))
        .send()
        .await
        .unwrap();
    assert_eq!(without.status(), reqwest::StatusCode::UNAUTHORIZED);
    let with = client
        .get(format!("{}/users", kadi.base))
        .bearer_auth(&secret)
        .send()
        .await
        .unwrap();
    assert_eq!(with.status(), reqwest::StatusCode::OK);
    drop(kadi);
    // A restart with the same key keeps a single stored key.
    let kadi = start();
    let with = client
        .get(format!("{}/users", kadi.base))
        .bearer_auth(&secret)
        .send()
        .await
        .unwrap();
    assert_eq!(with.status(), reqwest::StatusCode::OK);
    let store = db.store().await;
    assert_eq!(store.api_keys().await.unwrap().len(), 1);
}
