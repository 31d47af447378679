//! Abuse limits: token-bucket rate limits on the API (per client and per key)
//! and on redirects (per client), connection deadlines against slow clients,
//! bounded headers, and the security headers of every response.

mod common;

use std::time::{Duration, Instant};

use common::TestApp;
use kadi::auth::{self, AuthMode};
use kadi::ratelimit::RateLimit;
use kadi::server::Options;
use kadi::store::Backend;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A limit that refills too slowly to matter during a test: `burst` requests,
/// then refusals.
fn burst_of(burst: u32) -> Option<RateLimit> {
    RateLimit::new(0.05, burst)
}

async fn spawn(adjust: impl FnOnce(&mut Options)) -> TestApp {
    common::spawn_with(Backend::Sqlite, adjust).await
}

/// GET `path` as the client `client` (through `X-Forwarded-For`), with `key`.
async fn get_as(app: &TestApp, path: &str, client: &str, key: Option<&str>) -> reqwest::Response {
    let mut request = app
        .client
        .request(Method::GET, app.url(path))
        .header("x-forwarded-for", client);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    request.send().await.expect("request")
}

fn header(response: &reqwest::Response, name: &str) -> Option<u64> {
    response.headers().get(name)?.to_str().ok()?.parse().ok()
}

async fn assert_rate_limited(response: reqwest::Response, limit: u64) {
    assert_eq!(header(&response, "ratelimit-limit"), Some(limit));
    assert_eq!(header(&response, "ratelimit-remaining"), Some(0));
    assert!(header(&response, "ratelimit-reset").is_some_and(|s| s >= 1));
    assert!(header(&response, "retry-after").is_some_and(|s| s >= 1));
    let body = common::assert_error(response, StatusCode::TOO_MANY_REQUESTS).await;
    assert_eq!(body["code"], "rate_limited");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_refuses_a_client_over_its_limit() {
    let app = spawn(|o| o.rate_limits.api = burst_of(3)).await;
    for left in (0..3).rev() {
        let response = app.get("/users").await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(header(&response, "ratelimit-limit"), Some(3));
        assert_eq!(header(&response, "ratelimit-remaining"), Some(left));
    }
    assert_rate_limited(app.get("/users").await, 3).await;
    // Health is no API route and never counts.
    assert_eq!(app.get("/health").await.status(), StatusCode::OK);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_limits_each_key_across_clients() {
    let app = spawn(|o| {
        o.auth = AuthMode::Required;
        o.rate_limits.api = burst_of(3);
        o.rate_limits.trust_forwarded_for = true;
    })
    .await;
    let key = auth::create_key(&app.store, "busy").await.unwrap().secret;
    let other = auth::create_key(&app.store, "quiet").await.unwrap().secret;
    // Three clients with one request each: no client is near its limit,
    // but the key is.
    for client in ["10.0.0.1", "10.0.0.2", "10.0.0.3"] {
        let response = get_as(&app, "/users", client, Some(&key)).await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    let refused = get_as(&app, "/users", "10.0.0.4", Some(&key)).await;
    assert_rate_limited(refused, 3).await;
    let response = get_as(&app, "/users", "10.0.0.5", Some(&other)).await;
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "other keys are unaffected"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_limits_each_client_across_keys() {
    let app = spawn(|o| {
        o.auth = AuthMode::Required;
        o.rate_limits.api = burst_of(3);
        o.rate_limits.trust_forwarded_for = true;
    })
    .await;
    let mut keys = Vec::new();
    for n in 0..4 {
        keys.push(
            auth::create_key(&app.store, &format!("k{n}"))
                .await
                .unwrap()
                .secret,
        );
    }
    for key in &keys[..3] {
        let response = get_as(&app, "/users", "192.0.2.7", Some(key)).await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    let refused = get_as(&app, "/users", "192.0.2.7", Some(&keys[3])).await;
    assert_rate_limited(refused, 3).await;
    let response = get_as(&app, "/users", "192.0.2.8", Some(&keys[3])).await;
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "other clients are unaffected"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessing_keys_is_throttled_per_client() {
    let app = spawn(|o| {
        o.auth = AuthMode::Required;
        o.rate_limits.api = burst_of(3);
    })
    .await;
    for n in 0..3 {
        let guess = format!("kadi_{n:064x}");
        let response = get_as(&app, "/users", "ignored", Some(&guess)).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    let guess = format!("kadi_{:064x}", 99);
    assert_rate_limited(get_as(&app, "/users", "ignored", Some(&guess)).await, 3).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_have_their_own_limit_per_client() {
    let app = spawn(|o| {
        o.rate_limits.api = burst_of(2);
        o.rate_limits.redirect = burst_of(5);
        o.rate_limits.trust_forwarded_for = true;
    })
    .await;
    let user = app.create_user("ann").await;
    let link = app
        .create_url(user, "https://example.com/", json!({}))
        .await;
    let path = format!("/{}", link["short_code"].as_str().unwrap());
    for _ in 0..5 {
        let response = get_as(&app, &path, "198.51.100.1", None).await;
        assert_eq!(response.status(), StatusCode::FOUND);
    }
    assert_rate_limited(get_as(&app, &path, "198.51.100.1", None).await, 5).await;
    let response = get_as(&app, &path, "198.51.100.2", None).await;
    assert_eq!(
        response.status(),
        StatusCode::FOUND,
        "other clients still redirect"
    );
    // The API bucket of the client that used up its redirects is untouched.
    let response = get_as(&app, "/urls", "198.51.100.1", None).await;
    assert_eq!(response.status(), StatusCode::OK);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_for_is_ignored_unless_trusted() {
    let app = spawn(|o| o.rate_limits.api = burst_of(2)).await;
    for client in ["10.1.0.1", "10.1.0.2"] {
        assert_eq!(
            get_as(&app, "/users", client, None).await.status(),
            StatusCode::OK
        );
    }
    assert_rate_limited(get_as(&app, "/users", "10.1.0.3", None).await, 2).await;
    app.stop().await;
}

/// Reads until the server closes the connection; fails after `within`.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> String {
    read_until(stream, within, |_| false).await
}

/// Reads until the server closes the connection or what was read satisfies
/// `enough`; fails after `within`.
async fn read_until(
    stream: &mut TcpStream,
    within: Duration,
    enough: impl Fn(&str) -> bool,
) -> String {
    let mut seen = Vec::new();
    let result = tokio::time::timeout(within, async {
        let mut buffer = [0_u8; 4096];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&buffer[..n]),
            }
            if enough(&String::from_utf8_lossy(&seen)) {
                return;
            }
        }
    })
    .await;
    assert!(
        result.is_ok(),
        "no answer and connection still open after {within:?}"
    );
    String::from_utf8_lossy(&seen).into_owned()
}

fn short_deadlines(options: &mut Options) {
    options.connections.header_read_timeout = Duration::from_millis(500);
    options.connections.body_read_timeout = Duration::from_millis(500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_sending_half_a_header_is_disconnected() {
    let app = spawn(short_deadlines).await;
    let mut stream = TcpStream::connect(app.base.trim_start_matches("http://"))
        .await
        .unwrap();
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: sho.rt.test\r\nX-Slow: ")
        .await
        .unwrap();
    let started = Instant::now();
    read_until_closed(&mut stream, Duration::from_secs(5)).await;
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "closed too early: {:?}",
        started.elapsed()
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed() {
    let app = spawn(short_deadlines).await;
    let mut stream = TcpStream::connect(app.base.trim_start_matches("http://"))
        .await
        .unwrap();
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: sho.rt.test\r\n\r\n")
        .await
        .unwrap();
    let answer = read_until_closed(&mut stream, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_stalls_is_refused() {
    let app = spawn(short_deadlines).await;
    let mut stream = TcpStream::connect(app.base.trim_start_matches("http://"))
        .await
        .unwrap();
    stream
        .write_all(
            b"POST /users HTTP/1.1\r\nHost: sho.rt.test\r\n\
              Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"user",
        )
        .await
        .unwrap();
    let answer = read_until(&mut stream, Duration::from_secs(5), |text| {
        text.contains(r#""status":400}"#)
    })
    .await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(
        answer.contains(r#""status":400"#),
        "JSON error body: {answer}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_headers_are_refused() {
    let app = spawn(|_| {}).await;
    let mut stream = TcpStream::connect(app.base.trim_start_matches("http://"))
        .await
        .unwrap();
    let request = format!(
        "GET /health HTTP/1.1\r\nHost: sho.rt.test\r\nX-Big: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    // The server may close before reading everything; a failed write is fine.
    let _ = stream.write_all(request.as_bytes()).await;
    let answer = read_until_closed(&mut stream, Duration::from_secs(5)).await;
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
        "{answer}"
    );
    assert!(!answer.contains("200 OK"));
    app.stop().await;
}

fn header_text(response: &reqwest::Response, name: &str) -> Option<String> {
    Some(response.headers().get(name)?.to_str().ok()?.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_carry_security_headers() {
    let app = spawn(|_| {}).await;
    let user = app.create_user("ann").await;
    let link = app
        .create_url(user, "https://example.com/", json!({}))
        .await;

    let json_responses = [
        app.get("/health").await,
        app.get("/openapi.json").await,
        app.get("/users").await,
        app.get("/users/999999").await,
        app.get("/no/such/route").await,
    ];
    for response in &json_responses {
        let status = response.status();
        assert_eq!(
            header_text(response, "x-content-type-options").as_deref(),
            Some("nosniff")
        );
        assert_eq!(
            header_text(response, "x-frame-options").as_deref(),
            Some("DENY")
        );
        assert_eq!(
            header_text(response, "content-security-policy").as_deref(),
            Some("default-src 'none'; frame-ancestors 'none'"),
            "{status}"
        );
        assert_eq!(
            header_text(response, "referrer-policy").as_deref(),
            Some("no-referrer")
        );
        assert_eq!(header_text(response, "strict-transport-security"), None);
    }

    let redirect = app
        .get(&format!("/{}", link["short_code"].as_str().unwrap()))
        .await;
    assert_eq!(redirect.status(), StatusCode::FOUND);
    assert_eq!(
        header_text(&redirect, "x-content-type-options").as_deref(),
        Some("nosniff")
    );
    assert_eq!(
        header_text(&redirect, "referrer-policy"),
        None,
        "the target keeps its referrer"
    );
    app.stop().await;

    let https = spawn(|o| o.public_url = "https://sho.rt.test".parse().unwrap()).await;
    let response = https.get("/health").await;
    assert!(header_text(&response, "strict-transport-security")
        .is_some_and(|v| v.starts_with("max-age=")));
    https.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_bodies_hold_no_internals() {
    let app = spawn(|_| {}).await;
    let responses = [
        app.send_raw(Method::POST, "/users", "application/json", b"{\"a\":")
            .await,
        app.send_raw(Method::POST, "/urls", "application/json", b"[1,2]")
            .await,
        app.get("/users/not-a-number").await,
        app.post("/events", json!({"url_id": "x"})).await,
    ];
    for response in responses {
        let status = response.status();
        assert!(status.is_client_error(), "{status}");
        let body: Value = response.json().await.unwrap();
        let text = body.to_string();
        for leak in ["panicked", "src/", ".rs:", "sqlx", "backtrace", "thread '"] {
            assert!(!text.contains(leak), "{leak} in {text}");
        }
        assert_eq!(body.as_object().unwrap().len(), 3, "{text}");
    }
    app.stop().await;
}
