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

    async fn nul_characters_are_refused_on_every_backend(app) {
        // PostgreSQL stores no NUL in text or JSON: these once answered 500 there.
        let user_id = app.create_user("nul");
        let url = app.create_url(user_id.await, "https://example.com/", json!({})).await;
        for details in [json!({"note": "a\u{0}b"}), json!({"k\u{0}": 1}), json!({"deep": [{"x": "\u{0}"}]})] {
            let response = app.post("/events", json!({"url_id": url["id"], "event_type": "x", "details": details})).await;
            common::assert_error(response, reqwest::StatusCode::UNPROCESSABLE_ENTITY).await;
        }
        let response = app.get("/events?event_type=a%00b").await;
        common::assert_error(response, reqwest::StatusCode::BAD_REQUEST).await;
        let stored = app.post("/events", json!({"url_id": url["id"], "event_type": "x", "details": {"ok": "\u{1}"}})).await;
        assert_eq!(stored.status(), reqwest::StatusCode::CREATED);
    }
}

/// Property tests: generated short codes, target URLs and CSV files through
/// the pure checks and through the running service. Each property runs a
/// fixed number of cases from proptest's deterministic generator, so a
/// failure reproduces on every run.
mod properties {
    use super::common;

    use kadi::http::users::parse_users_csv;
    use kadi::import::{import, ImportFiles};
    use kadi::links::{check_custom_code, is_code_shaped, TargetPolicy, CUSTOM_CODE_LEN};
    use kadi::store::Backend;
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};
    use reqwest::StatusCode;
    use serde_json::{json, Value};
    use url::Url;

    /// Cases of the pure properties: cheap, so many.
    const PURE_CASES: u32 = 2_000;

    /// Cases of the properties that go through the service: each is a few
    /// requests and a transaction, so this keeps each test within seconds.
    const SERVICE_CASES: u32 = 96;

    fn runner(cases: u32) -> TestRunner {
        TestRunner::new_with_rng(
            Config {
                cases,
                failure_persistence: None,
                ..Config::default()
            },
            proptest::test_runner::TestRng::deterministic_rng(
                proptest::test_runner::RngAlgorithm::ChaCha,
            ),
        )
    }

    /// How many generated inputs were accepted and refused: a property whose
    /// cases all land on one side proves little, so each asserts both.
    #[derive(Default)]
    struct Outcomes {
        accepted: std::cell::Cell<u32>,
        refused: std::cell::Cell<u32>,
    }

    impl Outcomes {
        fn count(&self, accepted: bool) {
            let side = if accepted {
                &self.accepted
            } else {
                &self.refused
            };
            side.set(side.get() + 1);
        }

        fn assert_both(&self, what: &str) {
            let (accepted, refused) = (self.accepted.get(), self.refused.get());
            assert!(
                accepted > 0 && refused > 0,
                "{what}: {accepted} accepted, {refused} refused"
            );
        }
    }

    /// Anything a client could send as a short code: any text, and text that
    /// is nearly a code (right charset, lengths around the bounds, reserved
    /// names in other cases).
    fn code_text() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            "[A-Za-z0-9_-]{0,70}",
            "[A-Za-z0-9_.~%/ é-]{1,12}",
            prop::sample::select(vec![
                "users",
                "USERS",
                "Health",
                "openapi.json",
                "dashboard"
            ])
            .prop_map(str::to_owned),
        ]
    }

    /// Anything a client could send as a target URL: any text, and text
    /// shaped like a URL with odd schemes, hosts, ports, credentials, spaces,
    /// non-ASCII and lengths around the limit.
    fn target_text() -> impl Strategy<Value = String> {
        let scheme = prop::sample::select(vec![
            "http://",
            "https://",
            "HTTPS://",
            "ftp://",
            "javascript:",
            "https:",
            " https://",
            "",
        ]);
        let host = "(([a-z0-9-]{1,12}\\.){1,3}[a-z]{2,6}|[0-9.]{1,15}|\\[[0-9a-f:]{2,20}\\]|b\u{fc}cher\\.example|user:pw@example\\.com|sho\\.rt\\.test)";
        let port = prop::option::of("(:[0-9]{0,6})");
        let path = "(/[ -~\u{e9}\u{1f600}\t]{0,40})?";
        let shaped = (scheme, host, port, path).prop_map(|(scheme, host, port, path)| {
            format!("{scheme}{host}{}{path}", port.unwrap_or_default())
        });
        let long = (0usize..40).prop_map(|extra| {
            let path = "a".repeat(2048 - "https://example.com/".len() - 20 + extra);
            format!("https://example.com/{path}")
        });
        prop_oneof![2 => shaped, 1 => any::<String>(), 1 => long]
    }

    /// A users CSV: a header that may miss or reorder columns, then rows
    /// with quotes, empty and huge fields, bad ids and timestamps, repeated
    /// ids and usernames; sometimes with bytes that are not UTF-8.
    fn users_csv() -> impl Strategy<Value = Vec<u8>> {
        let header = prop::sample::select(vec![
            "id,username,email,created_at",
            "username,email",
            "email,username,id",
            "id,username",
            "ID, Username ,EMAIL,created_at",
            "",
        ]);
        let name = prop_oneof![
            "[a-e]{1,3}",
            "[a-z]{1,8}",
            Just(String::new()),
            Just("has space".to_owned()),
            Just("x".repeat(70)),
            Just("\"quoted, name\"".to_owned()),
        ];
        let email = prop_oneof![
            "[a-e]{1,3}@example\\.com",
            Just("not-an-address".to_owned()),
            Just(String::new()),
            Just(format!("{}@example.com", "m".repeat(300))),
        ];
        let id = prop_oneof![
            "[1-9][0-9]{0,2}",
            Just(String::new()),
            Just("-4".to_owned())
        ];
        let created = prop_oneof![
            Just(String::new()),
            Just("2024-02-29T10:00:00Z".to_owned()),
            Just("2024-01-01 08:00:00".to_owned()),
            Just("yesterday".to_owned()),
        ];
        let row = (id, name, email, created, 0usize..3).prop_map(|(id, name, email, at, shape)| {
            match shape {
                // Missing trailing columns.
                0 => format!("{id},{name}"),
                1 => format!("{id},{name},{email},{at}"),
                _ => format!("{id},{name},{email},{at},extra"),
            }
        });
        let text = (header, prop::collection::vec(row, 0..8)).prop_map(|(header, rows)| {
            let mut text = header.to_owned();
            for row in rows {
                text.push('\n');
                text.push_str(&row);
            }
            text.into_bytes()
        });
        prop_oneof![
            4 => text,
            1 => prop::collection::vec(any::<u8>(), 0..300),
            1 => (prop::collection::vec(any::<u8>(), 1..8)).prop_map(|junk| {
                let mut bytes = b"id,username,email,created_at\n1,".to_vec();
                bytes.extend(junk);
                bytes.extend(b",z@example.com,\n");
                bytes
            }),
        ]
    }

    /// An export of the original service: every column filled, ids and
    /// usernames from small ranges so that they repeat, and now and then a
    /// broken row or a stray file from [`users_csv`].
    fn exported_users_csv() -> impl Strategy<Value = Vec<u8>> {
        let row = ("[1-9][0-9]?", "[a-e]{1,3}", "[a-e]{1,3}", 0u8..12).prop_map(
            |(id, name, mailbox, odd)| match odd {
                0 => format!("{id},{name},,2024-01-01T00:00:00Z"),
                1 => format!("x{id},{name},{mailbox}@example.com,2024-01-01T00:00:00Z"),
                _ => format!("{id},{name},{mailbox}@example.com,2024-01-01 08:00:00"),
            },
        );
        let export = prop::collection::vec(row, 1..6).prop_map(|rows| {
            format!("id,username,email,created_at\n{}\n", rows.join("\n")).into_bytes()
        });
        prop_oneof![3 => export, 1 => users_csv()]
    }

    #[test]
    fn any_text_through_short_code_validation_is_judged_without_panic() {
        let outcomes = Outcomes::default();
        runner(PURE_CASES)
            .run(&code_text(), |code| {
                let shaped = is_code_shaped(&code);
                outcomes.count(check_custom_code(&code).is_ok());
                if check_custom_code(&code).is_ok() {
                    prop_assert!(shaped);
                    prop_assert!(CUSTOM_CODE_LEN.contains(&code.len()));
                    prop_assert!(!code.eq_ignore_ascii_case("users"));
                }
                if shaped {
                    prop_assert!(code.bytes().all(|b| b.is_ascii_graphic()));
                }
                Ok(())
            })
            .unwrap();
        outcomes.assert_both("short codes");
    }

    #[test]
    fn any_text_through_target_validation_is_judged_without_panic() {
        let policy = TargetPolicy::for_public_url(&Url::parse("https://sho.rt.test").unwrap());
        let outcomes = Outcomes::default();
        runner(PURE_CASES)
            .run(&target_text(), |raw| {
                let checked = policy.check_target(&raw);
                outcomes.count(checked.is_ok());
                let Ok(stored) = checked else {
                    return Ok(());
                };
                let parsed = Url::parse(&stored).expect("a stored target parses");
                prop_assert!(matches!(parsed.scheme(), "http" | "https"), "{stored}");
                prop_assert!(parsed.host_str().is_some_and(|h| !h.is_empty()), "{stored}");
                prop_assert!(parsed.username().is_empty() && parsed.password().is_none());
                prop_assert!(stored.len() <= kadi::links::MAX_TARGET_LEN);
                if raw.bytes().all(|b| b.is_ascii_graphic()) {
                    prop_assert_eq!(&stored, &raw);
                }
                prop_assert!(stored.bytes().all(|b| b.is_ascii_graphic()), "{stored:?}");
                Ok(())
            })
            .unwrap();
        outcomes.assert_both("target URLs");
    }

    #[test]
    fn any_bytes_through_the_users_csv_parser_are_judged_without_panic() {
        let outcomes = Outcomes::default();
        runner(PURE_CASES)
            .run(&users_csv(), |bytes| {
                let parsed = parse_users_csv(&bytes);
                outcomes.count(parsed.as_ref().is_ok_and(|rows| !rows.is_empty()));
                if let Ok(rows) = parsed {
                    for row in rows {
                        prop_assert!(kadi::http::users::check_username(&row.username).is_ok());
                        prop_assert!(kadi::http::users::check_email(&row.email).is_ok());
                        prop_assert!(row.id.is_none_or(|id| id > 0));
                    }
                }
                Ok(())
            })
            .unwrap();
        outcomes.assert_both("users CSV files");
    }

    /// Runs `property` on a service over a fresh `backend` database.
    fn on_service(backend: Backend, property: impl Fn(&tokio::runtime::Runtime, &common::TestApp)) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let app = runtime.block_on(common::spawn(backend));
        property(&runtime, &app);
        runtime.block_on(app.stop());
    }

    fn codes_round_trip(runtime: &tokio::runtime::Runtime, app: &common::TestApp) {
        let user_id = runtime.block_on(app.create_user("codes"));
        let outcomes = Outcomes::default();
        runner(SERVICE_CASES)
            .run(&code_text(), |code| {
                runtime.block_on(async {
                    let target = "https://example.com/round-trip";
                    let body =
                        json!({"user_id": user_id, "original_url": target, "short_code": code});
                    let response = app.post("/urls", body).await;
                    let status = response.status();
                    match status {
                        StatusCode::CREATED => {
                            outcomes.count(true);
                            prop_assert!(check_custom_code(&code).is_ok(), "{code:?} was accepted");
                            let link: Value = response.json().await.unwrap();
                            prop_assert_eq!(link["short_code"].as_str(), Some(code.as_str()));
                            let redirect = app.get(&format!("/{code}")).await;
                            prop_assert_eq!(redirect.status(), StatusCode::FOUND);
                            let location = redirect.headers()["location"].as_bytes().to_vec();
                            prop_assert_eq!(location, target.as_bytes().to_vec());
                            // Free the code for a later case that draws it again.
                            let deleted = app.delete(&format!("/urls/{}", link["id"])).await;
                            prop_assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
                        }
                        StatusCode::UNPROCESSABLE_ENTITY => {
                            outcomes.count(false);
                            prop_assert!(check_custom_code(&code).is_err(), "{code:?} was refused");
                            common::assert_error(response, status).await;
                        }
                        other => prop_assert!(false, "{code:?} answered {other}"),
                    }
                    Ok(())
                })
            })
            .unwrap();
        outcomes.assert_both("short codes through the service");
    }

    fn targets_round_trip(runtime: &tokio::runtime::Runtime, app: &common::TestApp) {
        let user_id = runtime.block_on(app.create_user("targets"));
        let policy = TargetPolicy::for_public_url(&Url::parse("http://sho.rt.test").unwrap());
        let outcomes = Outcomes::default();
        runner(SERVICE_CASES)
            .run(&target_text(), |raw| {
                runtime.block_on(async {
                    let body = json!({"user_id": user_id, "original_url": raw});
                    let response = app.post("/urls", body).await;
                    let status = response.status();
                    let expected = policy.check_target(&raw);
                    match status {
                        StatusCode::CREATED => {
                            outcomes.count(true);
                            let stored =
                                expected.expect("the service accepted what the policy refuses");
                            let link: Value = response.json().await.unwrap();
                            prop_assert_eq!(link["original_url"].as_str(), Some(stored.as_str()));
                            let read: Value = app
                                .get(&format!("/urls/{}", link["id"]))
                                .await
                                .json()
                                .await
                                .unwrap();
                            prop_assert_eq!(read["original_url"].as_str(), Some(stored.as_str()));
                            let code = link["short_code"].as_str().unwrap();
                            let redirect = app.get(&format!("/{code}")).await;
                            prop_assert_eq!(redirect.status(), StatusCode::FOUND);
                            let location = redirect.headers()["location"].as_bytes().to_vec();
                            prop_assert_eq!(location, stored.as_bytes().to_vec());
                        }
                        StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => {
                            outcomes.count(false);
                            prop_assert!(expected.is_err(), "{raw:?} was refused");
                            common::assert_error(response, status).await;
                        }
                        other => prop_assert!(false, "{raw:?} answered {other}"),
                    }
                    Ok(())
                })
            })
            .unwrap();
        outcomes.assert_both("target URLs through the service");
    }

    /// Usernames and their e-mail addresses, as the service lists them.
    async fn stored_users(app: &common::TestApp) -> std::collections::HashMap<String, String> {
        let mut users = std::collections::HashMap::new();
        for page in 1.. {
            let listed: Vec<Value> = app
                .get(&format!("/users?per_page=100&page={page}"))
                .await
                .json()
                .await
                .unwrap();
            if listed.is_empty() {
                return users;
            }
            for user in listed {
                let name = user["username"].as_str().unwrap().to_owned();
                users.insert(name, user["email"].as_str().unwrap().to_owned());
            }
        }
        unreachable!()
    }

    fn multipart(csv: &[u8]) -> (String, Vec<u8>) {
        let boundary = "kadi-property-test-boundary-6d1f0c2a9b";
        let mut body = format!(
            "--{boundary}\r\ncontent-disposition: form-data; name=\"file\"; filename=\"users.csv\"\r\n\
             content-type: text/csv\r\n\r\n"
        )
        .into_bytes();
        body.extend_from_slice(csv);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        (format!("multipart/form-data; boundary={boundary}"), body)
    }

    fn bulk_imports_exactly_the_valid_rows(
        runtime: &tokio::runtime::Runtime,
        app: &common::TestApp,
    ) {
        let outcomes = Outcomes::default();
        runner(SERVICE_CASES)
            .run(&users_csv(), |csv| {
                runtime.block_on(async {
                    let before = stored_users(app).await;
                    let (content_type, body) = multipart(&csv);
                    let response = app
                        .client
                        .post(app.url("/users/bulk"))
                        .header("content-type", content_type)
                        .body(body)
                        .send()
                        .await
                        .unwrap();
                    let status = response.status();
                    let parsed = parse_users_csv(&csv);
                    let after = stored_users(app).await;
                    match status {
                        StatusCode::CREATED => {
                            outcomes.count(!csv.is_empty());
                            let rows =
                                parsed.expect("the service accepted what the parser refuses");
                            let answer: Value = response.json().await.unwrap();
                            prop_assert_eq!(answer["imported"].as_u64(), Some(rows.len() as u64));
                            // The last row of a username decides its address.
                            let mut wanted = std::collections::HashMap::new();
                            for row in &rows {
                                wanted.insert(row.username.clone(), row.email.clone());
                            }
                            for (username, email) in wanted {
                                prop_assert_eq!(after.get(&username), Some(&email), "{}", username);
                            }
                        }
                        StatusCode::BAD_REQUEST => {
                            outcomes.count(false);
                            prop_assert!(parsed.is_err());
                            common::assert_error(response, status).await;
                            prop_assert_eq!(&after, &before);
                        }
                        StatusCode::CONFLICT => {
                            // An address taken by another username: the whole file is refused.
                            prop_assert!(parsed.is_ok());
                            common::assert_error(response, status).await;
                            prop_assert_eq!(&after, &before);
                        }
                        other => prop_assert!(
                            false,
                            "{:?} answered {other}",
                            String::from_utf8_lossy(&csv)
                        ),
                    }
                    Ok(())
                })
            })
            .unwrap();
        outcomes.assert_both("bulk CSV uploads");
    }

    fn import_keeps_every_row_it_reports(runtime: &tokio::runtime::Runtime, app: &common::TestApp) {
        let dir = std::env::temp_dir().join(format!("kadi-import-property-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("users.csv");
        let outcomes = Outcomes::default();
        runner(SERVICE_CASES)
            .run(&exported_users_csv(), |csv| {
                std::fs::write(&path, &csv).unwrap();
                runtime.block_on(async {
                    let before = stored_users(app).await;
                    let files = ImportFiles {
                        users: Some(&path),
                        ..ImportFiles::default()
                    };
                    match import(&app.state.links, files).await {
                        Ok(report) => {
                            let users = &report.users;
                            outcomes.count(users.inserted > 0);
                            prop_assert_eq!(
                                users.read,
                                users.inserted + users.already_present + users.skipped.len()
                            );
                            let after = stored_users(app).await;
                            prop_assert_eq!(after.len(), before.len() + users.inserted);
                        }
                        Err(error) => {
                            outcomes.count(false);
                            // A malformed file names its line and stores nothing.
                            let message = error.to_string();
                            prop_assert!(message.contains("users.csv"), "{message}");
                            prop_assert_eq!(&stored_users(app).await, &before);
                        }
                    }
                    Ok(())
                })
            })
            .unwrap();
        outcomes.assert_both("imported CSV files");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Declares each service property twice, as a test per backend.
    macro_rules! on_each_backend {
        ($($name:ident => $property:path,)*) => {
            mod sqlite {
                $(#[test]
                fn $name() {
                    super::on_service(kadi::store::Backend::Sqlite, $property);
                })*
            }
            mod postgres {
                $(#[test]
                fn $name() {
                    super::on_service(kadi::store::Backend::Postgres, $property);
                })*
            }
        };
    }

    on_each_backend! {
        accepted_codes_round_trip_through_the_redirect_route => super::codes_round_trip,
        accepted_targets_are_stored_and_served_as_checked => super::targets_round_trip,
        bulk_csv_imports_exactly_the_valid_rows => super::bulk_imports_exactly_the_valid_rows,
        csv_import_keeps_every_row_it_reports => super::import_keeps_every_row_it_reports,
    }
}
