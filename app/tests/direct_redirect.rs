//! The public listener answers plain short-code requests without the router.
//! These tests send the same requests through both paths, against the same
//! state, and require the same answer: status, headers and body.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::response::Response;
use common::TestApp;
use kadi::http::public::PublicService;
use kadi::ratelimit::RateLimit;
use kadi::store::Backend;
use serde_json::json;

const PEER: &str = "192.0.2.10:40000";

/// Status, headers (request ids reduced to their presence) and body.
#[derive(Debug, PartialEq)]
struct Answer {
    status: StatusCode,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

async fn answer(response: Response) -> Answer {
    let status = response.status();
    let headers = normalised(response.headers());
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("body")
        .to_vec();
    Answer {
        status,
        headers,
        body,
    }
}

fn normalised(headers: &HeaderMap) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = headers
        .iter()
        .map(|(name, value)| {
            let value = match name.as_str() {
                "x-request-id" => "<id>".to_owned(),
                _ => value.to_str().unwrap_or("<binary>").to_owned(),
            };
            (name.as_str().to_owned(), value)
        })
        .collect();
    pairs.sort();
    pairs
}

fn request(method: &Method, path: &str, headers: &[(&str, &str)]) -> Request<Body> {
    let mut builder = Request::builder().method(method).uri(path);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Body::empty()).expect("request")
}

/// The answer of the direct path, which must take the request.
async fn direct(public: &PublicService, request: Request<Body>) -> Answer {
    assert!(
        public.takes(&request),
        "the direct path refused {} {}",
        request.method(),
        request.uri()
    );
    let (parts, _) = request.into_parts();
    answer(
        public
            .redirect(parts, PEER.parse::<SocketAddr>().unwrap())
            .await,
    )
    .await
}

/// The answer of the router.
async fn routed(public: &PublicService, request: Request<Body>) -> Answer {
    answer(public.route(request, PEER.parse().unwrap()).await).await
}

async fn assert_same(public: &PublicService, method: Method, path: &str, headers: &[(&str, &str)]) {
    let by_router = routed(public, request(&method, path, headers)).await;
    let by_direct = direct(public, request(&method, path, headers)).await;
    assert_eq!(by_direct, by_router, "{method} {path} {headers:?}");
}

/// Creates a link and returns its code and id.
async fn create(app: &TestApp, user: i64, target: &str, extra: serde_json::Value) -> (String, i64) {
    let link = app.create_url(user, target, extra).await;
    let code = link["short_code"].as_str().expect("short_code").to_owned();
    (code, link["id"].as_i64().expect("id"))
}

async fn both_paths_answer_alike(backend: Backend) {
    let app = common::spawn(backend).await;
    let public = PublicService::new(app.state.clone());
    let user = app.create_user("paths").await;

    let plain = create(&app, user, "https://example.com/plain?q=1", json!({})).await;
    let permanent = create(
        &app,
        user,
        "https://example.com/moved",
        json!({"redirect_status": 301}),
    )
    .await;
    let limited = create(
        &app,
        user,
        "https://example.com/few",
        json!({"max_visits": 50}),
    )
    .await;
    let inactive = create(&app, user, "https://example.com/off", json!({})).await;
    let response = app
        .put(
            &format!("/urls/{}", inactive.1),
            json!({"is_active": false}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let expiring = create(
        &app,
        user,
        "https://example.com/soon",
        json!({"expires_at": (chrono::Utc::now() + chrono::Duration::seconds(1)).to_rfc3339()}),
    )
    .await;

    for method in [Method::GET, Method::HEAD] {
        let unknown = "nosuchcode".to_owned();
        for code in [&plain.0, &permanent.0, &limited.0, &inactive.0, &unknown] {
            let path = format!("/{code}");
            assert_same(&public, method.clone(), &path, &[]).await;
            assert_same(&public, method.clone(), &format!("{path}?utm=x"), &[]).await;
            assert_same(
                &public,
                method.clone(),
                &path,
                &[
                    ("x-request-id", "given-id-1"),
                    ("referer", "https://news.example/"),
                    ("user-agent", "Mozilla/5.0"),
                ],
            )
            .await;
        }
    }
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert_same(&public, Method::GET, &format!("/{}", expiring.0), &[]).await;
    assert_same(&public, Method::HEAD, &format!("/{}", expiring.0), &[]).await;

    // A given request id is echoed by both.
    let echoed = direct(
        &public,
        request(
            &Method::GET,
            &format!("/{}", plain.0),
            &[("x-request-id", "abc-123")],
        ),
    )
    .await;
    assert!(echoed
        .headers
        .contains(&("x-request-id".to_owned(), "<id>".to_owned())));
    let given = request(
        &Method::GET,
        &format!("/{}", plain.0),
        &[("x-request-id", "abc-123")],
    );
    assert!(public.takes(&given));
    let response = public
        .redirect(given.into_parts().0, PEER.parse().unwrap())
        .await;
    assert_eq!(response.headers()["x-request-id"], "abc-123");
    assert_eq!(response.status(), StatusCode::FOUND);
    assert_eq!(
        response.headers()["location"],
        "https://example.com/plain?q=1"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_paths_answer_alike_on_sqlite() {
    both_paths_answer_alike(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_paths_answer_alike_on_postgres() {
    both_paths_answer_alike(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_paths_share_the_redirect_limit() {
    let app = common::spawn_with(Backend::Sqlite, |options| {
        options.rate_limits.redirect = RateLimit::new(0.01, 2);
    })
    .await;
    let public = PublicService::new(app.state.clone());
    let user = app.create_user("limited").await;
    let (code, _) = create(&app, user, "https://example.com/", json!({})).await;
    let path = format!("/{code}");
    assert_eq!(
        routed(&public, request(&Method::GET, &path, &[]))
            .await
            .status,
        StatusCode::FOUND
    );
    assert_eq!(
        direct(&public, request(&Method::GET, &path, &[]))
            .await
            .status,
        StatusCode::FOUND
    );
    let by_router = routed(&public, request(&Method::GET, &path, &[])).await;
    let by_direct = direct(&public, request(&Method::GET, &path, &[])).await;
    assert_eq!(by_router.status, StatusCode::TOO_MANY_REQUESTS);
    let names = |a: &Answer| a.headers.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(names(&by_direct), names(&by_router));
    assert_eq!(by_direct.status, by_router.status);
    assert_eq!(by_direct.body, by_router.body);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_router_keeps_what_is_not_a_plain_code() {
    let app = common::spawn(Backend::Sqlite).await;
    let public = PublicService::new(app.state.clone());
    for (method, path) in [
        (Method::GET, "/health"),
        (Method::GET, "/users"),
        (Method::GET, "/dashboard"),
        (Method::GET, "/openapi.json"),
        (Method::GET, "/a%62c"),
        (Method::POST, "/abc"),
        (Method::DELETE, "/abc"),
        (Method::GET, "/abc/def"),
    ] {
        assert!(
            !public.takes(&request(&method, path, &[])),
            "{method} {path}"
        );
    }
    // The router's own redirect route answers what the direct path leaves.
    let user = app.create_user("encoded").await;
    let (code, _) = create(
        &app,
        user,
        "https://example.com/enc",
        json!({"short_code": "abc"}),
    )
    .await;
    assert_eq!(code, "abc");
    let encoded = routed(&public, request(&Method::GET, "/a%62c", &[])).await;
    let plain = direct(&public, request(&Method::GET, "/abc", &[])).await;
    assert_eq!(encoded.status, StatusCode::FOUND);
    assert_eq!(encoded, plain);
    app.stop().await;
}
