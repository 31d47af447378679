//! The OpenAPI document served at `/openapi.json` describes every route the
//! router serves.

mod common;

use kadi::store::Backend;
use reqwest::Method;
use serde_json::Value;

/// Every route of the public router, as (method, path template). A route added
/// to the router belongs here and in the document; the probe below catches a
/// route in this list that the router does not serve.
const ROUTES: &[(&str, &str)] = &[
    ("get", "/health"),
    ("get", "/livez"),
    ("get", "/readyz"),
    ("get", "/openapi.json"),
    ("post", "/users"),
    ("get", "/users"),
    ("post", "/users/bulk"),
    ("get", "/users/{id}"),
    ("put", "/users/{id}"),
    ("delete", "/users/{id}"),
    ("post", "/urls"),
    ("get", "/urls"),
    ("get", "/urls/{id}"),
    ("put", "/urls/{id}"),
    ("delete", "/urls/{id}"),
    ("get", "/urls/{id}/stats"),
    ("post", "/events"),
    ("get", "/events"),
    ("get", "/events/{id}"),
    ("get", "/{short_code}"),
];

#[tokio::test]
async fn every_route_is_documented_and_nothing_else() {
    let app = common::spawn(Backend::Sqlite).await;
    let doc: Value = app.get("/openapi.json").await.json().await.unwrap();
    let paths = doc["paths"].as_object().expect("paths");
    let mut documented: Vec<(String, String)> = paths
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .filter(|k| ["get", "put", "post", "delete", "patch", "head"].contains(&k.as_str()))
                .map(move |method| (method.clone(), path.clone()))
        })
        .collect();
    documented.sort();
    let mut expected: Vec<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    expected.sort();
    assert_eq!(documented, expected);
    for (_, item) in paths {
        for operation in item.as_object().unwrap().values() {
            assert!(operation["responses"]
                .as_object()
                .is_some_and(|r| !r.is_empty()));
        }
    }
}

#[tokio::test]
async fn every_listed_route_is_served() {
    let app = common::spawn(Backend::Sqlite).await;
    for (method, path) in ROUTES {
        let concrete = path.replace("{id}", "1").replace("{short_code}", "abcdef");
        let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let response = app
            .client
            .request(method.clone(), app.url(&concrete))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        // A route that exists answers anything but "no such route" or 405.
        assert_ne!(status, 405, "{method} {path}");
        assert_ne!(body["error"], "no such route", "{method} {path}");
    }
}
