//! Fuzz-style robustness: thousands of random and mutated requests, on SQLite
//! and PostgreSQL, and not one answers with a 5xx.

mod common;

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use reqwest::Method;
use serde_json::{json, Map, Value};

/// Requests per backend; enough to hit every route with many shapes.
const CASES: usize = 1_500;

const TEMPLATES: &[&str] = &[
    "/users",
    "/users/{}",
    "/users/bulk",
    "/urls",
    "/urls/{}",
    "/urls/{}/stats",
    "/events",
    "/events/{}",
    "/{}",
    "/health",
    "/readyz",
    "/openapi.json",
    "/{}/{}",
    "/",
];

const FIELDS: &[&str] = &[
    "username",
    "email",
    "user_id",
    "original_url",
    "title",
    "short_code",
    "expires_at",
    "max_visits",
    "redirect_status",
    "is_active",
    "url_id",
    "event_type",
    "details",
];

fn random_text(rng: &mut StdRng) -> String {
    let pool = [
        "",
        "0",
        "-1",
        "1",
        "2",
        "9223372036854775807",
        "9223372036854775808",
        "1e309",
        "abc",
        "..",
        "%00",
        "%ff",
        "é",
        "😀",
        "null",
        "true",
        "a b",
        "%2F",
        "users",
        "\u{202e}",
        "\\",
        "https://example.com/x",
        "javascript:alert(1)",
        "2025-01-01T00:00:00Z",
        "' OR 1=1 --",
    ];
    let mut text = pool.choose(rng).unwrap().to_string();
    if rng.random_bool(0.2) {
        text = text.repeat(rng.random_range(1..300));
    }
    text
}

fn random_value(rng: &mut StdRng, depth: u32) -> Value {
    match rng.random_range(0..if depth > 2 { 6 } else { 8 }) {
        0 => Value::Null,
        1 => json!(rng.random_bool(0.5)),
        2 => json!(rng.random::<i64>()),
        3 => json!(rng.random::<f64>() * 1e12),
        4 => json!(rng.random_range(-3..3000)),
        5 => json!(random_text(rng)),
        6 => Value::Array(
            (0..rng.random_range(0..4))
                .map(|_| random_value(rng, depth + 1))
                .collect(),
        ),
        _ => Value::Object(random_object(rng, depth + 1)),
    }
}

fn random_object(rng: &mut StdRng, depth: u32) -> Map<String, Value> {
    let mut object = Map::new();
    for _ in 0..rng.random_range(0..6) {
        let key = if rng.random_bool(0.8) {
            FIELDS.choose(rng).unwrap().to_string()
        } else {
            random_text(rng)
        };
        object.insert(key, random_value(rng, depth));
    }
    object
}

fn random_body(rng: &mut StdRng, user_id: i64, url_id: i64) -> (Option<&'static str>, Vec<u8>) {
    let content_type = [
        Some("application/json"),
        Some("application/json; charset=utf-8"),
        Some("text/plain"),
        Some("multipart/form-data; boundary=x"),
        None,
    ]
    .choose(rng)
    .copied()
    .unwrap();
    let body = match rng.random_range(0..6) {
        // Over the body limit.
        5 if rng.random_bool(0.2) => vec![b'{'; 70 * 1024],
        // A valid body with one field replaced by a random value.
        0 => {
            let mut base = [
                json!({"username": "u", "email": "u@example.com"}),
                json!({"user_id": user_id, "original_url": "https://example.com/"}),
                json!({"url_id": url_id, "event_type": "x"}),
            ]
            .choose(rng)
            .unwrap()
            .clone();
            if rng.random_bool(0.6) {
                let field = FIELDS.choose(rng).unwrap().to_string();
                base.as_object_mut()
                    .unwrap()
                    .insert(field, random_value(rng, 0));
            }
            serde_json::to_vec(&base).unwrap()
        }
        1 => serde_json::to_vec(&Value::Object(random_object(rng, 0))).unwrap(),
        2 => serde_json::to_vec(&random_value(rng, 0)).unwrap(),
        3 => (0..rng.random_range(0..200))
            .map(|_| rng.random::<u8>())
            .collect(),
        _ => random_text(rng).into_bytes(),
    };
    (content_type, body)
}

fn targeted(rng: &mut StdRng, case: usize, user_id: i64, url_id: i64) -> (&'static str, Vec<u8>) {
    let (path, mut body) = match rng.random_range(0..3) {
        0 => (
            "/users",
            json!({"username": format!("u{}", case % 50), "email": format!("u{case}@example.com")}),
        ),
        1 => (
            "/urls",
            json!({"user_id": user_id, "original_url": "https://example.com/",
                              "short_code": format!("code{}", case % 40)}),
        ),
        _ => ("/events", json!({"url_id": url_id, "event_type": "x"})),
    };
    if rng.random_bool(0.3) {
        let field = FIELDS.choose(rng).unwrap().to_string();
        body.as_object_mut()
            .unwrap()
            .insert(field, random_value(rng, 0));
    }
    (path, serde_json::to_vec(&body).unwrap())
}

on_both_backends! {
    async fn random_requests_never_get_a_server_error(app) {
        let mut rng = StdRng::seed_from_u64(0x4b414449);
        let user_id = app.create_user("fuzz").await;
        let url = app.create_url(user_id, "https://example.com/", json!({"short_code": "fuzzed"})).await;
        let url_id = url["id"].as_i64().unwrap();
        let mut seen = std::collections::BTreeSet::new();
        let methods = [Method::GET, Method::POST, Method::PUT, Method::DELETE, Method::PATCH,
                       Method::HEAD, Method::OPTIONS];
        for case in 0..CASES {
            let template = TEMPLATES.choose(&mut rng).unwrap();
            let mut path = template.to_string();
            while path.contains("{}") {
                let part = if rng.random_bool(0.3) { url_id.to_string() } else { random_text(&mut rng) };
                path = path.replacen("{}", &part, 1);
            }
            if rng.random_bool(0.2) {
                path.push_str(&format!("?page={}&per_page={}&user_id={}&is_active={}",
                    random_text(&mut rng), random_text(&mut rng), random_text(&mut rng), random_text(&mut rng)));
            }
            let mut method = methods.choose(&mut rng).unwrap().clone();
            let (mut content_type, mut body) = random_body(&mut rng, user_id, url_id);
            if rng.random_bool(0.3) {
                // Aim at a real write route with a nearly valid body.
                let (target, valid) = targeted(&mut rng, case, user_id, url_id);
                method = Method::POST;
                path = target.to_owned();
                content_type = Some("application/json");
                body = valid;
            }
            let mut request = app.client.request(method.clone(), app.url(&path)).body(body.clone());
            if let Some(content_type) = content_type {
                request = request.header("content-type", content_type);
            }
            let Ok(response) = request.send().await else {
                // The client refused to build the request (an invalid URL); nothing reached the server.
                continue;
            };
            let status = response.status();
            seen.insert(status.as_u16());
            assert!(!status.is_server_error(),
                "case {case}: {method} {path} with {:?} gave {status}: {:?}",
                String::from_utf8_lossy(&body), response.text().await);
        }
        // The cases reached deep into the handlers, not only the router.
        for expected in [200, 201, 400, 404, 405, 409, 413, 415, 422] {
            assert!(seen.contains(&expected), "no {expected} among {seen:?}");
        }
        assert_eq!(app.get("/health").await.status(), reqwest::StatusCode::OK);
    }
}
